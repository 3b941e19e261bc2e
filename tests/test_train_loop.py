"""The train loop: exact resume, non-finite losses, re-running a finished run."""

import jax
import numpy as np
import pytest

from tests.helpers import tiny_config
from vl_jax.errors import NonFiniteLossError
from vl_jax.train import loop

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
                     match=rf"at step {STEPS // 2 + 1} .*last good checkpoint is step {STEPS // 2}"):
    loop.train_and_evaluate(bad, workdir)

  # The checkpoint is intact: resuming with a sane config restores exactly the good parameters.
  restored, _ = loop.train_and_evaluate(_config(synthetic_dir, total_steps=STEPS // 2), workdir)
  for a, b in zip(jax.tree.leaves(jax.device_get(restored.params)), jax.tree.leaves(good_params)):
    np.testing.assert_array_equal(a, b)
