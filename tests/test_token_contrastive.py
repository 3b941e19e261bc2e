"""TACo's token-level loss L2 against a NumPy reference: values, gradients, idf weights."""

import jax
import numpy as np
import pytest

from configs import taco_tiny
from input_pipeline.contract import POS_ID
from input_pipeline.errors import ConfigError
from vl_jax import objectives
from vl_jax.losses.token_contrastive import content_token_weights, content_tokens, token_infonce
from vl_jax.models import builder


def reference(x, y, w, inv_temp):
  """NumPy L2 and its analytic gradients w.r.t. the clips' tokens x [B, K, D] and the captions'
  tokens y [B, L, D]: the max picks one clip token per (caption token, clip) pair."""
  b, l = w.shape
  dots = np.einsum("ipd,jkd->ipjk", y, x)
  best = dots.argmax(-1)                     # [B, L, B]
  a = inv_temp * dots.max(-1)
  a = a - a.max(-1, keepdims=True)
  p = np.exp(a) / np.exp(a).sum(-1, keepdims=True)
  n = max((w.sum(1) > 0).sum(), 1)
  loss = -sum(w[i, q] * np.log(p[i, q, i]) for i in range(b) for q in range(l)) / n
  g = w[:, :, None] / n * inv_temp * (p - np.eye(b)[:, None, :])  # dL/ds [B, L, B]
  gx, gy = np.zeros_like(x), np.zeros_like(y)
  for i in range(b):
    for q in range(l):
      for j in range(b):
        k = best[i, q, j]
        gy[i, q] += g[i, q, j] * x[j, k]
        gx[j, k] += g[i, q, j] * y[i, q]
  return loss, gx, gy


def test_content_token_weights_idf_normalised_per_caption_and_shared_by_pieces():
  noun, verb, det = POS_ID["NOUN"], POS_ID["VERB"], POS_ID["DET"]
  # [CLS] a dog run ##s [SEP] PAD: the two pieces of "runs" carry the word's POS and idf
  pos = np.array([[0, det, noun, verb, verb, 0, 0],
                  [0, det, det, 0, 0, 0, 0]])     # no noun or verb: all zero
  idf = np.array([[0, 1.0, 3.0, 2.0, 2.0, 0, 0],
                  [0, 1.0, 1.0, 0, 0, 0, 0]], np.float32)
  w = np.asarray(content_token_weights(pos, idf))
  np.testing.assert_allclose(w[0], [0, 0, 3 / 7, 2 / 7, 2 / 7, 0, 0], rtol=1e-6)
  np.testing.assert_array_equal(w[1], 0)
  only_nouns = np.asarray(content_token_weights(pos, idf, tags=("NOUN",)))
  np.testing.assert_allclose(only_nouns[0], [0, 0, 1, 0, 0, 0, 0])


@pytest.mark.parametrize("inv_temp", [1.0, 5.0])
def test_value_and_gradients_match_numpy(inv_temp):
  rng = np.random.default_rng(0)
  b, k, l, d = 5, 6, 7, 8
  x = rng.normal(size=(b, k, d)).astype(np.float32)
  y = rng.normal(size=(b, l, d)).astype(np.float32)
  pos = rng.choice([0, POS_ID["NOUN"], POS_ID["VERB"], POS_ID["DET"]], size=(b, l))
  pos[3] = POS_ID["DET"]  # a caption without content words takes no part
  idf = rng.uniform(1, 4, size=(b, l)).astype(np.float32)
  w = np.asarray(content_token_weights(pos, idf))
  loss, (gx, gy) = jax.value_and_grad(token_infonce, argnums=(0, 1))(x, y, w, inv_temp)
  ref_loss, ref_gx, ref_gy = reference(x.astype(np.float64), y.astype(np.float64), w, inv_temp)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  np.testing.assert_allclose(gx, ref_gx, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(gy, ref_gy, rtol=1e-4, atol=1e-6)
  assert np.all(np.asarray(gy)[3] == 0)


def test_matching_tokens_give_a_low_loss():
  """Each caption's content token equals one token of its own clip and is orthogonal to the
  others': the loss falls towards 0 as the temperature sharpens."""
  b, d = 4, 8
  x = np.zeros((b, 3, d), np.float32)
  for j in range(b):
    x[j, 1, j] = 1.0
  y = np.zeros((b, 2, d), np.float32)
  y[:, 1] = np.eye(b, d)
  w = np.tile([[0.0, 1.0]], (b, 1)).astype(np.float32)
  sharp, flat = token_infonce(x, y, w, 20.0), token_infonce(x, y, w, 1e-3)
  assert float(sharp) < 1e-6 and float(flat) == pytest.approx(np.log(b), rel=1e-3)


def test_content_tokens_keep_the_loss_and_drop_the_rest():
  """With at most C content tokens per caption, keeping C tokens gives the same loss and
  gradient; with fewer kept, each caption's kept weights sum to 1 again."""
  rng = np.random.default_rng(2)
  b, k, l, d = 4, 5, 9, 6
  x = rng.normal(size=(b, k, d)).astype(np.float32)
  y = rng.normal(size=(b, l, d)).astype(np.float32)
  pos = np.zeros((b, l), np.int64)
  pos[:, 1:4] = POS_ID["NOUN"]  # 3 content tokens per caption
  w = np.asarray(content_token_weights(pos, rng.uniform(1, 3, (b, l)).astype(np.float32)))
  full = jax.value_and_grad(token_infonce, argnums=1)(x, y, w, 2.0)
  kept = jax.value_and_grad(lambda y: token_infonce(x, *content_tokens(y, w, 3), 2.0))(y)
  np.testing.assert_allclose(kept[0], full[0], rtol=1e-6)
  np.testing.assert_allclose(kept[1], full[1], rtol=1e-5, atol=1e-7)
  tokens, top = content_tokens(y, w, 2)
  np.testing.assert_allclose(np.asarray(top).sum(1), 1.0, rtol=1e-6)
  assert tokens.shape == (b, 2, d)
  # More tokens asked for than a caption has: all of them, the same loss.
  longer = jax.value_and_grad(lambda y: token_infonce(x, *content_tokens(y, w, 12), 2.0))(y)
  np.testing.assert_allclose(longer[0], full[0], rtol=1e-6)


def test_content_token_settings_are_checked_before_the_step_is_traced():
  """A typo in a POS tag would otherwise be a KeyError while the step is traced."""
  config = taco_tiny.get_config()
  model = builder.build(config.model, config.data, vocab_size=50)
  objectives.validate(config, model)
  for name, field, value, message in (
      ("token_contrastive", "pos_tags", ("NOUNS",), r"token_contrastive.pos_tags=\('NOUNS',\): "
                                                    r"Universal POS tags.*unknown: \['NOUNS'\]"),
      ("cascade_matching", "pos_tags", (), r"cascade_matching.pos_tags=\(\): Universal POS"),
      ("cascade_matching", "max_tokens", 0, r"cascade_matching.max_tokens=0: must be >= 1"),
      ("token_contrastive", "temperature", 0.0, r"token_contrastive.temperature=0.0: must be > 0")):
    bad = config.copy_and_resolve_references()
    with bad.unlocked():
      bad.objectives[name][field] = value
    with pytest.raises(ConfigError, match=message):
      objectives.validate(bad, model)
