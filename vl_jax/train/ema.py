"""Exponential moving averages of parameter groups, kept in the train state (MILES's snapshot
video encoder).

    config.ema = dict(modules=("video",), momentum=0.996, final_momentum=1.0)

`modules` names top-level groups of the parameter tree ("video", "text", ...); () keeps no average.
After each optimizer update, inside the jitted step,

    ema <- m_k * ema + (1 - m_k) * params,   m_k = m_1 - (m_1 - m_0) (1 + cos(pi k / K)) / 2

with m_0 = `momentum`, m_1 = `final_momentum`, k the step and K the run's total steps (BYOL's
schedule; m_0 = m_1 keeps it constant). The averages receive no gradient: they change only here.
"""

import jax
import jax.numpy as jnp

from input_pipeline.errors import ConfigError


def validate(ema_cfg, params) -> None:
  unknown = sorted(set(ema_cfg.modules) - set(params))
  if unknown:
    raise ConfigError(f"config.ema.modules: no parameter group {unknown}; the model has "
                      f"{sorted(params)}")
  for field in ("momentum", "final_momentum"):
    if not 0.0 <= ema_cfg[field] <= 1.0:
      raise ConfigError(f"config.ema.{field}={ema_cfg[field]}: must be in [0, 1]")


def init(ema_cfg, params) -> dict:
  """The averages' starting point: copies (own buffers: the state is donated) of the groups."""
  return {name: jax.tree.map(jnp.copy, params[name]) for name in ema_cfg.modules}


def momentum(ema_cfg, step, total_steps: int):
  """m_k of the module docstring."""
  m0, m1 = ema_cfg.momentum, ema_cfg.final_momentum
  progress = jnp.minimum(step / total_steps, 1.0)
  return m1 - (m1 - m0) * (1.0 + jnp.cos(jnp.pi * progress)) / 2.0


def update(ema_params: dict, params, m) -> dict:
  return {name: jax.tree.map(lambda e, p: m * e + (1.0 - m) * p, avg, params[name])
          for name, avg in ema_params.items()}
