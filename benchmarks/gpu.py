r"""The accelerator benchmark: base-size train steps in bfloat16, fitted to a short GPU window.

    python benchmarks/gpu.py [--plan vit_b16_bert_base:32,vit_b16_bert_base:64,...]
        [--steps 10] [--budget_s 540] [--out benchmarks/gpu_results.jsonl]

Each row is printed and appended to `--out` (JSON lines) the moment it is measured, so a run cut
off by its time limit still returns every row it finished; a row that fails (out of memory, a
compiler error) is written with its error and the next one runs. No row starts once less than
its predecessor's time is left of `--budget_s`.

A row is one `config:batch` of `--plan` (configs/ modules, timed as benchmarks/train_step.py times
them) with `--dtype`, `--attention`, `--scan` and `--remat` in place of the config's: step time,
clips/s, compile time, the compiled step's memory and model FLOPs utilisation, i.e. XLA's FLOP
count of the step (forward, backward, update; with remat "none" no FLOP is counted twice) per
second over the chip's dense bfloat16 peak (PEAK_TFLOPS, by device kind; a chip not listed: the
best rate of a bfloat16 matmul measured here, and the row says so). The default plan is the issue's:
ViT-B/16 + BERT-base at 4 x 224^2, batches 32, 64 and 128, then TACo's and MILES's base-size
steps at batch 32 (their overhead against the dual encoder at that batch).
"""

import json
import os
import platform
import sys
import time

# As in train_step.py: the repository root in place of this script's folder.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks.common import bench_step, best_time

# Dense bfloat16 tensor-core peaks, TFLOP/s, from the vendors' data sheets (without sparsity).
PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L4": 121.0}

FLAGS = flags.FLAGS
flags.DEFINE_string("plan", "vit_b16_bert_base:32,vit_b16_bert_base:64,vit_b16_bert_base:128,"
                    "taco_howto100m:32,miles_webvid_cc3m:32", "config:batch rows, in order")
flags.DEFINE_integer("steps", 10, "timed steps per row (after one warm-up step)")
flags.DEFINE_enum("dtype", "bfloat16", ["float32", "bfloat16"], "config.model.dtype")
flags.DEFINE_string("attention", "auto", "config.model.attention")
flags.DEFINE_bool("scan", True, "config.model.scan_layers")
flags.DEFINE_string("remat", "none", "config.model.remat")
flags.DEFINE_integer("budget_s", 540, "start no row once less than the last row's time is left")
flags.DEFINE_string("out", "benchmarks/gpu_results.jsonl", "JSON lines, one per row, appended")


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


def write(row: dict) -> None:
  print(json.dumps(row), flush=True)
  with open(FLAGS.out, "a") as f:
    f.write(json.dumps(row) + "\n")


def main(argv):
  del argv
  start = time.perf_counter()
  peak, peak_source = peak_flops()
  write({"machine": {"device": jax.devices()[0].device_kind, "devices": jax.device_count(),
                     "platform": platform.platform(), "jax": jax.__version__,
                     "peak_TFLOPs": peak / 1e12, "peak_source": peak_source}})
  overrides = {"dtype": FLAGS.dtype, "attention": FLAGS.attention, "scan_layers": FLAGS.scan,
               "remat": FLAGS.remat}
  base_step, last = {}, 0.0
  for item in FLAGS.plan.split(","):
    name, _, batch = item.rpartition(":")
    left = FLAGS.budget_s - (time.perf_counter() - start)
    if left < last:
      write({"config": name, "batch": int(batch), "skipped": f"{left:.0f} s left of --budget_s"})
      continue
    t = time.perf_counter()
    try:
      row = bench_step(name, FLAGS.steps, int(batch), model_overrides=overrides)
    except Exception as e:  # pylint: disable=broad-except  # the row says why; the next one runs
      row = {"config": name, "batch": int(batch),
             "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"}
    else:
      row["mfu"] = row["achieved_GFLOPs"] * 1e9 / peak
      if name == "vit_b16_bert_base":
        base_step[row["batch"]] = row["step_s"]
      elif row["batch"] in base_step:
        row["overhead_vs_dual_encoder"] = row["step_s"] / base_step[row["batch"]] - 1
    last = time.perf_counter() - t
    write(row | {"row_s": last, **overrides})
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
