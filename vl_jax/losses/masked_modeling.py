"""MILES's masked visual modeling: space-time patch masks and the regression onto snapshot features.

Masks are boolean [B, T, N] over the T x N patch grid of a clip (N = rows x columns, row-major);
True marks a masked patch.
"""

import jax
import jax.numpy as jnp

from vl_jax.errors import ConfigError

PATTERNS = ("tube", "block")
LOSSES = ("smooth_l1", "l2", "cosine")


def num_masked(num_patches: int, ratio: float) -> int:
  """The masked count of a grid of `num_patches`: round(ratio * num_patches), at least 1 and at
  most all but one (a mask that hides nothing or everything teaches nothing)."""
  return min(max(round(ratio * num_patches), 1), num_patches - 1)


def space_time_mask(rng, batch: int, grid: tuple[int, int, int], ratio: float, pattern: str,
                    block: tuple[int, int, int] = (1, 1, 1)):
  """[B, T, rows * cols] masks of `grid` = (T, rows, cols), each with exactly the same count.

  "tube": round(ratio * rows * cols) spatial positions, masked in every frame (VideoMAE): a masked
  patch cannot be read off the same place in a neighbouring frame. "block": boxes of
  `block` = (frames, rows, columns) patches (clipped at the grid's edges) are masked in a random
  order until round(ratio * T * rows * cols) patches are; the last box may be masked in part.

  Jit-friendly and exact: every position gets the random rank of its box plus a fraction below 1
  that orders the positions inside the box, and the lowest-scoring `count` positions are masked.
  """
  if pattern not in PATTERNS:
    raise ConfigError(f"masking pattern {pattern!r}: expected one of {PATTERNS}")
  if not 0.0 < ratio < 1.0:
    raise ConfigError(f"mask ratio {ratio}: must be in (0, 1)")
  t, rows, cols = grid
  if pattern == "tube":
    block = (t, 1, 1)
    count = num_masked(rows * cols, ratio) * t
  else:
    if len(block) != 3 or min(block) < 1:
      raise ConfigError(f"mask block size {tuple(block)}: expected 3 positive sizes "
                        f"(frames, rows, columns)")
    count = num_masked(t * rows * cols, ratio)
  bt, bh, bw = (min(b, g) for b, g in zip(block, grid))
  coarse = (-(-t // bt), -(-rows // bh), -(-cols // bw))
  box_key, inner_key = jax.random.split(rng)
  box_rank = jnp.argsort(jnp.argsort(jax.random.uniform(box_key, (batch, coarse[0] * coarse[1] *
                                                                   coarse[2])), axis=1), axis=1)
  box_rank = box_rank.reshape(batch, *coarse).astype(jnp.float32)
  box_rank = box_rank.repeat(bt, 1).repeat(bh, 2).repeat(bw, 3)[:, :t, :rows, :cols]
  score = box_rank + jax.random.uniform(inner_key, (batch, t, rows, cols))
  position_rank = jnp.argsort(jnp.argsort(score.reshape(batch, -1), axis=1), axis=1)
  return (position_rank < count).reshape(batch, t, rows * cols)


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
    raise ConfigError(f"masked regression loss {loss!r}: expected one of {LOSSES}")
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
