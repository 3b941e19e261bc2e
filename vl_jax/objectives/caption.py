"""Captioning with the caption decoder, teacher-forced (CoCo-BERT's generation task).

    config.objectives.caption = dict(weight=1.0)

The decoder reads the unmasked clip's video-tower tokens and the caption up to token i, and
predicts token i + 1: softmax cross-entropy averaged over every real target token of the global
batch, [SEP] included (so it learns where to stop), padding excluded. Needs the decoder
(config.model.decoder.depth > 0).
"""

import jax.numpy as jnp

from input_pipeline.tokenizer import PAD_ID
from vl_jax.errors import ConfigError
from vl_jax.losses.classification import cross_entropy_with_ignored


def objective(outputs, batch, cfg, rng):
  del cfg, rng
  if outputs["model"].decoder is None:
    raise ConfigError("config.objectives.caption needs the caption decoder: set "
                      "config.model.decoder.depth > 0")
  tokens = batch["tokens"]
  logits = outputs["apply"](outputs["video_tokens"], tokens[:, :-1], method="caption_logits")
  labels = jnp.where(tokens[:, 1:] == PAD_ID, -1, tokens[:, 1:])
  loss, accuracy = cross_entropy_with_ignored(logits.reshape(-1, logits.shape[-1]),
                                              labels.reshape(-1))
  return loss, {"accuracy": accuracy}
