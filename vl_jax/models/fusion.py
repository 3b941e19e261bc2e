"""The cross-modal encoder (TACo's fusion encoder, CoCo-BERT's cross-modal encoder): a few
transformer layers over a caption's tokens and a clip's frame tokens together."""

import flax.linen as nn
import jax.numpy as jnp

from vl_jax.models.layers import Stack, run_blocks
from vl_jax.models.text_transformer import BertLayer


class FusionEncoder(nn.Module):
  """Fuses (clip, caption) pairs: [P, T, Dv] frame tokens, [P, L, Dt] caption tokens and their
  [P, L] mask -> [P, L + T, width] features, the caption's positions first.

  Each side is projected to `width` and gets learned position and token-type embeddings; position
  0 is the caption's [CLS], whose fused feature stands for the pair (TACo's score, QA's answer).
  A clip enters as one token per frame (the mean of the frame's patch tokens, DualEncoder's
  `frame_tokens`): TACo fuses per-time-step video features, and T tokens instead of T x N keep the
  pairs that cascade sampling feeds it cheap.
  """
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  max_text_len: int
  num_frames: int
  stack: Stack = Stack()

  @nn.compact
  def __call__(self, frame_tokens, text_tokens, text_mask):
    init = nn.initializers.normal(0.02)
    kind = nn.Embed(2, self.width, embedding_init=init, name="token_type")
    length, frames = text_tokens.shape[1], frame_tokens.shape[1]
    text = (nn.Dense(self.width, name="text_in")(text_tokens) + kind(jnp.zeros((), jnp.int32))
            + self.param("text_position", init, (self.max_text_len, self.width))[:length])
    video = (nn.Dense(self.width, name="video_in")(frame_tokens) + kind(jnp.ones((), jnp.int32))
             + self.param("video_position", init, (self.num_frames, self.width))[:frames])
    x = nn.LayerNorm(epsilon=1e-12, name="embeddings_norm")(jnp.concatenate([text, video], 1))
    valid = jnp.concatenate([text_mask, jnp.ones(frame_tokens.shape[:2], bool)], axis=1)
    mask = nn.make_attention_mask(valid, valid)
    x = run_blocks(BertLayer, dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                                   stack=self.stack),
                   self.depth, self.stack, "layer", x.astype(self.stack.dtype), mask)
    return x.astype(jnp.float32)

  def initialize(self, model, frames, tokens, out):
    del model, frames, tokens
    self(out["frame_tokens"], out["text_tokens"], out["text_mask"])
