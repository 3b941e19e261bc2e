"""MILES's masked visual modeling: the masked clip's patches regress the snapshot encoder's
features of the whole clip.

The snapshot encoder is the exponential moving average of the video tower (config.ema.modules holds
"video"); the predictor head is config.model.masked_video. Each step draws new masks from this
objective's key. MILES's text leaves every choice below open; ours, and why:
- `pattern` "tube" (same patches in every frame): with 4 frames a block-free mask lets a patch be
  copied from the same place in the neighbouring frame, which teaches no reasoning (VideoMAE);
  "block" masks (frames, rows, columns) boxes of `block_size`.
- `mask_ratio` 0.5: between BEiT's 0.4 and video MAEs' 0.9; unlike MAE the whole masked clip is
  encoded, and the tower must still serve the contrastive loss on unmasked clips.
- `target_layer` -1: the snapshot tower's output (the features the contrastive loss aligns with
  text, which is what makes the targets "text-aligned"); 1 .. depth picks an earlier block.
- `normalize_targets`: a parameter-free layer norm per patch (data2vec), so the targets' scale
  cannot drift with the average.
- `loss` "smooth_l1" (data2vec); "l2" and "cosine" are the alternatives.
"""

import math

import jax

from input_pipeline.errors import ConfigError
from vl_jax.losses.masked_modeling import LOSSES, masked_regression, normalize_targets
from vl_jax.models import heads
from vl_jax.objectives.masks import PATTERNS, space_time_mask
from vl_jax.objectives.objective import Objective


def loss(ctx, outputs, batch, cfg, rng):
  b, t, n, _ = outputs["video_tokens"].shape
  side = math.isqrt(n)
  mask = space_time_mask(rng, b, (t, side, n // side), cfg.mask_ratio, cfg.pattern,
                         tuple(cfg.block_size))
  targets = ctx.ema_apply(batch["frames"], cfg.target_layer, method="video_features")
  targets = jax.lax.stop_gradient(normalize_targets(targets) if cfg.normalize_targets else targets)
  predictions = ctx.apply(batch["frames"], mask, method=heads.predict_masked)
  return masked_regression(predictions, targets, mask, cfg.loss), {"masked_fraction": mask.mean()}


def validate(cfg, config, model):
  if not model.video.use_mask_token:
    raise ConfigError("config.objectives.masked_video needs the video tower's mask token: set "
                      "config.model.video.mask_token=True")
  if "video" not in config.ema.modules:
    raise ConfigError("config.objectives.masked_video needs the snapshot encoder: "
                      "config.ema.modules must hold 'video'")
  if not 0.0 < cfg.mask_ratio < 1.0:
    raise ConfigError(f"config.objectives.masked_video.mask_ratio={cfg.mask_ratio}: must be in "
                      "(0, 1)")
  if len(cfg.block_size) != 3 or min(cfg.block_size) < 1:
    raise ConfigError(f"config.objectives.masked_video.block_size={tuple(cfg.block_size)}: "
                      "expected 3 positive sizes (frames, rows, columns)")


OBJECTIVE = Objective(loss, dict(weight=1.0, mask_ratio=0.5, pattern="tube", block_size=(2, 2, 2),
                                 target_layer=-1, normalize_targets=True, loss="smooth_l1"),
                      validate, head=("predictor", "a predictor head: set "
                                      "config.model.masked_video.predictor_hidden > 0"),
                      choices={"pattern": PATTERNS, "loss": LOSSES})
