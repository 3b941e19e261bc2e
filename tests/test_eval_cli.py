"""eval.py: scores a training checkpoint on another device count; one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from input_pipeline.errors import ConfigError, DataError
from tests.helpers import tiny_config
from vl_jax import evaluate
from vl_jax.errors import CheckpointError, NonFiniteOutputError
from vl_jax.evaluators import retrieval
from vl_jax.models.predict import predict_fns
from vl_jax.train import checkpoint, loop, state as state_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = {"batch_size": 16, "total_steps": 6, "log_every_steps": 3,
             "checkpoint.every_steps": 3, "optimizer.warmup_steps": 1,
             "evals.retrieval.every_steps": 6}


@pytest.fixture(scope="module")
def trained(synthetic_dir, tmp_path_factory):
  """A 6-step tiny run on 8 devices: (workdir, results logged at the end of training)."""
  workdir = str(tmp_path_factory.mktemp("run"))
  _, results = loop.train_and_evaluate(tiny_config(synthetic_dir, **OVERRIDES), workdir)
  return workdir, results


def test_eval_on_two_devices_equals_the_end_of_training(trained, synthetic_dir):
  workdir, logged = trained
  os.remove(os.path.join(workdir, "eval_results.json"))
  flags = [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  out = subprocess.run(
      [sys.executable, "eval.py", "--config", "configs/tiny.py", "--workdir", workdir,
       f"--config.data.dir={synthetic_dir}", *flags], cwd=ROOT, env=env, capture_output=True,
      text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  with open(os.path.join(workdir, "eval_results.json")) as f:
    scored = json.load(f)
  assert scored.keys() == logged.keys() == {"retrieval"}
  assert scored["retrieval"]["6"]["dataset"] == {"dir": synthetic_dir, "split": "val",
                                                 "clips": 384}
  for k, v in logged["retrieval"].items():
    assert scored["retrieval"]["6"]["metrics"][k] == pytest.approx(v, abs=0.3), k  # one query
  assert "evaluation of step 6" in out.stderr and "R@1" in out.stderr


def test_an_earlier_step_and_named_evaluators(trained, synthetic_dir):
  workdir, logged = trained
  config = tiny_config(synthetic_dir, **OVERRIDES)
  evaluate.evaluate_checkpoint(config, workdir)
  step, results = evaluate.evaluate_checkpoint(config, workdir, step=3, names=["retrieval"])
  assert step == 3 and results["retrieval"] != logged["retrieval"]
  with open(os.path.join(workdir, "eval_results.json")) as f:
    recorded = json.load(f)["retrieval"]
  assert sorted(recorded) == ["3", "6"]  # step 3's results join step 6's, not replace them
  assert recorded["3"]["metrics"] == results["retrieval"]
  assert recorded["6"]["checkpoint"] == os.path.join(workdir, "checkpoints", "6")
  with pytest.raises(DataError, match=r"no checkpoint of step 4 \(has \[3, 6\]\)"):
    evaluate.evaluate_checkpoint(config, workdir, step=4)
  with pytest.raises(ConfigError, match=r"--evals: no evaluator 'zeroshot' in config.evals"):
    evaluate.evaluate_checkpoint(config, workdir, names=["zeroshot"])


def test_bad_workdirs_and_another_model_size_fail_in_one_line(trained, synthetic_dir, tmp_path):
  workdir, _ = trained
  config = tiny_config(synthetic_dir, **OVERRIDES)
  with pytest.raises(DataError, match="is no training workdir .* not a model: expected"):
    evaluate.evaluate_checkpoint(config, str(tmp_path / "nowhere"))
  os.makedirs(tmp_path / "empty" / "checkpoints")
  with pytest.raises(DataError, match="holds no checkpoint"):
    evaluate.evaluate_checkpoint(config, str(tmp_path / "empty"))
  wider = tiny_config(synthetic_dir, **OVERRIDES, **{"model.video.width": 32})
  with pytest.raises(ConfigError, match="does not fit the model of this config") as e:
    evaluate.evaluate_checkpoint(wider, workdir)
  assert "\n" not in str(e.value)


def test_a_bad_newest_checkpoint_is_skipped_by_eval(trained, synthetic_dir, caplog):
  """An empty step directory (a save killed as it began) newer than the good ones: scored is the
  newest good one, with a line naming the one skipped; naming the bad one is an error."""
  workdir, _ = trained
  config = tiny_config(synthetic_dir, **OVERRIDES)
  bad = os.path.join(workdir, "checkpoints", "9")
  os.makedirs(bad)
  try:
    step, _ = evaluate.evaluate_checkpoint(config, workdir)
    assert step == 6
    assert any("skipped:" in r.getMessage() and "/9: does not restore" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(CheckpointError, match=r"/9: does not restore"):
      evaluate.evaluate_checkpoint(config, workdir, step=9)
  finally:
    os.rmdir(bad)


def test_all_captions_and_several_clips(trained, synthetic_dir):
  """captions="all": 3 queries per clip of the synthetic split, the first of each equal to the
  "first" mode's query; num_clips=2: unit-norm averages of two clips' embeddings."""
  workdir, _ = trained
  config = tiny_config(synthetic_dir, **OVERRIDES)
  mesh, tokenizer, model = loop.setup(config)
  params = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), 1, 1, False) \
      .restore_params(6, state_lib.abstract_params(model, config, mesh))
  make = lambda captions: retrieval.RetrievalEvaluator(
      "r", tiny_config(synthetic_dir, **{"evals.retrieval.captions": captions}).evals.retrieval,
      predict=predict_fns(model), mesh=mesh, data_cfg=config.data, tokenizer=tokenizer)
  first, every = make("first").embed(params), make("all").embed(params)
  n = len(first.video)
  assert every.text.shape[0] == 3 * n
  np.testing.assert_array_equal(every.text_video, np.repeat(np.arange(n), 3))
  np.testing.assert_allclose(every.video, first.video, atol=1e-6)
  np.testing.assert_allclose(every.first_captions().text, first.text, atol=1e-5)
  with pytest.raises(ConfigError, match="captions='some': expected 'first' or 'all'"):
    make("some")
  two = retrieval.RetrievalEvaluator(
      "r", tiny_config(synthetic_dir, **{"evals.retrieval.num_clips": 2}).evals.retrieval,
      predict=predict_fns(model), mesh=mesh, data_cfg=config.data,
      tokenizer=tokenizer).embed(params)
  np.testing.assert_allclose(np.linalg.norm(two.video, axis=1), 1.0, atol=1e-5)
  np.testing.assert_allclose(two.text, first.text, atol=1e-5)
  assert np.abs(two.video - first.video).max() > 1e-3  # other frames: other embeddings


def test_non_finite_embeddings_are_refused_not_scored(trained, synthetic_dir):
  """A NaN compares false with every threshold: scored, such a model would rank its right answers
  first. The evaluator refuses it in one line naming the split and the rows."""
  workdir, _ = trained
  config = tiny_config(synthetic_dir, **OVERRIDES)
  mesh, tokenizer, model = loop.setup(config)
  params = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), 1, 1, False) \
      .restore_params(6, state_lib.abstract_params(model, config, mesh))
  params["video_proj"]["bias"] = params["video_proj"]["bias"] * np.nan
  evaluator = retrieval.RetrievalEvaluator("r", config.evals.retrieval,
                                           predict=predict_fns(model), mesh=mesh,
                                           data_cfg=config.data, tokenizer=tokenizer)
  with pytest.raises(NonFiniteOutputError) as e:
    evaluator.run(params)
  assert str(e.value) == (f"split 'val' of {synthetic_dir}: 384 of 384 rows of the model's "
                          f"'video' are NaN or Inf (first: row 0); nothing was scored")
