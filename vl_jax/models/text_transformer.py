"""BERT-style text transformer (post-norm, learned absolute positions, [CLS] first)."""


import flax.linen as nn
import jax.numpy as jnp

from input_pipeline.contract import PAD_ID
from vl_jax.models.layers import Mlp, Stack, attention, layer_norm, run_blocks


class BertLayer(nn.Module):
  num_heads: int
  mlp_dim: int
  stack: Stack = Stack()

  @nn.compact
  def __call__(self, x, mask):
    dtype = self.stack.dtype
    x = layer_norm("attention_norm", dtype, 1e-12)(
        x + attention(self.num_heads, "attention", self.stack)(x, mask=mask))
    return layer_norm("output_norm", dtype, 1e-12)(x + Mlp(self.mlp_dim, dtype, name="mlp")(x))


class TextTransformer(nn.Module):
  """Returns token features [B, L, D], float32; position 0 is [CLS]."""
  vocab_size: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  max_len: int
  stack: Stack = Stack()

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
    x = run_blocks(BertLayer, dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                                   stack=self.stack),
                   self.depth, self.stack, "layer", x.astype(self.stack.dtype), mask)
    return x.astype(jnp.float32)
