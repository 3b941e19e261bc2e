"""BERT-style text transformer (post-norm, learned absolute positions, [CLS] first)."""

import flax.linen as nn

from input_pipeline.tokenizer import PAD_ID
from vl_jax.models.layers import Mlp, attention


class BertLayer(nn.Module):
  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x, mask):
    x = nn.LayerNorm(epsilon=1e-12, name="attention_norm")(
        x + attention(self.num_heads, "attention")(x, mask=mask))
    return nn.LayerNorm(epsilon=1e-12, name="output_norm")(x + Mlp(self.mlp_dim, name="mlp")(x))


class TextTransformer(nn.Module):
  """Returns token features [B, L, D]; position 0 is [CLS]."""
  vocab_size: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  max_len: int

  @nn.compact
  def __call__(self, tokens):  # int32 [B, L], PAD_ID where padded
    if tokens.shape[1] > self.max_len:
      raise ValueError(f"text tower built for <= {self.max_len} tokens, got {tokens.shape[1]}")
    init = nn.initializers.normal(0.02)
    x = nn.Embed(self.vocab_size, self.width, embedding_init=init, name="word_embeddings")(tokens)
    x = x + self.param("position_embeddings", init, (self.max_len, self.width))[:tokens.shape[1]]
    x = nn.LayerNorm(epsilon=1e-12, name="embeddings_norm")(x)
    valid = tokens != PAD_ID
    mask = nn.make_attention_mask(valid, valid)
    for i in range(self.depth):
      x = BertLayer(self.num_heads, self.mlp_dim, name=f"layer_{i}")(x, mask)
    return x
