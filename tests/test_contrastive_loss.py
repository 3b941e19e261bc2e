import jax
import jax.numpy as jnp
import numpy as np

from vl_jax.losses.contrastive import symmetric_infonce


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


def test_perfect_alignment_beats_random_and_is_near_zero_when_sharp():
  rng = np.random.default_rng(1)
  x = jnp.asarray(_unit(rng.normal(size=(8, 16))))
  aligned = symmetric_infonce(x, x, 100.0)
  shuffled = symmetric_infonce(x, jnp.roll(x, 1, axis=0), 100.0)
  assert aligned < 1e-3 < shuffled
  # With zero similarity everywhere the loss is log(batch size).
  np.testing.assert_allclose(symmetric_infonce(x, x, 0.0), np.log(8), rtol=1e-6)
