"""Two processes on localhost (launch/local.py, one CPU device each) train the tiny config: the same
run as one process, disjoint data, killed and resumed, and a checkpoint restored in one process;
when a process joins a run."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from flax.traverse_util import flatten_dict

from input_pipeline.errors import ConfigError
from tests.helpers import tiny_config
from vl_jax import sharding
from vl_jax.train import checkpoint, distributed, loop, state as state_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, KILL_AT, EVERY = 8, 5, 3
OVERRIDES = {"batch_size": 8, "total_steps": STEPS, "optimizer.warmup_steps": 2,
             "checkpoint.every_steps": EVERY, "checkpoint.use_async": False,
             "log_every_steps": 1}
# launch/local.py's own limit, and a hard one above it in case the launcher itself hangs.
TIMEOUT_S = 240


def _launch(data_dir, workdir, out, kill_at=None, processes=2, devices_per_process=1,
            kill_only=None):
  flags = [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
  command = [sys.executable, "launch/local.py", "--processes", str(processes),
             "--devices_per_process", str(devices_per_process), "--timeout", str(TIMEOUT_S), "--",
             sys.executable, "-m", "tests.multiprocess_worker", "--config", "configs/tiny.py",
             f"--config.data.dir={data_dir}", "--config.data.num_threads=1", *flags,
             f"--workdir={workdir}", f"--out={out}"]
  if kill_at:
    command.append(f"--kill_at_step={kill_at}")
  if kill_only is not None:
    command.append(f"--kill_only={kill_only}")
  return subprocess.run(["timeout", "-s", "KILL", str(TIMEOUT_S + 30), *command], cwd=ROOT,
                        capture_output=True, text=True)


def _clips(out, process):
  """{step: clip ids} of a process's record; a step trained twice (after the kill) keeps its
  last reading."""
  with open(os.path.join(out, f"clips_{process}.jsonl")) as f:
    return {r["step"]: r["clips"] for r in map(json.loads, f)}


def test_two_processes_train_as_one_and_resume_after_a_kill(synthetic_dir, tmp_path):
  workdir, out = tmp_path / "run", tmp_path / "records"
  killed = _launch(synthetic_dir, workdir, out, kill_at=KILL_AT)
  assert killed.returncode != 0, killed.stdout[-3000:]
  assert [max(_clips(out, p)) for p in (0, 1)] == [KILL_AT, KILL_AT], killed.stdout[-3000:]
  assert not os.path.exists(out / "params_0.npz")
  assert sorted(os.listdir(workdir / "checkpoints")) == [str(EVERY)]
  resumed = _launch(synthetic_dir, workdir, out)
  assert resumed.returncode == 0, resumed.stdout[-3000:]
  assert f"resuming from step {EVERY}" in resumed.stdout

  # The reference: one process with the same global batch, on two devices so that the gradient
  # reductions are the same sums (on one device the attention key biases, whose true gradient is
  # 0, drift by Adam-normalised rounding noise: docs/SCALING.md).
  single = _launch(synthetic_dir, tmp_path / "single", tmp_path / "single_records", processes=1,
                   devices_per_process=2)
  assert single.returncode == 0, single.stdout[-3000:]
  want = dict(np.load(tmp_path / "single_records" / "params_0.npz"))
  seen = _clips(tmp_path / "single_records", 0)

  two = [dict(np.load(out / f"params_{p}.npz")) for p in (0, 1)]
  assert two[0].keys() == two[1].keys() == want.keys()
  for name in want:
    np.testing.assert_array_equal(two[0][name], two[1][name], err_msg=name)
    np.testing.assert_allclose(two[0][name], want[name], rtol=0, atol=1e-5, err_msg=name)

  # Disjoint halves of every global batch, in process order, whose union is the 1-process batch.
  clips = [_clips(out, p) for p in (0, 1)]
  assert sorted(clips[0]) == sorted(clips[1]) == list(range(1, STEPS + 1))
  for step in range(1, STEPS + 1):
    assert clips[0][step] + clips[1][step] == seen[step], step

  # The checkpoint the two processes wrote, restored by this one process on its 8 devices.
  config = tiny_config(synthetic_dir, **OVERRIDES)
  mesh = sharding.make_mesh(config.mesh)
  _, _, model = loop.setup(config, str(workdir))
  ckpt = checkpoint.Checkpointer(str(workdir / "checkpoints"), EVERY, 3, use_async=False)
  try:
    restored = ckpt.restore_params(STEPS, state_lib.abstract_params(model, config, mesh))
  finally:
    ckpt.close()
  for name, value in flatten_dict(jax.device_get(restored), sep="/").items():
    np.testing.assert_array_equal(value, two[0][name], err_msg=name)


def test_one_process_killed_is_named_and_the_other_stops_in_one_line(synthetic_dir, tmp_path):
  """Process 1 SIGKILLed mid-run: the launcher names it and the signal (exit status 128 + 9),
  and process 0, whose collective with it fails, ends with one line instead of a traceback."""
  out = _launch(synthetic_dir, tmp_path / "run", tmp_path / "records", kill_at=KILL_AT,
                kill_only=1)
  lines = out.stdout.strip().splitlines()
  assert out.returncode == 137, out.stdout[-3000:]
  assert lines[-1] == "launch/local.py: process 1 was killed by SIGKILL; the other processes " \
                      "were stopped"
  assert "Traceback" not in out.stdout
  survivor = [l for l in lines if l.startswith("[0] error:")]
  assert len(survivor) == 1 and "a collective with the other processes failed" in survivor[0]


def test_when_a_process_joins_a_run(monkeypatch):
  """`--distributed=auto` joins on coordinator flags or a multi-process environment; flags that
  contradict each other are one-line errors. (jax.distributed.initialize itself is the recorder
  here; the test above joins for real.)"""
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES"):
    monkeypatch.delenv(name, raising=False)
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  distributed.initialize()
  monkeypatch.setenv("SLURM_NTASKS", "1")
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "worker-0")
  distributed.initialize()
  assert calls == []  # one process: nothing to join
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "worker-0,worker-1")
  distributed.initialize()
  monkeypatch.delenv("TPU_WORKER_HOSTNAMES")
  monkeypatch.setenv("SLURM_NTASKS", "16")
  with flagsaver.flagsaver(local_device_ids=["0", "1", "2", "3"]):
    distributed.initialize()
  with flagsaver.flagsaver(distributed="off"):
    distributed.initialize()
  monkeypatch.delenv("SLURM_NTASKS")
  with flagsaver.flagsaver(coordinator_address="h:1", num_processes=2, process_id=1):
    distributed.initialize()
  assert calls == [{"local_device_ids": None}, {"local_device_ids": [0, 1, 2, 3]},
                   {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1,
                    "local_device_ids": None}]
  with flagsaver.flagsaver(coordinator_address="h:1"), pytest.raises(
      ConfigError, match="--coordinator_address needs --num_processes and --process_id too"):
    distributed.initialize()
  with flagsaver.flagsaver(distributed="off", coordinator_address="h:1", num_processes=2,
                           process_id=0), pytest.raises(ConfigError, match="contradicts"):
    distributed.initialize()
  with flagsaver.flagsaver(distributed="on", local_device_ids=["a"]), pytest.raises(
      ConfigError, match=r"--local_device_ids=a: expected integers"):
    distributed.initialize()
