"""Retrieval ranks: hand-computed cases with ties, several captions per video, blocks."""

import numpy as np
import pytest

from vl_jax.evaluators import ranking, retrieval


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _reference(text, video, text_video):
  """Dense NumPy ranks: wrong candidates scoring >= the best right one."""
  s = text @ video.T
  t2v = np.array([np.sum(np.delete(s[i], text_video[i]) >= s[i, text_video[i]])
                  for i in range(len(text))])
  v2t = []
  for j in range(len(video)):
    right = text_video == j
    v2t.append(np.sum(s[~right, j] >= s[right, j].max()))
  return t2v, np.array(v2t)


def test_hand_computed_ranks_count_ties_against_the_query():
  e = np.eye(3, dtype=np.float32)
  video = e
  # text 0 matches video 0 exactly; text 1 scores videos 1 and 2 equally (a tie: rank 1);
  # text 2 prefers video 0 over its own video 2 (rank 1).
  text = np.array([[1, 0, 0], [0, 1, 1], [0.8, 0, 0.6]], np.float32)
  t2v, v2t = ranking.retrieval_ranks(text, video, np.array([0, 1, 2]), block=2)
  np.testing.assert_array_equal(t2v, [0, 1, 1])
  # video 0: its text 0 scores 1.0, text 2 scores 0.8 -> rank 0; video 1: text 1 scores 1, no
  # other text scores >= 1 -> 0; video 2: text 2 scores 0.6 < text 1's 1.0 -> rank 1.
  np.testing.assert_array_equal(v2t, [0, 0, 1])
  m = retrieval.retrieval_metrics(text, video, np.array([0, 1, 2]), block=2)
  assert m["t2v/R@1"] == pytest.approx(100 / 3) and m["t2v/MedR"] == 2 and m["v2t/MnR"] == 4 / 3


def test_a_constant_scorer_ranks_last():
  video = np.ones((5, 4), np.float32) / 2
  t2v, v2t = ranking.retrieval_ranks(video.copy(), video, np.arange(5))
  assert (t2v == 4).all() and (v2t == 4).all()


def test_toy_embeddings_give_r1_100_with_several_captions_per_video():
  rng = np.random.default_rng(0)
  video = _unit(rng.standard_normal((50, 32)).astype(np.float32))
  text_video = np.repeat(np.arange(50), 3)
  text = _unit(video[text_video] + 0.05 * rng.standard_normal((150, 32)).astype(np.float32))
  m = retrieval.retrieval_metrics(text, video, text_video, block=16)
  assert m["t2v/R@1"] == m["v2t/R@1"] == 100.0 and m["t2v/MedR"] == 1


@pytest.mark.parametrize("block", [7, 64, 4096])
def test_blocked_equals_dense_reference(block):
  rng = np.random.default_rng(1)
  video = _unit(rng.standard_normal((97, 16)).astype(np.float32))
  text_video = rng.integers(0, 97, 230)
  text_video[:97] = np.arange(97)  # every video has a caption
  text = _unit(video[text_video] + 0.9 * rng.standard_normal((230, 16)).astype(np.float32))
  text[5] = text[6]  # exact duplicate captions: ties between candidates
  t2v, v2t = ranking.retrieval_ranks(text, video, text_video, block=block)
  want_t2v, want_v2t = _reference(text.astype(np.float64), video.astype(np.float64), text_video)
  np.testing.assert_array_equal(t2v, want_t2v)
  np.testing.assert_array_equal(v2t, want_v2t)


def test_a_video_without_caption_is_an_error():
  with pytest.raises(ValueError, match="1 videos have no caption"):
    ranking.retrieval_ranks(np.ones((1, 2)), np.ones((2, 2)), np.array([0]))


def _dsl_keys(s, scale):
  """Float64 (sign, signed log magnitude) of s * softmax over axis 0 of scale * s: the dual
  softmax's order, in log space so that nothing underflows at scale 1000."""
  lse = np.log(np.exp(scale * s - (scale * s).max(0)).sum(0)) + (scale * s).max(0)
  with np.errstate(divide="ignore"):
    return np.sign(s), np.where(s == 0, 0.0, np.sign(s) * (np.log(np.abs(s)) + scale * s - lse))


