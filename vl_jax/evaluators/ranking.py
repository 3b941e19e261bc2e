"""Ranks of the right answers among all candidates, computed in blocks (memory O(block), not O(N^2)).

Each query has one or more right candidates: a caption's clip (text -> video), or a clip's captions
(video -> text, several when a clip has several captions). A query's 0-based rank is the number of
wrong candidates that score at least as high as its best right one: ties count against the query,
so a constant scorer never looks good (scores within TIE_TOLERANCE of it count as ties).

Scores are dot products of unit-norm embeddings, computed block by block on the default device by a
jitted function; only per-query counts leave it.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_BLOCK = 1024
# Scores within this of the right answer's count as ties: the right answer's score and the block's
# scores are float32 dot products summed in different orders, so an exact tie can differ by ~1e-7.
TIE_TOLERANCE = 1e-6


def dual_softmax(scores, columns_lse, scale: float):
  """CAMoE's dual softmax (Cheng et al. 2021): s * exp(scale * s - lse), i.e. each score times the
  softmax over all queries of its candidate's column (lse: logsumexp of scale * s over them).
  scale 0: the scores unchanged."""
  return scores * jnp.exp(scale * scores - columns_lse) if scale else scores


@functools.partial(jax.jit, static_argnames="scale")
def _count_block(queries, query_label, threshold, candidates, candidate_label, candidate_lse,
                 scale: float):
  """Per query of the block: wrong candidates (another label; label -1 = padding) scoring at least
  its threshold. `candidates` is [num blocks, block, dim]: a scan over them keeps each score block
  small enough to stay in cache (1024 x 512 blocks ran at 89% of the matmul peak on the CI CPU,
  4096 x 4096 ones at 42%)."""
  def body(count, block):
    c, label, lse = block
    scores = dual_softmax(jnp.dot(queries, c.T, precision=jax.lax.Precision.HIGHEST),
                          lse[None, :], scale)
    wrong = (label[None, :] != query_label[:, None]) & (label[None, :] >= 0)
    hit = (scores >= threshold[:, None] - TIE_TOLERANCE) & wrong
    return count + jnp.sum(hit, axis=1, dtype=jnp.int32), None
  count, _ = jax.lax.scan(body, jnp.zeros(queries.shape[0], jnp.int32),
                          (candidates, candidate_label, candidate_lse))
  return count


@functools.partial(jax.jit, static_argnames="scale")
def _column_lse_block(queries, query_valid, candidates, scale: float):
  """logsumexp over the block's real queries of scale * score, for every candidate: [blocks, bc]."""
  def body(_, c):
    scores = scale * jnp.dot(queries, c.T, precision=jax.lax.Precision.HIGHEST)
    return None, jax.nn.logsumexp(jnp.where(query_valid[:, None], scores, -jnp.inf), axis=0)
  return jax.lax.scan(body, None, candidates)[1]


def _pad(x: np.ndarray, n: int, value) -> np.ndarray:
  pad = np.full((n - len(x),) + x.shape[1:], value, x.dtype)
  return np.concatenate([x, pad])


class _Blocks:
  """Queries in blocks of `block` rows; candidates padded and split into blocks of `block // 2`,
  put on the device once for every pass over them."""

  def __init__(self, queries, candidates, candidate_label, block: int):
    self.nq, self.nc = len(queries), len(candidates)
    self.bq, self.bc = min(block, self.nq), max(1, min(block // 2, self.nc))  # one compilation
    self.nb = -(-self.nc // self.bc)
    self.queries = queries.astype(np.float32)
    self.candidates = jnp.asarray(_pad(candidates.astype(np.float32), self.nb * self.bc, 0.0)
                                  .reshape(self.nb, self.bc, -1))
    self.label = jnp.asarray(_pad(np.asarray(candidate_label, np.int32), self.nb * self.bc, -1)
                             .reshape(self.nb, self.bc))

  def query_blocks(self):
    for i in range(0, self.nq, self.bq):
      yield i, _pad(self.queries[i:i + self.bq], self.bq, 0.0)

  def rows(self, i: int, x: np.ndarray, value) -> np.ndarray:
    return _pad(x[i:i + self.bq], self.bq, value)

  def column_logsumexp(self, scale: float) -> jnp.ndarray:
    """[candidate blocks, bc]: logsumexp over all queries of scale * score (the dual softmax's
    normaliser); zeros when scale is 0 (no dual softmax)."""
    if not scale:
      return jnp.zeros((self.nb, self.bc), jnp.float32)
    valid = np.ones(self.nq, bool)
    total = None
    for i, q in self.query_blocks():
      lse = _column_lse_block(q, jnp.asarray(self.rows(i, valid, False)), self.candidates, scale)
      total = lse if total is None else jnp.logaddexp(total, lse)
    return total

  def count_above(self, query_label: np.ndarray, threshold: np.ndarray, lse: jnp.ndarray,
                  scale: float) -> np.ndarray:
    """For each query i: #{j : label_j != label_i and s_ij >= threshold_i - TIE_TOLERANCE}, where
    s_ij = <q_i, c_j>, or with `scale` > 0 its `dual_softmax` given the columns' `lse`."""
    counts = np.zeros(self.nq, np.int64)
    for i, q in self.query_blocks():
      ql = self.rows(i, np.asarray(query_label, np.int32), -2)
      th = self.rows(i, threshold.astype(np.float32), np.inf)
      counts[i:i + self.bq] = np.asarray(_count_block(
          q, ql, th, self.candidates, self.label, lse, scale))[:min(self.bq, self.nq - i)]
    return counts


def retrieval_ranks(text: np.ndarray, video: np.ndarray, text_video: np.ndarray,
                    block: int = DEFAULT_BLOCK,
                    dual_softmax_scale: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """(text->video ranks [num texts], video->text ranks [num videos]).

  `text_video[i]` is the row of `video` that caption `i` describes; every video needs at least one
  caption. A video's right answers are all its captions; its rank counts from the best of them.
  With `dual_softmax_scale` > 0 the scores are re-weighted by the dual softmax first: for text ->
  video, over all texts of each video's column; for video -> text, over all videos of each text's.
  """
  scale = dual_softmax_scale
  text, video = text.astype(np.float32), video.astype(np.float32)
  text_video = np.asarray(text_video, np.int64)
  video_ids = np.arange(len(video))
  t2v_blocks = _Blocks(text, video, video_ids, block)
  v2t_blocks = _Blocks(video, text, text_video, block)
  lse_video, lse_text = t2v_blocks.column_logsumexp(scale), v2t_blocks.column_logsumexp(scale)
  raw = np.einsum("ij,ij->i", text, video[text_video])
  t2v_right = np.asarray(dual_softmax(raw, np.asarray(lse_video).reshape(-1)[text_video], scale))
  v2t_right = np.asarray(dual_softmax(raw, np.asarray(lse_text).reshape(-1)[:len(text)], scale))
  best = np.full(len(video), -np.inf, np.float32)
  np.maximum.at(best, text_video, v2t_right)
  if np.isinf(best).any():
    raise ValueError(f"{int(np.isinf(best).sum())} videos have no caption")
  return (t2v_blocks.count_above(text_video, t2v_right, lse_video, scale),
          v2t_blocks.count_above(video_ids, best, lse_text, scale))


def rank_metrics(r: np.ndarray, prefix: str) -> dict[str, float]:
  out = {f"{prefix}/R@{k}": 100.0 * float(np.mean(r < k)) for k in (1, 5, 10)}
  out[f"{prefix}/MedR"] = float(np.median(r + 1))
  out[f"{prefix}/MnR"] = float(np.mean(r + 1))
  return out
