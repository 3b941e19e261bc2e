r"""Retrieval evaluation at scale: N captions x N clips ranked in blocks, time and peak memory.

    python benchmarks/retrieval_eval.py [--n 100000] [--dim 256] [--block 4096] [--out results.json]

Random unit embeddings (each caption near its clip) are ranked both ways by
`vl_jax.evaluators.ranking`; the FLOPs are those of the two N x N x dim similarity matmuls, and the
peak is the best rate of a 2048^3 float32 matmul measured in the same run. Peak memory is the
process's maximum resident set size.
"""

import json
import os
import platform
import resource
import sys
import time

# Python puts this script's folder first on the path, where benchmarks/input_pipeline.py would
# shadow the input_pipeline package: the repository root takes its place.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from absl import app, flags

from benchmarks.common import matmul_peak
from vl_jax.evaluators import ranking

FLAGS = flags.FLAGS
flags.DEFINE_integer("n", 100_000, "clips (and captions)")
flags.DEFINE_integer("dim", 256, "embedding width")
flags.DEFINE_integer("block", ranking.DEFAULT_BLOCK, "queries per similarity block")
flags.DEFINE_string("out", "benchmarks/retrieval_eval_results.json", "the JSON to write")


def main(argv):
  del argv
  peak = matmul_peak()
  rng = np.random.default_rng(0)
  video = rng.standard_normal((FLAGS.n, FLAGS.dim), np.float32)
  video /= np.linalg.norm(video, axis=1, keepdims=True)
  text = video + rng.standard_normal((FLAGS.n, FLAGS.dim), np.float32)
  text /= np.linalg.norm(text, axis=1, keepdims=True)
  ranking.retrieval_ranks(text[:FLAGS.block], video[:FLAGS.block], np.arange(FLAGS.block),
                          FLAGS.block)  # compiles the block
  t = time.perf_counter()
  t2v, v2t = ranking.retrieval_ranks(text, video, np.arange(FLAGS.n), FLAGS.block)
  seconds = time.perf_counter() - t
  flops = 2 * 2 * FLAGS.n ** 2 * FLAGS.dim
  row = {"n": FLAGS.n, "dim": FLAGS.dim, "block": FLAGS.block, "seconds": seconds,
         "achieved_GFLOPs": flops / seconds / 1e9,
         "fraction_of_matmul_peak": flops / seconds / peak,
         "peak_rss_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
         "t2v_R@1": float(np.mean(t2v == 0) * 100), "v2t_R@1": float(np.mean(v2t == 0) * 100)}
  machine = {"platform": platform.platform(), "processor": platform.processor(),
             "cpu_count": os.cpu_count(), "matmul_peak_GFLOPs": peak / 1e9}
  print(f"matmul peak (float32 2048^3): {peak / 1e9:.1f} GFLOP/s")
  print(" | ".join(row))
  print(" | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()))
  with open(FLAGS.out, "w") as f:
    json.dump({"machine": machine, "results": [row]}, f, indent=2)
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
