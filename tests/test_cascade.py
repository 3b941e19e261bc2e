"""TACo's cascade sampling and L3 against hand-made cases and NumPy; the fusion encoder's scores."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from input_pipeline.contract import POS_ID
from input_pipeline.errors import ConfigError
from vl_jax.losses.cascade_matching import candidate_infonce, cascade_scores, hardest_negatives
from vl_jax.models import builder
from vl_jax.train import state as state_lib, step as step_lib


def test_hardest_negatives_pick_the_top_k_and_never_the_positive():
  scores = np.array([[9.0, 1.0, 5.0, 3.0],    # the positive scores highest: still excluded
                     [4.0, 0.0, 2.0, 7.0],
                     [1.0, 8.0, 9.0, 6.0],
                     [2.0, 3.0, 1.0, 0.5]])
  np.testing.assert_array_equal(hardest_negatives(scores, 2),
                                [[2, 3], [3, 0], [1, 3], [1, 0]])
  np.testing.assert_array_equal(hardest_negatives(scores.T, 1), [[1], [2], [0], [1]])


def test_non_finite_negatives_never_make_the_positive_a_negative():
  """Off-diagonal scores of -inf or NaN (a masked or broken pair) rank below every finite score
  but above the positive: with k = B - 1 every other column is picked, never column i."""
  scores = np.full((4, 4), -np.inf, np.float32)
  scores[np.arange(4), np.arange(4)] = 1.0
  scores[0, 3] = np.nan
  scores[1, 2] = 5.0
  picks = np.asarray(hardest_negatives(scores, 3))
  for i, row in enumerate(picks):
    assert i not in row and sorted(row) == sorted(set(range(4)) - {i})
  assert picks[1, 0] == 2  # the finite negative first


def test_selection_passes_no_gradient():
  grad = jax.grad(lambda s: hardest_negatives(s, 2).astype(jnp.float32).sum())(jnp.ones((4, 4)))
  np.testing.assert_array_equal(grad, 0)


def test_candidate_infonce_value_and_gradient_match_numpy():
  rng = np.random.default_rng(0)
  pos, neg = rng.normal(size=5), rng.normal(size=(5, 3))
  logits = np.concatenate([pos[:, None], neg], 1)
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  loss, (g_pos, g_neg) = jax.value_and_grad(candidate_infonce, argnums=(0, 1))(
      pos.astype(np.float32), neg.astype(np.float32))
  np.testing.assert_allclose(loss, -np.log(p[:, 0]).mean(), rtol=1e-5)
  np.testing.assert_allclose(g_pos, (p[:, 0] - 1) / 5, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(g_neg, p[:, 1:] / 5, rtol=1e-4, atol=1e-7)


def test_cascade_scores_add_sentence_logits_and_weighted_token_similarities():
  rng = np.random.default_rng(1)
  b, k, l, d = 3, 4, 5, 6
  v, t = rng.normal(size=(b, d)), rng.normal(size=(b, d))
  x, y = rng.normal(size=(b, k, d)), rng.normal(size=(b, l, d))
  w = rng.uniform(size=(b, l))
  want = np.array([[20 * t[i] @ v[j] + sum(w[i, p] * (x[j] @ y[i, p]).max() for p in range(l))
                    for j in range(b)] for i in range(b)])
  np.testing.assert_allclose(cascade_scores(v, t, x, y, w, 20.0), want, rtol=1e-5)


def test_cascade_objective_on_the_tiny_model_with_a_fusion_encoder():
  """The whole L3 on a batch of 6: finite, and its gradient reaches the fusion encoder and both
  towers (through the fused tokens; the selection itself carries none)."""
  config = tiny.get_config().unlock()
  config.model.fusion.depth = 2
  model = builder.build(config.model, config.data, 50)
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (6, 4, 24, 24, 3), np.uint8)
  tokens = np.zeros((6, 32), np.int32)
  tokens[:, :6] = rng.integers(4, 50, (6, 6))
  pos = np.where(tokens > 0, POS_ID["NOUN"], 0)
  batch = {"frames": frames, "tokens": tokens, "token_pos": pos,
           "token_idf": np.where(tokens > 0, 1.5, 0).astype(np.float32)}
  params = state_lib.init_params(model, config.data, jax.random.key(0))
  assert "fusion" in params and "layer_1" in params["fusion"]
  for sampling in ("cascade", "random"):
    objectives = {"cascade_matching": dict(weight=1.0, num_negatives=3, sampling=sampling,
                                            pos_tags=("NOUN", "VERB"), max_tokens=4)}
    config.objectives = objectives
    loss_fn = step_lib.make_loss_fn(model, config)
    (loss, (metrics, _)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
        params, batch, jax.random.key(0), {}, {})
    assert np.isfinite(loss) and 0 < loss < 2 * np.log(4), sampling
    for part in ("fusion", "video", "text"):
      assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads[part])) > 0, part
    assert "cascade_matching/positive_score" in metrics
  plain = builder.build(tiny.get_config().model, config.data, 50)  # fusion depth 0: none
  with pytest.raises(ConfigError, match="cascade_matching needs a fusion encoder"):
    step_lib.make_loss_fn(plain, config)
  config.objectives.cascade_matching.num_negatives = 6
  config.batch_size = 6
  with pytest.raises(ConfigError, match=r"num_negatives=6 must be in \[1, 6\)"):
    step_lib.make_loss_fn(model, config)


def test_random_negatives_are_distinct_others_drawn_uniformly():
  """TACo's ablation baseline: the top k of uniform noise with the diagonal excluded."""
  b, k, draws = 5, 2, 4000
  keys = jax.random.split(jax.random.key(0), draws)
  picks = np.asarray(jax.vmap(lambda key: hardest_negatives(jax.random.uniform(key, (b, b)),
                                                            k))(keys))  # [draws, B, K]
  rows = np.arange(b)[None, :, None]
  assert (picks != rows).all() and (picks[..., 0] != picks[..., 1]).all()
  counts = np.stack([(picks == j).sum(axis=(0, 2)) for j in range(b)], axis=1)  # [B, B]
  off_diagonal = counts[~np.eye(b, dtype=bool)]
  # Each of the 4 others is picked with probability k / 4 = 1/2 per draw: 2000 +- 32 (1 sd).
  assert np.all(np.abs(off_diagonal - draws * k / (b - 1)) < 160), counts
