"""Open-ended QA fine-tuning: the answer head's cross-entropy over the answer classes."""

from vl_jax.errors import ConfigError
from vl_jax.losses.classification import cross_entropy_with_ignored


def objective(outputs, batch, cfg, rng):
  del cfg, rng
  if "answer_logits" not in outputs:
    raise ConfigError("config.objectives.qa needs a model with an answer head: set "
                      "config.data.text='question' and config.data.num_answers")
  loss, accuracy = cross_entropy_with_ignored(outputs["answer_logits"], batch["answer"])
  return loss, {"accuracy": accuracy}
