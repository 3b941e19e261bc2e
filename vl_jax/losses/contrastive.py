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
