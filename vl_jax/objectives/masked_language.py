"""Masked language modeling through the cross-modal encoder (CoCo-BERT's word proxy).

The caption with masked words (config.masking.words), fused with its unmasked clip's frame tokens,
predicts the original token at every selected position: softmax cross-entropy over the
vocabulary, averaged over the selected tokens of the global batch (BERT's loss). Needs the
cross-modal encoder and its masked heads (config.model.fusion.depth > 0, masked_heads=True).
"""

import jax.numpy as jnp

from vl_jax.losses.classification import cross_entropy_with_ignored
from vl_jax.models import heads
from vl_jax.objectives import views
from vl_jax.objectives.objective import Objective


def loss(ctx, outputs, batch, cfg, rng):
  del cfg, rng
  length = batch["tokens"].shape[1]
  fused = ctx.apply(outputs["frame_tokens"], outputs["masked_text_tokens"],
                    outputs["masked_text_mask"], method=heads.fuse_features)
  logits = ctx.apply(fused[:, :length], method=heads.predict_words)
  labels = jnp.where(outputs["word_mask"], batch["tokens"], -1)
  value, accuracy = cross_entropy_with_ignored(logits.reshape(-1, logits.shape[-1]),
                                               labels.reshape(-1))
  return value, {"accuracy": accuracy}


def validate(cfg, config, model):
  del cfg, model
  views.require(config, "masked_language", "words")


OBJECTIVE = Objective(loss, dict(weight=1.0), validate, head=("word_head", views.MASKED_HEADS))
