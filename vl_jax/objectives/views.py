"""The step's masked views (vl_jax/losses/masked_views.py) and their encodings, shared by the
objectives that read them: the CoCo terms, masked language and masked frame modeling."""

import math

import jax

from input_pipeline.tokenizer import MASK_ID
from vl_jax.errors import ConfigError
from vl_jax.losses.masked_views import mask_frames, mask_words


def enabled(masking_cfg) -> bool:
  return masking_cfg.words.rate > 0 or masking_cfg.frames.rate > 0


def require(outputs, objective: str, mask: str, rate_field: str) -> None:
  """The one-line errors of an objective that fuses masked views: the cross-modal encoder's
  masked heads and the views' `mask` ("word_mask" or "frame_mask") must be there."""
  if not outputs["model"].masked_heads:
    raise ConfigError(f"config.objectives.{objective} needs the cross-modal encoder's masked "
                      "heads: set config.model.fusion.depth > 0 and masked_heads=True")
  if mask not in outputs:
    raise ConfigError(f"config.objectives.{objective} needs masked views: set "
                      f"config.masking.{rate_field} > 0")


def encode(apply, model, batch, outputs, masking_cfg, rng) -> dict:
  """Outputs of the masked views: `word_mask` [B, L] (the selected words) and `frame_mask`
  [B, T, N] (the masked patches), and the encodings of the noisy inputs under `masked_` names
  (masked_video_emb, masked_text_tokens, ...; masked_frame_tokens when there is a cross-modal
  encoder). A modality whose rate is 0 has no mask and keeps its unmasked encoding."""
  words_key, frames_key = jax.random.split(rng)
  w, f = masking_cfg.words, masking_cfg.frames
  out = {}
  if w.rate > 0:
    noisy, out["word_mask"] = mask_words(words_key, batch["tokens"], w.rate, MASK_ID,
                                         model.text.vocab_size, w.mask, w.random)
    out |= {f"masked_{k}": v for k, v in apply(noisy, method="encode_text").items()}
  else:
    out |= {f"masked_{k}": outputs[k] for k in ("text_tokens", "text_mask", "text_emb")}
  b, t, n, _ = outputs["video_tokens"].shape
  if f.rate > 0:
    if not model.video.use_mask_token:
      raise ConfigError("config.masking.frames.rate > 0 needs the video tower's mask token: set "
                        "config.model.video.mask_token=True")
    side = math.isqrt(n)
    out["frame_mask"] = mask_frames(frames_key, b, (t, side, n // side), f.rate, f.unit)
    out |= {f"masked_{k}": v
            for k, v in apply(batch["frames"], out["frame_mask"], method="encode_video").items()}
  else:
    out |= {f"masked_{k}": outputs[k] for k in ("video_tokens", "video_emb")}
  if model.fusion is not None:
    out["masked_frame_tokens"] = out["masked_video_tokens"].mean(axis=2)
  return out
