"""Converts raw videos (or images) and an annotation file into a split of frame shards.

    python -m input_pipeline.convert --format msrvtt --annotations MSRVTT_data.json \\
        --videos MSRVTT/videos/all --out data/msrvtt --split train --num_frames 8

writes OUT/SPLIT/SPLIT-0000i-of-0000K.array_record, OUT/SPLIT/conversion_report.json and updates
OUT/dataset_info.json. Converting the vocabulary split (`--vocab_split`, default "train") also
writes the tokenizer, idf.json and knowledge_vocab.json from its captions. docs/DATA.md has the
command for each dataset.

Items go to shards in annotation order, `--clips_per_shard` per shard, so the output does not
depend on `--workers`, nor on which videos exist: an item whose video is missing keeps its place
(and is reported), so a rerun after it appears neither duplicates nor drops a clip; it says that
the completed shards lack it. A shard is written to a temporary file and renamed when complete,
with a record of what it holds under OUT/SPLIT/.progress/; a re-run skips the shards already
complete, so a killed run loses only the shards in flight. Bad items (missing, unreadable or
corrupt files, paths leading out of --videos, segments outside the video, clips without a caption
or with one over MAX_CAPTION_CHARS, duplicate ids) are skipped and named in the report with the
reason; an annotation file of the wrong format stops the run at once.

`--runner DirectRunner` (or any Apache Beam runner, its options after a `--`) writes the same
shards on Beam (convert_beam.py). Every path may be gs:// or any location etils.epath reaches.
"""

import collections
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from typing import Any, Iterator

import tqdm
from absl import flags
from array_record.python.array_record_module import ArrayRecordWriter
from etils import epath

from input_pipeline import (files, flag_parsing, formats, shards, text_annotations,
                            tokenizer as tokenizer_lib, video_decode)
from input_pipeline.errors import DataError

