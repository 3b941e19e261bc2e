"""main.py reports bad input in one line that names the field or path, before compiling anything."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, *overrides, config="configs/tiny.py"):
  cmd = [sys.executable, "main.py", "--config", config, "--workdir", str(tmp_path / "work"),
         *overrides]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("override, message", [
    ("--config.nosuchfield=1", "--config.nosuchfield: the config has no field 'nosuchfield'"),
    ("--config.model.video.nosuch=3", "--config.model.video.nosuch: the config has no field"),
    ("--config.batch_size=abc", "flag --config.batch_size=abc: invalid literal for int()"),
    ("--config.batch_sizee=16", "error: --config.batch_sizee: the config has no field "
                                "'batch_sizee' (did you mean 'batch_size'?)"),
    ("--config.optimizer.lr=0", "error: config.optimizer.lr=0.0: must be a positive finite"),
    ("--config.optimizer.lr=-1e-3", "error: config.optimizer.lr=-0.001: must be a positive"),
    ("--config.log_every_steps=0", "error: config.log_every_steps=0: must be a positive integer"),
    ("--config.batch_size=0", "error: config.batch_size=0: must be a positive integer"),
    ("--config.checkpoint.every_steps=0", "error: config.checkpoint.every_steps=0: must be a"),
    ("--config.evals.retrieval.every_steps=0", "error: config.evals.retrieval.every_steps=0: "),
    ("--config.data.dir=/tmp/vl_jax_no_such_dir", "error: config.data.dir='/tmp/vl_jax_no_such_dir'"
                                                  ": no dataset there"),
])
def test_bad_config_fields_fail_in_one_line(tmp_path, override, message):
  result = _run(tmp_path, override)
  assert result.returncode != 0
  lines = [l for l in result.stderr.splitlines() if l.strip() and "main.py:" not in l]
  assert message in lines[0], result.stderr
  assert "Traceback" not in result.stderr and "Compiling" not in result.stderr
  assert "compiling" not in result.stderr
  assert not os.path.exists("/tmp/vl_jax_no_such_dir")


@pytest.mark.parametrize("config, message", [
    ("configs/nosuch.py", "No such file or directory: 'configs/nosuch.py'"),
    ("SYNTAX", "error: --config: "),
    ("configs/tiny.py:foo", "configs/tiny.py:foo: unknown setting 'foo'; known: none"),
    ("configs/taco_tiny.py:foo", "configs/taco_tiny.py:foo: unknown setting 'foo'; known: "
                                 "['clip', 'full', 'l1_l3', 'l1_l3_random']"),
    ("configs/taco_tiny.py:full,l1_l3", "l1_l3 and full exclude each other"),
    ("configs/clip4clip.py:size=huge", "configs/clip4clip.py:size=huge: size='huge'; one of "
                                       "('b16', 'tiny')"),
])
def test_bad_config_files_fail_in_one_line(tmp_path, config, message):
  if config == "SYNTAX":
    config = str(tmp_path / "broken.py")
    with open(config, "w") as f:
      f.write("def get_config(:\n")
  result = _run(tmp_path, config=config)
  assert result.returncode != 0
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and message in lines[0], result.stderr


def test_errors_found_at_setup_fail_in_one_line(tmp_path, synthetic_dir):
  # The tests' XLA_FLAGS (8 fake devices) reach the child process.
  result = _run(tmp_path, f"--config.data.dir={synthetic_dir}", "--config.batch_size=12")
  assert result.returncode != 0
  assert "error: config.batch_size=12 is not divisible by the 8 devices" in result.stderr
  assert "Traceback" not in result.stderr

  missing = tmp_path / "no_such_dataset"
  result = _run(tmp_path, f"--config.data.dir={missing}", "--config.data.name=webvid")
  assert result.returncode != 0
  assert f"error: config.data.dir='{missing}': no dataset there" in result.stderr
  assert not missing.exists()
