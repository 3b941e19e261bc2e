"""Ahead-of-time compilation for a topology: per-device memory from the sharded layout, and the
command's verdict."""

import json
import os
import subprocess
import sys

import jax

from configs import tiny
from vl_jax import sharding
from vl_jax.models import builder
from vl_jax.train import aot, state as state_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_fsdp_divides_the_state_each_device_holds():
  """On the 8 fake devices, with nothing allocated: the train state's bytes per device (params,
  two Adam moments) fall by the fsdp factor for the split kernels; the batch's stay 1/8."""
  reports = {}
  for fsdp in (1, 4):
    config = tiny.get_config()
    config.mesh.fsdp = fsdp
    mesh = sharding.make_mesh(config.mesh)
    compiled = aot.compile_train_step(config, mesh, 128, 64)
    reports[fsdp] = aot.memory_report(compiled, 16)
  model = builder.build(config.model, config.data, 128)
  params = sum(x.size for x in jax.tree.leaves(state_lib.abstract_params(model, config, mesh)))
  state_bytes = 3 * 4 * params  # params and two moments, float32
  saved = (reports[1]["arguments_GiB"] - reports[4]["arguments_GiB"]) * aot.GiB
  # Nearly all the parameters are kernels and embeddings, split 4 ways: 3/4 of their bytes go.
  assert 0.6 * state_bytes < saved < 0.75 * state_bytes, (saved, state_bytes)
  assert reports[1]["fits"] and reports[4]["fits"]
  assert not aot.memory_report(compiled, 0.01)["fits"]


def test_a_tpu_target_is_compiled_by_the_tpu_compiler(tmp_path):
  """With libtpu (the test extra installs it), a v5e slice's topology on this CPU-only machine:
  the TPU compiler's memory analysis, against the v5e's 16 GiB, and its refusal of a program
  that exceeds them."""
  command = [sys.executable, "launch/aot_check.py", "--config", "configs/tiny.py", "--target",
             "v5e-8", "--batch", "64", f"--out={tmp_path}/r.json"]
  out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  with open(tmp_path / "r.json") as f:
    report = json.load(f)
  assert report["compiler"] == "TPU v5 lite" and report["devices"] == 8
  assert report["mesh"] == {"data": 8, "fsdp": 1} and report["capacity_GiB"] == 16
  assert 0 < report["total_GiB"] < 1 and report["fits"]
  # 8,192 clips a chip: the TPU compiler refuses the program, and that is the verdict, in a line.
  command[command.index("--batch") + 1] = "65536"
  out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
  assert "does NOT fit: RESOURCE_EXHAUSTED: Ran out of memory on HBM" in out.stdout
  with open(tmp_path / "r.json") as f:
    report = json.load(f)
  assert not report["fits"] and "exceeds available HBM" in report["compiler_error"]


def test_aot_check_command_reports_and_exits_on_the_verdict(tmp_path):
  command = [sys.executable, "launch/aot_check.py", "--config", "configs/tiny.py",
             "--devices", "2", "--config.mesh.fsdp=2", "--batch", "16"]
  fits = subprocess.run(command + ["--memory_gib", "16", f"--out={tmp_path}/r.json"], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert fits.returncode == 0, fits.stderr[-2000:]
  assert "fits: " in fits.stdout and "mesh {'data': 1, 'fsdp': 2}" in fits.stdout
  assert "compiler CPU stand-in" in fits.stdout
  assert os.path.exists(tmp_path / "r.json")
  bad = subprocess.run(command + ["--memory_gib", "0.001"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert bad.returncode == 1 and "does NOT fit" in bad.stdout
  neither = subprocess.run(command[:4], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert neither.returncode == 1 and "give --target, or --devices and --memory_gib" in (
      neither.stderr)
