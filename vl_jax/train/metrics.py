"""Metrics to TensorBoard and metrics.jsonl, and the progress line (process 0 only)."""

import datetime
import json
import logging as std_logging
import os
import time

import jax
from absl import logging
from tensorboardX import SummaryWriter
from tensorboardX.proto.summary_pb2 import Summary

from input_pipeline import files

EVAL_RESULTS_FILE = "eval_results.json"

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The project's own code; not "anything under the root", which holds the .venv in the README's
# set-up.
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


def prefixed(name: str, metrics: dict[str, float]) -> dict[str, float]:
  """`name/metric` for each metric: every scalar is written under its source's name (train, or the
  evaluator's), so two evaluators of one type, or two with a metric of the same name, never
  overwrite each other (big_vision's convention)."""
  return {f"{name}/{k}": v for k, v in metrics.items()}


class MetricWriter:
  """Appends to metrics.jsonl and TensorBoard. A run resumed at `resume_step` (0: started afresh)
  re-executes the steps after it: their rows from the interrupted run are dropped (from
  metrics.jsonl when the writer opens, from TensorBoard by its purge step), so no step appears
  twice; with `rerun_final`, the final evaluation at `resume_step` runs again and its rows are
  dropped too."""

  def __init__(self, workdir: str, resume_step: int = 0, rerun_final: bool = False):
    self._enabled = jax.process_index() == 0
    if self._enabled:
      path = os.path.join(workdir, "metrics.jsonl")
      if os.path.exists(path):
        self._drop_rows_after(path, resume_step, rerun_final)
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1)
      self._jsonl = open(path, "a")

  @staticmethod
  def _drop_rows_after(path: str, step: int, rerun_final: bool) -> None:
    def keep(row: dict) -> bool:
      if row["step"] != step:
        return row["step"] < step
      return not rerun_final or all(k == "step" or k.startswith("train/") for k in row)
    kept = []
    with open(path) as f:
      for line in f:
        try:
          row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill: of a step being re-executed
          continue
        if keep(row):
          kept.append(json.dumps(row) + "\n")
    with open(path + ".tmp", "w") as f:
      f.writelines(kept)
    os.replace(path + ".tmp", path)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self._enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    # A raw Summary keeps the tags as they are ("retrieval/t2v/R@1"); add_scalar rewrites the "@".
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
  """Logs `step | loss | steps/s | clips/s | ETA` over the steps since the last line. The clock
  starts after the first step (`start`): its compilation is no measure of the steps to come."""

  def __init__(self, total_steps: int, batch_size: int):
    self.total, self.batch_size = total_steps, batch_size
    self._last_step, self._last_time = None, None

  def start(self, step: int) -> None:
    self._last_step, self._last_time = step, time.perf_counter()

  def rates(self, step: int) -> dict[str, float]:
    """{steps_per_s, clips_per_s} since the last call; {} when no timed step has run since."""
    if self._last_step is None or step == self._last_step:
      return {}
    now = time.perf_counter()
    steps_per_s = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    return {"steps_per_s": steps_per_s, "clips_per_s": steps_per_s * self.batch_size}

  def log(self, step: int, loss: float, rates: dict[str, float]) -> None:
    if jax.process_index():
      return
    if not rates:
      logging.info("step %d/%d | loss %.4f", step, self.total, loss)
      return
    eta = datetime.timedelta(seconds=int((self.total - step) / max(rates["steps_per_s"], 1e-9)))
    logging.info("step %d/%d | loss %.4f | %.1f steps/s | %.0f clips/s | ETA %s", step,
                 self.total, loss, rates["steps_per_s"], rates["clips_per_s"], eta)


def quiet_library_logs() -> None:
  """Shows INFO lines from this project only (orbax logs every checkpoint step at INFO), and a
  library's error in one line: its traceback (orbax logs each failed background write with one)
  is left out; the project's own error line says what failed."""
  def keep(record: std_logging.LogRecord) -> bool:
    own = record.pathname.startswith(_OWN_CODE)
    if record.exc_info and not own:
      record.msg = f"{record.getMessage()}: {record.exc_info[1]!r}"[:500]
      record.args, record.exc_info, record.exc_text = None, None, None
    return record.levelno >= std_logging.WARNING or own
  logging.get_absl_handler().addFilter(keep)


def write_eval_results(workdir: str, step: int, entries: dict[str, dict]) -> None:
  """Merges {evaluator: entry} of checkpoint `step` into `workdir/eval_results.json` (process 0),
  which maps evaluator -> step -> {"metrics", "checkpoint", "dataset"}: results of other
  evaluators (zero-shot scores joining a pre-training run's) and of other steps (`eval.py --step
  500` next to the final step's) stay; only the same evaluator at the same step is replaced."""
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, EVAL_RESULTS_FILE)
  results = read_eval_results(workdir)
  for name, entry in entries.items():
    results.setdefault(name, {})[str(step)] = entry
  files.write_json(path, results, indent=2)


def read_eval_results(workdir: str) -> dict[str, dict[str, dict]]:
  """evaluator -> step (a string, JSON's keys) -> {"metrics", "checkpoint", "dataset"}."""
  path = os.path.join(workdir, EVAL_RESULTS_FILE)
  if not os.path.isfile(path):
    return {}
  with open(path) as f:
    results = json.load(f)
  if any(not isinstance(e, dict) or "metrics" not in e
         for steps in results.values() for e in steps.values()):
    # An earlier version's file (evaluator -> metrics, no step): kept beside, not merged.
    os.replace(path, path + ".old")
    logging.warning("%s is of an earlier format (no steps); moved to %s.old", path, path)
    return {}
  return results
