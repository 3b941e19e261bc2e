"""Evaluators, declared in the config by name and looked up by type:

    config.evals.<name> = dict(type="retrieval", every_steps=..., ...)

Each is an encode.Evaluator, built as `Evaluator(name, cfg, *, predict, mesh, data_cfg,
tokenizer)`, `predict` being the model's functions of the parameters (models/predict.py) that its
driver (the train loop, vl_jax/evaluate.py) passes, and has `every_steps` and
`run(params, artifacts_dir=None) -> {metric: value}`.
"""

from input_pipeline import pipeline
from input_pipeline.errors import ConfigError
from vl_jax.evaluators import captioning, multiple_choice, qa, retrieval, zeroshot

REGISTRY = {"retrieval": retrieval.RetrievalEvaluator, "zeroshot": zeroshot.ZeroShotEvaluator,
            "multiple_choice": multiple_choice.MultipleChoiceEvaluator, "qa": qa.QAEvaluator,
            "captioning": captioning.CaptioningEvaluator}


def build(evals_cfg, **context):
  """{name: evaluator} for every entry of `config.evals`."""
  out = {}
  for name, cfg in evals_cfg.items():
    if cfg.type not in REGISTRY:
      raise ConfigError(f"config.evals.{name}.type={cfg.type!r}: known types {sorted(REGISTRY)}")
    out[name] = REGISTRY[cfg.type](name, cfg, **context)
  return out


def entry(metrics: dict[str, float], checkpoint: str, ev_cfg, data_cfg) -> dict:
  """An evaluator's results as eval_results.json records them (metrics.write_eval_results), with
  what it scored: {"dir", "split", "clips"}."""
  return {"metrics": metrics, "checkpoint": checkpoint, "dataset": {
      "dir": data_cfg.dir, "split": ev_cfg.split,
      "clips": len(pipeline.records(data_cfg.dir, ev_cfg.split))}}
