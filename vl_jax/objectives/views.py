"""CoCo-BERT's masked views: captions with masked words and clips with masked frames (or patches),
the noisy counterparts of the unmasked inputs, and their encodings.

    config.masking = dict(words=dict(rate=0.15, mask=0.8, random=0.1),
                          frames=dict(rate=0.25, unit="frame"))

One draw per step serves every objective that reads the views (the CoCo terms, masked language and
masked frame modeling): the masked inputs the proxies reconstruct are the same noisy views the
contrastive terms match, as the paper describes them. Rate 0: no view of that modality.
"""

import math

import jax

from input_pipeline.contract import MASK_ID
from input_pipeline.errors import ConfigError
from vl_jax.objectives.masks import UNITS, mask_frames, mask_words


def enabled(masking_cfg) -> bool:
  return masking_cfg.words.rate > 0 or masking_cfg.frames.rate > 0


def validate(config, model) -> None:
  """One-line ConfigErrors of a config.masking that cannot be drawn."""
  w, f = config.masking.words, config.masking.frames
  for part, rate in (("words", w.rate), ("frames", f.rate)):
    if not 0.0 <= rate < 1.0:
      raise ConfigError(f"config.masking.{part}.rate={rate}: must be in [0, 1)")
  if not (0.0 <= w.mask and 0.0 <= w.random and w.mask + w.random <= 1.0):
    raise ConfigError(f"config.masking.words: mask={w.mask}, random={w.random} must be "
                      "probabilities summing to at most 1")
  if f.unit not in UNITS:
    raise ConfigError(f"config.masking.frames.unit={f.unit!r}: expected one of {sorted(UNITS)}")
  if f.rate > 0 and f.unit == "frame" and config.data.num_frames < 2:
    raise ConfigError("config.masking.frames.unit='frame' needs clips of 2 frames or more; "
                      "use unit='patch'")
  if f.rate > 0 and not model.video.use_mask_token:
    raise ConfigError("config.masking.frames.rate > 0 needs the video tower's mask token: set "
                      "config.model.video.mask_token=True")


# What builds the heads of the objectives that fuse masked views (their Objective.head).
MASKED_HEADS = ("the cross-modal encoder's masked heads: set config.model.fusion.depth > 0 and "
                "masked_heads=True")


def require(config, objective: str, part: str) -> None:
  """The one-line error of an objective that fuses the masked views of `part` ("words",
  "frames") when there are none."""
  if not config.masking[part].rate > 0:
    raise ConfigError(f"config.objectives.{objective} needs masked views: set "
                      f"config.masking.{part}.rate > 0")


def encode(ctx, batch, outputs, masking_cfg, rng) -> dict:
  """Outputs of the masked views: `word_mask` [B, L] (the selected words) and `frame_mask`
  [B, T, N] (the masked patches), and the encodings of the noisy inputs under `masked_` names
  (masked_video_emb, masked_text_tokens, masked_frame_tokens, ...). A modality whose rate is 0
  has no mask and keeps its unmasked encoding."""
  words_key, frames_key = jax.random.split(rng)
  w, f = masking_cfg.words, masking_cfg.frames
  out = {}
  if w.rate > 0:
    noisy, out["word_mask"] = mask_words(words_key, batch["tokens"], w.rate, MASK_ID,
                                         ctx.model.text.vocab_size, w.mask, w.random)
    out |= {f"masked_{k}": v for k, v in ctx.apply(noisy, method="encode_text").items()}
  else:
    out |= {f"masked_{k}": outputs[k] for k in ("text_tokens", "text_mask", "text_emb")}
  b, t, n, _ = outputs["video_tokens"].shape
  if f.rate > 0:
    side = math.isqrt(n)
    out["frame_mask"] = mask_frames(frames_key, b, (t, side, n // side), f.rate, f.unit)
    out |= {f"masked_{k}": v for k, v in ctx.apply(batch["frames"], out["frame_mask"],
                                                   method="encode_video").items()}
  else:
    out |= {f"masked_{k}": outputs[k] for k in ("video_tokens", "video_emb", "frame_tokens")}
  return out
