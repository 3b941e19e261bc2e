"""Masked frame modeling through the cross-modal encoder (CoCo-BERT's frame proxy).

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

from vl_jax.losses.masked_modeling import frame_nce, masked_regression
from vl_jax.models import heads
from vl_jax.objectives import views
from vl_jax.objectives.objective import Objective

LOSSES = ("l2", "contrastive")


def loss(ctx, outputs, batch, cfg, rng):
  del rng
  length = batch["tokens"].shape[1]
  fused = ctx.apply(outputs["masked_frame_tokens"], outputs["text_tokens"], outputs["text_mask"],
                    method=heads.fuse_features)
  predictions = ctx.apply(fused[:, length:], method=heads.predict_frames)
  targets = jax.lax.stop_gradient(outputs["frame_tokens"])
  weights = outputs["frame_mask"].mean(axis=2)  # [B, T]
  if cfg.loss == "l2":
    value = masked_regression(predictions, targets, weights, "l2")
  else:
    value = frame_nce(predictions, targets, weights, 1.0 / cfg.temperature)
  return value, {"masked_frames": weights.sum(axis=1).mean()}


def validate(cfg, config, model):
  del cfg, model
  views.require(config, "masked_frames", "frames")


OBJECTIVE = Objective(loss, dict(weight=1.0, loss="l2", temperature=0.07), validate,
                      head=("frame_head", views.MASKED_HEADS), choices={"loss": LOSSES})
