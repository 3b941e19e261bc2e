"""What an objective is, and what it receives besides the arrays."""

import dataclasses
from typing import Any, Callable

from jax.sharding import Mesh

from input_pipeline.errors import ConfigError
from vl_jax.models.dual_encoder import DualEncoder


@dataclasses.dataclass(frozen=True)
class Context:
  """The step's model, apart from its activations: `apply(*args, method=...)` is the model with
  the step's parameters (models/heads.py's functions are its methods); `ema_apply` the model with
  its averaged groups (config.ema.modules) in place, None without averages; `mesh` the step's (for
  the losses computed in shard_map); with a queue, `queue` holds the past keys and
  `momentum_keys` this batch's, both {"video_emb", "text_emb"}."""
  model: DualEncoder
  apply: Callable
  mesh: Mesh | None = None
  ema_apply: Callable | None = None
  queue: dict | None = None
  momentum_keys: dict | None = None


def check_choice(objective: str, cfg, field: str, allowed) -> None:
  """ConfigError unless config.objectives.<objective>.<field> is one of `allowed`."""
  if cfg[field] not in allowed:
    raise ConfigError(f"config.objectives.{objective}.{field}={cfg[field]!r}: expected one of "
                      f"{sorted(allowed)}")


def require_head(model, head: str, objective: str, what: str) -> None:
  """ConfigError unless `model` has `head`; `what` names it and the config that builds it."""
  if head not in model.head_names():
    raise ConfigError(f"config.objectives.{objective} needs {what}")


@dataclasses.dataclass(frozen=True)
class Objective:
  """`loss(ctx, outputs, batch, cfg, rng) -> (loss, metrics)`, traced in the train step;
  `defaults`, its config block (`weight` included); `validate(cfg, config, model)`, the one-line
  ConfigErrors of a block, a config or a model it cannot work with, run once before the step is
  traced."""
  loss: Callable[..., tuple[Any, dict]]
  defaults: dict
  validate: Callable[..., None]
