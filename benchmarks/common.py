"""What the benchmarks share: timing and the matmul peak of this machine."""

import time

import jax
import jax.numpy as jnp
import numpy as np


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
