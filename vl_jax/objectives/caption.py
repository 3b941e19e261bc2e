"""Captioning with the caption decoder, teacher-forced (CoCo-BERT's generation task).

The decoder reads the unmasked clip's video-tower tokens and the caption up to token i, and
predicts token i + 1: softmax cross-entropy averaged over every real target token of the global
batch, [SEP] included (so it learns where to stop), padding excluded. Needs the decoder
(config.model.decoder.depth > 0).
"""

import jax.numpy as jnp

from input_pipeline.contract import PAD_ID
from vl_jax.losses.classification import cross_entropy_with_ignored
from vl_jax.models import heads
from vl_jax.objectives.objective import Objective


def loss(ctx, outputs, batch, cfg, rng):
  del cfg, rng
  tokens = batch["tokens"]
  logits = ctx.apply(outputs["video_tokens"], tokens[:, :-1], method=heads.caption_logits)
  labels = jnp.where(tokens[:, 1:] == PAD_ID, -1, tokens[:, 1:])
  value, accuracy = cross_entropy_with_ignored(logits.reshape(-1, logits.shape[-1]),
                                               labels.reshape(-1))
  return value, {"accuracy": accuracy}


OBJECTIVE = Objective(loss, dict(weight=1.0),
                      head=("decoder", "the caption decoder: set config.model.decoder.depth > 0"))
