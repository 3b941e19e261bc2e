"""Video-text dual encoder: two towers, linear projections to a shared space, unit-norm embeddings,
and the heads a method adds (models/heads.py), composed by models/builder.py."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from input_pipeline.contract import PAD_ID
from vl_jax.models.layers import l2_normalize
from vl_jax.models.text_transformer import TextTransformer
from vl_jax.models.video_vit import VideoViT


class DualEncoder(nn.Module):
  """The towers, projections and temperature. `heads` are the methods' modules on top of them,
  each named by the builder (its parameters' top-level name); the functions of models/heads.py
  apply them, through `model.apply(..., method=heads.<function>)`."""
  video: VideoViT
  text: TextTransformer
  embed_dim: int
  temperature_init: float
  learn_temperature: bool
  heads: tuple[nn.Module, ...] = ()

  # The heads keep the names the builder gives them, so each is a top-level parameter group.
  preserve_adopted_names = True

  def setup(self):
    self.video_proj = nn.Dense(self.embed_dim, name="video_proj")
    self.text_proj = nn.Dense(self.embed_dim, name="text_proj")
    if self.learn_temperature:
      # Learned in log space (CLIP), so it stays positive.
      # A strongly typed float32: a weak-typed init would change type after the first update,
      # which recompiles the train step.
      self.log_inv_temperature = self.param(
          "log_inv_temperature",
          lambda _: jnp.full((), np.log(1.0 / self.temperature_init), jnp.float32))

  def head(self, name: str) -> nn.Module | None:
    """The head named `name`, or None if this model has none."""
    return next((h for h in self.heads if h.name == name), None)

  def head_names(self) -> tuple[str, ...]:
    """The heads' names; works on an unbound model, as the builder named them."""
    return tuple(h.name for h in self.heads)

  def encode_video(self, frames, mask=None) -> dict[str, Any]:
    """Tower tokens [B, T, N, D]; each frame's mean token [B, T, D] (a clip as the cross-modal
    encoder reads it); the unit embedding of what the tower pools (VideoViT.pool; each frame's
    class token: the mean of their unit embeddings, CLIP4Clip's meanP); each token projected into
    the shared space, [B, T * N, E] (TACo's token loss; unused outputs cost nothing under jit).
    With `mask` [B, T, N], the masked patches are the tower's mask token."""
    tokens, pooled = self.video(frames, mask=mask)  # [B, T, N, D]
    emb = l2_normalize(self.video_proj(pooled))
    if self.video.pool == "cls":  # [B, T, E]: one per frame
      emb = l2_normalize(emb.mean(axis=1))
    return {"video_tokens": tokens, "frame_tokens": tokens.mean(axis=2), "video_emb": emb,
            "video_token_emb": self.video_proj(tokens.reshape(tokens.shape[0], -1,
                                                              tokens.shape[-1]))}

  def encode_text(self, tokens) -> dict[str, Any]:
    """Tower tokens [B, L, D]; the unit embedding of the caption's pooled feature ([CLS], or as
    the tower's architecture pools); each token projected, [B, L, E]."""
    feats = self.text(tokens)  # [B, L, D]
    return {"text_tokens": feats, "text_mask": tokens != PAD_ID,
            "text_emb": l2_normalize(self.text_proj(self.text.pooled(feats, tokens))),
            "text_token_emb": self.text_proj(feats)}

  def inverse_temperature(self):
    if self.learn_temperature:
      return jnp.exp(self.log_inv_temperature)
    return jnp.full((), 1.0 / self.temperature_init, jnp.float32)

  def video_features(self, frames, layer: int | None = None):
    """The video tower's tokens [B, T, N, D] after block `layer` (None: the tower's output)."""
    return self.video(frames, layer=layer)[0]

  def __call__(self, frames, tokens) -> dict[str, Any]:
    return {**self.encode_video(frames), **self.encode_text(tokens),
            "inverse_temperature": self.inverse_temperature()}

  def initialize(self, frames, tokens) -> dict[str, Any]:
    """__call__, and every head once, so that `init` creates all parameters."""
    out = self(frames, tokens)
    for h in self.heads:
      h.initialize(self, frames, tokens, out)
    return out
