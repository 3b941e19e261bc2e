"""Masked frame modeling through the cross-modal encoder (CoCo-BERT's frame proxy).

    config.objectives.masked_frames = dict(weight=1.0, loss="l2", temperature=0.07)

The clip with masked frames (config.masking.frames), fused with its unmasked caption, predicts the
unmasked clip's frame tokens (the mean of each frame's video-tower tokens, no gradient through
them) at the masked frames, each frame weighted by its masked fraction:
- "l2": feature regression, the mean squared error per frame (masked_regression);
- "contrastive": each prediction must pick its own frame among all frames of the global batch
  (frame_nce, with `temperature`).
CoCo-BERT names masked frame modeling without its form; both forms and the default "l2" are our
choice. Needs the cross-modal encoder and its masked heads.
"""

import jax

from vl_jax.errors import ConfigError
from vl_jax.losses.masked_modeling import frame_nce, masked_regression
from vl_jax.objectives import views

LOSSES = ("l2", "contrastive")


def objective(outputs, batch, cfg, rng):
  del rng
  views.require(outputs, "masked_frames", "frame_mask", "frames.rate")
  if cfg.loss not in LOSSES:
    raise ConfigError(f"config.objectives.masked_frames.loss={cfg.loss!r}: expected one of "
                      f"{LOSSES}")
  apply, length = outputs["apply"], batch["tokens"].shape[1]
  fused = apply(outputs["masked_frame_tokens"], outputs["text_tokens"], outputs["text_mask"],
                method="fuse_features")
  predictions = apply(fused[:, length:], method="predict_frames")
  targets = jax.lax.stop_gradient(outputs["frame_tokens"])
  weights = outputs["frame_mask"].mean(axis=2)  # [B, T]
  if cfg.loss == "l2":
    loss = masked_regression(predictions, targets, weights, "l2")
  else:
    loss = frame_nce(predictions, targets, weights, 1.0 / cfg.temperature)
  return loss, {"masked_frames": weights.sum(axis=1).mean()}
