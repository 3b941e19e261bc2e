"""Masked modeling's losses: MILES's regression onto snapshot features and CoCo-BERT's masked
frame prediction. Masks (objectives/masks.py) are boolean [B, T, N] over the T x N patch grid of a
clip; True marks a masked patch.
"""

import jax
import jax.numpy as jnp

LOSSES = ("smooth_l1", "l2", "cosine")


def normalize_targets(x, eps: float = 1e-6):
  """Layer norm without scale or shift over the feature axis (data2vec's target normalisation):
  the targets keep their direction per patch but cannot shrink towards a trivial scale."""
  mean = x.mean(axis=-1, keepdims=True)
  var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps)


def masked_regression(predictions, targets, mask, loss: str):
  """The mean over masked patches of a per-patch regression loss (our assumption: MILES's text
  names neither the loss nor its reduction):

      L = sum_{b,t,n} m_btn * l(p_btn, y_btn) / sum_{b,t,n} m_btn

  with p the predictions and y the targets [B, T, N, D], m the mask [B, T, N], and l one of
      smooth_l1   mean_d huber_1(p_d - y_d)   (0.5 e^2 for |e| < 1, |e| - 0.5 beyond; data2vec)
      l2          mean_d (p_d - y_d)^2
      cosine      1 - <p, y> / (|p| |y|)
  Unmasked patches contribute nothing, whatever their predictions.
  """
  if loss == "smooth_l1":
    err = jnp.abs(predictions - targets)
    per_patch = jnp.where(err < 1.0, 0.5 * err ** 2, err - 0.5).mean(axis=-1)
  elif loss == "l2":
    per_patch = ((predictions - targets) ** 2).mean(axis=-1)
  elif loss == "cosine":
    unit = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
    per_patch = 1.0 - (unit(predictions) * unit(targets)).sum(axis=-1)
  else:
    raise ValueError(f"masked regression loss {loss!r}: expected one of {LOSSES}")
  mask = mask.astype(per_patch.dtype)
  return (per_patch * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def frame_nce(predictions, targets, weights, inverse_temperature):
  """Contrastive masked frame modeling over the batch's frames (our assumption, in the style of
  UniVL's and HERO's NCE variants; CoCo-BERT's text names no formula):

      L = sum_{b,t} w_bt * -log softmax_{(c,u)}(<p_bt, y_cu> / tau)[(b,t)] / sum_{b,t} w_bt

  with p [B, T, D] the predictions and y [B, T, D] the targets, both unit-normalised, the softmax
  over all B x T frames of the global batch, and w [B, T] each frame's masked fraction.
  """
  unit = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
  b, t, d = predictions.shape
  p, y = unit(predictions).reshape(b * t, d), unit(targets).reshape(b * t, d)
  logits = inverse_temperature * jnp.einsum("id,jd->ij", p, y, precision=jax.lax.Precision.HIGHEST)
  per_frame = -jnp.diagonal(jax.nn.log_softmax(logits, axis=1))
  w = weights.reshape(-1).astype(per_frame.dtype)
  return (per_frame * w).sum() / jnp.maximum(w.sum(), 1e-6)
