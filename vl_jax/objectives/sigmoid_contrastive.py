"""SigLIP's pairwise sigmoid loss on the pooled embeddings (losses/contrastive.sigmoid_loss): the
loss SigLIP checkpoints are trained with, and one with no softmax over the batch.

Its bias is the model's `sigmoid_bias` head (config.model.sigmoid_bias = True), its temperature
the model's (SigLIP learns it, from 10: config.model.temperature = dict(init=0.1, learn=True)).
`chunked` computes it as SigLIP's Algorithm 1 does, the captions going round the devices in
shard_map: the same value and gradients.
"""

from vl_jax.losses.contrastive import chunked_sigmoid_loss, sigmoid_loss
from vl_jax.models import heads
from vl_jax.objectives.objective import Objective
from vl_jax.sharding import BATCH_AXES


def loss(ctx, outputs, batch, cfg, rng):
  del batch, rng  # the positives are the batch's own pairs
  v, t, inv = outputs["video_emb"], outputs["text_emb"], outputs["inverse_temperature"]
  bias = ctx.apply(method=heads.sigmoid_bias)
  if cfg.chunked:
    value = chunked_sigmoid_loss(v, t, inv, bias, ctx.mesh, BATCH_AXES)
  else:
    value = sigmoid_loss(v, t, inv, bias)
  return value, {"temperature": 1.0 / inv, "bias": bias}


OBJECTIVE = Objective(loss, dict(weight=1.0, chunked=False),
                      head=("sigmoid_bias", "the loss's bias: set config.model.sigmoid_bias=True"))
