"""Objectives: each maps (model outputs, batch, its config, a PRNG key) to (loss, metrics).

The outputs are the model's (DualEncoder.__call__), plus `model` and `apply` (the model applied
with the step's parameters, for the objectives that call its other methods), the masked views
(objectives/views.py) and the averaged model (`ema_apply`) where configured.

A config lists the objectives to train with and their weights,

    config.objectives = {"contrastive": {"weight": 1.0}, ...}

and the train step minimises the weighted sum. Methods are combinations of objectives.

Each objective draws from its own key (random negatives, masks), folded from the step's key with
a hash of its name: adding or removing one objective leaves the others' draws unchanged.
"""

import zlib
from typing import Callable

import jax
import jax.numpy as jnp

from vl_jax.errors import ConfigError
from vl_jax.objectives import (caption, cascade_matching, coco, contrastive, knowledge,
                               masked_frames, masked_language, masked_video, qa, token_contrastive)

REGISTRY: dict[str, Callable] = {"contrastive": contrastive.objective, "qa": qa.objective,
                                 "token_contrastive": token_contrastive.objective,
                                 "cascade_matching": cascade_matching.objective,
                                 "masked_video": masked_video.objective,
                                 "coco": coco.objective,
                                 "masked_language": masked_language.objective,
                                 "masked_frames": masked_frames.objective,
                                 "caption": caption.objective,
                                 "skp": knowledge.skp_objective,
                                 "kcl": knowledge.kcl_objective}


def named_key(rng, name: str):
  """The key of `name` (an objective, the masked views) folded from the step's key."""
  return jax.random.fold_in(rng, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def total_loss(outputs, batch, objectives_cfg, rng):
  """Weighted sum of the configured objectives, with each one's metrics prefixed by its name."""
  unknown = sorted(set(objectives_cfg) - set(REGISTRY))
  if unknown:
    raise ConfigError(f"config.objectives: unknown {unknown}; known: {sorted(REGISTRY)}")
  total, metrics = jnp.zeros(()), {}
  for name, cfg in objectives_cfg.items():
    loss, m = REGISTRY[name](outputs, batch, cfg, named_key(rng, name))
    total = total + cfg.weight * loss
    metrics.update({f"{name}/{k}": v for k, v in m.items()})
    metrics[f"{name}/loss"] = loss
  return total, metrics
