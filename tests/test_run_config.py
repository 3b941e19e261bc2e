"""A workdir's recorded config: the default of later commands, changes refused, history kept."""

import json
import os
import subprocess
import sys

import pytest

from configs import tiny
from input_pipeline.errors import ConfigError
from tests.helpers import tiny_config
from vl_jax.train import run_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _recorded(tmp_path, **overrides):
  trained = tiny_config("/data/real", **overrides)
  run_config.record(str(tmp_path), trained, 0, "configs/tiny.py")
  return run_config.recorded(str(tmp_path))


def test_recorded_values_are_defaults_and_overrides_win(tmp_path):
  record = _recorded(tmp_path, **{"total_steps": 3000, "model.video.depth": 3,
                                  "evals": {}, "data.crop_scale": (0.5, 1.0)})
  config = run_config.with_defaults(tiny.get_config(), record, {"optimizer.lr": 5e-4})
  assert config.data.dir == "/data/real" and config.total_steps == 3000
  assert config.model.video.depth == 3 and dict(config.evals) == {}
  assert config.data.crop_scale == (0.5, 1.0)  # a tuple again, as the config file types it
  assert config.optimizer.lr == tiny.get_config().optimizer.lr  # not overridden: the record's
  given = tiny.get_config()
  given.optimizer.lr = 5e-4
  config = run_config.with_defaults(given, record, {"optimizer.lr": 5e-4})
  assert config.optimizer.lr == 5e-4 and config.data.dir == "/data/real"
  with pytest.raises(AttributeError):  # still locked against typos
    config.batch_sizee = 1


def test_a_changed_resume_is_refused_in_one_line_unless_accepted(tmp_path):
  _recorded(tmp_path)
  same = tiny_config("/data/real", **{"total_steps": 5, "data.num_threads": 4})
  run_config.check_resume(same, str(tmp_path), accept_change=False)  # schedule, threads: fine
  other = tiny_config("/data/other", **{"model.embed_dim": 64})
  with pytest.raises(ConfigError) as e:
    run_config.check_resume(other, str(tmp_path), accept_change=False)
  assert "data.dir: '/data/real' -> '/data/other'" in str(e.value)
  assert "model.embed_dim: 128 -> 64" in str(e.value) and "\n" not in str(e.value)
  run_config.check_resume(other, str(tmp_path), accept_change=True)
  # A field added since the run was recorded is no change of the run's.
  with open(tmp_path / "config.json") as f:
    older = json.load(f)
  del older["data"]["idf"]
  with open(tmp_path / "config.json", "w") as f:
    json.dump(older, f)
  run_config.check_resume(same, str(tmp_path), accept_change=False)


def test_the_history_keeps_every_start(tmp_path):
  with open(tmp_path / "config.json", "w") as f:  # an earlier version's workdir: no history
    json.dump({"data": {"dir": "/first"}}, f)
  run_config.record(str(tmp_path), tiny_config("/second"), 500, "configs/tiny.py")
  run_config.record(str(tmp_path), tiny_config("/third"), 800, "./configs/tiny.py")
  with open(tmp_path / "config_history.jsonl") as f:
    history = [json.loads(line) for line in f]
  assert [h["config"]["data"]["dir"] for h in history] == ["/first", "/second", "/third"]
  assert [h["start_step"] for h in history] == [None, 500, 800]
  assert run_config.recorded(str(tmp_path))["data"]["dir"] == "/third"
  assert run_config.same_source(run_config.recorded_source(str(tmp_path)), "configs/tiny.py")
  assert not run_config.same_source("configs/tiny.py", "configs/tiny.py:x")


def test_eval_and_resume_use_the_recorded_dataset(synthetic_dir, tmp_path):
  """Trained with --config.data.dir; scored and resumed by the README's commands without it."""
  workdir = str(tmp_path / "run")
  flags = ["--config.batch_size=16", "--config.total_steps=2", "--config.log_every_steps=1",
           "--config.optimizer.warmup_steps=1", "--config.data.num_threads=1",
           "--config.evals.retrieval.batch_size=16"]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  del env["JAX_COMPILATION_CACHE_DIR"]  # the run's own cache, config.compilation_cache_dir
  cache = tmp_path / "jit_cache"

  def run(script, *args):
    return subprocess.run([sys.executable, script, "--config", "configs/tiny.py", "--workdir",
                           workdir, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
  out = run("main.py", *flags, f"--config.data.dir={synthetic_dir}",
            f"--config.compilation_cache_dir={cache}")
  assert out.returncode == 0, out.stderr[-3000:]
  # What a new user sees while waiting: the first step's compilation, then rates and an ETA.
  assert "compiling the train step" in out.stderr
  assert "compiled the train step in" in out.stderr and "step 2/2 | loss" in out.stderr
  assert any(cache.iterdir())  # the compiled programs, for the commands below
  out = run("eval.py", "--step", "2")
  assert out.returncode == 0, out.stderr[-3000:]
  with open(os.path.join(workdir, "eval_results.json")) as f:
    assert json.load(f)["retrieval"]["2"]["dataset"]["dir"] == synthetic_dir
  out = run("main.py", "--config.total_steps=3")
  assert out.returncode == 0, out.stderr[-3000:]
  out = run("main.py", "--config.data.dir=/nowhere/typo")
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1].startswith(
      f"error: {workdir}/config.json: this run would change the data or model")
  with open(os.path.join(workdir, "config_history.jsonl")) as f:
    starts = [(h["start_step"], h["config"]["data"]["dir"], h["config"]["total_steps"])
              for h in map(json.loads, f)]
  assert starts == [(0, synthetic_dir, 2), (2, synthetic_dir, 3)]
