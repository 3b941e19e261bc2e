"""Train state, optimizer, and creation of the state directly in its sharded layout."""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from absl import logging
from jax.sharding import Mesh

from input_pipeline.errors import ConfigError
from vl_jax import sharding
from vl_jax.train import ema as ema_lib, queue as queue_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: dict  # averaged copies of the groups of config.ema.modules ({}: none)
  queue: dict  # the momentum encoder's embeddings of past batches (config.queue; {}: none)


def make_optimizer(opt_cfg, total_steps: int):
  """AdamW with linear warm-up, cosine decay and global-norm clipping; returns (tx, schedule). A
  warm-up as long as the run (`--config.total_steps=20` on a config warming up for 100) is
  shortened to a tenth of the run, and said so."""
  warmup = opt_cfg.warmup_steps
  if warmup < 0:
    raise ConfigError(f"config.optimizer.warmup_steps={warmup}: must be >= 0")
  if warmup >= total_steps:
    warmup = total_steps // 10
    logging.warning("config.optimizer.warmup_steps=%d is not below config.total_steps=%d: "
                    "warming up for %d steps instead (a tenth of the run)",
                    opt_cfg.warmup_steps, total_steps, warmup)
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=opt_cfg.lr, warmup_steps=warmup,
      decay_steps=total_steps, end_value=opt_cfg.lr * opt_cfg.end_lr_ratio)
  # Decay matrices only: biases, norms and scalars (the temperature) are left alone.
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  tx = optax.chain(
      optax.clip_by_global_norm(opt_cfg.grad_clip_norm),
      optax.adamw(schedule, b1=opt_cfg.b1, b2=opt_cfg.b2, weight_decay=opt_cfg.weight_decay,
                  mask=decay_mask))
  return tx, schedule


def dummy_inputs(data_cfg):
  frames = jnp.zeros((1, data_cfg.num_frames, data_cfg.image_size, data_cfg.image_size, 3),
                     jnp.uint8)
  return frames, jnp.zeros((1, data_cfg.max_text_len), jnp.int32)


def init_params(model: nn.Module, data_cfg, rng):
  return model.init(rng, *dummy_inputs(data_cfg), method="initialize")["params"]


def _init_fn(model: nn.Module, tx, config):
  def init(rng):
    params = init_params(model, config.data, rng)
    ema_lib.validate(config.ema, params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      ema_params=ema_lib.init(config.ema, params),
                      queue=queue_lib.init(config.queue, config.ema, config.model.embed_dim,
                                           jax.random.fold_in(rng, 1)))
  return init


def abstract_state(model: nn.Module, tx, config, mesh: Mesh):
  """(shapes, dtypes and shardings of the state, its shardings), with no allocation."""
  abstract = jax.eval_shape(_init_fn(model, tx, config), jax.random.key(config.seed))
  shardings = state_shardings(abstract, tx, config.sharding.rules, mesh)
  return abstract_with_shardings(abstract, shardings), shardings


def create(model: nn.Module, tx, config, mesh: Mesh):
  """Returns (state, state shardings) of `config`'s data shapes, seed, averaged groups
  (config.ema) and queue (config.queue); parameters are born in place, never on one host
  first."""
  _, shardings = abstract_state(model, tx, config, mesh)
  return jax.jit(_init_fn(model, tx, config), out_shardings=shardings)(
      jax.random.key(config.seed)), shardings


def state_shardings(abstract: TrainState, tx, rules, mesh: Mesh) -> TrainState:
  """Parameters as `rules` say (mesh.param_shardings), and so their optimizer moments and
  averages; the rest (step, counters, queue) replicated."""
  replicated = sharding.replicated(mesh)
  params = sharding.param_shardings(abstract.params, rules, mesh)
  return TrainState(
      step=replicated, params=params,
      opt_state=optax.tree_map_params(tx, lambda _, s: s, abstract.opt_state, params,
                                      transform_non_params=lambda _: replicated),
      ema_params={name: params[name] for name in abstract.ema_params},
      queue=jax.tree.map(lambda _: replicated, abstract.queue))


def with_params(state: TrainState, params, ema_cfg) -> TrainState:
  """`state` with new parameters (loaded ones) and its averages restarted from them."""
  return state.replace(params=params, ema_params=ema_lib.init(ema_cfg, params))


def abstract_params(model: nn.Module, config, mesh: Mesh):
  """Shapes, dtypes and shardings (config.sharding.rules) of the model's parameters, with no
  allocation."""
  shapes = jax.eval_shape(lambda rng: init_params(model, config.data, rng), jax.random.key(0))
  return abstract_with_shardings(shapes,
                                 sharding.param_shardings(shapes, config.sharding.rules, mesh))


def is_finite(tree) -> jax.Array:
  """A bool scalar: every floating leaf of `tree` is finite (traceable; jitted, it works on
  sharded trees of any number of processes and only the bool leaves the devices)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def abstract_with_shardings(state, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      state, shardings)
