"""The converter on Apache Beam: the same plan, per-clip functions and shard writer as the local
driver (convert.py), one Beam task per shard, on any runner.

    python -m input_pipeline.convert --format webvid ... --runner DirectRunner
    python -m input_pipeline.convert --format webvid ... --runner DataflowRunner -- \\
        --project P --region R --temp_location gs://BUCKET/tmp --setup_file ./setup.py

Everything after `--` is Beam's pipeline options, passed through. The launcher reads the
annotation file, checks the settings against a resumed run's and lists the shards still to write;
each worker reads the annotation file once too (the plan is a pure function of it, so every process
computes the same), loads spaCy once and writes whole shards. A shard is published whole under its
final name by whichever attempt finishes it, so a retried or duplicated task never duplicates or
drops a clip; the launcher then gathers the shards' parts into the report and dataset_info.json.
"""

import time
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from etils import epath

from input_pipeline import convert
from input_pipeline.errors import DataError


class WriteShard(beam.DoFn):
  """Writes the shards whose indices it receives; yields how many items each held."""

  def __init__(self, settings: convert.Settings, out: str):
    self._settings, self._out = settings, out
    self._plan = None

  def setup(self):
    # A worker that cannot see the videos (a local path on a cluster) would report every clip
    # missing and write empty shards: it stops the pipeline instead.
    if not epath.Path(self._settings.videos).is_dir():
      raise DataError(f"--videos {self._settings.videos}: not a folder this Beam worker sees; on "
                      f"a cluster give paths every worker reaches (gs://, a shared mount)")
    convert.init_worker()
    self._plan = convert.make_plan(self._settings, self._out)

  def process(self, index: int):
    results = (convert.make_record(item, self._settings)
               for item in self._plan.shard_items(index))
    yield convert.write_shard(self._plan, index, results)


def pipeline_options(runner: str, beam_args: list[str], workers: int) -> PipelineOptions:
  """Beam's options from `beam_args`. Unless they say otherwise, the DirectRunner runs `workers`
  processes (its own default is one thread), and workers log warnings and errors only (Beam's
  default, INFO, is some 40 lines per worker)."""
  defaults = ["--default_sdk_harness_log_level=WARNING"]
  if runner == "DirectRunner" and not any(a.startswith("--direct_") for a in beam_args):
    defaults += [f"--direct_num_workers={workers}",
                 f"--direct_running_mode={'multi_processing' if workers > 1 else 'in_memory'}"]
  return PipelineOptions([*defaults, *beam_args], runner=runner)  # the user's come last and win


def convert_split(settings: convert.Settings, out: str, runner: str, beam_args: list[str],
                  workers: int, vocab_split: str, vocab_size: int,
                  name: str | None) -> dict[str, Any]:
  """convert.convert on a Beam runner."""
  t_start = time.time()
  plan = convert.make_plan(settings, out)
  todo, warnings = convert.start(plan)
  if todo:
    with beam.Pipeline(options=pipeline_options(runner, beam_args, workers)) as p:
      _ = (p | "shards" >> beam.Create(todo)
           | "spread" >> beam.Reshuffle()  # one shard per task, on any worker
           | "write" >> beam.ParDo(WriteShard(settings, out)))
  num_decoded = sum(len(plan.shard_items(i)) for i in todo)
  driver = {"runner": runner, "options": beam_args}
  return convert.finish(plan, driver, vocab_split, vocab_size, name, t_start, num_decoded,
                        warnings)
