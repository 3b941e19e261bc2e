"""Classification losses."""

import jax.numpy as jnp
import optax


def cross_entropy_with_ignored(logits, labels):
  """Softmax cross-entropy averaged over the examples that have a class; (loss, accuracy).

  With m_i = [y_i >= 0] (label -1: an answer outside the vocabulary, which no class can get right),

      L = sum_i m_i * -log softmax(z_i)[y_i] / max(1, sum_i m_i)

  the open-ended QA loss (MSRVTT-QA practice: answers outside the top-K are dropped from training).
  Accuracy counts over the same examples.
  """
  valid = labels >= 0
  safe = jnp.where(valid, labels, 0)
  per_example = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
  count = jnp.maximum(valid.sum(), 1)
  loss = jnp.where(valid, per_example, 0.0).sum() / count
  accuracy = jnp.where(valid, logits.argmax(-1) == safe, False).sum() / count
  return loss, accuracy
