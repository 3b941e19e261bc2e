"""Checks of the config's run-wide values, made before anything is built or compiled: a bad value
is one line naming the field, not a ZeroDivisionError after minutes of compilation."""

import math

from input_pipeline.errors import ConfigError


def _positive_int(value, field: str) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"{field}={value!r}: must be a positive integer")


def check(config, training: bool = True) -> None:
  """ConfigError naming the first field that cannot work: the evaluators' `every_steps` and
  `batch_size`, and for training the batch size, step counts, checkpoint cadence, learning
  rate, steps in flight and profiled steps."""
  for name, ev in config.evals.items():
    _positive_int(ev.every_steps, f"config.evals.{name}.every_steps")
    _positive_int(ev.batch_size, f"config.evals.{name}.batch_size")
  if not training:
    return
  for field in ("batch_size", "total_steps", "log_every_steps", "checkpoint.every_steps",
                "checkpoint.keep", "steps_in_flight"):
    node = config
    for part in field.split("."):
      node = node[part]
    _positive_int(node, f"config.{field}")
  lr = config.optimizer.lr
  if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
    raise ConfigError(f"config.optimizer.lr={lr!r}: must be a positive finite number")
  profile = config.profile_steps
  if isinstance(profile, bool) or not isinstance(profile, int) or profile < 0:
    raise ConfigError(f"config.profile_steps={profile!r}: must be an integer >= 0")
