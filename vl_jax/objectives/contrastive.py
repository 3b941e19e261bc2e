"""The plain dual-encoder baseline: symmetric video-text InfoNCE on the pooled embeddings.

`directions` "t2v" keeps the text -> video half only: TACo's sentence-level loss L1 (its Eq. 3),
which its configs use; "both" is CLIP's symmetric form (the other methods' and the baseline's).

`chunked` computes it device by device in `shard_map` (losses/contrastive.py): the same value and
gradients, with each device's share of the [B, B] similarity matrix shrinking as devices grow.
"""

from vl_jax.losses.contrastive import DIRECTIONS, chunked_symmetric_infonce, symmetric_infonce
from vl_jax.objectives.objective import Objective
from vl_jax.sharding import BATCH_AXES


def loss(ctx, outputs, batch, cfg, rng):
  del batch, rng  # the positives are the batch's own pairs
  v, t, inv = outputs["video_emb"], outputs["text_emb"], outputs["inverse_temperature"]
  if cfg.chunked:
    value = chunked_symmetric_infonce(v, t, inv, ctx.mesh, BATCH_AXES, cfg.directions)
  else:
    value = symmetric_infonce(v, t, inv, cfg.directions)
  return value, {"temperature": 1.0 / inv}


OBJECTIVE = Objective(loss, dict(weight=1.0, chunked=False, directions="both"),
                      choices={"directions": DIRECTIONS})
