"""The random masks of masked modeling, drawn in the train step from an objective's key: MILES's
space-time patch masks and CoCo-BERT's masked words and frames. Arguments are validated by the
objectives that set them (masked_video.py, views.py), once, before the step is traced.

Patch masks are boolean [B, T, N] over the T x N patch grid of a clip (N = rows x columns,
row-major); True marks a masked patch.
"""

import jax
import jax.numpy as jnp

from input_pipeline.contract import CLS_ID, FIRST_WORD_ID, PAD_ID, SEP_ID

PATTERNS = ("tube", "block")


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
  t, rows, cols = grid
  if pattern == "tube":
    block = (t, 1, 1)
    count = num_masked(rows * cols, ratio) * t
  else:
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


UNITS = {"frame": lambda rows, cols: (1, rows, cols), "patch": lambda rows, cols: (1, 1, 1)}


def maskable_words(tokens):
  """[B, L] True at the tokens that may be masked: words, not padding, [CLS] or [SEP]."""
  return (tokens != PAD_ID) & (tokens != CLS_ID) & (tokens != SEP_ID)


def mask_words(rng, tokens, rate: float, mask_id: int, vocab_size: int, mask: float = 0.8,
               random: float = 0.1):
  """BERT's scheme: (noisy tokens [B, L], selected [B, L]).

  Each caption with n maskable tokens gets exactly max(1, round(rate * n)) of them selected (0 when
  n = 0), uniformly at random; a selected token becomes `mask_id` with probability `mask`, a
  uniformly random word piece (ids FIRST_WORD_ID .. vocab_size - 1) with probability `random`,
  and stays itself otherwise. The selected positions are the ones the proxies predict.
  An exact count, not BERT's Bernoulli draw: with captions of ~10 tokens a Bernoulli(0.15) leaves a
  fifth of them without a single masked word.
  """
  select_key, kind_key, word_key = jax.random.split(rng, 3)
  maskable = maskable_words(tokens)
  n = maskable.sum(axis=1, keepdims=True)
  count = jnp.where(n > 0, jnp.maximum(1, jnp.round(rate * n)), 0)
  noise = jnp.where(maskable, jax.random.uniform(select_key, tokens.shape), 2.0)
  rank = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)
  selected = rank < count
  kind = jax.random.uniform(kind_key, tokens.shape)
  words = jax.random.randint(word_key, tokens.shape, FIRST_WORD_ID, vocab_size, tokens.dtype)
  noisy = jnp.where(kind < mask, mask_id, jnp.where(kind < mask + random, words, tokens))
  return jnp.where(selected, noisy, tokens), selected


def mask_frames(rng, batch: int, grid: tuple[int, int, int], rate: float, unit: str):
  """[B, T, rows * cols] patch masks of clips with grid (T, rows, cols): "frame" masks
  round(rate * T) whole frames of every clip (at least one, never all), "patch" round(rate * T * N)
  patches anywhere in the clip. The masked patches are replaced by the video tower's mask token."""
  t, rows, cols = grid
  if unit == "frame":  # whole frames: a rate that is a multiple of 1 / T
    rate = min(max(round(rate * t), 1), t - 1) / t
  return space_time_mask(rng, batch, grid, rate, "block", UNITS[unit](rows, cols))
