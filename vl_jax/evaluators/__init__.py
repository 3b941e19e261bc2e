"""Evaluators, declared in the config by name and looked up by type:

    config.evals.<name> = dict(type="retrieval", every_steps=..., ...)

Each has `every_steps` and `run(params, artifacts_dir=None) -> {metric: value}`.
"""

from vl_jax.errors import ConfigError
from vl_jax.evaluators import caption_generation, multiple_choice, qa, retrieval, zeroshot

REGISTRY = {"retrieval": retrieval.RetrievalEvaluator, "zeroshot": zeroshot.ZeroShotEvaluator,
            "multiple_choice": multiple_choice.MultipleChoiceEvaluator, "qa": qa.QAEvaluator,
            "captioning": caption_generation.CaptioningEvaluator}


def build(evals_cfg, **context):
  """{name: evaluator} for every entry of `config.evals`."""
  out = {}
  for name, cfg in evals_cfg.items():
    if cfg.type not in REGISTRY:
      raise ConfigError(f"config.evals.{name}.type={cfg.type!r}: known types {sorted(REGISTRY)}")
    out[name] = REGISTRY[cfg.type](name, cfg, **context)
  return out
