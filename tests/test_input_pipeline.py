import filecmp
import io
import os
import re
import shutil

import jax
import ml_collections
import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordWriter
from PIL import Image

from input_pipeline import contract, pipeline, prepare, shards, synthetic, text_annotations
from input_pipeline.contract import CLS_ID, PAD_ID, SEP_ID
from input_pipeline.errors import DataError
from input_pipeline.tokenizer import load as load_tokenizer
from tests.helpers import tiny_config
from vl_jax import sharding


def _x_centroids(frames):
  """Horizontal centre of the non-background pixels of each frame ([T, H, W, 3] uint8); the
  background is the clip's median colour, since shapes are small."""
  background = np.median(frames.reshape(-1, 3), axis=0)
  diff = np.abs(frames.astype(int) - background).sum(-1) > 60
  return np.array([np.nonzero(m)[1].mean() for m in diff])


def test_generation_is_deterministic_and_splits_differ(tmp_path):
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  synthetic.generate(a, num_train=20, num_val=10, seed=3)
  synthetic.generate(b, num_train=20, num_val=10, seed=3)
  info = shards.read_info(a)
  for split in ("train", "val"):
    for f in info["splits"][split]["files"]:
      assert filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False)
  ds = {s: pipeline.records(a, s) for s in ("train", "val")}
  train = [shards.decode_record(ds["train"][i][1]) for i in range(20)]
  val = [shards.decode_record(ds["val"][i][1]) for i in range(10)]
  assert {r["clip_id"] for r in train}.isdisjoint({r["clip_id"] for r in val})
  assert [r["captions"] for r in train[:10]] != [r["captions"] for r in val]
  with pytest.raises(FileExistsError, match="already exists"):
    synthetic.generate(a, num_train=2, num_val=2, seed=0)


def test_records_hold_frames_and_captions_that_describe_them(synthetic_dir):
  train = pipeline.records(synthetic_dir, "train")
  for i in range(30):
    r = shards.decode_record(train[i][1])
    assert len(r["frames"]) == 8 and len(r["captions"]) == 3
    for obj in r["meta"]["objects"]:
      for caption in r["captions"]:
        assert obj["colour"] in caption and obj["shape"] in caption
        assert any(p in caption for p in synthetic.MOTION_PHRASES[obj["motion"]])
    objs = r["meta"]["objects"]
    if len(objs) == 1 and objs[0]["motion"] in ("left", "right"):
      decoded = np.stack([np.asarray(Image.open(io.BytesIO(f))) for f in r["frames"]])
      x = _x_centroids(decoded)
      assert np.sign(x[-1] - x[0]) == (1 if objs[0]["motion"] == "right" else -1)


def test_single_frames_carry_no_direction():
  """Any one frame of a left-moving shape is distributed like one of a right-moving shape."""
  rng = np.random.default_rng(0)
  xs = {"left": [], "right": []}
  for motion in xs:
    for _ in range(400):
      scene = {"background": "black",
               "objects": [{"colour": "yellow", "shape": "square", "motion": motion}]}
      frames = np.stack(synthetic.render(scene, rng, num_frames=8, size=40))
      xs[motion].append(_x_centroids(frames)[rng.integers(8)])
  assert abs(np.mean(xs["left"]) - np.mean(xs["right"])) < 1.0  # pixels, of 40
  assert abs(np.std(xs["left"]) - np.std(xs["right"])) < 1.0


def test_train_batches_and_caption_aware_flip(synthetic_dir):
  data = tiny_config(synthetic_dir).data
  tokenizer = load_tokenizer(os.path.join(synthetic_dir, shards.TOKENIZER_FILE))
  it = iter(pipeline.train_dataset(data, tokenizer, 32, seed=0))
  checked = 0
  for _ in range(6):
    batch = next(it)
    size = data.image_size
    assert batch["frames"].shape == (32, data.num_frames, size, size, 3)
    assert batch["frames"].dtype == np.uint8
    assert batch["tokens"].shape == (32, 32) and (batch["tokens"][:, 0] == CLS_ID).all()
    np.testing.assert_array_equal(batch["tokens"],
                                  tokenizer.encode([str(c) for c in batch["caption"]], 32))
    assert batch["token_pos"].shape == batch["token_idf"].shape == (32, 32)
    assert ((batch["token_pos"] > 0) == (batch["token_idf"] > 0)).all()
    assert (batch["token_pos"] == contract.POS_ID["NOUN"]).any(axis=1).all()
    for frames, caption in zip(batch["frames"], batch["caption"]):
      caption = str(caption)
      words = set(caption.split())
      if " and " in caption or not words & {"left", "right", "leftward", "rightward"}:
        continue
      x = _x_centroids(frames)
      says_right = bool(words & {"right", "rightward"})
      assert (x[-1] > x[0]) == says_right, caption  # flipped clips have mirrored captions
      checked += 1
  assert checked >= 10


