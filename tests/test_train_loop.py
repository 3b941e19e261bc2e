"""The train loop: exact resume, non-finite losses and states, bad checkpoints skipped, metrics
without duplicates, re-running a finished run, a failed save."""

import json
import os
import platform
import shutil
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from tests.helpers import tiny_config
from vl_jax.errors import NonFiniteLossError
from vl_jax import sharding
from vl_jax.train import checkpoint, loop, metrics as metrics_lib, runtime, state as state_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEPS = 8


def _config(data_dir, **overrides):
  # On all 8 fake devices: checkpoints are written and restored sharded.
  return tiny_config(data_dir, **{"batch_size": 16, "total_steps": STEPS, "log_every_steps": 2,
                                  "checkpoint.every_steps": STEPS // 2, "evals": {},
                                  "optimizer.warmup_steps": 2,
                                  **overrides})


def _recorder(seen, stop_at=None):
  def on_step(step, host):
    seen.append((step, list(host["clip_id"])))
    return step == stop_at
  return on_step


def test_resume_equals_uninterrupted(synthetic_dir, tmp_path):
  config = _config(synthetic_dir)
  seen_full, seen_split = [], []
  full, _ = loop.train_and_evaluate(config, str(tmp_path / "full"), _recorder(seen_full))

  half, _ = loop.train_and_evaluate(config, str(tmp_path / "split"),
                                    _recorder(seen_split, stop_at=STEPS // 2))
  assert int(half.step) == STEPS // 2
  resumed, _ = loop.train_and_evaluate(config, str(tmp_path / "split"), _recorder(seen_split))

  assert [s for s, _ in seen_split] == list(range(1, STEPS + 1))
  assert seen_split == seen_full  # the identical sequence of clip ids
  assert int(resumed.step) == int(full.step) == STEPS
  for a, b in zip(jax.tree.leaves(jax.device_get(resumed.params)),
                  jax.tree.leaves(jax.device_get(full.params))):
    np.testing.assert_array_equal(a, b)

  # Running the finished run again resumes at its end and trains no further step.
  seen_again = []
  again, _ = loop.train_and_evaluate(config, str(tmp_path / "full"), _recorder(seen_again))
  assert seen_again == [] and int(again.step) == STEPS


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(synthetic_dir, tmp_path):
  workdir = str(tmp_path / "run")
  good, _ = loop.train_and_evaluate(_config(synthetic_dir, total_steps=STEPS // 2), workdir)
  good_params = jax.device_get(good.params)

  bad = _config(synthetic_dir, **{"objectives.contrastive.weight": float("nan")})
  with pytest.raises(NonFiniteLossError,
                     match=rf"at step {STEPS // 2 + 1} .*The last good checkpoint is step "
                           rf"{STEPS // 2} in"):
    loop.train_and_evaluate(bad, workdir)

  # The checkpoint is intact: resuming with a sane config restores exactly the good parameters.
  restored, _ = loop.train_and_evaluate(_config(synthetic_dir, total_steps=STEPS // 2), workdir)
  for a, b in zip(jax.tree.leaves(jax.device_get(restored.params)), jax.tree.leaves(good_params)):
    np.testing.assert_array_equal(a, b)


def _train_rows(workdir):
  """metrics.jsonl's train rows without the timing ones."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in r.items() if k.startswith("train/") and "per_s" not in k}
            for r in map(json.loads, f) if "train/loss" in r]


def test_steps_in_flight_give_the_synchronous_loop_s_run_and_a_nan_still_stops_it(
    synthetic_dir, tmp_path):
  """On one device the host runs 3 steps ahead and fetches metrics at log steps only: the same
  metrics and parameters as the loop that waits for every step, a profile of the steps asked
  for, a resumed run equal to the uninterrupted one, and a NaN at a step that is neither logged
  nor saved still stops the run before the next save, naming that step."""
  one = {"mesh.data": 1, "log_every_steps": 3}
  sync, _ = loop.train_and_evaluate(_config(synthetic_dir, steps_in_flight=1, **one),
                                    str(tmp_path / "sync"))
  ahead, _ = loop.train_and_evaluate(_config(synthetic_dir, steps_in_flight=3, profile_steps=2,
                                             **one), str(tmp_path / "ahead"))
  assert _train_rows(str(tmp_path / "ahead")) == _train_rows(str(tmp_path / "sync"))
  assert [r["train/loss"] for r in _train_rows(str(tmp_path / "sync"))]  # steps 3, 6, 8
  for a, b in zip(jax.tree.leaves(jax.device_get(ahead.params)),
                  jax.tree.leaves(jax.device_get(sync.params))):
    np.testing.assert_array_equal(a, b)
  traces = [f for _, _, files in os.walk(tmp_path / "ahead" / "profile") for f in files]
  assert any(f.endswith(".xplane.pb") for f in traces), traces
  # Stopped and resumed with steps in flight: the uninterrupted run's parameters, bit for bit.
  split = str(tmp_path / "split")
  loop.train_and_evaluate(_config(synthetic_dir, steps_in_flight=3, **one), split,
                          _recorder([], stop_at=STEPS // 2))
  resumed, _ = loop.train_and_evaluate(_config(synthetic_dir, steps_in_flight=3, **one), split)
  for a, b in zip(jax.tree.leaves(jax.device_get(resumed.params)),
                  jax.tree.leaves(jax.device_get(ahead.params))):
    np.testing.assert_array_equal(a, b)

  workdir = str(tmp_path / "nan")
  loop.train_and_evaluate(_config(synthetic_dir, total_steps=STEPS // 2, **one), workdir)
  bad = _config(synthetic_dir, steps_in_flight=3, **one,
                **{"objectives.contrastive.weight": float("nan")})
  with pytest.raises(NonFiniteLossError, match=rf"at step {STEPS // 2 + 1} .*The last good "
                                               rf"checkpoint is step {STEPS // 2} in"):
    loop.train_and_evaluate(bad, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == [str(STEPS // 2)]


def test_several_cpu_devices_wait_for_every_step():
  """Collectives of two steps in flight on fake CPU devices can deadlock: one step at a time."""
  assert runtime.steps_in_flight(2, sharding.make_mesh(ml_collections.ConfigDict(
      dict(data=-1, fsdp=1)))) == 1
  assert runtime.steps_in_flight(2, sharding.make_mesh(ml_collections.ConfigDict(
      dict(data=1, fsdp=1)))) == 2


# Runs in a fresh process (XLA reads its flags when the backend starts): whether
# prepare_cpu_backend applied, and the temporaries XLA assigns a program whose eight products
# could all be alive at once.
_CPU_BACKEND_PROBE = """
import sys
import jax, jax.numpy as jnp
from vl_jax.train import runtime
applied = runtime.prepare_cpu_backend() if sys.argv[1] == "prepare" else None
x = jnp.ones((1024, 1024))
products = jax.jit(lambda x: sum(jnp.sin(x * i) @ jnp.cos(x * i) for i in range(8)))
print(applied, products.lower(x).compile().memory_analysis().temp_size_in_bytes)
"""


def _probe_cpu_backend(mode: str, platforms: str, xla_flags: str = "") -> tuple[str, int]:
  out = subprocess.run([sys.executable, "-c", _CPU_BACKEND_PROBE, mode], check=True, text=True,
                       capture_output=True, cwd=ROOT, timeout=300,
                       env={**os.environ, "JAX_PLATFORMS": platforms, "XLA_FLAGS": xla_flags})
  applied, temp = out.stdout.split()
  return applied, int(temp)


def test_a_cpu_backend_orders_programs_for_memory():
  """prepare_cpu_backend (main.py, eval.py and the step benchmarks call it first) has XLA keep
  fewer temporaries alive at once; the scheduler flag a user set stays theirs; on an accelerator
  nothing changes."""
  _, default_temp = _probe_cpu_backend("default", "cpu")
  applied, temp = _probe_cpu_backend("prepare", "cpu")
  assert applied == "True" and temp < 0.7 * default_temp
  user = "--xla_cpu_enable_concurrency_optimized_scheduler=true"
  assert _probe_cpu_backend("prepare", "cpu", user) == ("True", default_temp)
  unchanged = subprocess.run(
      [sys.executable, "-c", "import os; from vl_jax.train import runtime; "
       "print(runtime.prepare_cpu_backend(), repr(os.environ['XLA_FLAGS']))"],
      check=True, text=True, capture_output=True, cwd=ROOT, timeout=300,
      env={**os.environ, "JAX_PLATFORMS": "cuda", "XLA_FLAGS": ""}).stdout.split()
  assert unchanged == ["False", "''"]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's heap")
def test_freed_host_memory_goes_back_to_the_kernel():
  """What a compilation freed in the heap (here 512 MiB of 64 KiB blocks, with one block above
  them that keeps glibc from trimming the heap's top by itself) leaves the process's memory."""
  resident = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
  blocks = [bytearray(64 * 1024) for _ in range(8192)]
  top = bytearray(64 * 1024)
  del blocks
  before = resident()
  runtime.release_freed_host_memory()
  assert before - resident() > 256 * 2 ** 20
  del top


def _restore(workdir, step, config):
  """The state saved at `step`, on the host."""
  mesh, _, model = loop.setup(config, workdir)
  tx, _ = state_lib.make_optimizer(config.optimizer, config.total_steps)
  abstract, _ = state_lib.abstract_state(model, tx, config, mesh)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), 1, 10, use_async=False)
  try:
    return jax.device_get(ckpt.restore(step, abstract))
  finally:
    ckpt.close()


@pytest.mark.parametrize("lr", [3e38, 1e38])
def test_a_diverged_state_is_never_saved(synthetic_dir, tmp_path, lr):
  """lr 3e38 makes the updated parameters Inf; lr 1e38 keeps them finite but their activations
  overflow. Neither may reach a checkpoint; the checkpoint named as last good restores finite and
  scores finite embeddings."""
  workdir = str(tmp_path / "run")
  config = _config(synthetic_dir, **{"checkpoint.every_steps": 1, "optimizer.warmup_steps": 0})
  good, _ = loop.train_and_evaluate(_config(synthetic_dir, total_steps=2, **{
      "checkpoint.every_steps": 1, "optimizer.warmup_steps": 0}), workdir)
  diverging = _config(synthetic_dir, **{"checkpoint.every_steps": 1, "optimizer.warmup_steps": 0,
                                        "optimizer.lr": lr})
  with pytest.raises(NonFiniteLossError, match=r"step 3\b.*The last good checkpoint is step 2 "):
    loop.train_and_evaluate(diverging, workdir)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), 1, 10, use_async=False)
  assert ckpt.all_steps() == [1, 2]
  ckpt.close()
  restored = _restore(workdir, 2, config)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored))
  for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(jax.device_get(good.params))):
    np.testing.assert_array_equal(a, b)

  # With no checkpoint before the divergence, the message says so in a sentence.
  with pytest.raises(NonFiniteLossError, match=r"step 1\b.*No checkpoint was written before it"):
    loop.train_and_evaluate(diverging, str(tmp_path / "fresh"))


def _steps_of(workdir, prefix):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r["step"] for r in map(json.loads, f) if any(k.startswith(prefix) for k in r)]


def test_bad_checkpoints_are_skipped_and_metrics_not_repeated(synthetic_dir, tmp_path):
  """Checkpoints at 4 and 8 of an 8-step run. An empty step directory, a step whose data files
  are truncated and one that holds a NaN are each skipped with a line naming them and moved
  aside; the run resumes from the newest good one, re-executes the steps after it without
  writing their metrics twice, and ends where an uninterrupted run ends."""
  workdir = str(tmp_path / "run")
  config = _config(synthetic_dir, **{"evals": {"retrieval": tiny_config(
      synthetic_dir).evals.retrieval.to_dict() | {"every_steps": 4, "batch_size": 16}}})
  full, _ = loop.train_and_evaluate(config, workdir)
  ckpts = os.path.join(workdir, "checkpoints")
  # A NaN state as step 12, written as a run would have (only the loop refuses to).
  nan = jax.tree.map(lambda x: x * np.nan if np.issubdtype(x.dtype, np.floating) else x,
                     _restore(workdir, 8, config))
  ckpt = checkpoint.Checkpointer(ckpts, 1, 10, use_async=False)
  ckpt.save(12, nan)
  ckpt.close()
  os.makedirs(os.path.join(ckpts, "16"))  # empty: killed as it was created
  # Step 8's array data truncated: the run resumes from 4.
  data = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(ckpts, "8")) for f in fs
          if os.path.getsize(os.path.join(d, f)) > 10_000]
  assert data
  for path in data:
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
  longer = _config(synthetic_dir, total_steps=STEPS + 2, **{"evals": {}})
  resumed, _ = loop.train_and_evaluate(longer, workdir)
  assert sorted(os.listdir(ckpts + ".skipped")) == ["12", "16", "8"]
  assert int(resumed.step) == STEPS + 2
  # Train rows at 2, 4 from the first run, 6, 8 re-executed once, then 10; retrieval at 4 and 8
  # of the first run dropped only after 4.
  assert _steps_of(workdir, "train/") == [2, 4, 6, 8, 10]
  assert _steps_of(workdir, "retrieval/") == [4]
  # TensorBoard, as its own reader shows the event files: the same steps, once each.
  events = event_accumulator.EventAccumulator(os.path.join(workdir, "tensorboard"),
                                              size_guidance={event_accumulator.SCALARS: 0})
  events.Reload()
  assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6, 8, 10]
  assert [e.step for e in events.Scalars("retrieval/t2v/R@1")] == [4]


def test_a_failed_save_stops_the_run(synthetic_dir, tmp_path):
  """Files capped at 64 KiB (RLIMIT_FSIZE: the write fails as on a full disk): the asynchronous
  save of step 8 fails, and the run stops with one line naming it; step 4 stays intact."""
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(_config(synthetic_dir, total_steps=STEPS // 2), workdir)
  script = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536)); "
            "sys.argv = sys.argv[1:]; runpy.run_path('main.py', run_name='__main__')")
  flags = ["--config.batch_size=16", f"--config.total_steps={STEPS}", "--config.evals={}",
           "--config.optimizer.warmup_steps=2", f"--config.checkpoint.every_steps={STEPS // 2}",
           f"--config.data.dir={synthetic_dir}", "--config.data.num_threads=1"]
  env = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE="false")
  out = subprocess.run([sys.executable, "-c", script, "main.py", "--config", "configs/tiny.py",
                        "--workdir", workdir, *flags], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 1, out.stderr[-3000:]
  # The last line is the run's (tensorstore's threads print their own tracebacks before it, and
  # may leave a line unfinished).
  last = out.stderr.strip().splitlines()[-1]
  assert f"error: the checkpoint of step {STEPS} was not written to " in last, last
  assert "OUT_OF_RANGE" in last and last.endswith("steps [4]")
  assert "vl_jax" not in out.stderr  # no traceback of the project's
  assert str(STEPS // 2) in os.listdir(os.path.join(workdir, "checkpoints"))
  assert str(STEPS) not in os.listdir(os.path.join(workdir, "checkpoints"))


def test_checkpoint_keep_holds_after_a_kill_between_a_save_and_its_cleanup(synthetic_dir, tmp_path):
  """keep=2: a kill after the final checkpoint's commit and before orbax removed the oldest (as
  during the final evaluation) leaves more; the rerun, which saves nothing, removes them."""
  workdir = str(tmp_path / "run")
  config = _config(synthetic_dir, total_steps=4, **{"checkpoint.every_steps": 1,
                                                    "checkpoint.keep": 2})
  loop.train_and_evaluate(config, workdir)
  ckpts = os.path.join(workdir, "checkpoints")
  assert sorted(os.listdir(ckpts)) == ["3", "4"]
  for step in ("1", "2"):  # what the kill left behind
    shutil.copytree(os.path.join(ckpts, "3"), os.path.join(ckpts, step))
  again, _ = loop.train_and_evaluate(config, workdir)
  assert int(again.step) == 4 and sorted(os.listdir(ckpts)) == ["3", "4"]


def test_a_warmup_as_long_as_the_run_is_shortened():
  """--config.total_steps=20 on a config warming up for 100: a tenth of the run instead."""
  config = tiny_config("unused")
  config.optimizer.warmup_steps = 100
  _, schedule = state_lib.make_optimizer(config.optimizer, 20)
  assert float(schedule(0)) == 0.0 and float(schedule(2)) == pytest.approx(config.optimizer.lr)
  assert float(schedule(1)) == pytest.approx(config.optimizer.lr / 2)


def test_rates_and_eta_start_after_the_compiled_first_step():
  """The first step's compilation (here 0.5 s of sleep) is no measure of the steps after it."""
  progress = metrics_lib.Progress(total_steps=100, batch_size=8)
  time.sleep(0.5)  # compiling
  assert progress.rates(1) == {}  # no timed step yet: the line has no rate and no ETA
  progress.start(1)
  time.sleep(0.05)
  rates = progress.rates(11)
  assert rates["steps_per_s"] > 10 / 0.3 and rates["clips_per_s"] == 8 * rates["steps_per_s"]
