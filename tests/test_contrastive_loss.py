"""The symmetric InfoNCE and SigLIP's sigmoid loss against NumPy, and their chunked shard_map
forms against the global ones (values and gradients, on meshes of 2 and 8 of the session's fake
devices, and in the train step); the sigmoid objective trains its bias."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from input_pipeline import pipeline
from input_pipeline.errors import ConfigError
from tests.helpers import tiny_config
from vl_jax import objectives
from vl_jax.losses.contrastive import (chunked_sigmoid_loss, chunked_symmetric_infonce,
                                       sigmoid_loss, symmetric_infonce)
from vl_jax.train import loop, state as state_lib, step as step_lib


def _log_softmax(x, axis):
  x = x - x.max(axis=axis, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def reference(v, t, inv_temp):
  """NumPy InfoNCE and its analytic gradients w.r.t. v, t and the inverse temperature."""
  s = v @ t.T
  logits = inv_temp * s
  n = len(v)
  lr, lc = _log_softmax(logits, 1), _log_softmax(logits, 0)
  loss = -0.5 * (np.trace(lr) + np.trace(lc)) / n
  # dL/dlogits: (softmax_rows - I + softmax_cols - I) / (2n)
  dlogits = (np.exp(lr) - np.eye(n) + np.exp(lc) - np.eye(n)) / (2 * n)
  return loss, inv_temp * dlogits @ t, inv_temp * dlogits.T @ v, (dlogits * s).sum()


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_value_and_gradients_match_numpy():
  rng = np.random.default_rng(0)
  v, t = _unit(rng.normal(size=(6, 5))), _unit(rng.normal(size=(6, 5)))
  inv_temp = 7.5
  loss, grads = jax.value_and_grad(symmetric_infonce, argnums=(0, 1, 2))(
      jnp.asarray(v), jnp.asarray(t), jnp.asarray(inv_temp))
  ref_loss, *ref_grads = reference(v, t, inv_temp)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6)


def test_text_to_video_only_is_tacos_eq_3():
  """directions="t2v": -1/B sum_i log softmax over the batch's clips of caption i's scores, at its
  own clip (TACo's L1), in value and gradients against NumPy; the chunked form agrees."""
  rng = np.random.default_rng(5)
  v, t = _unit(rng.normal(size=(8, 5))), _unit(rng.normal(size=(8, 5)))
  inv = 6.0
  logits = inv * (t @ v.T)  # row i: caption i against every clip
  want = -np.trace(_log_softmax(logits, 1)) / 8
  dlogits = (np.exp(_log_softmax(logits, 1)) - np.eye(8)) / 8
  loss, (gv, gt) = jax.value_and_grad(
      lambda a, b: symmetric_infonce(a, b, inv, "t2v"), argnums=(0, 1))(
          jnp.asarray(v, jnp.float32), jnp.asarray(t, jnp.float32))
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(gt, inv * dlogits @ v, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(gv, inv * dlogits.T @ t, rtol=1e-4, atol=1e-6)
  mesh = Mesh(np.asarray(jax.devices()[:2]), ("data",))
  rows = NamedSharding(mesh, P("data"))
  chunked = jax.block_until_ready(jax.jit(lambda a, b: chunked_symmetric_infonce(
      a, b, jnp.float32(inv), mesh, "data", "t2v"))(
          jax.device_put(jnp.asarray(v, jnp.float32), rows),
          jax.device_put(jnp.asarray(t, jnp.float32), rows)))
  np.testing.assert_allclose(chunked, want, rtol=1e-5)


def test_perfect_alignment_beats_random_and_is_near_zero_when_sharp():
  rng = np.random.default_rng(1)
  x = jnp.asarray(_unit(rng.normal(size=(8, 16))))
  aligned = symmetric_infonce(x, x, 100.0)
  shuffled = symmetric_infonce(x, jnp.roll(x, 1, axis=0), 100.0)
  assert aligned < 1e-3 < shuffled
  # With zero similarity everywhere the loss is log(batch size).
  np.testing.assert_allclose(symmetric_infonce(x, x, 0.0), np.log(8), rtol=1e-6)


def _sharded_pairs(shape, seed):
  """(mesh, its batch axes, 16 clip and 16 caption unit embeddings [16, 8] split over them): a
  data axis of shape[0] devices, or (data, fsdp) for a 2-d shape (the train step's mesh)."""
  rng = np.random.default_rng(seed)
  axes = ("data", "fsdp")[:len(shape)]
  mesh = Mesh(np.asarray(jax.devices()[:np.prod(shape)]).reshape(shape), axes)
  rows = NamedSharding(mesh, P(axes))
  v = jax.device_put(jnp.asarray(_unit(rng.normal(size=(16, 8))), jnp.float32), rows)
  t = jax.device_put(jnp.asarray(_unit(rng.normal(size=(16, 8))), jnp.float32), rows)
  return mesh, axes, v, t


@pytest.mark.parametrize("shape", [(2,), (8,), (2, 4)])
def test_chunked_equals_global_in_value_and_gradients(shape):
  """On 2 and 8 devices of a data axis, and on a (data, fsdp) mesh whose two axes split the
  batch (the train step's)."""
  mesh, axes, v, t = _sharded_pairs(shape, seed=2)
  inv = jnp.float32(12.0)
  grad = lambda f: jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))
  want = jax.block_until_ready(grad(symmetric_infonce)(v, t, inv))
  got = jax.block_until_ready(grad(lambda *a: chunked_symmetric_infonce(*a, mesh, axes))(v, t, inv))
  np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
  for g, w in zip(got[1], want[1]):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)