REPORT_FILE = "conversion_report.json"
PROGRESS_DIR = ".progress"
SETTINGS_FILE = "settings.json"
DEFAULT_SIZE = 224
DEFAULT_NUM_FRAMES = 8
DEFAULT_MAX_FRAMES = 64  # with --fps


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything that decides the output; a resumed run must use the same."""
  format: str
  annotations: str
  videos: str
  split: str
  num_frames: int | None
  fps: float | None
  max_frames: int
  size: int
  jpeg_quality: int
  clips_per_shard: int
  split_list: str | None
  options: formats.Options


# A longer caption is no caption (a pasted transcript, a broken row): its item is skipped and named.
MAX_CAPTION_CHARS = 10_000
# Annotation-file values that mark an item as test data (msrvtt's "split", kinetics' "split", ...).
_TEST_MARKS = {"test", "testing"}


# Each worker process annotates captions with its own spaCy pipeline, loaded once.
_annotator: text_annotations.Annotator | None = None


def init_worker() -> None:
  global _annotator
  if _annotator is None:
    _annotator = text_annotations.Annotator()


def make_record(item: formats.Item, settings: Settings):
  """(record, None, notes) for a good clip, (None, (reason, detail), notes) for a skipped one. The
  video is looked up here, by the process that decodes it: which files exist never changes which
  shard an item goes to."""
  path = formats.resolve(settings.videos, item)
  if path is None:
    tried = ", ".join(item.videos) or "nothing: the sample has no video or image file"
    return None, ("video file not found", f"tried {tried}"), []
  try:
    if item.member:  # bytes of a tar file
      name, offset, size = item.member
      with epath.Path(path).open("rb") as f:
        f.seek(offset)
        clip = _decode(f.read(size), name, item, settings)
    else:
      with files.local_copy(path) as local:
        clip = _decode(local, path, item, settings)
  except video_decode.DecodeError as e:
    return None, (e.reason, e.detail), []
  except OSError as e:  # a directory, a permission problem, ...
    return None, (video_decode.UNREADABLE, str(e)), []
  record = {"clip_id": item.clip_id, "captions": item.captions,
            "text": _annotator.annotate(item.captions),
            "frames": [video_decode.encode_jpeg(f, settings.jpeg_quality) for f in clip.frames],
            "fps": clip.fps,
            "meta": {"video": os.path.relpath(path, settings.videos)
                     + (f":{item.member[0]}" if item.member else ""), **clip.meta, **item.meta},
            **item.tasks}
  return record, None, clip.notes


def _decode(source: str | bytes, name: str, item: formats.Item,
            settings: Settings) -> video_decode.Clip:
  if video_decode.is_image(name):
    return video_decode.load_image(source, settings.size)
  return video_decode.decode_video(source, item.start, item.end, settings.num_frames,
                                   settings.fps, settings.max_frames, settings.size)


def _skip(item: formats.Item, reason: str, detail: str = "") -> dict[str, str]:
  return {"clip_id": item.clip_id, "where": item.where, "reason": reason, "detail": detail}


def check_items(items: list[formats.Item], videos_dir: str):
  """(work, skipped items, notes): the checks that need no file but the annotations'. Every item
  that passes them is work and keeps its place in the shards, whether its video exists or not."""
  work, skipped, notes, first = [], [], [], {}
  for item in items:
    good = []
    for c in item.captions:
      bad = (f"not a string: {c!r}" if not isinstance(c, str) else
             None if formats.is_utf8(c) else "not valid UTF-8")
      if bad:
        notes.append(_skip(item, "caption dropped", bad))
      elif c.split():
        good.append(" ".join(c.split()))
    item.captions = good
    # Free-form metadata keeps what it can: bytes that are not UTF-8 become U+FFFD.
    item.meta = json.loads(json.dumps(item.meta, ensure_ascii=False)
                           .encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    if not formats.is_utf8(item.clip_id):
      skipped.append(_skip(item, "clip id is not valid UTF-8"))
      continue
    if item.clip_id in first:
      skipped.append(_skip(item, "duplicate clip id", f"first at {first[item.clip_id]}"))
      continue
    first[item.clip_id] = item.where
    if not good:
      skipped.append(_skip(item, "no caption"))
      continue
    longest = max(len(c) for c in good)
    if longest > MAX_CAPTION_CHARS:
      skipped.append(_skip(item, "caption too long",
                           f"{longest} characters (at most {MAX_CAPTION_CHARS})"))
      continue
    escaping = formats.outside(videos_dir, item)
    if escaping:
      skipped.append(_skip(item, "video path outside --videos", ", ".join(escaping)))
      continue
    work.append(item)
  return work, skipped, notes


@dataclasses.dataclass
class Plan:
  """What a conversion writes, a pure function of its settings and annotation file: every process
  that converts shards of it (the local driver's, Beam's workers) computes the same plan."""
  settings: Settings
  out: str
  items: list[formats.Item]   # every item the annotation file gives
  work: list[formats.Item]    # those that passed check_items, in shard order
  skipped: list[dict]         # the others, named
  notes: list[dict]

  @property
  def split_dir(self) -> str:
    return os.path.join(self.out, self.settings.split)

  @property
  def progress_dir(self) -> str:
    return os.path.join(self.split_dir, PROGRESS_DIR)

  @functools.cached_property
  def names(self) -> list[str]:
    num_shards = max(1, -(-len(self.work) // self.settings.clips_per_shard))
    return [shards.shard_name(self.settings.split, i, num_shards) for i in range(num_shards)]

  def part(self, index: int) -> str:
    """The record of what shard `index` holds (its clips' count, skipped items, captions)."""
    return os.path.join(self.progress_dir, f"{self.names[index]}.json")

  def read_parts(self, indices) -> Iterator[dict[str, Any]]:
    """The parts of shards `indices`, in order, read 32 at a time (a bucket's latency)."""
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
      yield from pool.map(files.read_json, [self.part(i) for i in indices])

  def shard_items(self, index: int) -> list[formats.Item]:
    per = self.settings.clips_per_shard
    return self.work[index * per:(index + 1) * per]

  def done(self) -> list[int]:
    """The shards complete in OUT: the shard and its part are there (two listings, not a
    request per shard: a bucket answers each in tens of milliseconds)."""
    present = {p.name for d in (self.split_dir, self.progress_dir) if epath.Path(d).is_dir()
               for p in epath.Path(d).iterdir()}
    return [i for i, n in enumerate(self.names) if n in present and f"{n}.json" in present]


def make_plan(settings: Settings, out: str) -> Plan:
  items = formats.read(settings.format, settings.annotations, settings.options,
                       settings.split_list)
  work, skipped, notes = check_items(items, settings.videos)
  return Plan(settings, out, items, work, skipped, notes)


def test_items_in_training(items: list[formats.Item], settings: Settings) -> str | None:
  """A warning when the annotation file marks items as test data and they are written to a
  training split with no --split_list or --subset choosing them (MSR-VTT's JSON marks 2,990
  videos 'test'; the 1k-A protocol trains on MSRVTT_train.9k.csv's 9,000)."""
  if "train" not in settings.split.lower() or settings.split_list or settings.options.subset:
    return None
  marked = [i for i in items if any(str(v).lower() in _TEST_MARKS for k, v in i.meta.items()
                                    if k.endswith(("split", "subset")))]
  if not marked:
    return None
  return (f"{len(marked)} of {len(items)} items are marked as test data by {settings.annotations} "
          f"(e.g. {marked[0].clip_id!r}) but go to the training split {settings.split!r}: choose "
          f"the training items with --split_list (MSR-VTT 1k-A: MSRVTT_train.9k.csv) or --subset")


def _reappeared(plan: Plan, done: list[int]) -> list[str]:
  """Clip ids that a completed shard's part reports as not found and that now resolve: a rerun
  does not add them to shards already written, and says so."""
  by_id = {item.clip_id: item for item in plan.work}
  found = []
  for part in plan.read_parts(done):
    found += [s["clip_id"] for s in part["skipped"] if s["reason"] == "video file not found"
              and s["clip_id"] in by_id and formats.resolve(plan.settings.videos,
                                                            by_id[s["clip_id"]])]
  return found


@contextlib.contextmanager
def _locked(out: str):
  """Serialises dataset_info.json updates between conversions of several splits into one local
  OUT (an object store has no lock: convert the splits of a bucket's dataset one after another)."""
  if not files.is_local(out):
    yield
    return
  with open(os.path.join(out, ".lock"), "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    yield


def _items_digest(items: list[formats.Item]) -> str:
  """sha256 of the items as read (ids, captions, videos, times, fields): what the annotation files
  give, whatever their layout (a CSV, a folder of split files, tar files of videos)."""
  h = hashlib.sha256()
  for item in items:
    h.update(json.dumps(dataclasses.asdict(item), sort_keys=True, ensure_ascii=False)
             .encode("utf-8", "surrogateescape"))
  return h.hexdigest()


def _check_settings(plan: Plan) -> None:
  """Records the settings (and what the annotation files hold) or checks a resumed run's."""
  path = epath.Path(plan.progress_dir) / SETTINGS_FILE
  body = json.loads(json.dumps(dataclasses.asdict(plan.settings)))
  body["items_sha256"] = _items_digest(plan.items)
  if path.exists():
    old = files.read_json(path)
    diff = sorted(k for k in body if body[k] != old.get(k))
    if diff:
      raise DataError(f"{path}: this split was converted with other settings ({', '.join(diff)}); "
                      f"use the same flags to resume, or another --split or --out")
  else:
    files.write_json(path, body, indent=1)


def start(plan: Plan) -> tuple[list[int], list[str]]:
  """Prepares OUT/SPLIT for `plan` (or checks that a resumed run's settings are the same) and
  returns the shards still to write and the warnings, which it prints."""
  if not epath.Path(plan.settings.videos).is_dir():
    raise DataError(f"--videos {plan.settings.videos}: not a directory")
  epath.Path(plan.progress_dir).mkdir(parents=True, exist_ok=True)
  _check_settings(plan)
  for folder in (plan.split_dir, plan.progress_dir):
    for tmp in epath.Path(folder).glob("*.tmp"):
      tmp.unlink()  # shards and parts in flight when a previous run was killed
  done = plan.done()
  warnings = []
  if test_warning := test_items_in_training(plan.items, plan.settings):
    warnings.append(test_warning)
  reappeared = _reappeared(plan, done)
  if reappeared:
    warnings.append(
        f"{len(reappeared)} videos reported missing when their shards were written exist now "
        f"(e.g. {reappeared[0]!r}); the completed shards are kept as they are, without them: "
        f"convert into a new --out (or --split) to include them")
  for w in warnings:
    print(f"warning: {w}", file=sys.stderr, flush=True)
  return sorted(set(range(len(plan.names))) - set(done)), warnings


def write_shard(plan: Plan, index: int, results, bar: tqdm.tqdm | None = None) -> int:
  """Writes shard `index` of `plan` from `results`, make_record's results for its items in order,
  and returns how many items it decoded. Idempotent: a shard is written under a name of its own
  writer and published whole, so an attempt beside or after another (a retried task) leaves the
  same bytes, never a mixture."""
  name, shard_items = plan.names[index], plan.shard_items(index)
  final = os.path.join(plan.split_dir, name)
  if files.is_local(final):
    tmp = files.temporary_name(final)
  else:
    fd, tmp = tempfile.mkstemp(suffix=".array_record")
    os.close(fd)
  writer = ArrayRecordWriter(tmp, shards.WRITER_OPTIONS)
  part = {"num_clips": 0, "skipped": [], "notes": [], "captions": [],
          "stats": text_annotations.TextStats()}
  try:
    for item in shard_items:
      record, reason, clip_notes = next(results)
      part["notes"] += [_skip(item, "handled", n) for n in clip_notes]
      if record is None:
        part["skipped"].append(_skip(item, *reason))
      else:
        writer.write(shards.encode_record(record))
        part["num_clips"] += 1
        part["captions"] += record["captions"]
        part["stats"].add(record["text"])
        part["stats"].add_answers(record.get("qa", []))
      if bar is not None:
        bar.update(1)
  except BaseException:
    writer.close()
    os.remove(tmp)
    raise
  writer.close()
  part["stats"] = part["stats"].to_json()
  files.write_json(plan.part(index), part, indent=1)
  files.publish(tmp, final)
  return len(shard_items)


def _results(todo: list[formats.Item], settings: Settings, workers: int):
  if workers <= 1:
    init_worker()
    yield from (make_record(w, settings) for w in todo)
    return
  # spawn, not fork: spaCy and PyAV hold threads, and a forked copy of a threaded process can hang.
  ctx = multiprocessing.get_context("spawn")
  with ctx.Pool(workers, initializer=init_worker) as pool:
    yield from pool.imap(functools.partial(make_record, settings=settings), todo, chunksize=1)


def convert(settings: Settings, out: str, workers: int, vocab_split: str, vocab_size: int,
            name: str | None) -> dict[str, Any]:
  """Converts one split with `workers` local processes and returns its report (also written to
  OUT/SPLIT/conversion_report.json). convert_beam.py runs the same plan on Apache Beam."""
  t_start = time.time()
  plan = make_plan(settings, out)
  todo, warnings = start(plan)
  todo_items = [item for i in todo for item in plan.shard_items(i)]
  results = _results(todo_items, settings, workers)
  bar = tqdm.tqdm(total=len(todo_items), unit="clip", desc=f"converting {settings.split}",
                  mininterval=1.0, file=sys.stderr)
  try:
    for i in todo:
      write_shard(plan, i, results, bar)
  finally:
    bar.close()
    results.close()
  return finish(plan, {"runner": "local", "workers": workers}, vocab_split, vocab_size, name,
                t_start, len(todo_items), warnings)


def finish(plan: Plan, driver: dict[str, Any], vocab_split: str, vocab_size: int,
           name: str | None, t_start: float, num_decoded: int,
           warnings: list[str]) -> dict[str, Any]:
  """Gathers the shards' parts into the report, the vocabulary split's tokenizer and statistics,
  and the split's entry in dataset_info.json."""
  settings, out = plan.settings, plan.out
  num_clips, captions, stats = 0, [], text_annotations.TextStats()
  skipped, notes = list(plan.skipped), list(plan.notes)
  for part in plan.read_parts(range(len(plan.names))):
    num_clips += part["num_clips"]
    skipped += part["skipped"]
    notes += part["notes"]
    captions += part["captions"]
    stats.merge(part["stats"])
  elapsed = time.time() - t_start
  report = {"settings": dataclasses.asdict(settings), "num_items": len(plan.items),
            "num_clips": num_clips, "num_skipped": len(skipped),
            "skipped_by_reason": dict(collections.Counter(s["reason"] for s in skipped)),
            "skipped": skipped, "notes": notes, "warnings": warnings, "driver": driver,
            "decoded_this_run": num_decoded, "seconds": round(elapsed, 2),
            "clips_per_second": round(num_decoded / elapsed, 2) if elapsed else None}
  files.write_json(os.path.join(plan.split_dir, REPORT_FILE), report, indent=1)
  if settings.split == vocab_split:
    if not captions:
      raise DataError(f"{plan.split_dir}: no clip converted, so no tokenizer can be trained; "
                      f"see {os.path.join(plan.split_dir, REPORT_FILE)}")
    tokenizer_lib.train(captions, os.path.join(out, shards.TOKENIZER_FILE), vocab_size)
    stats.write(out)
  with _locked(out):
    info_path = epath.Path(out) / shards.INFO_FILE
    info = shards.read_info(out) if info_path.exists() else {"splits": {}}
    info["name"] = name or info.get("name") or settings.format
    info["splits"][settings.split] = {
        "num_clips": num_clips, "files": [os.path.join(settings.split, n) for n in plan.names],
        "format": settings.format, "frames_per_clip": settings.num_frames,
        "fps": settings.fps, "short_side": settings.size}
    if (epath.Path(out) / shards.TOKENIZER_FILE).exists():
      info["tokenizer"] = shards.TOKENIZER_FILE
    shards.write_info(out, info)
  return report


def summary(report: dict[str, Any], out: str) -> str:
  s = report["settings"]
  why = ", ".join(f"{n} {r}" for r, n in sorted(report["skipped_by_reason"].items()))
  skipped = f"{report['num_skipped']} skipped" + (f": {why}" if why else "")
  warned = f"; {len(report['warnings'])} warnings" if report["warnings"] else ""
  return (f"{s['split']}: {report['num_clips']} of {report['num_items']} clips in "
          f"{os.path.join(out, s['split'])} ({skipped}{warned}); {report['decoded_this_run']} "
          f"decoded in {report['seconds']:.1f} s; report: "
          f"{os.path.join(out, s['split'], REPORT_FILE)}")


FLAGS = flags.FlagValues()
define = flag_parsing.definer(FLAGS)
define.enum("format", None, sorted(formats.READERS), "the annotation file's format")
define.string("annotations", None, "the dataset's annotation file (hmdb51: the folder of split "
              "files)")
define.string("videos", None, "folder the annotation's video paths are in")
define.string("out", None, "dataset directory (created if missing; any location, e.g. "
              "gs://BUCKET/DIR)")
define.string("split", None, "split name to write, e.g. train, val, test")
define.integer("num_frames", None, f"frames stored per clip (default {DEFAULT_NUM_FRAMES})",
               lower_bound=1)
define.float("fps", None, "store frames at this rate instead")
define.integer("max_frames", DEFAULT_MAX_FRAMES, "cap on frames per clip with --fps", lower_bound=1)
define.integer("size", DEFAULT_SIZE, "short side of stored frames (pixels; the default suits "
               "224 x 224 training, as CLIP4Clip stores its videos)", lower_bound=1)
define.integer("jpeg_quality", 90, "JPEG quality of the stored frames", lower_bound=1,
               upper_bound=100)
define.integer("clips_per_shard", 1000, "clips per ArrayRecord shard", lower_bound=1)
define.integer("workers", os.cpu_count(), "decoding processes (with --runner DirectRunner: its "
               "worker processes)", lower_bound=1)
define.string("runner", "local", "'local' (this machine's processes) or an Apache Beam runner: "
              "DirectRunner, DataflowRunner, FlinkRunner, SparkRunner, ...; Beam's pipeline "
              "options follow a '--' (input_pipeline/convert_beam.py)")
define.string("split_list", None, "keep only these video ids: a text file of ids, or a CSV with a "
              "video_id column (and a sentence column, e.g. MSR-VTT 1k-A's test file)")
define.string("subset", None, "msrvtt: the JSON's split (train/validate/test); youcook2: "
              "training/validation; hmdb51: train1, test1, ..., test3")
define.bool("sentences", False, "didemo, activitynet: one clip per sentence and its moment "
            "instead of a paragraph per video")
define.float("merge_segments_to", 0.0, "howto100m: join consecutive ASR segments of a video "
             "until a clip lasts this many seconds")
define.string("vocab_split", "train", "the split whose captions train the tokenizer and give "
              "idf.json and knowledge_vocab.json")
define.integer("vocab_size", 16000, "the tokenizer's vocabulary size", lower_bound=1)
define.string("name", None, "dataset name in dataset_info.json (default: the format)")
flags.mark_flags_as_required(["format", "annotations", "videos", "out", "split"],
                             flag_values=FLAGS)
flags.mark_flags_as_mutual_exclusive(["num_frames", "fps"], flag_values=FLAGS)
flags.register_validator("fps", lambda v: v is None or v > 0, "must be positive",
                         flag_values=FLAGS)


def main(argv=None) -> None:
  beam_args = flag_parsing.parse(FLAGS, argv, __doc__, passthrough=True)
  if beam_args and FLAGS.runner == "local":
    flag_parsing.fail(f"Beam pipeline options {beam_args} need a Beam --runner")
  # A setting is the value of the flag of its name, except these:
  settings = Settings(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(Settings)
                         if f.name != "options"} | dict(
      annotations=files.absolute(FLAGS.annotations), videos=files.absolute(FLAGS.videos),
      num_frames=FLAGS.num_frames if FLAGS.num_frames or FLAGS.fps else DEFAULT_NUM_FRAMES,
      split_list=FLAGS.split_list and files.absolute(FLAGS.split_list),
      options=formats.Options(paragraph=not FLAGS.sentences, subset=FLAGS.subset,
                              merge_segments_to=FLAGS.merge_segments_to)))
  try:
    if FLAGS.runner == "local":
      report = convert(settings, FLAGS.out, FLAGS.workers, FLAGS.vocab_split, FLAGS.vocab_size,
                       FLAGS.name)
    else:
      try:
        from input_pipeline import convert_beam  # pylint: disable=import-outside-toplevel
      except ImportError as e:
        flag_parsing.fail(f"--runner {FLAGS.runner} needs Apache Beam: pip install "
                          f"'vl-jax[beam]' ({e})")
      report = convert_beam.convert_split(settings, FLAGS.out, FLAGS.runner, beam_args,
                                          FLAGS.workers, FLAGS.vocab_split, FLAGS.vocab_size,
                                          FLAGS.name)
  except DataError as e:
    sys.exit(f"error: {e}")
  print(summary(report, FLAGS.out))


if __name__ == "__main__":
  main()
