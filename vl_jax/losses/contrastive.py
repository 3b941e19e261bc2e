"""Contrastive losses over the global batch."""

import jax
import jax.numpy as jnp


def symmetric_infonce(video_emb, text_emb, inverse_temperature):
  """Symmetric video-text InfoNCE (CLIP; TACo's sentence-level loss L1, its Eq. 1).

  With s_ij = <v_i, t_j> / tau over the B pairs of the global batch (pair i is positive),

      L = 1/(2B) * sum_i [ -log softmax_j(s_ij)[i]   (video -> text)
                           -log softmax_j(s_ji)[i] ] (text -> video)

  `video_emb` and `text_emb` are [B, D] arrays, normally sharded along the mesh's data axis: the
  [B, B] similarity matrix spans the whole global batch, so every device's clips see the negatives
  of every other device (XLA inserts the gathers).
  """
  logits = inverse_temperature * jnp.einsum("id,jd->ij", video_emb, text_emb,
                                            precision=jax.lax.Precision.HIGHEST)
  labels = jnp.arange(logits.shape[0])
  v2t = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=1), labels[:, None], axis=1)
  t2v = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=0), labels[None, :], axis=0)
  return 0.5 * (v2t.mean() + t2v.mean())


def queue_infonce(queries, keys, queue, inverse_temperature):
  """One-directional InfoNCE of queries against their keys, the batch's other keys and a queue of
  past keys (MoCo's loss, with the queue as extra negatives):

      L = -1/B * sum_i log [ exp(s(q_i, k_i)) / (sum_j exp(s(q_i, k_j)) + sum_m exp(s(q_i, u_m))) ]

  with s(a, b) = <a, b> / tau, q [B, D] the queries, k [B, D] their keys (pair i positive) and
  u [Q, D] the queue. Used with keys from the momentum encoder, which receive no gradient.
  """
  candidates = jnp.concatenate([keys, queue], axis=0)
  logits = inverse_temperature * jnp.einsum("id,jd->ij", queries, candidates,
                                            precision=jax.lax.Precision.HIGHEST)
  labels = jnp.arange(queries.shape[0])
  return -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=1), labels[:, None], axis=1).mean()
