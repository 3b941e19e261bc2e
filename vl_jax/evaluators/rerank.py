"""TACo's inference: each query's top-k candidates under the dual encoder are scored again with
the sum of its three scores, s1 + s2 + s3 (sentence logit, idf-weighted token similarity, fusion
encoder score), and ranked by it. Fusing every pair would cost O(N^2) encoder passes; the
top-k re-ranking costs N x k."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vl_jax.evaluators.ranking import TIE_TOLERANCE


@functools.partial(jax.jit, static_argnames="k")
def _top_k_block(queries, candidates, k: int):
  return jax.lax.top_k(jnp.dot(queries, candidates.T, precision=jax.lax.Precision.HIGHEST), k)[1]


def top_candidates(queries: np.ndarray, candidates: np.ndarray, k: int,
                   block: int = 1024) -> np.ndarray:
  """[num queries, k] indices of each query's k highest-scoring candidates (dot products)."""
  k = min(k, len(candidates))
  cand = jnp.asarray(candidates, jnp.float32)
  out = []
  for i in range(0, len(queries), block):
    q = queries[i:i + block].astype(np.float32)
    q = np.concatenate([q, np.zeros((min(block, len(queries)) - len(q),) + q.shape[1:], q.dtype)])
    out.append(np.asarray(_top_k_block(q, cand, k))[:min(block, len(queries) - i)])
  return np.concatenate(out)


def reranked_ranks(base_ranks: np.ndarray, scores: np.ndarray, right: np.ndarray) -> np.ndarray:
  """0-based ranks after re-scoring. `scores` [Q, k] are each query's candidates' new scores and
  `right` [Q, k] marks its right ones. A query with a right candidate ranks by the new scores
  among its candidates (wrong ones scoring at least as high as its best right one, ties against
  it, and so are NaN scores: a NaN ranks last); a query without keeps its dual-encoder rank, which
  is k or more."""
  best = np.where(right, scores, -np.inf).max(axis=1)
  above = (~(scores < best[:, None] - TIE_TOLERANCE) & ~right).sum(axis=1)
  return np.where(right.any(axis=1), above, base_ranks)


TERMS = ("sentence", "token", "fusion")


def pair_scores(predict, params, batch, terms=TERMS):
  """{"score": the sum of `terms`} of P (clip, caption) pairs given their unit embeddings
  `video_emb`, `text_emb` and token features (encode.Encoder's `tokens` outputs), one row per
  pair. Each term is the logit its loss sees: "sentence" s1, the cosine times the model's inverse
  temperature (L1); "token" s2, the weighted token similarities (L2 at TACo's tau_2 = 1);
  "fusion" s3, the fused score (L3). A model trained without L2 has token similarities no loss
  shaped: leave "token" out."""
  score = jnp.zeros(batch["video_emb"].shape[:1], jnp.float32)
  if "sentence" in terms:
    score += predict.inverse_temperature(params) * jnp.einsum(
        "pd,pd->p", batch["video_emb"], batch["text_emb"], precision=jax.lax.Precision.HIGHEST)
  if "token" in terms:
    sims = jnp.einsum("pld,pkd->plk", batch["text_token_emb"], batch["video_token_emb"],
                      precision=jax.lax.Precision.HIGHEST).max(axis=-1)
    score += (batch["weights"] * sims).sum(axis=1)
  if "fusion" in terms:
    score += predict.fuse(params, batch["frame_tokens"], batch["text_tokens"],
                          batch["text_mask"])
  return {"score": score}
