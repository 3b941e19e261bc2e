"""The text tower: a transformer over a caption's tokens, in one of three architectures (ARCHS).

- "bert": BERT (post-norm, learned absolute positions with a norm, a padding mask), pooled at
  [CLS];
- "clip": CLIP's text transformer (pre-norm, causal mask, a final norm), pooled at the
  end-of-text token, the [SEP] of this codebase's ids (input_pipeline/tokenizer.py);
- "siglip": SigLIP's (pre-norm, no mask, a final norm), pooled at the last position, padding
  included, as SigLIP is trained. SigLIP's text has no begin token: position 0, the [CLS] every
  tokenized caption starts with here, is masked out as a key, so it changes nothing.
"""


import flax.linen as nn
import jax.numpy as jnp

from input_pipeline.contract import PAD_ID, SEP_ID
from vl_jax.models.layers import Mlp, Stack, attention, layer_norm, run_blocks

ARCHS = ("bert", "clip", "siglip")


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


class PreNormLayer(nn.Module):
  """CLIP's and SigLIP's block: attention and MLP, each on a normed input with a residual."""
  num_heads: int
  mlp_dim: int
  activation: str
  epsilon: float
  stack: Stack = Stack()

  @nn.compact
  def __call__(self, x, mask):
    dtype = self.stack.dtype
    x = x + attention(self.num_heads, "attention", self.stack)(
        layer_norm("attention_norm", dtype, self.epsilon)(x), mask=mask)
    return x + Mlp(self.mlp_dim, dtype, self.activation, name="mlp")(
        layer_norm("mlp_norm", dtype, self.epsilon)(x))


class TextTransformer(nn.Module):
  """Returns token features [B, L, D], float32; `pooled` picks the caption's feature."""
  vocab_size: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  max_len: int
  arch: str = "bert"  # one of ARCHS
  activation: str = "gelu"  # the MLPs' ("clip" and "siglip"; BERT's is GELU)
  norm_epsilon: float = 1e-5  # ("clip" and "siglip"; BERT's is 1e-12)
  stack: Stack = Stack()

  @nn.compact
  def __call__(self, tokens):  # int32 [B, L], PAD_ID where padded
    if tokens.shape[1] > self.max_len:
      raise ValueError(f"text tower built for <= {self.max_len} tokens, got {tokens.shape[1]}")
    init = nn.initializers.normal(0.02)
    x = nn.Embed(self.vocab_size, self.width, embedding_init=init, name="word_embeddings")(tokens)
    x = x + self.param("position_embeddings", init, (self.max_len, self.width))[:tokens.shape[1]]
    if self.arch == "bert":
      x = nn.LayerNorm(epsilon=1e-12, name="embeddings_norm")(x)
      valid = tokens != PAD_ID
      x = run_blocks(BertLayer, dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                                     stack=self.stack),
                     self.depth, self.stack, "layer", x.astype(self.stack.dtype),
                     nn.make_attention_mask(valid, valid))
      return x.astype(jnp.float32)
    if self.arch == "clip":
      mask = nn.make_causal_mask(tokens)
    else:  # every key but position 0
      keys = jnp.arange(tokens.shape[1]) > 0
      mask = jnp.broadcast_to(keys, tokens.shape)[:, None, None, :]
    x = run_blocks(PreNormLayer, dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                                      activation=self.activation, epsilon=self.norm_epsilon,
                                      stack=self.stack),
                   self.depth, self.stack, "layer", x.astype(self.stack.dtype), mask)
    return nn.LayerNorm(epsilon=self.norm_epsilon, name="final_norm")(x).astype(jnp.float32)

  def pooled(self, feats, tokens):
    """[B, D]: the feature of each caption that its embedding is made of (ARCHS)."""
    if self.arch == "clip":
      return jnp.take_along_axis(feats, jnp.argmax(tokens == SEP_ID, axis=1)[:, None, None],
                                 axis=1)[:, 0]
    return feats[:, -1] if self.arch == "siglip" else feats[:, 0]
