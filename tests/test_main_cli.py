"""main.py reports bad input in one line that names the field or path, before compiling anything."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, *overrides):
  cmd = [sys.executable, "main.py", "--config", "configs/tiny.py", "--workdir",
         str(tmp_path / "work"), *overrides]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("override, message", [
    ("--config.nosuchfield=1", "--config.nosuchfield: the config has no field 'nosuchfield'"),
    ("--config.model.video.nosuch=3", "--config.model.video.nosuch: the config has no field"),
    ("--config.batch_size=abc", "flag --config.batch_size=abc: invalid literal for int()"),
])
def test_bad_config_fields_fail_in_one_line(tmp_path, override, message):
  result = _run(tmp_path, override)
  assert result.returncode != 0
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert message in lines[0], result.stderr
  assert "Traceback" not in result.stderr


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
