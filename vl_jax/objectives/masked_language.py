"""Masked language modeling through the cross-modal encoder (CoCo-BERT's word proxy).

    config.objectives.masked_language = dict(weight=1.0)

The caption with masked words (config.masking.words), fused with its unmasked clip's frame tokens,
predicts the original token at every selected position: softmax cross-entropy over the
vocabulary, averaged over the selected tokens of the global batch (BERT's loss). Needs the
cross-modal encoder and its masked heads (config.model.fusion.depth > 0, masked_heads=True).
"""

import jax.numpy as jnp

from vl_jax.losses.classification import cross_entropy_with_ignored
from vl_jax.objectives import views


def objective(outputs, batch, cfg, rng):
  del cfg, rng
  views.require(outputs, "masked_language", "word_mask", "words.rate")
  apply, length = outputs["apply"], batch["tokens"].shape[1]
  fused = apply(outputs["frame_tokens"], outputs["masked_text_tokens"],
                outputs["masked_text_mask"], method="fuse_features")
  logits = apply(fused[:, :length], method="predict_words")
  labels = jnp.where(outputs["word_mask"], batch["tokens"], -1)
  loss, accuracy = cross_entropy_with_ignored(logits.reshape(-1, logits.shape[-1]),
                                              labels.reshape(-1))
  return loss, {"accuracy": accuracy}
