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


@dataclasses.dataclass(frozen=True)
class Objective:
  """`loss(ctx, outputs, batch, cfg, rng) -> (loss, metrics)`, traced in the train step;
  `defaults`, its config block (`weight` included). Checked once before the step is traced, each
  with a one-line ConfigError: `head` = (name, what builds it), the model's head that the loss
  applies; `choices` = {field: allowed values} of its block; `validate(cfg, config, model)`, the
  other checks of a block, a config or a model it cannot work with."""
  loss: Callable[..., tuple[Any, dict]]
  defaults: dict
  validate: Callable[..., None] | None = None
  head: tuple[str, str] | None = None
  choices: dict = dataclasses.field(default_factory=dict)

  def check(self, name: str, cfg, config, model) -> None:
    """The checks above, of config.objectives.<name> = `cfg`."""
    if self.head and self.head[0] not in model.head_names():
      raise ConfigError(f"config.objectives.{name} needs {self.head[1]}")
    for field, allowed in self.choices.items():
      if cfg[field] not in allowed:
        raise ConfigError(f"config.objectives.{name}.{field}={cfg[field]!r}: expected one of "
                          f"{sorted(allowed)}")
    if self.validate:
      self.validate(cfg, config, model)
