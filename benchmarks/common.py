"""What the benchmarks share: timing, the matmul peak of this machine, a timed train step."""

import importlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from input_pipeline import pipeline
from vl_jax import sharding
from vl_jax.models import builder
from vl_jax.train import aot, runtime, state as state_lib, step as step_lib

# Token ids of the random inputs: a synthetic-size vocabulary, and BERT's at base size.
VOCAB_SIZES = {"tiny": 128, "taco_tiny": 128, "miles_tiny": 128, "coco_tiny": 128,
               "clop_tiny": 128, "vit_b16_bert_base": 30522, "taco_howto100m": 30522,
               "miles_webvid_cc3m": 30522, "coco_bert": 30522, "clop": 30522}


def best_time(fn, repeats: int) -> float:
  """Best wall time of `repeats` calls of `fn` (each blocks on its result)."""
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t)
  return best


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
  """FLOP/s of the best of `repeats` float32 n x n matmuls on the default device."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  return 2 * n ** 3 / best_time(lambda: f(a).block_until_ready(), repeats)


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def bench_step(name: str, steps: int, batch: int | None, frames: int | None = None,
               model_overrides: dict | None = None) -> dict:
  """The train step of config `name` ("module[:arg]" of configs/) timed over `steps` steps on
  random inputs of global batch `batch` (None: the config's) and `frames` frames (None: the
  config's); `model_overrides` replace fields of config.model (dtype, attention, ...)."""
  module, _, arg = name.partition(":")
  config = importlib.import_module(f"configs.{module}").get_config(arg or None)
  config.model.update(model_overrides or {})
  batch = batch or config.batch_size
  if frames:
    config.data.num_frames = frames
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_batch_size(batch, mesh, "--batch")
  model = builder.build(config.model, config.data, VOCAB_SIZES[module])
  tx, schedule = state_lib.make_optimizer(config.optimizer, config.total_steps)
  state, shardings = state_lib.create(model, tx, config, mesh)
  d = config.data
  host = aot.example_batch(d, batch, VOCAB_SIZES[module], np.random.default_rng(0))
  inputs = pipeline.to_devices(host, sharding.batch_sharding(mesh))
  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(model, tx, schedule, config, mesh), shardings,
      sharding.batch_sharding(mesh))
  t = time.perf_counter()
  compiled = runtime.compile_step(train_step, state, inputs, 0)
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
          "memory_GiB": aot.device_bytes(compiled) / aot.GiB,
          "steps_per_s": 1 / step_s, "clips_per_s": batch / step_s,
          "step_GFLOP": flops / 1e9, "achieved_GFLOPs": flops / step_s / 1e9}