def _dsl_reference(text, video, text_video, scale):
  """Dense dual-softmax ranks: wrong candidates not below the best right one, ties within
  TIE_TOLERANCE * (1 + scale) in log space; and each query's gap to its nearest wrong candidate."""
  tol = ranking.TIE_TOLERANCE * (1 + scale)
  s = text @ video.T
  out = []
  for sign, key, labels, query_labels in (
      (*_dsl_keys(s, scale), np.arange(len(video)), text_video),       # t2v: over texts, per video
      (*_dsl_keys(s.T, scale), text_video, np.arange(len(video)))):    # v2t: over videos, per text
    ranks, gaps = [], []
    for i, label in enumerate(query_labels):
      right = labels == label
      best_sign = sign[i, right].max()
      best = key[i, right & (sign[i] == best_sign)].max()
      w_sign, w_key = sign[i, ~right], key[i, ~right]
      hit = (w_sign > best_sign) | ((w_sign == best_sign) & (w_key >= best - tol))
      ranks.append(hit.sum())
      gaps.append(np.abs(w_key[w_sign == best_sign] - best).min(initial=np.inf))
    out += [np.array(ranks), np.array(gaps)]
  return out


@pytest.mark.parametrize("scale", [1.0, 100.0, 1000.0])
def test_dual_softmax_equals_dense_reference(scale):
  """1,000 clips (the size at which a fixed 1e-6 margin changed 167 of 1,000 ranks at scale 100),
  two captions each, scored against a float64 reference. Queries whose right answer lies within
  float32's rounding of a wrong one (twice the tolerance) may differ; they are few (none here)."""
  rng = np.random.default_rng(2)
  video = _unit(rng.standard_normal((1000, 64)))
  text_video = np.concatenate([np.arange(1000), rng.integers(0, 1000, 1000)])
  text = _unit(video[text_video] + 0.35 * rng.standard_normal((2000, 64)))
  want_t2v, gap_t2v, want_v2t, gap_v2t = _dsl_reference(text, video, text_video, scale)
  t2v, v2t = ranking.retrieval_ranks(text.astype(np.float32), video.astype(np.float32),
                                     text_video, block=512, dual_softmax_scale=scale)
  for got, want, gap in ((t2v, want_t2v, gap_t2v), (v2t, want_v2t, gap_v2t)):
    clear = gap > 2 * ranking.TIE_TOLERANCE * (1 + scale)
    assert clear.mean() > 0.98
    np.testing.assert_array_equal(got[clear], want[clear])
    assert ranking.rank_metrics(got, "x") == pytest.approx(ranking.rank_metrics(want, "x"),
                                                           abs=0.2)
  plain_t2v, _ = ranking.retrieval_ranks(text, video, text_video, block=512)
  assert not np.array_equal(t2v, plain_t2v)  # the re-weighting changes some ranks


@pytest.mark.parametrize("scale", [0.0, 100.0])
def test_non_finite_embeddings_rank_last(scale):
  """A NaN scores as a tie with everything: a broken model gets the worst metrics, never R@1 100."""
  video = _unit(np.random.default_rng(4).standard_normal((8, 4)).astype(np.float32))
  text = video.copy()  # perfect retrieval, until it is NaN
  text[3] = np.nan
  t2v, v2t = ranking.retrieval_ranks(text, video, np.arange(8), dual_softmax_scale=scale)
  assert t2v[3] == 7 and v2t[3] == 7
  if scale == 0:
    assert (np.delete(t2v, 3) == 0).all()
  nan = np.full((8, 4), np.nan, np.float32)
  m = retrieval.retrieval_metrics(nan, nan, np.arange(8), dual_softmax_scale=scale)
  assert m["t2v/R@1"] == m["v2t/R@5"] == 0.0 and m["t2v/MedR"] == 8


def test_metrics_add_dual_softmax_ones_only_when_asked():
  rng = np.random.default_rng(3)
  video = _unit(rng.standard_normal((20, 8)).astype(np.float32))
  text = _unit(video + 0.5 * rng.standard_normal((20, 8)).astype(np.float32))
  plain = retrieval.retrieval_metrics(text, video, np.arange(20))
  both = retrieval.retrieval_metrics(text, video, np.arange(20), dual_softmax_scale=50.0)
  assert set(plain) == {f"{d}/{m}" for d in ("t2v", "v2t")
                        for m in ("R@1", "R@5", "R@10", "MedR", "MnR")}
  assert set(both) == set(plain) | {k.replace("/", "_dsl/") for k in plain}
  assert all(both[k] == v for k, v in plain.items())
