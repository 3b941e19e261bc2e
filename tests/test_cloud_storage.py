"""A run whose workdir is on Google Cloud Storage, against a real GCS-API server started here on
localhost (fake-gcs-server, whose binary a registry package ships): training, a resume, the
profile, eval.py, pretrained.load, an export and the embedding CLI read and write gs:// through the
same code as local paths (etils.epath over gcsfs; orbax's arrays through tensorstore's GCS
driver). A gs:// data dir is one line."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from etils import epath
from flax.traverse_util import flatten_dict

from input_pipeline import convert
from input_pipeline.errors import ConfigError
from tests.helpers import GCS_BUCKET as BUCKET, same_dataset, tiny_config
from vl_jax import embed, pretrained
from vl_jax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def _download(folder: epath.Path, local: str) -> list[str]:
  """Copies a bucket's folder to `local`; the names of the objects it held."""
  names = []
  for path in folder.iterdir():
    dest = os.path.join(local, path.name)
    if path.is_dir():
      names += _download(path, dest)
    else:
      os.makedirs(local, exist_ok=True)
      with open(dest, "wb") as f:
        f.write(path.read_bytes())
      names.append(path.name)
  return names


def test_the_converter_reads_and_writes_gcs(gcs, videos, tmp_path):
  """Annotations and videos in the bucket, the dataset written there: through the local driver
  and through Beam's DirectRunner (worker processes on gcsfs too), the same bytes as a conversion
  of local files into a local folder."""
  raw = f"gs://{BUCKET}/raw"
  lines = [{"video": v, "caption": f"clip {i}", "id": f"c{i}"}
           for i, v in enumerate(["bunny.mp4", "img0.jpg", "gone.mp4", "carphone.mp4"])]
  ann = tmp_path / "ann.jsonl"
  ann.write_text("".join(json.dumps(x) + "\n" for x in lines))
  epath.Path(f"{raw}/ann.jsonl").write_bytes(ann.read_bytes())
  for name in ("bunny.mp4", "img0.jpg", "carphone.mp4"):
    epath.Path(f"{raw}/videos/{name}").write_bytes(open(os.path.join(videos, name), "rb").read())
  flags = ["--format", "jsonl", "--split", "train", "--num_frames", "4", "--size", "32",
           "--clips_per_shard", "2"]
  local = str(tmp_path / "local")
  convert.main([*flags, "--annotations", str(ann), "--videos", videos, "--out", local])
  for runner in ("local", "DirectRunner"):
    out = f"gs://{BUCKET}/{runner}"
    convert.main([*flags, "--annotations", f"{raw}/ann.jsonl", "--videos", f"{raw}/videos",
                  "--out", out, "--runner", runner, "--workers", "2"])
    objects = _download(epath.Path(out), str(tmp_path / runner))
    names, reports = same_dataset(local, str(tmp_path / runner))
    assert len(names) == 2 and reports[1]["num_clips"] == 3
    assert not [n for n in objects if n.endswith(".tmp")]
