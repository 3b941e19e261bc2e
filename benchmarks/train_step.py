r"""Train-step speed and memory: steps/s, clips/s, achieved FLOP/s against the matmul peak of
this machine, and the compiled step's memory per device.

    python benchmarks/train_step.py [--configs tiny,miles_webvid_cc3m:contrastive,...]
        [--batches 1,2,4] [--frames 4,8,16,32] [--out F]

The FLOP count of a step (forward, backward and optimizer update) is XLA's own cost analysis of the
compiled step; the peak is the best rate of a large float32 matmul measured in the same run. The
memory is XLA's buffer assignment of the compiled step (state, batch, temporaries; per device).
Inputs are random uint8 frames, token ids, POS tags, idf and knowledge vectors on the config's mesh
(all local devices by default). Configs are `module[:arg]` of configs/. `--batches` and
`--frames` sweep the global batch size and the clip length of every config (default: BATCH_SIZES
and the config's frames). A method's config is timed against the plain dual encoder of its size
(BASELINES) at the same batch and frames: `overhead` is its extra time per step.
"""

import json
import os
import platform
import sys

# Python puts this script's folder first on the path, where benchmarks/input_pipeline.py would
# shadow the input_pipeline package: the repository root takes its place.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import jax
from absl import app, flags

from benchmarks.common import bench_step, matmul_peak
from vl_jax.train import runtime

# Configs as `module[:arg]`. The base size runs at the smallest batch that holds TACo's K' = 8
# negatives besides the positive, MILES's at 4: its step keeps the activations of two passes
# through the video tower, 27 GB at batch 10 on CPU. None: the config's own batch size.
BATCH_SIZES = {"tiny": None, "taco_tiny": None, "miles_tiny": None, "coco_tiny": None,
               "clop_tiny": None, "vit_b16_bert_base": 10, "taco_howto100m": 10,
               "miles_webvid_cc3m": 4, "coco_bert": 4, "clop": 10}
# MILES's base size is timed against its own dual encoder (a 6-layer text tower), masked modeling
# and snapshot left out.
# CoCo-BERT's are timed against their ":contrastive" variant: the same model with its decoder
# trained, the masked views, CoCo terms and proxies left out.
BASELINES = {"taco_tiny": "tiny", "miles_tiny": "tiny", "taco_howto100m": "vit_b16_bert_base",
             "miles_webvid_cc3m": "miles_webvid_cc3m:contrastive",
             "coco_tiny": "coco_tiny:contrastive", "coco_tiny:queue": "coco_tiny:contrastive",
             "coco_bert": "coco_bert:contrastive", "clop_tiny": "tiny",
             "clop_tiny:sample": "tiny", "clop": "vit_b16_bert_base"}
TIMED_STEPS = {"tiny": 20, "taco_tiny": 20, "miles_tiny": 20, "coco_tiny": 20,  # by module
               "clop_tiny": 20}  # others: 3


FLAGS = flags.FLAGS
flags.DEFINE_string("configs", "tiny,taco_tiny,miles_tiny,vit_b16_bert_base,taco_howto100m,"
                    "miles_webvid_cc3m:contrastive,miles_webvid_cc3m", "module[:arg] of configs/")
flags.DEFINE_integer("steps", None, "timed steps (default: TIMED_STEPS, else 3)")
flags.DEFINE_string("batches", "", "global batch sizes to sweep (default: BATCH_SIZES)")
flags.DEFINE_string("frames", "", "clip lengths to sweep (default: the config's)")
flags.DEFINE_string("out", "benchmarks/train_step_results.json", "the JSON to write")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "config.model.dtype (default: the "
                  "config's; the CPU rows of docs/PERFORMANCE.md use float32)")
flags.DEFINE_enum("attention", None, ["flax", "xla", "cudnn", "auto"], "config.model.attention")
flags.DEFINE_bool("scan_layers", None, "config.model.scan_layers")


def main(argv):
  del argv
  runtime.prepare_cpu_backend()  # as main.py does
  peak = matmul_peak()
  overrides = {k: FLAGS[k].value for k in ("dtype", "attention", "scan_layers")
               if FLAGS[k].value is not None}
  rows = []
  sweep = lambda text: [int(x) for x in text.split(",")] if text else [None]
  for name in FLAGS.configs.split(","):
    for batch in sweep(FLAGS.batches):
      for frames in sweep(FLAGS.frames):
        row = bench_step(name, FLAGS.steps or TIMED_STEPS.get(name.partition(":")[0], 3),
                         batch or BATCH_SIZES[name.partition(":")[0]], frames, overrides)
        row["fraction_of_matmul_peak"] = row["achieved_GFLOPs"] * 1e9 / peak
        rows.append(row)
  by_key = {(r["config"], r["batch"], r["frames"]): r for r in rows}
  for r in rows:
    base = by_key.get((BASELINES.get(r["config"]), r["batch"], r["frames"]))
    r["overhead"] = r["step_s"] / base["step_s"] - 1 if base else 0.0
  machine = {"platform": platform.platform(), "processor": platform.processor(),
             "devices": [str(d) for d in jax.devices()], "jax": jax.__version__,
             "matmul_peak_GFLOPs": peak / 1e9, "model_overrides": overrides}
  print(f"matmul peak (float32 2048^3): {peak / 1e9:.1f} GFLOP/s on {jax.devices()[0].platform}")
  cols = ["config", "batch", "frames", "params_M", "steps_per_s", "clips_per_s", "overhead",
          "step_GFLOP", "achieved_GFLOPs", "fraction_of_matmul_peak", "memory_GiB", "compile_s"]
  print(" | ".join(cols))
  for r in rows:
    print(" | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols))
  with open(FLAGS.out, "w") as f:
    json.dump({"machine": machine, "results": rows}, f, indent=2)
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
