"""CoCo-BERT's masked views: captions with masked words and clips with masked frames (or patches),
the noisy counterparts of the unmasked inputs.

    config.masking = dict(words=dict(rate=0.15, mask=0.8, random=0.1),
                          frames=dict(rate=0.25, unit="frame"))

One draw per step serves every objective that reads the views (the CoCo terms, masked language and
masked frame modeling): the masked inputs the proxies reconstruct are the same noisy views the
contrastive terms match, as the paper describes them.
"""

import jax
import jax.numpy as jnp

from input_pipeline.tokenizer import CLS_ID, FIRST_WORD_ID, PAD_ID, SEP_ID
from vl_jax.errors import ConfigError
from vl_jax.losses.masked_modeling import space_time_mask

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
  if not 0.0 < rate < 1.0:
    raise ConfigError(f"config.masking.words.rate={rate}: must be in (0, 1)")
  if not (0.0 <= mask and 0.0 <= random and mask + random <= 1.0):
    raise ConfigError(f"config.masking.words: mask={mask}, random={random} must be probabilities "
                      "summing to at most 1")
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
  if unit not in UNITS:
    raise ConfigError(f"config.masking.frames.unit={unit!r}: expected one of {sorted(UNITS)}")
  t, rows, cols = grid
  if unit == "frame" and t < 2:
    raise ConfigError("config.masking.frames.unit='frame' needs clips of 2 frames or more; "
                      "use unit='patch'")
  if not 0.0 < rate < 1.0:
    raise ConfigError(f"config.masking.frames.rate={rate}: must be in (0, 1)")
  if unit == "frame":  # whole frames: a rate that is a multiple of 1 / T
    rate = min(max(round(rate * t), 1), t - 1) / t
  try:
    return space_time_mask(rng, batch, grid, rate, "block", UNITS[unit](rows, cols))
  except ConfigError as e:
    raise ConfigError(f"config.masking.frames: {e}") from e
