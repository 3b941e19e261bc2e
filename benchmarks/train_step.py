r"""Train-step speed: steps/s, clips/s and achieved FLOP/s against the matmul peak of this machine.

    python benchmarks/train_step.py [--configs tiny,vit_b16_bert_base] [--out results.json]

The FLOP count of a step (forward, backward and optimizer update) is XLA's own cost analysis of the
compiled step; the peak is the best rate of a large float32 matmul measured in the same run. Inputs
are random uint8 frames and token ids on the config's mesh (all local devices by default).
"""

import argparse
import importlib
import json
import os
import platform
import sys
import time

# Python puts this script's folder first on the path, where benchmarks/input_pipeline.py would
# shadow the input_pipeline package: the repository root takes its place.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import matmul_peak  # noqa: E402
from vl_jax.models import dual_encoder  # noqa: E402
from vl_jax.train import mesh as mesh_lib, state as state_lib, step as step_lib  # noqa: E402

BATCH_SIZES = {"tiny": None, "vit_b16_bert_base": 2}  # None: the config's own batch size
VOCAB_SIZES = {"tiny": 128, "vit_b16_bert_base": 30522}


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def bench_config(name: str, steps: int) -> dict:
  config = importlib.import_module(f"configs.{name}").get_config()
  batch = BATCH_SIZES[name] or config.batch_size
  mesh = mesh_lib.make_mesh(config.mesh)
  mesh_lib.check_batch_size(batch, mesh, "--batch")
  model = dual_encoder.build(config.model, config.data, VOCAB_SIZES[name])
  tx, schedule = state_lib.make_optimizer(config.optimizer, config.total_steps)
  state, shardings = state_lib.create(model, tx, config.data, mesh, seed=0)
  rng = np.random.default_rng(0)
  d = config.data
  host = {"frames": rng.integers(0, 256, (batch, d.num_frames, d.image_size, d.image_size, 3),
                                 dtype=np.uint8),
          "tokens": rng.integers(4, VOCAB_SIZES[name], (batch, d.max_text_len)).astype(np.int32)}
  inputs = mesh_lib.global_batch(host, mesh)
  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(model, tx, schedule, config.objectives), shardings,
      mesh_lib.batch_sharding(mesh))
  t = time.perf_counter()
  compiled = train_step.lower(state, inputs).compile()
  compile_s = time.perf_counter() - t
  flops = _flops(compiled)
  state, metrics = compiled(state, inputs)  # warm-up
  jax.block_until_ready(metrics)
  t = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, inputs)
    jax.block_until_ready(metrics)
  step_s = (time.perf_counter() - t) / steps
  params = sum(x.size for x in jax.tree.leaves(state.params))
  return {"config": name, "batch": batch, "frames": f"{d.num_frames}x{d.image_size}^2",
          "params_M": params / 1e6, "compile_s": compile_s, "step_s": step_s,
          "steps_per_s": 1 / step_s, "clips_per_s": batch / step_s,
          "step_GFLOP": flops / 1e9, "achieved_GFLOPs": flops / step_s / 1e9}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--configs", default="tiny,vit_b16_bert_base")
  p.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 tiny, 3 others)")
  p.add_argument("--out", default="benchmarks/train_step_results.json")
  args = p.parse_args()
  peak = matmul_peak()
  rows = []
  for name in args.configs.split(","):
    row = bench_config(name, args.steps or (20 if name == "tiny" else 3))
    row["fraction_of_matmul_peak"] = row["achieved_GFLOPs"] * 1e9 / peak
    rows.append(row)
  machine = {"platform": platform.platform(), "processor": platform.processor(),
             "devices": [str(d) for d in jax.devices()], "jax": jax.__version__,
             "matmul_peak_GFLOPs": peak / 1e9}
  print(f"matmul peak (float32 2048^3): {peak / 1e9:.1f} GFLOP/s on {jax.devices()[0].platform}")
  cols = ["config", "batch", "frames", "params_M", "steps_per_s", "clips_per_s", "step_GFLOP",
          "achieved_GFLOPs", "fraction_of_matmul_peak", "compile_s"]
  print(" | ".join(cols))
  for r in rows:
    print(" | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols))
  with open(args.out, "w") as f:
    json.dump({"machine": machine, "results": rows}, f, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
