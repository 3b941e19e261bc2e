"""TensorFlow Datasets without TensorFlow: the export of a vl-jax dataset read back by TFDS, the
TFDS source (a dataset read in place) giving the records of the shards, training and evaluating
on it, and zero-shot UCF101 from a dataset whose features.json declares `Video`, through eval.py."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from input_pipeline import pipeline, prepare, shards, tfds_export, tfds_source
from input_pipeline.errors import ConfigError, DataError
from tests.helpers import tiny_config
from vl_jax.evaluators import zeroshot
from vl_jax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _records(data_dir, split):
  return [shards.decode_record(d) for _, d in pipeline.records(data_dir, split)]


@pytest.fixture(scope="module")
def exported(synthetic_dir, tmp_path_factory):
  """The synthetic dataset's splits, exported as a TFDS dataset (through the CLI)."""
  out = str(tmp_path_factory.mktemp("tfds"))
  result = subprocess.run([sys.executable, "-m", "input_pipeline.tfds_export", "--data_dir",
                           synthetic_dir, "--out", out, "--name", "synthetic_vl"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  folder = os.path.join(out, "synthetic_vl", tfds_export.VERSION)
  assert result.stdout.strip().endswith(folder)
  return folder


def test_the_export_reads_back_through_tfds(synthetic_dir, exported):
  ds = tfds.builder_from_directory(exported).as_data_source("val")
  original = _records(synthetic_dir, "val")
  assert len(ds) == len(original) == 384
  for i in (0, 1, 200, 383):
    example, record = ds[i], original[i]
    assert [c.decode() for c in example["captions"]] == record["captions"]
    assert example["clip_id"].decode() == record["clip_id"]
    assert example["label"].decode() == record["label"]
    assert json.loads(example["mc"]) == record["mc"]
    assert json.loads(example["annotations"]) == record["text"]
    assert len(example["video"]) == len(record["frames"])
    for frame, jpeg in zip(example["video"], record["frames"]):
      np.testing.assert_array_equal(frame, pipeline.decode_jpeg(jpeg))
  # The frames are the stored JPEGs themselves, not re-encoded.
  raw = tfds_source.Examples(exported, "val")
  assert tfds_source.parse(raw[5])["video"] == original[5]["frames"]


def _tfds_config(index_dir, tfds_dir, **fields):
  config = tiny_config(str(index_dir))
  config.data.source = "tfds"
  config.data.tfds.update(dir=tfds_dir, vocab_size=300, **fields)
  return config


def test_the_tfds_source_gives_the_records_of_the_shards(synthetic_dir, exported, tmp_path):
  """Indexed from the export, split strings included: the same clips, captions, annotations,
  frames and labels, in the same order."""
  config = _tfds_config(tmp_path / "index", exported, caption="captions", label="label",
                        clip_id="clip_id")
  config.data.train_split = "train[:10%]"
  prepare.ensure_dataset(config.data, ["val[10:20]+val[:5]"])
  original = _records(synthetic_dir, "val")
  back = _records(str(tmp_path / "index"), "val[10:20]+val[:5]")
  assert len(back) == 15
  for a, b in zip(original[10:20] + original[:5], back, strict=True):
    assert {k: a[k] for k in ("clip_id", "captions", "text", "frames", "label")} == \
        {k: b[k] for k in ("clip_id", "captions", "text", "frames", "label")}
  assert len(_records(str(tmp_path / "index"), "train[:10%]")) == 200
  prepare.ensure_dataset(config.data, ["val[10:20]+val[:5]"])  # indexed: nothing to do

  other = _tfds_config(tmp_path / "index", exported, caption="captions")  # no label now
  other.data.train_split = "train[:10%]"
  with pytest.raises(DataError, match=r"split 'train\[:10%\]' was indexed from another TFDS "
                                      r"dataset, version or fields"):
    prepare.ensure_dataset(other.data)


@pytest.mark.parametrize("change, error, message", [
    (dict(caption="caption"), ConfigError,
     r"config.data.tfds.caption='caption': TFDS dataset .* has no such feature \(it has \["),
    (dict(video="clip_id"), ConfigError, r"config.data.tfds.video='clip_id': not encoded frames"),
    (dict(caption="", label=""), ConfigError, "name a caption feature"),
    (dict(dir="/nowhere"), ConfigError, r"config.data.tfds.dir='/nowhere': no dataset_info.json"),
    (dict(split="trian"), ConfigError,
     r"split 'trian' of TFDS dataset .*splits \['train', 'val'\]"),
    (dict(index=os.path.join(prepare.SYNTHETIC_ROOT, "synthetic_vX")), ConfigError,
     r"config.data.dir='.*synthetic_vX': with source 'tfds' it is the folder that keeps the "
     r"index"),
])
def test_bad_tfds_settings_are_one_line_before_anything_is_built(exported, tmp_path, change,
                                                                  error, message):
  config = _tfds_config(change.pop("index", tmp_path / "index"), exported, caption="captions")
  config.data.train_split = change.pop("split", "train")
  config.data.tfds.update(change)
  with pytest.raises(error, match=message):
    prepare.ensure_dataset(config.data)
  assert not os.path.exists(tmp_path / "index" / shards.INFO_FILE)


def test_tiny_config_trains_and_evaluates_on_a_tfds_source(exported, tmp_path):
  config = _tfds_config(tmp_path / "index", exported, caption="captions")
  config.data.train_split = "train[:25%]"
  config.total_steps = 3
  config.log_every_steps = 1
  config.evals.retrieval.split = "val[:64]"
  config.evals.retrieval.every_steps = 3
  _, metrics = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert set(metrics["retrieval"]) >= {"t2v/R@1", "v2t/R@1"}
  assert all(np.isfinite(v) for v in metrics["retrieval"].values())
  history = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
  losses = [h["train/loss"] for h in history if "train/loss" in h]
  assert len(losses) == 3 and np.all(np.isfinite(losses))


def _jpeg(frame) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(frame).save(buf, format="JPEG", quality=90)
  return buf.getvalue()


def _ucf101_shaped(data_dir, classes) -> str:
  """A UCF101-shaped TFDS dataset (features "video" and "label", TFDS's class names), written with
  Sequence(Image) and then declared `Video` in features.json, as the catalog's ucf101 is: the
  records' wire format is the same."""
  names = [label for label, _ in zeroshot.load_labels("ucf101")]

  class Ucf101Shaped(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("2.0.0")

    def _info(self):
      f = tfds.features
      return tfds.core.DatasetInfo(builder=self, features=f.FeaturesDict({
          "video": f.Sequence(f.Image(shape=(None, None, 3), encoding_format="jpeg")),
          "label": f.ClassLabel(names=names)}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(8, 1), "test": self._generate_examples(12, 2)}

    def _generate_examples(self, n, seed):
      rng = np.random.default_rng(seed)
      for i in range(n):
        frames = rng.integers(0, 255, (6, 32, 40, 3), np.uint8)
        yield i, {"video": [_jpeg(f) for f in frames], "label": names.index(classes[i % 3])}

  builder = Ucf101Shaped(data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare(download_dir=os.path.join(data_dir, "downloads"))
  features = os.path.join(builder.data_dir, "features.json")
  spec = json.load(open(features))
  video = spec["featuresDict"]["features"]["video"]
  spec["featuresDict"]["features"]["video"] = {
      "pythonClassName": "tensorflow_datasets.core.features.video_feature.Video",
      "video": {"shape": {"dimensions": ["-1", "-1", "-1", "3"]}, "dtype": "uint8",
                "encodingFormat": video["sequence"]["feature"]["image"]["encodingFormat"]}}
  json.dump(spec, open(features, "w"))
  with pytest.raises(Exception):  # what TFDS itself cannot open without TensorFlow
    tfds.builder_from_directory(str(builder.data_dir)).as_data_source("test")
  return str(builder.data_dir)


def test_zero_shot_ucf101_from_a_video_declared_tfds_dataset(pretrained, tmp_path, monkeypatch):
  """eval.py with configs/downstream.py:ucf101_zeroshot_tfds (the pre-trained tiny model's sizes)
  scores the TFDS dataset, and exactly as the same clips in the project's shards."""
  classes = ["ApplyEyeMakeup", "Basketball", "YoYo"]
  tfds_dir = _ucf101_shaped(str(tmp_path / "tfds"), classes)
  config_file = tmp_path / "ucf101_tiny.py"
  config_file.write_text(
      "from configs import downstream, tiny\n\n\n"
      "def get_config(task='ucf101_zeroshot_tfds'):\n"
      "  config = downstream.get_config(task).unlock()\n"
      "  small = tiny.get_config()\n"
      "  config.model = small.model\n"
      "  config.mesh = small.mesh\n"
      "  for k in ('num_frames', 'image_size', 'max_text_len'):\n"
      "    config.data[k] = small.data[k]\n"
      "  config.evals.zeroshot.batch_size = 8\n"
      "  return config.lock()\n")
  workdir = pretrained[1]
  flags = ["--config.init_from.workdir", workdir, "--config.data.dir",
           str(tmp_path / "index")]
  result = subprocess.run(
      [sys.executable, "eval.py", "--config", f"{config_file}", "--workdir",
       str(tmp_path / "zs"), *flags, "--config.data.tfds.dir", tfds_dir],
      cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ,
                                                                   "PYTHONPATH": ROOT})
  assert result.returncode == 0, result.stderr[-3000:]
  (entry,) = json.load(open(tmp_path / "zs" / "eval_results.json"))["zeroshot"].values()
  top1 = entry["metrics"]["top1"]
  assert 0 <= top1 <= 100 and entry["dataset"]

  # The same clips as project shards, scored by the same evaluator in-process.
  index = str(tmp_path / "index")
  records = _records(index, "test")
  # In TFDS's record order (its hashed keys), each class 4 times.
  assert sorted(r["label"] for r in records) == sorted(classes * 4)
  assert all(len(r["frames"]) == 6 for r in records)
  assert {r["captions"][0] for r in records} == {"apply eye makeup", "basketball", "yo yo"}
  same = str(tmp_path / "same")
  for split in ("train", "test"):
    rows = _records(index, split)
    shards.write_split(same, split, rows, 1, len(rows))
  info = {"name": "ucf101", "splits": {s: {"num_clips": len(_records(index, s)),
                                           "files": [f"{s}/{shards.shard_name(s, 0, 1)}"]}
                                       for s in ("train", "test")}}
  shards.write_info(same, info)
  for f in ("tokenizer.model", "idf.json", "knowledge_vocab.json"):
    os.link(os.path.join(index, f), os.path.join(same, f))
  from vl_jax import evaluate
  monkeypatch.syspath_prepend(str(tmp_path))
  import ucf101_tiny  # noqa: PLC0415  # the config file above
  config = ucf101_tiny.get_config().unlock()
  config.init_from.workdir = workdir
  config.data.source, config.data.dir = "shards", same
  _, results = evaluate.evaluate_checkpoint(config.lock(), str(tmp_path / "zs_shards"))
  assert results["zeroshot"]["top1"] == top1


def test_a_tfds_dataset_changed_or_incomplete_is_one_line(exported, tmp_path):
  """The index remembers what it was built from: a TFDS dataset rebuilt since (its splits'
  shard lengths differ) is refused at reading, and a missing file is named."""
  import shutil
  tfds_dir = str(tmp_path / "copy")
  shutil.copytree(exported, tfds_dir)
  config = _tfds_config(tmp_path / "index", tfds_dir, caption="captions")
  config.data.train_split = "val[:32]"
  prepare.ensure_dataset(config.data)
  info_path = os.path.join(tfds_dir, tfds_source.INFO_FILE)
  info = json.load(open(info_path))
  info["splits"][1]["shardLengths"] = ["300", "84"]  # val, as if rebuilt in two shards
  json.dump(info, open(info_path, "w"))
  with pytest.raises(DataError, match=r"synthetic_vl-val.array_record-00000-of-00002: a file of "
                                      r"split 'val' .* is missing"):
    pipeline.records(str(tmp_path / "index"), "val[:32]")
  info["splits"][1]["shardLengths"] = ["384"]
  info["splits"][1]["numBytes"] = "1"
  json.dump(info, open(info_path, "w"))
  with pytest.raises(DataError, match="changed since split 'val\\[:32\\]' was indexed"):
    pipeline.records(str(tmp_path / "index"), "val[:32]")


def test_an_example_without_frames_is_named_when_read(tmp_path):
  class NoFrames(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      f = tfds.features
      return tfds.core.DatasetInfo(builder=self, features=f.FeaturesDict({
          "video": f.Sequence(f.Image(shape=(None, None, 3), encoding_format="jpeg")),
          "caption": f.Text()}), disable_shuffling=True)

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples()}

    def _generate_examples(self):
      frame = _jpeg(np.zeros((8, 8, 3), np.uint8))
      for i, frames in enumerate([[frame, frame], []]):
        yield i, {"video": frames, "caption": f"clip {i}"}

  builder = NoFrames(data_dir=str(tmp_path / "tfds"), file_format="array_record")
  builder.download_and_prepare(download_dir=str(tmp_path / "downloads"))
  config = _tfds_config(tmp_path / "index", str(builder.data_dir), caption="caption")
  prepare.ensure_dataset(config.data)
  records = pipeline.records(str(tmp_path / "index"), "train")
  assert len(shards.decode_record(records[0][1])["frames"]) == 2
  with pytest.raises(DataError, match=r"train example 1: no frames in feature 'video'"):
    records[1]
