"""Configs for tests: the tiny config on a given dataset, with overrides; a tiny pre-training run."""

import ml_collections

from configs import tiny
from vl_jax.train import loop

PRETRAIN_STEPS = 400


def tiny_config(data_dir: str, base=None, **overrides) -> ml_collections.ConfigDict:
  """`base` (default: `configs/tiny.py`'s config) on `data_dir`; `overrides` use dotted names:
  {"data.num_frames": 1}."""
  config = base or tiny.get_config()
  config.data.dir = data_dir
  config.data.num_threads = 1
  with config.unlocked():  # whole blocks may be replaced, e.g. {"evals": {}}
    for name, value in overrides.items():
      *parents, leaf = name.split(".")
      node = config
      for p in parents:
        node = node[p]
      node[leaf] = value
  return config


def pretrain(data_dir, workdir, num_frames=4):
  """The tiny model trained PRETRAIN_STEPS steps on one device: (config, workdir, state, results)."""
  config = tiny_config(data_dir, **{
      "batch_size": 32, "total_steps": PRETRAIN_STEPS, "optimizer.warmup_steps": 50,
      "data.num_frames": num_frames, "mesh.data": 1, "log_every_steps": 100,
      "checkpoint.every_steps": PRETRAIN_STEPS, "evals.retrieval.every_steps": PRETRAIN_STEPS})
  state, results = loop.train_and_evaluate(config, str(workdir))
  return config, str(workdir), state, results
