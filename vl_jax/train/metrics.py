"""Metrics to TensorBoard and metrics.jsonl, and the progress line (process 0 only)."""

import datetime
import json
import logging as std_logging
import os
import shutil
import tempfile
import time

import jax
from absl import logging
from etils import epath
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
  dropped too. In a workdir on an object store (gs://), which has no append, metrics.jsonl is
  written whole at every write, and so are the event files, which TensorBoard's writer keeps in
  a local folder: one client (epath's) writes all of a workdir but orbax's arrays."""

  def __init__(self, workdir: str, resume_step: int = 0, rerun_final: bool = False):
    self._enabled = jax.process_index() == 0
    if self._enabled:
      self._remote = not files.is_local(workdir)
      self._path = epath.Path(workdir) / "metrics.jsonl"
      rows = self._rows_before(resume_step, rerun_final) if self._path.exists() else []
      files.write_json_lines(self._path, rows)
      # Remote: the rows, for each rewrite of the whole file. Local: the file, appended to.
      self._rows = rows if self._remote else None
      self._jsonl = None if self._remote else open(self._path, "a")
      self._tb_dir = epath.Path(workdir) / "tensorboard"
      self._tb_local = (tempfile.mkdtemp(prefix="vl_jax_tensorboard_") if self._remote
                        else os.fspath(self._tb_dir))
      self._tb = SummaryWriter(self._tb_local, purge_step=resume_step + 1)

  def _rows_before(self, step: int, rerun_final: bool) -> list[dict]:
    def keep(row: dict) -> bool:
      if row["step"] != step:
        return row["step"] < step
      return not rerun_final or all(k == "step" or k.startswith("train/") for k in row)
    rows = []
    for line in self._path.read_text().splitlines():
      try:
        row = json.loads(line)
      except json.JSONDecodeError:  # a line cut by the kill: of a step being re-executed
        continue
      if keep(row):
        rows.append(row)
    return rows

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self._enabled:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    # A raw Summary keeps the tags as they are ("retrieval/t2v/R@1"); add_scalar rewrites the "@".
    self._tb.file_writer.add_summary(
        Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()]), step)
    row = {"step": int(step), **scalars}
    self._tb.flush()
    if self._remote:
      self._rows.append(row)
      files.write_json_lines(self._path, self._rows)
      files.copy_folder(self._tb_local, self._tb_dir)
    else:
      self._jsonl.write(json.dumps(row) + "\n")
      self._jsonl.flush()

  def close(self) -> None:
    if self._enabled:
      self._tb.close()
      if self._remote:
        files.copy_folder(self._tb_local, self._tb_dir)
        shutil.rmtree(self._tb_local)
      else:
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
  results = read_eval_results(workdir)
  for name, entry in entries.items():
    results.setdefault(name, {})[str(step)] = entry
  files.write_json(epath.Path(workdir) / EVAL_RESULTS_FILE, results, indent=2)


def read_eval_results(workdir: str) -> dict[str, dict[str, dict]]:
  """evaluator -> step (a string, JSON's keys) -> {"metrics", "checkpoint", "dataset"}."""
  path = epath.Path(workdir) / EVAL_RESULTS_FILE
  if not path.is_file():
    return {}
  results = files.read_json(path)
  if any(not isinstance(e, dict) or "metrics" not in e
         for steps in results.values() for e in steps.values()):
    # An earlier version's file (evaluator -> metrics, no step): kept beside, not merged.
    path.replace(path.with_name(path.name + ".old"))
    logging.warning("%s is of an earlier format (no steps); moved to %s.old", path, path)
    return {}
  return results
