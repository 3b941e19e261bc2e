"""Configs for tests: the tiny config on a given dataset, with overrides."""

import ml_collections

from configs import tiny


def tiny_config(data_dir: str, **overrides) -> ml_collections.ConfigDict:
  """`configs/tiny.py` on `data_dir`; `overrides` use dotted names: {"data.num_frames": 1}."""
  config = tiny.get_config()
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
