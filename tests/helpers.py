"""Configs for tests: the tiny config on a given dataset, with overrides; a tiny pre-training
run; the comparison of two converted datasets."""

import filecmp
import json
import os

import ml_collections

from configs import coco_tiny, tiny
from input_pipeline import convert
from vl_jax.train import loop

PRETRAIN_STEPS = 400
COCO_STEPS = 100
GCS_BUCKET = "vl-jax-test"  # the bucket the `gcs` fixture creates on its server


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


def pretrain(data_dir, workdir, num_frames=4, steps=PRETRAIN_STEPS):
  """The tiny model trained `steps` steps on one device: (config, workdir, state, results)."""
  config = tiny_config(data_dir, **{
      "batch_size": 32, "total_steps": steps, "optimizer.warmup_steps": 50,
      "data.num_frames": num_frames, "mesh.data": 1, "log_every_steps": 100,
      "checkpoint.every_steps": steps, "evals.retrieval.every_steps": steps})
  state, results = loop.train_and_evaluate(config, str(workdir))
  return config, str(workdir), state, results


def coco_pretrain(data_dir, init_workdir, workdir):
  """configs/coco_tiny.py trained COCO_STEPS steps from `init_workdir`'s towers (the cross-modal
  encoder, its heads and the decoder start random): (config, workdir, state, results)."""
  config = tiny_config(data_dir, base=coco_tiny.get_config(), **{
      "batch_size": 32, "total_steps": COCO_STEPS, "optimizer.warmup_steps": 10, "mesh.data": 1,
      "log_every_steps": 5, "checkpoint.every_steps": COCO_STEPS, "init_from.workdir": init_workdir,
      "evals.retrieval.every_steps": COCO_STEPS})
  with config.unlocked():  # captioning is scored after fine-tuning (tests/test_downstream.py)
    del config.evals["captioning"]
  state, results = loop.train_and_evaluate(config, str(workdir))
  return config, str(workdir), state, results


def same_dataset(a, b, split="train"):
  """The two conversions wrote the same shards, byte for byte, the same tokenizer and statistics,
  and reported the same clips, skipped items and notes."""
  names = sorted(f for f in os.listdir(os.path.join(a, split)) if f.endswith(".array_record"))
  assert names == sorted(f for f in os.listdir(os.path.join(b, split))
                         if f.endswith(".array_record"))
  for n in names:
    assert filecmp.cmp(os.path.join(a, split, n), os.path.join(b, split, n), shallow=False), n
  for f in ("tokenizer.model", "idf.json", "knowledge_vocab.json", "dataset_info.json"):
    assert filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False), f
  reports = [json.load(open(os.path.join(d, split, convert.REPORT_FILE))) for d in (a, b)]
  for key in ("num_items", "num_clips", "skipped", "notes", "warnings"):
    assert reports[0][key] == reports[1][key], key
  return names, reports
