"""Open-ended QA fine-tuning: the answer head's cross-entropy over the answer classes."""

from vl_jax.losses.classification import cross_entropy_with_ignored
from vl_jax.models import heads
from vl_jax.objectives.objective import Objective


def loss(ctx, outputs, batch, cfg, rng):
  del cfg, rng
  logits = ctx.apply(outputs, outputs, method=heads.answer_logits)
  value, accuracy = cross_entropy_with_ignored(logits, batch["answer"])
  return value, {"accuracy": accuracy}


OBJECTIVE = Objective(loss, dict(weight=1.0),
                      head=("answer_head", "a model with an answer head: set "
                            "config.data.text='question' and config.data.num_answers"))
