"""Metrics to TensorBoard and metrics.jsonl, and the progress line (process 0 only)."""

import datetime
import json
import logging as std_logging
import os
import time

import jax
import numpy as np
from absl import logging
from tensorboardX import SummaryWriter
from tensorboardX.proto.summary_pb2 import Summary

from input_pipeline import shards

EVAL_RESULTS_FILE = "eval_results.json"

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The project's own code; not "anything under the root", which holds the .venv in the README's set-up.
_OWN_CODE = tuple(os.path.join(_ROOT, p) for p in ("vl_jax" + os.sep, "input_pipeline" + os.sep,
                                                  "main.py", "eval.py"))


def format_table(results: dict[str, dict[str, float]]) -> str:
  """Evaluator results as a table, one line per metric direction (t2v, v2t, ...; metrics without
  one, such as top1, share a line)."""
  lines = []
  for name, m in results.items():
    lines.append(f"{name}:")
    split = {k: k.split("/", 1) if "/" in k else ("", k) for k in m}
    for direction in sorted({d for d, _ in split.values()}):
      cells = [f"{metric} {m[k]:7.2f}" for k, (d, metric) in split.items() if d == direction]
      lines.append(f"  {direction:4s} " + " | ".join(cells))
  return "\n".join(lines)


class MetricWriter:
  def __init__(self, workdir: str):
    self._enabled = jax.process_index() == 0
    if self._enabled:
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self._enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    # A raw Summary keeps the tags as they are ("t2v/R@1"); add_scalar would rewrite the "@".
    self._tb.file_writer.add_summary(
        Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()]), step)
    self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self._jsonl.flush()
    self._tb.flush()

  def close(self) -> None:
    if self._enabled:
      self._tb.close()
      self._jsonl.close()


class Progress:
  """Logs `step | loss | steps/s | clips/s | ETA` over the steps since the last line."""

  def __init__(self, total_steps: int, batch_size: int, start_step: int):
    self.total, self.batch_size = total_steps, batch_size
    self._last_step, self._last_time = start_step, time.perf_counter()

  def rates(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    steps_per_s = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    return {"steps_per_s": steps_per_s, "clips_per_s": steps_per_s * self.batch_size}

  def log(self, step: int, loss: float, rates: dict[str, float]) -> None:
    if jax.process_index():
      return
    eta = datetime.timedelta(seconds=int((self.total - step) / max(rates["steps_per_s"], 1e-9)))
    logging.info("step %d/%d | loss %.4f | %.1f steps/s | %.0f clips/s | ETA %s", step,
                 self.total, loss, rates["steps_per_s"], rates["clips_per_s"], eta)


def all_finite(tree) -> bool:
  return all(np.all(np.isfinite(x)) for x in jax.tree.leaves(tree))


def quiet_library_logs() -> None:
  """Shows INFO lines from this project only (orbax logs every checkpoint step at INFO)."""
  def keep(record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or record.pathname.startswith(_OWN_CODE)
  logging.get_absl_handler().addFilter(keep)


def write_eval_results(workdir: str, results: dict[str, dict[str, float]]) -> None:
  """Merges {evaluator: metrics} into `workdir/eval_results.json` (process 0): the entries of
  evaluators that did not run stay, so zero-shot scores can join a pre-training run's results."""
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, EVAL_RESULTS_FILE)
  previous = {}
  if os.path.isfile(path):
    with open(path) as f:
      previous = json.load(f)
  shards.write_json(path, previous | results, indent=2)