def test_chunked_in_the_train_step_equals_global(synthetic_dir):
  """config.objectives.contrastive.chunked on the 8 fake devices: the same loss and gradients of
  every parameter as the global loss."""
  results = {}
  for chunked in (False, True):
    config = tiny_config(synthetic_dir, batch_size=16,
                         **{"objectives.contrastive.chunked": chunked})
    mesh, tokenizer, model = loop.setup(config)
    batch, _ = pipeline.split_host_fields(next(iter(
        pipeline.train_dataset(config.data, tokenizer, 16, seed=0))))
    params = state_lib.init_params(model, config.data, jax.random.key(0))
    fn = jax.jit(jax.value_and_grad(step_lib.make_loss_fn(model, config, mesh), has_aux=True))
    (loss, _), grads = fn(params, batch, jax.random.key(0), {}, None)
    results[chunked] = jax.device_get((jax.block_until_ready(loss), grads))
  np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-6)
  for g, w in zip(jax.tree.leaves(results[True][1]), jax.tree.leaves(results[False][1])):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7)


def _sigmoid_reference(v, t, inv, b):
  """NumPy sigmoid loss (SigLIP Eq. 1) and its analytic gradients w.r.t. v, t, t and b."""
  s = v @ t.T
  logits = inv * s + b
  z = 2 * np.eye(len(v)) - 1
  loss = np.logaddexp(0, -z * logits).sum() / len(v)  # -log sigmoid(x) = log(1 + e^-x)
  dlogits = -z / (1 + np.exp(z * logits)) / len(v)  # d/dx -log sigmoid(zx) = -z sigmoid(-zx)
  return loss, inv * dlogits @ t, inv * dlogits.T @ v, (dlogits * s).sum(), dlogits.sum()


def test_sigmoid_loss_value_and_gradients_match_numpy():
  rng = np.random.default_rng(3)
  v, t = _unit(rng.normal(size=(6, 5))), _unit(rng.normal(size=(6, 5)))
  args = (jnp.asarray(v), jnp.asarray(t), jnp.asarray(10.0), jnp.asarray(-10.0))
  loss, grads = jax.value_and_grad(sigmoid_loss, argnums=(0, 1, 2, 3))(*args)
  ref_loss, *ref_grads = _sigmoid_reference(v, t, 10.0, -10.0)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6)
  # Orthogonal pairs and a bias that separates them give a small loss; swapped captions a large
  # one (each positive at logit -5: -log sigmoid(-5) ~ 5 per clip).
  x = jnp.eye(8, 16)
  assert sigmoid_loss(x, x, 20.0, -5.0) < 0.1 < 5.0 < sigmoid_loss(x, jnp.roll(x, 1, 0), 20.0,
                                                                     -5.0)


@pytest.mark.parametrize("shape", [(2,), (8,), (2, 4)])
def test_chunked_sigmoid_loss_equals_global(shape):
  """SigLIP's ring (Algorithm 1) against the global loss, values and gradients of all four
  arguments, on 2 and 8 devices and on a (data, fsdp) mesh."""
  mesh, axes, v, t = _sharded_pairs(shape, seed=4)
  inv, b = jnp.float32(10.0), jnp.float32(-10.0)
  grad = lambda f: jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3)))
  want = jax.block_until_ready(grad(sigmoid_loss)(v, t, inv, b))
  got = jax.block_until_ready(grad(lambda *a: chunked_sigmoid_loss(*a, mesh, axes))(v, t, inv, b))
  np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
  for g, w in zip(got[1], want[1]):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_the_sigmoid_objective_trains_its_bias_and_needs_it(synthetic_dir, tmp_path):
  config = tiny_config(synthetic_dir, batch_size=32, total_steps=40, log_every_steps=1,
                       evals={}, **{"model.sigmoid_bias": True,
                                    "model.temperature": dict(init=0.1, learn=True),
                                    "optimizer.warmup_steps": 5, "checkpoint.every_steps": 40})
  config.objectives = dict(sigmoid_contrastive=objectives.block("sigmoid_contrastive",
                                                                chunked=True))
  state, _ = loop.train_and_evaluate(config, str(tmp_path / "run"))
  rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  losses = [r["train/loss"] for r in rows if "train/loss" in r]
  assert len(losses) == 40 and np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
  assert float(jax.device_get(state.params["sigmoid_bias"]["bias"])) != -10.0

  config.model.sigmoid_bias = False
  with pytest.raises(ConfigError, match=r"config.objectives.sigmoid_contrastive needs the loss's "
                                        r"bias: set config.model.sigmoid_bias=True"):
    loop.train_and_evaluate(config, str(tmp_path / "no_bias"))