def test_iterator_state_restores_the_same_batches(synthetic_dir):
  data = tiny_config(synthetic_dir).data
  tokenizer = load_tokenizer(os.path.join(synthetic_dir, shards.TOKENIZER_FILE))
  it = iter(pipeline.train_dataset(data, tokenizer, 16, seed=1))
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(2)]
  fresh = iter(pipeline.train_dataset(data, tokenizer, 16, seed=1))
  fresh.set_state(state)
  for want in expected:
    got = next(fresh)
    np.testing.assert_array_equal(got["frames"], want["frames"])
    np.testing.assert_array_equal(got["clip_id"], want["clip_id"])


def test_processes_read_disjoint_slices(synthetic_dir, monkeypatch):
  data = tiny_config(synthetic_dir).data
  tokenizer = load_tokenizer(os.path.join(synthetic_dir, shards.TOKENIZER_FILE))
  seen = []
  for process in (0, 1):
    monkeypatch.setattr(pipeline.jax, "process_index", lambda: process)
    monkeypatch.setattr(pipeline.jax, "process_count", lambda: 2)
    it = iter(pipeline.train_dataset(data, tokenizer, 100, seed=0))  # 50 per process
    seen.append({str(c) for _ in range(20) for c in next(it)["clip_id"]})  # one epoch: 1000
  assert len(seen[0]) == len(seen[1]) == 1000
  assert seen[0].isdisjoint(seen[1])


def test_eval_dataset_is_ordered_and_keeps_the_remainder(synthetic_dir):
  data = tiny_config(synthetic_dir).data
  tokenizer = load_tokenizer(os.path.join(synthetic_dir, shards.TOKENIZER_FILE))
  batches = list(pipeline.eval_dataset(data, tokenizer, "val", 100))
  index = np.concatenate([b["index"] for b in batches])
  np.testing.assert_array_equal(index, np.arange(384))
  assert len(batches[-1]["index"]) == 84
  assert batches[0]["frames"].shape[1:] == (1, data.num_frames, data.image_size, data.image_size, 3)


def test_evaluation_views_sample_across_each_segment(synthetic_dir):
  """View k of K takes the frame at (k + 0.5) / K of each segment: 8 stored frames, 4 per clip,
  2 views -> frames 0, 2, 4, 6 and 1, 3, 5, 7."""
  data = tiny_config(synthetic_dir).data
  tokenizer = load_tokenizer(os.path.join(synthetic_dir, shards.TOKENIZER_FILE))
  transform = pipeline.make_clip_transform(data, tokenizer, train=False)
  element = pipeline.records(synthetic_dir, "val")[5]
  two = transform.views(element, 2)["frames"]
  assert two.shape == (2, 4, data.image_size, data.image_size, 3)
  np.testing.assert_array_equal(pipeline.segment_indices(8, 4, None, 0.25), [0, 2, 4, 6])
  np.testing.assert_array_equal(pipeline.segment_indices(8, 4, None, 0.75), [1, 3, 5, 7])
  record = shards.decode_record(element[1])
  for view, frames in ((0, [0, 2, 4, 6]), (1, [1, 3, 5, 7])):
    for t, j in enumerate(frames):
      img = pipeline.decode_jpeg(record["frames"][j])
      want = pipeline.crop_resize(img, pipeline.centre_box(img.shape[1], img.shape[0]),
                                  data.image_size)
      np.testing.assert_array_equal(two[view, t], want)
  np.testing.assert_array_equal(transform.views(element, 1)["frames"][0],
                                transform.random_map(element, None)["frames"])


def test_tokenizer_pads_and_truncates_keeping_sep(synthetic_dir):
  tokenizer = load_tokenizer(os.path.join(synthetic_dir, shards.TOKENIZER_FILE))
  short, long = tokenizer.encode(["a red circle", "a red circle moves left " * 10], max_len=12)
  assert short[0] == CLS_ID and PAD_ID in short
  n = int((short != PAD_ID).sum())
  assert short[n - 1] == SEP_ID
  assert long[0] == CLS_ID and long[-1] == SEP_ID and PAD_ID not in long
  assert tokenizer.decode(short[None])[0] == "a red circle"


