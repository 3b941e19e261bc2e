"""Contrastive losses over the global batch."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

DIRECTIONS = ("both", "t2v")


def symmetric_infonce(video_emb, text_emb, inverse_temperature, directions: str = "both"):
  """Symmetric video-text InfoNCE (CLIP), or its text -> video half alone (TACo's sentence-level
  loss L1, its Eq. 3: each caption's clip against the batch's clips).

  With s_ij = <v_i, t_j> / tau over the B pairs of the global batch (pair i is positive),

      both: L = 1/(2B) * sum_i [ -log softmax_j(s_ij)[i]   (video -> text)
                                 -log softmax_j(s_ji)[i] ] (text -> video)
      t2v:  L = 1/B * sum_i -log softmax_j(s_ji)[i]

  `video_emb` and `text_emb` are [B, D] arrays, normally sharded along the mesh's data axis: the
  [B, B] similarity matrix spans the whole global batch, so every device's clips see the negatives
  of every other device (XLA inserts the gathers).
  """
  logits = inverse_temperature * jnp.einsum("id,jd->ij", video_emb, text_emb,
                                            precision=jax.lax.Precision.HIGHEST)
  labels = jnp.arange(logits.shape[0])
  t2v = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=0), labels[None, :], axis=0)
  if directions == "t2v":
    return t2v.mean()
  v2t = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=1), labels[:, None], axis=1)
  return 0.5 * (v2t.mean() + t2v.mean())


def _ring(mesh: Mesh, axis: str | tuple[str, ...]) -> tuple[int, list[tuple[int, int]]]:
  """(n, ppermute's pairs) of the ring of the n devices on `axis` (a mesh axis or axes)."""
  n = int(np.prod([mesh.shape[a] for a in ((axis,) if isinstance(axis, str) else axis)]))
  return n, [(i, (i + 1) % n) for i in range(n)]


def chunked_symmetric_infonce(video_emb, text_emb, inverse_temperature, mesh: Mesh,
                              axis: str | tuple[str, ...] = "data", directions: str = "both"):
  """`symmetric_infonce` (of the same `directions`), equal in value and gradients, in `shard_map`
  without ever holding more
  than a [b, b] block of the similarity matrix on a device (b = B / n, n devices on the mesh axis
  or axes `axis` that split the batch):

      L = 1/(2B) * sum_i [ logsumexp_j(s_ij) - s_ii + logsumexp_j(s_ji) - s_ii ]

  Each device keeps its b clips and b captions as queries; the candidates travel round the ring
  of devices (`ppermute`), one device's b at a time, and each direction's log-sum-exp over all B
  candidates is accumulated online (running maximum and rescaled sum, as in blockwise attention).
  The loop body is rematerialised in the backward pass, so what is kept per step is the b
  candidates in transit: memory per device stays flat as devices are added at a fixed per-device
  batch, where the [B, B] matrix of the global form (even partitioned by XLA into [b, B] rows)
  grows with n. `video_emb` and `text_emb` [B, D] are sharded along `axis` of `mesh`.
  """
  n, ring = _ring(mesh, axis)
  hi = jax.lax.Precision.HIGHEST

  def direction(queries, candidates, inv):
    """sum_i -log softmax over all B candidates of query i, at its own candidate i."""
    def step(carry, _):
      chunk, running_max, running_sum = carry
      logits = inv * jnp.einsum("id,jd->ij", queries, chunk, precision=hi)  # [b, b]
      new_max = jnp.maximum(running_max, logits.max(axis=1))
      running_sum = (running_sum * jnp.exp(running_max - new_max)
                     + jnp.exp(logits - new_max[:, None]).sum(axis=1))
      return (jax.lax.ppermute(chunk, axis, ring), new_max, running_sum), None

    b = queries.shape[0]
    # The running statistics differ between devices from the first step: typed as such.
    stats = jax.lax.pcast((jnp.full((b,), -jnp.inf), jnp.zeros((b,))), axis, to="varying")
    init = (candidates, *stats)
    (_, running_max, running_sum), _ = jax.lax.scan(jax.checkpoint(step), init, length=n)
    positives = inv * jnp.einsum("id,id->i", queries, candidates, precision=hi)
    return (running_max + jnp.log(running_sum) - positives).sum()

  def block(video, text, inv):
    t2v = direction(text, video, inv)
    return (t2v if directions == "t2v" else t2v + direction(video, text, inv))[None]

  per_device = jax.shard_map(block, mesh=mesh, in_specs=(P(axis), P(axis), P()),
                             out_specs=P(axis))(video_emb, text_emb, inverse_temperature)
  return per_device.sum() / ((1 if directions == "t2v" else 2) * video_emb.shape[0])


def sigmoid_loss(video_emb, text_emb, inverse_temperature, bias):
  """SigLIP's pairwise sigmoid loss (Zhai et al. 2023, Eq. 1 and Algorithm 1): every pair of the
  global batch is a binary classification, the B own pairs positive and the B(B - 1) others
  negative, with no softmax over the batch:

      L = -1/B * sum_i sum_j log sigmoid(z_ij * (t * <v_i, t_j> + b)),  z_ij = 1 if i = j else -1

  with t the inverse temperature and b a learned bias (SigLIP starts them at 10 and -10, so that
  the many negatives do not dominate the first steps). `video_emb` and `text_emb` are [B, D].
  """
  logits = inverse_temperature * jnp.einsum("id,jd->ij", video_emb, text_emb,
                                            precision=jax.lax.Precision.HIGHEST) + bias
  signs = 2.0 * jnp.eye(logits.shape[0], dtype=logits.dtype) - 1.0
  return -jax.nn.log_sigmoid(signs * logits).sum() / logits.shape[0]


def chunked_sigmoid_loss(video_emb, text_emb, inverse_temperature, bias, mesh: Mesh,
                         axis: str | tuple[str, ...] = "data"):
  """`sigmoid_loss`, equal in value and gradients, in `shard_map` as SigLIP's Algorithm 1 computes
  it: each device keeps its b clips, the captions travel round the ring of the n devices on `axis`
  (`ppermute`), and each device sums the log-sigmoid terms of its b x b block at every step (the
  own captions' block holds the positives). No device holds more than a [b, b] block, and no
  step needs a reduction over the batch: the loss is a plain sum over pairs.
  """
  n, ring = _ring(mesh, axis)

  def block(video, text, inv, b):
    def step(carry, k):
      chunk, total = carry
      logits = inv * jnp.einsum("id,jd->ij", video, chunk,
                                precision=jax.lax.Precision.HIGHEST) + b
      # At step 0 the chunk is the device's own captions: the diagonal is positive.
      signs = jnp.where(k == 0, 2.0 * jnp.eye(logits.shape[0], dtype=logits.dtype) - 1.0, -1.0)
      total = total - jax.nn.log_sigmoid(signs * logits).sum()
      return (jax.lax.ppermute(chunk, axis, ring), total), None

    total = jax.lax.pcast(jnp.zeros((), video.dtype), axis, to="varying")
    (_, total), _ = jax.lax.scan(jax.checkpoint(step), (text, total), jnp.arange(n))
    return total[None]

  per_device = jax.shard_map(block, mesh=mesh, in_specs=(P(axis), P(axis), P(), P()),
                             out_specs=P(axis))(video_emb, text_emb, inverse_temperature, bias)
  return per_device.sum() / video_emb.shape[0]


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
