"""CoCo-BERT's caption decoder: a causal transformer over the caption so far, cross-attending to
the clip's video-tower tokens."""


import flax.linen as nn
import jax.numpy as jnp

from vl_jax.models.layers import Mlp, Stack, attention, layer_norm, run_blocks


class DecoderLayer(nn.Module):
  """Pre-norm causal self-attention, cross-attention to the memory, MLP (each residual)."""
  num_heads: int
  mlp_dim: int
  stack: Stack = Stack()

  @nn.compact
  def __call__(self, x, memory, causal_mask):
    dtype = self.stack.dtype
    y = layer_norm("norm_self", dtype)(x)
    x = x + attention(self.num_heads, "self_attention", self.stack)(y, mask=causal_mask)
    y = layer_norm("norm_cross", dtype)(x)
    x = x + attention(self.num_heads, "cross_attention", self.stack)(y, memory)
    return x + Mlp(self.mlp_dim, dtype, name="mlp")(layer_norm("norm_mlp", dtype)(x))


class CaptionDecoder(nn.Module):
  """memory [B, M, Dm] (a clip's tower tokens), tokens [B, L] -> next-token logits [B, L, V].

  Position i sees tokens 0 .. i only (a causal mask and nothing else: padding after [SEP] never
  reaches earlier positions), so the logits of a prefix do not depend on what follows it; the
  decoding loops (models/decoding.py) rely on that. Its own word embeddings, tied to the output
  layer, as in BERT-type encoder-decoders; pre-norm, which trains from scratch without warm-up
  tricks.
  """
  vocab_size: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  max_len: int
  stack: Stack = Stack()

  @nn.compact
  def __call__(self, memory, tokens):
    init = nn.initializers.normal(0.02)
    embed = nn.Embed(self.vocab_size, self.width, embedding_init=init, name="word_embeddings")
    x = embed(tokens) + self.param("position_embeddings", init,
                                   (self.max_len, self.width))[:tokens.shape[1]]
    dtype = self.stack.dtype
    memory = nn.Dense(self.width, dtype=dtype, name="memory_in")(memory)
    causal = nn.make_causal_mask(tokens)
    x = run_blocks(DecoderLayer, dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                                      stack=self.stack),
                   self.depth, self.stack, "layer", x.astype(dtype), memory, causal)
    return embed.attend(nn.LayerNorm(name="final_norm")(x.astype(jnp.float32)))

  def initialize(self, model, frames, tokens, out):
    del model, frames
    video = out["video_tokens"]
    self(video.reshape(video.shape[0], -1, video.shape[-1]), tokens)
