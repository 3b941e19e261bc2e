"""CLOP's knowledge regularizations (formulas and reasons: vl_jax/losses/knowledge.py).

SKP (structural knowledge prediction): the knowledge head (config.model.knowledge_head) predicts
each caption's knowledge classes from the embeddings of its `inputs`; the loss averages them.

KCL (knowledge-guided contrastive learning) replaces the plain contrastive objective: the
similarity of two captions' knowledge (weighted by the classes' idf, or not) is how hard the one
is as the other's negative; "weight" up-weights hard negatives, "sample" draws `num_negatives` of
them per anchor by hardness. A true duplicate (the same caption, hence the same knowledge) is
never a negative. Our default beta = 2 gives a negative of identical knowledge e^2 = 7.4 times
the weight of an unrelated one: hard negatives count more, the others still count.
"""

import jax.numpy as jnp

from input_pipeline.errors import ConfigError
from vl_jax.losses import knowledge
from vl_jax.models import heads
from vl_jax.objectives.objective import Objective

LOSSES = {"softmax": knowledge.multilabel_softmax, "bce": knowledge.multilabel_bce}


def skp_loss(ctx, outputs, batch, cfg, rng):
  del rng
  present = batch["knowledge"] > 0
  losses, metrics = [], {}
  for name in ctx.model.head("knowledge_head").inputs:
    logits = ctx.apply(outputs[f"{name}_emb"], method=heads.knowledge_logits)
    losses.append(LOSSES[cfg.loss](logits, present))
    metrics[f"{name}_loss"] = losses[-1]
    metrics[f"{name}_r_precision"] = knowledge.r_precision(logits, present)
  return sum(losses) / len(losses), metrics


def kcl_loss(ctx, outputs, batch, cfg, rng):
  del ctx
  x = batch["knowledge"]
  if not cfg.idf:
    x = (x > 0).astype(jnp.float32)
  hardness, same = knowledge.knowledge_similarity(x, cfg.similarity)
  dup = knowledge.duplicates(batch["tokens"], same)
  negatives = ~dup & ~jnp.eye(x.shape[0], dtype=bool)
  value = knowledge.knowledge_infonce(outputs["video_emb"], outputs["text_emb"],
                                      outputs["inverse_temperature"], hardness, negatives,
                                      cfg.beta, cfg.negatives, cfg.num_negatives, rng)
  mean_hardness = jnp.where(negatives, hardness, 0.0).sum() / jnp.maximum(negatives.sum(), 1)
  return value, {"temperature": 1.0 / outputs["inverse_temperature"],
                 "negative_similarity": mean_hardness, "duplicates": dup.sum(-1).mean()}


def validate_kcl(cfg, config, model):
  del model
  if not config.data.knowledge.size:
    raise ConfigError("config.objectives.kcl needs the captions' knowledge: set "
                      "config.data.knowledge.size > 0")
  if cfg.negatives == "sample" and cfg.num_negatives < 1:
    raise ConfigError(f"config.objectives.kcl.num_negatives={cfg.num_negatives}: must be >= 1")


# The knowledge head needs the knowledge classes (models/builder.py checks), so SKP needs them too.
SKP = Objective(skp_loss, dict(weight=1.0, loss="softmax"), choices={"loss": LOSSES},
                head=("knowledge_head", "the knowledge head: set "
                      "config.model.knowledge_head.inputs, e.g. ('video', 'text')"))
KCL = Objective(kcl_loss, dict(weight=1.0, similarity="jaccard", idf=True, negatives="weight",
                               beta=2.0, num_negatives=8), validate_kcl,
                choices={"similarity": knowledge.SIMILARITIES, "negatives": knowledge.NEGATIVES})