def test_missing_dataset_errors_name_the_path(tmp_path):
  data = tiny_config(str(tmp_path / "nowhere")).data
  data.name = "webvid"
  with pytest.raises(DataError, match="nowhere"):
    prepare.ensure_dataset(data)
  os.makedirs(tmp_path / "empty")
  data = tiny_config(str(tmp_path / "empty")).data
  with pytest.raises(DataError, match="empty.*holds no dataset_info.json"):
    prepare.ensure_dataset(data)
  with pytest.raises(DataError, match="no split 'test'"):
    one = str(tmp_path / "one")
    synthetic.generate(one, num_train=1, num_val=1, seed=0)
    shards.split_files(one, "test")
  os.remove(os.path.join(one, text_annotations.IDF_FILE))
  with pytest.raises(DataError, match="no idf.json; convert the dataset's training split"):
    prepare.ensure_dataset(tiny_config(one).data)


def test_synthetic_dataset_is_generated_on_first_use(tmp_path, monkeypatch):
  """Under the synthetic root (the configs' default place) only: elsewhere a missing dataset is a
  mistyped path, named, and nothing is written there."""
  typo = tiny_config(str(tmp_path / "typo")).data
  with pytest.raises(DataError, match=r"typo'?: no dataset there .*generated on first use only"):
    prepare.ensure_dataset(typo)
  assert not os.path.exists(typo.dir)
  monkeypatch.setattr(prepare, "SYNTHETIC_ROOT", str(tmp_path))
  data = tiny_config(str(tmp_path / "fresh")).data
  data.synthetic.num_train, data.synthetic.num_val = 12, 4
  prepare.ensure_dataset(data)
  assert shards.read_info(data.dir)["splits"]["train"]["num_clips"] == 12
  prepare.ensure_dataset(data)  # present: nothing to do


def test_cli_rejects_an_impossible_palette_in_one_line(tmp_path, capsys):
  out = tmp_path / "bad"
  with pytest.raises(SystemExit) as exit_info:
    synthetic.main(["--out", str(out), "--num_train", "2", "--num_val", "1", "--num_colours", "1"])
  assert exit_info.value.code == 2
  assert "two_shape_prob > 0 needs num_colours >= 2" in capsys.readouterr().err
  assert not out.exists()


def test_a_corrupt_record_is_named_by_its_shard_and_index(synthetic_dir, tmp_path):
  """64 bytes flipped in the middle of a shard: reading the split fails in one line naming the
  shard file and the record, from the grain pipeline too; a record that reads but does not decode
  is named alike."""
  data = str(tmp_path / "data")
  shutil.copytree(synthetic_dir, data)
  shard = os.path.join(data, shards.split_files(data, "val")[0])
  size = os.path.getsize(shard)
  with open(shard, "r+b") as f:
    f.seek(size // 2)
    f.write(b"\xff" * 64)
  config = tiny_config(data)
  tokenizer = load_tokenizer(os.path.join(data, shards.TOKENIZER_FILE))
  with pytest.raises(DataError, match=rf"^{re.escape(shard)}: record \d+: unreadable \("
                                      rf"RuntimeError: Corrupted Riegeli") as e:
    for _ in pipeline.eval_dataset(config.data, tokenizer, "val", 16):
      pass
  assert "\n" not in str(e.value)
  # A record that reads (its chunk is intact) but is no clip record: named alike.
  good = [pipeline.records(synthetic_dir, "val")[i][1] for i in range(3)]
  writer = ArrayRecordWriter(shard, shards.WRITER_OPTIONS)
  for record in good[:2] + [b"\xc1garbage"] + good[2:]:
    writer.write(record)
  writer.close()
  with pytest.raises(DataError, match=rf"^{re.escape(shard)}: record 2: corrupt \("):
    [x for x in pipeline.records(data, "val")]


def test_device_batches_are_placed_on_the_mesh_two_ahead():
  """Each batch's device fields become global arrays split over the mesh's batch axes, the host
  fields stay beside them, and two batches are placed ahead of the one the step gets."""
  layout = sharding.batch_sharding(sharding.make_mesh(ml_collections.ConfigDict(
      dict(data=-1, fsdp=1))))
  pulled = []

  def dataset():
    for i in range(5):
      pulled.append(i)
      yield {"frames": np.full((8, 3), i, np.uint8), "clip_id": np.asarray([f"c{i}"] * 8)}
  batches = pipeline.device_batches(dataset(), layout)
  batch, host = next(batches)
  assert pulled == [0, 1, 2]
  assert isinstance(batch["frames"], jax.Array) and batch["frames"].sharding == layout
  assert len(batch["frames"].addressable_shards) == 8 and list(batch) == ["frames"]
  assert list(host["clip_id"]) == ["c0"] * 8
  rest = [b["frames"] for b, _ in batches]
  assert [int(f[0, 0]) for f in [batch["frames"], *rest]] == [0, 1, 2, 3, 4]
