"""Test session setup: 8 fake CPU devices and a compilation cache (set before JAX starts), and
shared small datasets and pre-training runs."""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
# CPU devices even where the test extra's libtpu is installed (it compiles for TPU topologies
# without a TPU; JAX would otherwise try, and fail, to start a TPU backend in every process).
os.environ["JAX_PLATFORMS"] = "cpu"
# The suite compiles the same train steps and evaluators many times (each run of the loop, each
# subprocess): a compilation cache for the session, inherited by subprocesses, compiles each once.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="vl_jax_test_jit_")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pytest  # noqa: E402

from input_pipeline import synthetic  # noqa: E402
from tests.helpers import coco_pretrain, pretrain  # noqa: E402


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
  """Pre-training runs on clips that differ only in motion, with 4 frames (200 steps: 400 gave
  100% zero-shot and direction accuracy) and with 1 (100 steps: it only needs to be trained)."""
  return {t: pretrain(motion_only_dir, tmp_path_factory.mktemp(f"motion{t}"), num_frames=t,
                      steps=steps) for t, steps in ((4, 200), (1, 100))}


@pytest.fixture(scope="session")
def coco_pretrained(pretrained, tmp_path_factory):
  """CoCo-BERT's objectives and caption decoder trained on the pre-trained towers, shared by the
  learning and downstream tests."""
  config, workdir, _, results = pretrained
  return coco_pretrain(config.data.dir, workdir, tmp_path_factory.mktemp("coco")), results
