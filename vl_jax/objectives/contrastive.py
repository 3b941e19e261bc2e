"""The plain dual-encoder baseline: symmetric video-text InfoNCE on the pooled embeddings.

    config.objectives.contrastive = dict(weight=1.0, chunked=False, directions="both")

`directions` "t2v" keeps the text -> video half only: TACo's sentence-level loss L1 (its Eq. 3),
which its configs use; "both" is CLIP's symmetric form (the other methods' and the baseline's).

`chunked` computes it device by device in `shard_map` (losses/contrastive.py): the same value and
gradients, with each device's share of the [B, B] similarity matrix shrinking as devices grow.
"""

from vl_jax.errors import ConfigError
from vl_jax.losses.contrastive import DIRECTIONS, chunked_symmetric_infonce, symmetric_infonce
from vl_jax.train.mesh import BATCH_AXES


def objective(outputs, batch, cfg, rng):
  del batch, rng  # the positives are the batch's own pairs
  v, t, inv = outputs["video_emb"], outputs["text_emb"], outputs["inverse_temperature"]
  directions = cfg.directions
  if directions not in DIRECTIONS:
    raise ConfigError(f"config.objectives.contrastive.directions={directions!r}: one of "
                      f"{DIRECTIONS}")
  if cfg.chunked:
    if outputs["mesh"] is None:
      raise ConfigError("config.objectives.contrastive.chunked needs the train step's mesh")
    loss = chunked_symmetric_infonce(v, t, inv, outputs["mesh"], BATCH_AXES, directions)
  else:
    loss = symmetric_infonce(v, t, inv, directions)
  return loss, {"temperature": 1.0 / inv}
