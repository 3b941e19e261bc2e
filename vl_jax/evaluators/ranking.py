"""Ranks of the right answers among all candidates, computed in blocks (memory O(block), not
O(N^2)).

Each query has one or more right candidates: a caption's clip (text -> video), or a clip's captions
(video -> text, several when a clip has several captions). A query's 0-based rank is the number of
wrong candidates that score at least as high as its best right one: ties count against the query,
so a constant scorer never looks good, and so does a NaN or Inf score (a NaN compares as a tie with
everything: a broken model ranks last, never first).

Scores are dot products of unit-norm embeddings, computed block by block on the default device by
one jitted function in two passes over the same blocks: the first finds each query's best right
score, the second counts the wrong candidates at or above it. Both passes run the same program on
the same blocks, so the right answer's score is bit-identical in both and a tie is exact; only
wrong candidates within TIE_TOLERANCE of it (the rounding of a float32 dot product: two equal
embeddings in different rows of a block can differ by an ulp) also count as ties.

With the dual softmax (CAMoE), a score s * exp(scale * s - lse) spans hundreds of orders of
magnitude at the documented scales (1e-5..1e-2 at 100, far below float32's range at 1000), so it
is compared in log space: by sign, then by log|s| + scale * s - lse, whose tolerance is the dot
product's TIE_TOLERANCE carried through the exponent, TIE_TOLERANCE * (1 + scale).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_BLOCK = 1024
# Dot products of unit vectors within this of the right answer's count as ties (float32 rounding).
TIE_TOLERANCE = 1e-6


def _order_keys(scores, columns_lse, scale: float):
  """(sign, value): the order of CAMoE's dual-softmax score (Cheng et al. 2021)
  s * exp(scale * s - lse), each score times the softmax over all queries of its candidate's
  column (lse: logsumexp of scale * s over them), as a pair compared by sign first, then by
  value, larger being better in both. scale 0 (no dual softmax): (1, s). Otherwise sign(s) and
  sign(s) * (log|s| + scale * s - lse), the score's signed log magnitude (0 for s = 0)."""
  if not scale:
    return jnp.ones_like(scores), scores
  sign = jnp.sign(scores)
  log_magnitude = jnp.log(jnp.abs(scores)) + scale * scores - columns_lse
  return sign, jnp.where(sign == 0, 0.0, sign * log_magnitude)


@functools.partial(jax.jit, static_argnames="scale")
def _scan_blocks(queries, query_label, threshold_sign, threshold, candidates, candidate_label,
                 candidate_lse, scale: float):
  """Per query of the block: (wrong candidates (another label; label -1 = padding) scoring at
  least its threshold, the sign and value of its best right candidate). The second pass passes
  the first's best right keys as the threshold. `candidates` is [num blocks, block, dim]: a scan
  over them keeps each score block small enough to stay in cache (1024 x 512 blocks ran at 89% of
  the matmul peak on the CI CPU, 4096 x 4096 ones at 42%)."""
  tolerance = TIE_TOLERANCE * (1.0 + scale)

  def body(carry, block):
    count, best_sign, best = carry
    c, label, lse = block
    sign, value = _order_keys(jnp.dot(queries, c.T, precision=jax.lax.Precision.HIGHEST),
                              lse[None, :], scale)
    right = label[None, :] == query_label[:, None]
    wrong = ~right & (label[None, :] >= 0)
    # "Not below" rather than "at or above": a NaN key counts as a hit, so NaN ranks last.
    below = (sign < threshold_sign[:, None]) | (
        (sign == threshold_sign[:, None]) & (value < threshold[:, None] - tolerance))
    count = count + jnp.sum(wrong & ~below, axis=1, dtype=jnp.int32)
    # The best right candidate: the largest sign, then the largest value with it (NaN propagates).
    block_sign = jnp.max(jnp.where(right, sign, -jnp.inf), axis=1)
    new_sign = jnp.maximum(best_sign, block_sign)
    block_best = jnp.max(jnp.where(right & (sign == new_sign[:, None]), value, -jnp.inf), axis=1)
    best = jnp.maximum(jnp.where(best_sign == new_sign, best, -jnp.inf), block_best)
    return (count, new_sign, best), None

  n = queries.shape[0]
  init = (jnp.zeros(n, jnp.int32), jnp.full(n, -jnp.inf), jnp.full(n, -jnp.inf))
  return jax.lax.scan(body, init, (candidates, candidate_label, candidate_lse))[0]


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

  def ranks(self, query_label: np.ndarray, lse: jnp.ndarray, scale: float) -> np.ndarray:
    """For each query i: #{j : label_j != label_i and s_ij not below i's best right score (ties
    within TIE_TOLERANCE)}, where s_ij = <q_i, c_j>, or with `scale` > 0 its dual softmax
    given the columns' `lse` (`_order_keys`). Every query has a right candidate."""
    counts = np.zeros(self.nq, np.int64)
    for i, q in self.query_blocks():
      n = min(self.bq, self.nq - i)
      ql = self.rows(i, np.asarray(query_label, np.int32), -2)
      no_threshold = np.full(self.bq, np.inf, np.float32)
      _, best_sign, best = _scan_blocks(q, ql, no_threshold, no_threshold, self.candidates,
                                        self.label, lse, scale)
      count, _, _ = _scan_blocks(q, ql, best_sign, best, self.candidates, self.label, lse, scale)
      counts[i:i + n] = np.asarray(count)[:n]
    return counts


def retrieval_ranks(text: np.ndarray, video: np.ndarray, text_video: np.ndarray,
                    block: int = DEFAULT_BLOCK,
                    dual_softmax_scale: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """(text->video ranks [num texts], video->text ranks [num videos]).

  `text_video[i]` is the row of `video` that caption `i` describes; every video needs at least one
  caption. A video's right answers are all its captions; its rank counts from the best of them.
  With `dual_softmax_scale` > 0 the scores are re-weighted by the dual softmax first: for text ->
  video, over all texts of each video's column; for video -> text, over all videos of each text's.
  Non-finite embeddings rank last (the evaluators refuse them before ranking).
  """
  scale = dual_softmax_scale
  text, video = text.astype(np.float32), video.astype(np.float32)
  text_video = np.asarray(text_video, np.int64)
  missing = len(video) - len(np.unique(text_video))
  if missing:
    raise ValueError(f"{missing} videos have no caption")
  video_ids = np.arange(len(video))
  t2v_blocks = _Blocks(text, video, video_ids, block)
  v2t_blocks = _Blocks(video, text, text_video, block)
  return (t2v_blocks.ranks(text_video, t2v_blocks.column_logsumexp(scale), scale),
          v2t_blocks.ranks(video_ids, v2t_blocks.column_logsumexp(scale), scale))


def rank_metrics(r: np.ndarray, prefix: str) -> dict[str, float]:
  out = {f"{prefix}/R@{k}": 100.0 * float(np.mean(r < k)) for k in (1, 5, 10)}
  out[f"{prefix}/MedR"] = float(np.median(r + 1))
  out[f"{prefix}/MnR"] = float(np.mean(r + 1))
  return out
