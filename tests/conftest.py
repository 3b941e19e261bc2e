"""Test session setup: 8 fake CPU devices (set before JAX starts) and a shared small dataset."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

import pytest  # noqa: E402

from input_pipeline import synthetic  # noqa: E402
from tests.helpers import pretrain  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
  """A small synthetic dataset in the real shard format, generated once per test session."""
  out = str(tmp_path_factory.mktemp("data") / "synthetic")
  synthetic.generate(out, num_train=2000, num_val=384, seed=0)
  return out


@pytest.fixture(scope="session")
def motion_only_dir(tmp_path_factory):
  """One colour, shape and background: captions differ only in the motion."""
  out = str(tmp_path_factory.mktemp("data") / "motion_only")
  synthetic.generate(out, num_train=2000, num_val=384, seed=0, palette=synthetic.Palette(
      num_colours=1, num_shapes=1, num_backgrounds=1, two_shape_prob=0.0))
  return out


@pytest.fixture(scope="session")
def pretrained(synthetic_dir, tmp_path_factory):
  """A pre-training run on the synthetic dataset, shared by the learning and downstream tests."""
  return pretrain(synthetic_dir, tmp_path_factory.mktemp("pretrained"))


@pytest.fixture(scope="session")
def motion_pretrained(motion_only_dir, tmp_path_factory):
  """Pre-training runs on clips that differ only in motion, with 4 frames and with 1."""
  return {t: pretrain(motion_only_dir, tmp_path_factory.mktemp(f"motion{t}"), num_frames=t)
          for t in (4, 1)}
