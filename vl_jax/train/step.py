"""The loss over a batch and the jitted train step."""

import functools

import jax
import optax

from vl_jax.objectives import total_loss
from vl_jax.train.state import TrainState


def make_loss_fn(model, objectives_cfg):
  def loss_fn(params, batch, rng):
    outputs = model.apply({"params": params}, batch["frames"], batch["tokens"])
    if model.fusion is not None:  # objectives fuse the pairs they choose (cascade matching)
      outputs["fuse"] = functools.partial(model.apply, {"params": params}, method="fuse")
    return total_loss(outputs, batch, objectives_cfg, rng)
  return loss_fn


def step_rng(seed: int, step):
  """The PRNG key of a step: a function of the seed and the step only, so a resumed run draws
  what an uninterrupted one would, and the train state carries no key."""
  return jax.random.fold_in(jax.random.key(seed), step)


def make_train_step(model, tx, schedule, objectives_cfg, seed: int):
  loss_fn = make_loss_fn(model, objectives_cfg)

  def train_step(state: TrainState, batch):
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch, step_rng(seed, state.step))
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads), lr=schedule(state.step))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def jit_train_step(train_step, state_shardings, batch_sharding):
  """The state is donated: its buffers are reused for the new state."""
  return jax.jit(train_step, in_shardings=(state_shardings, batch_sharding),
                 out_shardings=(state_shardings, None), donate_argnums=0)
