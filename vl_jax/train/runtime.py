"""How the train loop keeps the devices busy and still never saves a bad state: steps dispatched
ahead of the host, finiteness verified on the host only where it matters, the train step compiled
once (timed, through the persistent compilation cache), XLA's CPU scheduler set for memory, and
an optional profiler trace."""

import ctypes
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import tempfile
import time

import jax
from absl import logging
from etils import epath

from input_pipeline import files
from vl_jax.errors import NonFiniteLossError

COMPILATION_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "vl_jax", "jax_compilation")


# XLA's CPU scheduler by default orders a program for concurrent kernels, which keeps more
# temporaries alive at once: at base size, batch 2, 2.69 GiB of them against 1.79 GiB ordered for
# memory, and a step that is no slower on 2 cores (docs/PERFORMANCE.md).
_CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def prepare_cpu_backend() -> bool:
  """When JAX will run on the CPU (JAX_PLATFORMS=cpu, or no accelerator plugin installed), has
  XLA order its programs for memory (_CPU_SCHEDULER_FLAG, added to XLA_FLAGS unless the user set
  that flag there). Must run before JAX starts its backend, when XLA reads its flags: the CLIs and
  the step benchmarks call it first. Returns whether it applied."""
  platforms = (jax.config.jax_platforms or "").split(",")
  accelerators = (importlib.metadata.entry_points(group="jax_plugins")
                  or importlib.util.find_spec("libtpu"))
  if platforms != ["cpu"] and (platforms != [""] or accelerators):
    return False
  xla_flags = os.environ.get("XLA_FLAGS", "")
  if _CPU_SCHEDULER_FLAG.split("=")[0] not in xla_flags:
    os.environ["XLA_FLAGS"] = f"{xla_flags} {_CPU_SCHEDULER_FLAG}".strip()
  return True


def release_freed_host_memory() -> None:
  """Gives the memory free in glibc's heap back to the kernel: after a compilation, its working
  memory (0.55 GiB for the base-size step on CPU), which the process would otherwise keep."""
  if platform.libc_ver()[0] == "glibc":
    ctypes.CDLL(None).malloc_trim(0)


def use_compilation_cache(path: str) -> None:
  """config.compilation_cache_dir: "" the default (JAX_COMPILATION_CACHE_DIR if set, else
  COMPILATION_CACHE), "off" none, else that directory. A rerun, a resume or eval.py then loads
  the compiled train step and evaluators instead of compiling them again."""
  if path == "off":
    jax.config.update("jax_enable_compilation_cache", False)
    return
  if path or not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", path or COMPILATION_CACHE)


def steps_in_flight(requested: int, mesh) -> int:
  """config.steps_in_flight, except 1 on CPU devices of a mesh of several: collectives of two
  programs in flight at once on fake CPU devices that share the host's cores can deadlock."""
  if requested > 1 and mesh.devices.size > 1 and mesh.devices.flat[0].platform == "cpu":
    logging.info("config.steps_in_flight=%d: 1 on a mesh of %d CPU devices", requested,
                 mesh.devices.size)
    return 1
  return requested


def last_good(ckpt, workdir: str) -> str:
  """Names the newest checkpoint written (every saved state was verified before its save)."""
  ckpt.confirm()
  step = ckpt.latest_step()
  if step is None:
    return f"No checkpoint was written before it in {workdir}."
  return f"The last good checkpoint is step {step} in {workdir}."


class Unverified:
  """The steps whose finiteness the host has not seen yet. Each step computes, on the devices,
  whether its loss, gradients and new state are finite (train/step.py); `check` fetches those
  flags together, at log steps and before a checkpoint is written or an evaluator runs, and stops
  the run at the first bad step, naming it and the last good checkpoint."""

  def __init__(self, ckpt, workdir: str):
    self._ckpt, self._workdir, self._steps = ckpt, workdir, []

  def add(self, step: int, metrics) -> None:
    self._steps.append((step, metrics["finite"], metrics["loss"]))

  def check(self) -> None:
    steps, self._steps = self._steps, []
    for (step, _, loss), finite in zip(steps, jax.device_get([f for _, f, _ in steps])):
      if not finite:
        raise NonFiniteLossError(
            f"non-finite loss, gradient or state at step {step} (loss={float(loss)}); "
            f"stopping. {last_good(self._ckpt, self._workdir)}")


def compile_step(train_step, state, batch, step: int):
  """The train step compiled for `state` and `batch`, the compile time logged; the compiler's
  working memory goes back to the host."""
  logging.info("compiling the train step (seconds for the tiny config, minutes at base size; "
               "the compilation cache makes a rerun's fast)")
  start = time.perf_counter()
  compiled = train_step.lower(state, batch).compile()
  logging.info("compiled the train step in %.1f s; running step %d", time.perf_counter() - start,
               step)
  release_freed_host_memory()
  return compiled


class Profile:
  """A JAX profiler trace of `num_steps` steps from `first` on, in `workdir`/profile (TensorBoard's
  profile plugin or Perfetto read it); num_steps 0: none. A workdir elsewhere than on a local disk
  gets the trace copied there when it ends."""

  def __init__(self, workdir: str, first: int, num_steps: int):
    self.dir, self.first, self.last = epath.Path(workdir) / "profile", first, first + num_steps - 1
    self._tracing, self._local = False, None

  def before(self, step: int) -> None:
    if step == self.first and self.last >= self.first:
      self._local = self.dir if files.is_local(self.dir) else epath.Path(tempfile.mkdtemp())
      jax.profiler.start_trace(os.fspath(self._local))
      self._tracing = True

  def after(self, step: int, metrics) -> None:
    if self._tracing and step == self.last:
      jax.block_until_ready(metrics)
      self.close()
      logging.info("wrote a profile of steps %d-%d to %s", self.first, self.last, self.dir)

  def close(self) -> None:
    if self._tracing:
      self._tracing = False
      jax.profiler.stop_trace()
      if self._local != self.dir:
        files.copy_folder(self._local, self.dir)
        shutil.rmtree(self._local)
