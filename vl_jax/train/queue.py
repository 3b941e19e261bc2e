"""A FIFO queue of the momentum encoder's embeddings of past batches, kept in the train state:
extra negatives for the CoCo terms (MoCo's queue).

    config.queue = dict(size=4096)

It holds [size, embed_dim] unit embeddings of clips ("video_emb") and captions ("text_emb"). The
momentum encoder is the model with the averages of config.ema in place of both towers and
projections, so those groups must be averaged. Each step puts the batch's keys in front and drops
the oldest; it starts as random unit vectors (MoCo's start), pushed out after size / batch steps.
"""

import jax
import jax.numpy as jnp

from input_pipeline.errors import ConfigError
from vl_jax.models.layers import l2_normalize

MOMENTUM_GROUPS = ("video", "text", "video_proj", "text_proj")


def init(queue_cfg, ema_cfg, embed_dim: int, rng) -> dict:
  """{} without a queue."""
  if not queue_cfg.size:
    return {}
  missing = [g for g in MOMENTUM_GROUPS if g not in ema_cfg.modules]
  if missing:
    raise ConfigError(f"config.queue.size={queue_cfg.size} needs a momentum encoder: "
                      f"config.ema.modules lacks {missing}")
  video_key, text_key = jax.random.split(rng)
  draw = lambda key: l2_normalize(jax.random.normal(key, (queue_cfg.size, embed_dim)))
  return {"video_emb": draw(video_key), "text_emb": draw(text_key)}


def enqueue(queue: dict, keys: dict) -> dict:
  """The newest keys first, the oldest dropped."""
  return {name: jnp.concatenate([keys[name].astype(q.dtype), q], axis=0)[:q.shape[0]]
          for name, q in queue.items()}
