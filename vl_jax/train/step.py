"""The loss over a batch and the jitted train step."""

import dataclasses
import functools

import jax
import optax

from vl_jax import objectives
from vl_jax.objectives import views
from vl_jax.objectives.objective import Context
from vl_jax.train import ema as ema_lib, queue as queue_lib, state as state_lib
from vl_jax.train.state import TrainState


def make_loss_fn(model, config, mesh=None):
  """loss_fn(params, batch, rng, ema_params, queue) -> (loss, (metrics, keys)) of `config`'s
  objectives, validated here, once. `ema_params` (the train state's, possibly {}) give the
  objectives' `ctx.ema_apply` and receive no gradient; with a queue (config.queue), `keys` are the
  momentum encoder's embeddings of the batch, to enqueue ({} otherwise). `mesh` (the step's)
  reaches them as `ctx.mesh`, for the losses computed in `shard_map`."""
  objectives.validate(config, model)

  def loss_fn(params, batch, rng, ema_params, queue):
    apply = functools.partial(model.apply, {"params": params})
    ctx = Context(model, apply, mesh)
    outputs = apply(batch["frames"], batch["tokens"])
    if views.enabled(config.masking):
      outputs |= views.encode(ctx, batch, outputs, config.masking,
                              objectives.named_key(rng, "masking"))
    keys = {}
    if ema_params:  # the model with its averaged groups in place of the trained ones
      ema_apply = functools.partial(
          model.apply, {"params": {**params, **jax.lax.stop_gradient(ema_params)}})
      ctx = dataclasses.replace(ctx, ema_apply=ema_apply)
      if queue:
        keys = {"video_emb": ema_apply(batch["frames"], method="encode_video")["video_emb"],
                "text_emb": ema_apply(batch["tokens"], method="encode_text")["text_emb"]}
        ctx = dataclasses.replace(ctx, queue=queue, momentum_keys=keys)
    loss, metrics = objectives.total_loss(ctx, outputs, batch, config.objectives, rng)
    return loss, (metrics, keys)
  return loss_fn


def step_rng(seed: int, step):
  """The PRNG key of a step: a function of the seed and the step only, so a resumed run draws
  what an uninterrupted one would, and the train state carries no key."""
  return jax.random.fold_in(jax.random.key(seed), step)


def make_train_step(model, tx, schedule, config, mesh=None):
  """The step of `config`'s objectives, seed, parameter averages (config.ema) and queue, on
  `mesh`."""
  loss_fn = make_loss_fn(model, config, mesh)

  def train_step(state: TrainState, batch):
    (loss, (metrics, keys)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch, step_rng(config.seed, state.step), state.ema_params, state.queue)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads), lr=schedule(state.step))
    ema_params = state.ema_params
    if ema_params:
      m = ema_lib.momentum(config.ema, state.step, config.total_steps)
      ema_params = ema_lib.update(ema_params, params, m)
      metrics["ema_momentum"] = m
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                        ema_params=ema_params, queue=queue_lib.enqueue(state.queue, keys))
    # Checked here, on the devices: the loss and gradients of this step and everything the new
    # state holds (parameters, optimizer moments, averages, queue), which is what gets saved.
    metrics["finite"] = state_lib.is_finite((loss, grads, new))
    return new, metrics

  return train_step


def make_probe(model):
  """probe(params, batch) -> bool: the two towers' outputs on `batch` (their tokens and unit
  embeddings) are finite. A state can be finite and still diverged (parameters of 1e38 whose
  activations overflow): the loop probes each state it saves. The towers alone, not the
  objectives: a forward pass that compiles in a fraction of the step's time."""
  def probe(params, batch):
    apply = functools.partial(model.apply, {"params": params})
    return state_lib.is_finite((apply(batch["frames"], method="encode_video"),
                                apply(batch["tokens"], method="encode_text")))
  return jax.jit(probe)


def jit_train_step(train_step, state_shardings, batch_sharding):
  """The state is donated: its buffers are reused for the new state."""
  return jax.jit(train_step, in_shardings=(state_shardings, batch_sharding),
                 out_shardings=(state_shardings, None), donate_argnums=0)
