"""CoCo-BERT's caption decoder: a causal transformer over the caption so far, cross-attending to
the clip's video-tower tokens."""

import flax.linen as nn

from vl_jax.models.layers import Mlp, attention


class DecoderLayer(nn.Module):
  """Pre-norm causal self-attention, cross-attention to the memory, MLP (each residual)."""
  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x, memory, causal_mask):
    y = nn.LayerNorm(name="norm_self")(x)
    x = x + attention(self.num_heads, "self_attention")(y, mask=causal_mask)
    y = nn.LayerNorm(name="norm_cross")(x)
    x = x + attention(self.num_heads, "cross_attention")(y, memory)
    return x + Mlp(self.mlp_dim, name="mlp")(nn.LayerNorm(name="norm_mlp")(x))


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

  @nn.compact
  def __call__(self, memory, tokens):
    init = nn.initializers.normal(0.02)
    embed = nn.Embed(self.vocab_size, self.width, embedding_init=init, name="word_embeddings")
    x = embed(tokens) + self.param("position_embeddings", init,
                                   (self.max_len, self.width))[:tokens.shape[1]]
    memory = nn.Dense(self.width, name="memory_in")(memory)
    causal = nn.make_causal_mask(tokens)
    for i in range(self.depth):
      x = DecoderLayer(self.num_heads, self.mlp_dim, name=f"layer_{i}")(x, memory, causal)
    return embed.attend(nn.LayerNorm(name="final_norm")(x))
