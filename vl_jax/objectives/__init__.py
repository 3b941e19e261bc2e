"""Objectives: each maps (context, model outputs, batch, its config, a PRNG key) to
(loss, metrics) (objective.py). The outputs are the model's (DualEncoder.__call__) plus the masked
views' (views.py) where config.masking draws them.

A config lists the objectives to train with and their weights; `block(name, **overrides)` is an
objective's config block, its defaults with the overrides:

    config.objectives = {"contrastive": objectives.block("contrastive"), ...}

and the train step minimises the weighted sum. Methods are combinations of objectives.

Each objective draws from its own key (random negatives, masks), folded from the step's key with
a hash of its name: adding or removing one objective leaves the others' draws unchanged.
"""

import zlib

import jax
import jax.numpy as jnp

from input_pipeline.errors import ConfigError
from vl_jax.objectives import (caption, cascade_matching, coco, contrastive, knowledge,
                               masked_frames, masked_language, masked_video, qa,
                               sigmoid_contrastive, token_contrastive, views)
from vl_jax.objectives.objective import Context, Objective

REGISTRY: dict[str, Objective] = {"contrastive": contrastive.OBJECTIVE, "qa": qa.OBJECTIVE,
                                  "token_contrastive": token_contrastive.OBJECTIVE,
                                  "cascade_matching": cascade_matching.OBJECTIVE,
                                  "masked_video": masked_video.OBJECTIVE,
                                  "coco": coco.OBJECTIVE,
                                  "masked_language": masked_language.OBJECTIVE,
                                  "masked_frames": masked_frames.OBJECTIVE,
                                  "caption": caption.OBJECTIVE,
                                  "skp": knowledge.SKP,
                                  "kcl": knowledge.KCL,
                                  "sigmoid_contrastive": sigmoid_contrastive.OBJECTIVE}


def block(name: str, **overrides) -> dict:
  """The config block of objective `name`: its defaults, with `overrides`."""
  unknown = set(overrides) - set(REGISTRY[name].defaults)
  if unknown:
    raise ValueError(f"objective {name!r} has no field {sorted(unknown)}")
  return dict(REGISTRY[name].defaults, **overrides)


def validate(config, model) -> None:
  """ConfigError naming the first objective (or masking) field of `config` that cannot work with
  `model`: run once, before the train step is traced."""
  unknown = sorted(set(config.objectives) - set(REGISTRY))
  if unknown:
    raise ConfigError(f"config.objectives: unknown {unknown}; known: {sorted(REGISTRY)}")
  views.validate(config, model)
  for name, cfg in config.objectives.items():
    REGISTRY[name].check(name, cfg, config, model)


def named_key(rng, name: str):
  """The key of `name` (an objective, the masked views) folded from the step's key."""
  return jax.random.fold_in(rng, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def total_loss(ctx: Context, outputs, batch, objectives_cfg, rng):
  """Weighted sum of the configured objectives, with each one's metrics prefixed by its name."""
  total, metrics = jnp.zeros(()), {}
  for name, cfg in objectives_cfg.items():
    loss, m = REGISTRY[name].loss(ctx, outputs, batch, cfg, named_key(rng, name))
    total = total + cfg.weight * loss
    metrics.update({f"{name}/{k}": v for k, v in m.items()})
    metrics[f"{name}/loss"] = loss
  return total, metrics
