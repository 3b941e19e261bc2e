"""Readers of the annotation files of common video-language datasets, one function per format.

Each reader turns an annotation file into `Item`s (one per clip to store) in file order. A file that
does not have the format's structure raises `FormatError` naming the file and line at once. Items
that are only individually bad (no caption, a caption that is not UTF-8) are returned as they are:
the converter skips or repairs them and names them in its report. The layouts are documented in
docs/DATA.md.
"""

import collections
import csv
import dataclasses
import json
import os
import re
import tarfile
from typing import Callable, Iterator

from etils import epath

from input_pipeline.errors import DataError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".mpg", ".mpeg", ".m4v", ".gif",
                    ".flv", ".3gp")
DIDEMO_SEGMENT_S = 5.0  # DiDeMo's times count 5-second segments


class FormatError(DataError):
  """The annotation file does not have the structure of the chosen format."""


@dataclasses.dataclass
class Item:
  clip_id: str
  video_id: str           # the source video's id (split lists select on it)
  videos: list[str]       # candidate paths relative to --videos; one without extension is tried
                          # with each of VIDEO_EXTENSIONS
  captions: list[str]
  where: str              # where the item is in the annotation file, for the report
  start: float | None = None
  end: float | None = None
  meta: dict = dataclasses.field(default_factory=dict)
  tasks: dict = dataclasses.field(default_factory=dict)  # downstream fields: label, qa, mc
  # webdataset: the video is the member (name, offset, size) of the tar file videos[0], read in
  # place
  member: tuple[str, int, int] | None = None


@dataclasses.dataclass(frozen=True)
class Options:
  paragraph: bool = True          # didemo, activitynet: one clip per video, sentences joined
  subset: str | None = None       # msrvtt: the JSON's split; youcook2: training / validation;
                                  # hmdb51: train1 .. test3 (a split's training or test part)
  merge_segments_to: float = 0.0  # howto100m: join consecutive ASR segments to this length (s)


def read_text(path: str) -> str:
  """The file's text (any location); bytes that are not UTF-8 survive as surrogates for
  per-caption checks."""
  try:
    return epath.Path(path).read_bytes().decode("utf-8", "surrogateescape")
  except OSError as e:
    raise DataError(f"{path}: cannot read the annotation file: {e.strerror or e}") from e


def is_utf8(text: str) -> bool:
  """False for text holding bytes that were not UTF-8 in the file (see read_text)."""
  try:
    text.encode("utf-8")
    return True
  except UnicodeEncodeError:
    return False


def _load_json(path: str):
  try:
    return json.loads(read_text(path))
  except json.JSONDecodeError as e:
    raise FormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e


def _expect(cond: bool, path: str, line: int | str, what: str) -> None:
  if not cond:
    raise FormatError(f"{path}:{line}: {what}")


def _number(value, path, where, name) -> float:
  _expect(isinstance(value, (int, float)) and not isinstance(value, bool), path, where,
          f"{name} must be a number, got {value!r}")
  return float(value)


# The csv module's 128 KiB field limit would abort a whole conversion on one over-long caption;
# the converter skips such an item by itself (convert.MAX_CAPTION_CHARS), naming it.
csv.field_size_limit(2**31 - 1)


def _csv_rows(path: str, delimiter: str, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
  reader = csv.DictReader(read_text(path).splitlines(), delimiter=delimiter)
  header = reader.fieldnames or []
  missing = [c for c in required if c not in header]
  _expect(not missing, path, 1, f"expected a header with columns {', '.join(required)}; "
          f"missing {', '.join(missing)} (header: {','.join(header)[:80]!r})")
  for row in reader:
    _expect(all(row.get(c) is not None for c in required), path, reader.line_num,
            "row has fewer columns than the header")
    yield reader.line_num, row


def _lines(path: str) -> Iterator[tuple[int, str]]:
  """(line number, line) of each non-blank line of a text file."""
  for n, line in enumerate(read_text(path).splitlines(), start=1):
    if line.strip():
      yield n, line


def _tsv_lines(path: str, columns: int, what: str) -> Iterator[tuple[int, list[str]]]:
  for n, line in _lines(path):
    fields = line.split("\t")
    _expect(len(fields) == columns, path, n,
            f"expected {columns} tab-separated fields ({what}), got {len(fields)}")
    yield n, fields


def _json_lines(path: str) -> Iterator[tuple[int, object]]:
  """(line number, parsed value) of each non-blank line of a JSON-lines file."""
  for n, line in _lines(path):
    try:
      yield n, json.loads(line)
    except json.JSONDecodeError as e:
      raise FormatError(f"{path}:{n}: not a JSON object ({e.msg})") from e


def webvid(path: str, opts: Options) -> Iterator[Item]:
  """results_2M_train.csv: videoid,contentUrl,duration,page_dir,name; video page_dir/videoid.mp4."""
  for line, row in _csv_rows(path, ",", ("videoid", "page_dir", "name")):
    vid = row["videoid"]
    yield Item(vid, vid, [f"{row['page_dir']}/{vid}.mp4", f"{vid}.mp4"], [row["name"]],
               f"line {line}")


def msrvtt(path: str, opts: Options) -> Iterator[Item]:
  """MSRVTT_data.json: {"videos": [{video_id, category, split, ...}], "sentences": [...]}."""
  data = _load_json(path)
  _expect(isinstance(data, dict) and isinstance(data.get("videos"), list)
          and isinstance(data.get("sentences"), list), path, 1,
          'expected an object with "videos" and "sentences" lists (MSRVTT_data.json)')
  captions = collections.defaultdict(list)
  for i, s in enumerate(data["sentences"]):
    _expect(isinstance(s, dict) and "video_id" in s and "caption" in s, path, 1,
            f'sentences[{i}] lacks "video_id" or "caption"')
    captions[s["video_id"]].append(s["caption"])
  for i, v in enumerate(data["videos"]):
    _expect(isinstance(v, dict) and "video_id" in v, path, 1, f'videos[{i}] lacks "video_id"')
    if opts.subset and v.get("split") != opts.subset:
      continue
    vid = v["video_id"]
    yield Item(vid, vid, [f"{vid}.mp4", vid], captions.get(vid, []), f"videos[{i}]",
               meta={"category": v.get("category"), "msrvtt_split": v.get("split")})


_MSVD_LINE = re.compile(r"^(\S+)\s+(.*)$")


def msvd(path: str, opts: Options) -> Iterator[Item]:
  """AllVideoDescriptions.txt: '<video> <caption>' per line, '#' comments;
  YouTubeClips/<video>.avi."""
  first_line, captions = {}, collections.defaultdict(list)
  for n, line in _lines(path):
    if line.startswith("#"):
      continue
    m = _MSVD_LINE.match(line)
    _expect(m is not None and re.fullmatch(r"[\w\-.]+", m.group(1)) is not None, path, n,
            f"expected '<video id> <caption>', got {line[:60]!r}")
    first_line.setdefault(m.group(1), n)
    captions[m.group(1)].append(m.group(2))
  for vid, n in first_line.items():
    yield Item(vid, vid, [f"{vid}.avi", vid], captions[vid], f"line {n}")


def _paragraph_items(path, opts, videos: dict, where: str, candidates: Callable):
  """Paragraph (whole video, sentences joined by start time) or per-sentence clips."""
  for vid, sentences in videos.items():
    # sentences: (start, end, text) in annotation order
    if opts.paragraph:
      ordered = sorted(sentences, key=lambda s: s[0])
      # A sentence that is not UTF-8 is left out of the paragraph rather than losing the video.
      text = " ".join(s[2].strip() for s in ordered if s[2].strip() and is_utf8(s[2]))
      yield Item(vid, vid, candidates(vid), [text] if text else [], f"{where} {vid!r}",
                 meta={"sentences": [{"start": s, "end": e, "text": t} for s, e, t in ordered]})
    else:
      for k, (s, e, t) in enumerate(sentences):
        yield Item(f"{vid}_{k}", vid, candidates(vid), [t], f"{where} {vid!r} sentence {k}",
                   start=s, end=e)


def didemo(path: str, opts: Options) -> Iterator[Item]:
  """train_data.json: [{"video", "description", "times": [[s, e], ...]}]; times in 5-s units."""
  data = _load_json(path)
  _expect(isinstance(data, list), path, 1, "expected a list of annotations (DiDeMo *_data.json)")
  videos = collections.defaultdict(list)
  for i, a in enumerate(data):
    _expect(isinstance(a, dict) and {"video", "description", "times"} <= a.keys()
            and isinstance(a["times"], list) and a["times"], path, 1,
            f'[{i}] lacks "video", "description" or "times"')
    s, e = a["times"][0]  # the first annotator's moment
    videos[a["video"]].append((s * DIDEMO_SEGMENT_S, (e + 1) * DIDEMO_SEGMENT_S, a["description"]))
  yield from _paragraph_items(path, opts, videos, "video",
                              lambda v: [v, os.path.splitext(v)[0]])


def activitynet(path: str, opts: Options) -> Iterator[Item]:
  """train.json: {"v_id": {"duration", "timestamps": [[s, e], ...], "sentences": [...]}}."""
  data = _load_json(path)
  _expect(isinstance(data, dict), path, 1, "expected an object keyed by video id "
          "(ActivityNet Captions train.json)")
  videos = {}
  for vid, v in data.items():
    _expect(isinstance(v, dict) and isinstance(v.get("timestamps"), list)
            and isinstance(v.get("sentences"), list)
            and len(v["timestamps"]) == len(v["sentences"]), path, 1,
            f'{vid!r} lacks "timestamps" and "sentences" of equal length')
    videos[vid] = [(_number(s, path, 1, f"{vid} timestamp"),
                    _number(e, path, 1, f"{vid} timestamp"), t)
                   for (s, e), t in zip(v["timestamps"], v["sentences"])]
  yield from _paragraph_items(
      path, opts, videos, "video",
      lambda v: [v] + ([v[2:]] if v.startswith("v_") else []))


def youcook2(path: str, opts: Options) -> Iterator[Item]:
  """youcookii_annotations_trainval.json: {"database": {id: {"subset", "recipe_type",
  "annotations": [{"segment": [s, e], "id", "sentence"}]}}}; raw_videos/<subset>/<recipe>/<id>."""
  data = _load_json(path)
  _expect(isinstance(data, dict) and isinstance(data.get("database"), dict), path, 1,
          'expected an object with a "database" object (YouCook2 annotations)')
  for vid, v in data["database"].items():
    _expect(isinstance(v, dict) and isinstance(v.get("annotations"), list), path, 1,
            f'{vid!r} lacks "annotations"')
    if opts.subset and v.get("subset") != opts.subset:
      continue
    subdir = f"{v.get('subset')}/{v.get('recipe_type')}/{vid}"
    for a in v["annotations"]:
      _expect(isinstance(a, dict) and "segment" in a and "sentence" in a, path, 1,
              f'{vid!r}: an annotation lacks "segment" or "sentence"')
      s, e = (_number(x, path, 1, f"{vid} segment") for x in a["segment"])
      yield Item(f"{vid}_{a.get('id')}", vid, [subdir, vid], [a["sentence"]],
                 f"video {vid!r} segment {a.get('id')}", start=s, end=e,
                 meta={"recipe_type": v.get("recipe_type")})


def howto100m(path: str, opts: Options) -> Iterator[Item]:
  """caption.json: {"id": {"start": [...], "end": [...], "text": [...]}} (ASR segments)."""
  data = _load_json(path)
  _expect(isinstance(data, dict), path, 1, "expected an object keyed by video id "
          "(HowTo100M caption.json)")
  for vid, v in data.items():
    _expect(isinstance(v, dict)
            and all(isinstance(v.get(k), list) for k in ("start", "end", "text"))
            and len(v["start"]) == len(v["end"]) == len(v["text"]), path, 1,
            f'{vid!r} lacks "start", "end" and "text" lists of equal length')
    k, group = 0, []
    for s, e, t in zip(v["start"], v["end"], v["text"]):
      group.append((_number(s, path, 1, f"{vid} start"), _number(e, path, 1, f"{vid} end"), t))
      if group[-1][1] - group[0][0] >= opts.merge_segments_to:
        yield Item(f"{vid}_{k}", vid, [vid], [" ".join(str(g[2]).strip() for g in group)],
                   f"video {vid!r} segment {k}", start=group[0][0], end=group[-1][1])
        k, group = k + 1, []


def cc3m(path: str, opts: Options) -> Iterator[Item]:
  """TSV '<caption>\\t<image file>' (an optional 'caption\\tfilename' header); 1-frame clips."""
  for n, (caption, image) in _tsv_lines(path, 2, "caption, image file"):
    if n == 1 and caption.strip().lower() == "caption":
      continue
    stem = os.path.splitext(image)[0]
    yield Item(stem, stem, [image], [caption], f"line {n}")


def lsmdc(path: str, opts: Options) -> Iterator[Item]:
  """LSMDC16_annos_*.csv, tab-separated: clip, start/end aligned, start/end extracted, sentence;
  the clip is <movie>/<clip>.avi with <movie> the clip name before its last '_'."""
  for n, fields in _tsv_lines(path, 6, "clip, 4 timestamps, sentence"):
    clip = fields[0]
    movie = clip.rsplit("_", 1)[0]
    yield Item(clip, clip, [f"{movie}/{clip}.avi", f"{movie}/{clip}"], [fields[5]], f"line {n}")


def jsonl(path: str, opts: Options) -> Iterator[Item]:
  """One object per line: "video", "caption" or "captions", optional "start", "end", "id", and the
  downstream fields "label", "qa", "mc" (see _check_tasks)."""
  for n, obj in _json_lines(path):
    _expect(isinstance(obj, dict) and isinstance(obj.get("video"), str), path, n,
            'expected an object with a "video" path')
    _expect(("caption" in obj) != ("captions" in obj), path, n,
            'expected exactly one of "caption" and "captions"')
    captions = obj["captions"] if "captions" in obj else [obj["caption"]]
    _expect(isinstance(captions, list) and all(isinstance(c, str) for c in captions), path, n,
            '"caption" must be a string and "captions" a list of strings')
    start = None if obj.get("start") is None else _number(obj["start"], path, n, '"start"')
    end = None if obj.get("end") is None else _number(obj["end"], path, n, '"end"')
    stem = os.path.splitext(obj["video"])[0]
    segment = ""
    if start is not None or end is not None:
      segment = f"_{start or 0:g}-" + ("end" if end is None else f"{end:g}")
    clip_id = str(obj.get("id", stem + segment))
    yield Item(clip_id, stem, [obj["video"]], captions, f"line {n}", start=start, end=end,
               tasks=_check_tasks(obj, path, n))


def _check_tasks(obj: dict, path: str, where) -> dict:
  """The downstream fields of a jsonl object, checked: "label" a string; "qa" a list of
  {"question", "answer"} strings; "mc" {"options": strings, "answer": an index among them}."""
  tasks = {k: obj[k] for k in ("label", "qa", "mc") if obj.get(k) is not None}
  if "label" in tasks:
    _expect(isinstance(tasks["label"], str), path, where, '"label" must be a string')
  if "qa" in tasks:
    _expect(isinstance(tasks["qa"], list) and all(
        isinstance(q, dict) and isinstance(q.get("question"), str)
        and isinstance(q.get("answer"), str) for q in tasks["qa"]), path, where,
        '"qa" must be a list of {"question": string, "answer": string}')
    tasks["qa"] = [{"question": q["question"], "answer": q["answer"]} for q in tasks["qa"]]
  if "mc" in tasks:
    mc = tasks["mc"]
    _expect(isinstance(mc, dict) and isinstance(mc.get("options"), list) and mc["options"]
            and all(isinstance(o, str) for o in mc["options"])
            and isinstance(mc.get("answer"), int) and 0 <= mc["answer"] < len(mc["options"]),
            path, where, '"mc" must be {"options": [strings], "answer": index of the right one}')
    tasks["mc"] = {"options": mc["options"], "answer": mc["answer"]}
  return tasks


def class_caption(label: str) -> str:
  """A class label as words: "ApplyEyeMakeup" -> "apply eye makeup", "brush_hair" -> "brush hair"
  (the caption of a classification clip; the shipped class lists name classes the same way)."""
  return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label).replace("_", " ").lower()


def ucf101(path: str, opts: Options) -> Iterator[Item]:
  """trainlist01.txt / testlist01.txt: '<Class>/<video>.avi[ <class index>]'; the label is the
  folder, the caption the class name in words."""
  for n, line in _lines(path):
    video = line.split()[0]
    _expect(video.count("/") == 1, path, n, f"expected '<Class>/<video>.avi', got {line[:60]!r}")
    label, name = video.split("/")
    yield Item(os.path.splitext(name)[0], os.path.splitext(name)[0], [video],
               [class_caption(label)], f"line {n}", tasks={"label": label})


_HMDB_SUBSET = re.compile(r"^(train|test)([123])$")


def hmdb51(path: str, opts: Options) -> Iterator[Item]:
  """testTrainMulti_7030_splits/: '<class>_test_split<k>.txt' files of '<video>.avi <0|1|2>' lines
  (1: training, 2: test); `--subset train1 .. test3` picks split k's part. Videos
  <class>/<video>."""
  m = _HMDB_SUBSET.match(opts.subset or "")
  _expect(m is not None, path, 0, f"hmdb51 needs --subset train1, test1, ..., test3 (got "
          f"{opts.subset!r})")
  part, k = "1" if m.group(1) == "train" else "2", m.group(2)
  is_dir = epath.Path(path).is_dir()
  files = sorted(f.name for f in epath.Path(path).iterdir()
                 if f.name.endswith(f"_test_split{k}.txt")) if is_dir else [os.path.basename(path)]
  folder = path if is_dir else os.path.dirname(path)
  _expect(bool(files), path, 0, f"no '<class>_test_split{k}.txt' files")
  for file in files:
    _expect(file.endswith(f"_test_split{k}.txt"), path, 0,
            f"expected '<class>_test_split{k}.txt' split files, got {file!r}")
    label = file[:-len(f"_test_split{k}.txt")]
    for n, fields in _tsv_lines(os.path.join(folder, file), 1, "video and 0/1/2"):
      video, *code = fields[0].split()
      _expect(code in (["0"], ["1"], ["2"]), os.path.join(folder, file), n,
              f"expected '<video>.avi <0|1|2>', got {fields[0][:60]!r}")
      if code[0] == part:
        stem = os.path.splitext(video)[0]
        yield Item(stem, stem, [f"{label}/{video}", video], [class_caption(label)],
                   f"{file}:{n}", tasks={"label": label})


def kinetics(path: str, opts: Options) -> Iterator[Item]:
  """Kinetics-400/600/700 CSV: label,youtube_id,time_start,time_end,split; videos trimmed to
  '<youtube_id>_<start:06d>_<end:06d>.mp4', directly or in a folder per label."""
  for line, row in _csv_rows(path, ",", ("label", "youtube_id", "time_start", "time_end")):
    try:
      stem = f"{row['youtube_id']}_{int(row['time_start']):06d}_{int(row['time_end']):06d}"
    except ValueError as e:
      raise FormatError(f"{path}:{line}: time_start and time_end must be integers") from e
    yield Item(stem, row["youtube_id"], [stem, f"{row['label']}/{stem}"],
               [class_caption(row["label"])], f"line {line}", tasks={"label": row["label"]})


def msrvtt_mc(path: str, opts: Options) -> Iterator[Item]:
  """MSR-VTT multiple choice, one object per line (ClipBERT's msrvtt_mc_test.jsonl):
  {"clip_name": "video7010", "options": [5 captions], "answer": index}; the caption is the right
  option."""
  for n, obj in _json_lines(path):
    _expect(isinstance(obj, dict) and isinstance(obj.get("clip_name"), str), path, n,
            'expected an object with a "clip_name"')
    mc = _check_tasks({"mc": {"options": obj.get("options"), "answer": obj.get("answer")}},
                      path, n)["mc"]
    vid = obj["clip_name"]
    yield Item(vid, vid, [f"{vid}.mp4", vid], [mc["options"][mc["answer"]]], f"line {n}",
               tasks={"mc": mc})


def msrvtt_qa(path: str, opts: Options) -> Iterator[Item]:
  """MSRVTT-QA train_qa.json / val_qa.json / test_qa.json: [{"question", "answer", "video_id": N,
  ...}]; video<N>.mp4. One clip per video with all its questions, which are also its captions."""
  data = _load_json(path)
  _expect(isinstance(data, list), path, 1, "expected a list of questions (MSRVTT-QA *_qa.json)")
  videos = collections.defaultdict(list)
  for i, q in enumerate(data):
    _expect(isinstance(q, dict) and {"question", "answer", "video_id"} <= q.keys(), path, 1,
            f'[{i}] lacks "question", "answer" or "video_id"')
    videos[q["video_id"]].append({"question": str(q["question"]), "answer": str(q["answer"])})
  for vid, qa in videos.items():
    name = f"video{vid}"
    yield Item(name, name, [f"{name}.mp4", name], [q["question"] for q in qa],
               f"video_id {vid}", tasks={"qa": qa})


def webdataset(path: str, opts: Options) -> Iterator[Item]:
  """WebDataset tar shards (a .tar file, or a folder of them in name order; videos in the folder
  --videos names), as video2dataset and img2dataset write them: a sample's files share a key, the
  name up to the first dot of its file name. KEY.mp4 (or another video or image extension) is the
  clip, read from the tar in place; KEY.txt its caption, or KEY.json's "caption" or "captions"
  (its "label", "qa" and "mc" as in jsonl; its other fields kept as metadata)."""
  root = epath.Path(path)
  tars = sorted(p for p in root.iterdir() if p.name.endswith(".tar")) if root.is_dir() else [root]
  _expect(bool(tars), path, 0, "no .tar files")
  media = VIDEO_EXTENSIONS + (".jpg", ".jpeg", ".png", ".webp", ".bmp")
  for tar in tars:
    with tar.open("rb") as f:
      try:
        archive = tarfile.open(fileobj=f)  # random access: reads the headers, skips the data
        samples = collections.defaultdict(dict)
        for m in archive:
          if m.isfile():
            folder, name = os.path.split(m.name)
            key, _, ext = name.partition(".")
            samples[os.path.join(folder, key)]["." + ext.lower()] = m
        for key, members in samples.items():
          yield _webdataset_item(archive, tar.name, key, members, media)
      except tarfile.TarError as e:
        raise FormatError(f"{tar}: not a readable tar file ({e})") from e


def _webdataset_item(archive, tar: str, key: str, members: dict, media) -> Item:
  where = f"{tar}:{key}"
  info = {}
  if ".json" in members:
    try:
      info = json.loads(archive.extractfile(members[".json"]).read())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise FormatError(f"{where}.json: not valid JSON ({e})") from e
    _expect(isinstance(info, dict), where + ".json", 1, "expected a JSON object")
  if ".txt" in members:
    captions = [archive.extractfile(members[".txt"]).read().decode("utf-8", "surrogateescape")]
  else:
    captions = info["captions"] if "captions" in info else [info.get("caption")]
    captions = [c for c in captions if c is not None] if isinstance(captions, list) else [captions]
  video = next((m for ext, m in members.items() if ext.endswith(media)), None)
  meta = {k: v for k, v in info.items() if k not in ("caption", "captions", "label", "qa", "mc")
          and (v is None or isinstance(v, (str, int, float, bool)))}
  return Item(key, key, [tar] if video else [], captions, where, meta=meta,
              tasks=_check_tasks(info, where + ".json", 1),
              member=(video.name, video.offset_data, video.size) if video else None)


READERS = {"webvid": webvid, "msrvtt": msrvtt, "msvd": msvd, "didemo": didemo, "lsmdc": lsmdc,
           "activitynet": activitynet, "youcook2": youcook2, "howto100m": howto100m,
           "cc3m": cc3m, "jsonl": jsonl, "ucf101": ucf101, "hmdb51": hmdb51,
           "kinetics": kinetics, "msrvtt_mc": msrvtt_mc, "msrvtt_qa": msrvtt_qa,
           "webdataset": webdataset}


def read_split_list(path: str) -> dict[str, str | None]:
  """Video ids to keep: a text file of ids, or a CSV with a video_id column (and optionally a
  sentence column whose caption replaces the video's, as in MSR-VTT 1k-A's test file)."""
  text = read_text(path)
  first = text.splitlines()[0] if text else ""
  if "video_id" in first.split(","):
    return {row["video_id"]: row.get("sentence") for _, row in _csv_rows(path, ",", ("video_id",))}
  return {line.strip(): None for line in text.splitlines() if line.strip()}


def read(fmt: str, path: str, opts: Options, split_list: str | None = None) -> list[Item]:
  items = list(READERS[fmt](path, opts))
  if split_list:
    keep = read_split_list(split_list)
    items = [i for i in items if i.video_id in keep]
    for i in items:
      if keep[i.video_id] is not None:
        i.captions = [keep[i.video_id]]
  return items


def outside(videos_dir: str, item: Item) -> list[str]:
  """The item's candidate paths that lead out of `videos_dir` (absolute, or ".." out of it): an
  annotation file never makes the converter read elsewhere."""
  root = os.path.normpath(videos_dir)
  return [rel for rel in item.videos
          if not os.path.normpath(os.path.join(root, rel)).startswith(root + os.sep)]


def resolve(videos_dir: str, item: Item) -> str | None:
  """The first candidate path that exists (any location), as given or with one of
  VIDEO_EXTENSIONS appended. Callers first refuse items with a candidate `outside` `videos_dir`."""
  for rel in item.videos:
    path = os.path.join(videos_dir, rel)
    for candidate in (path, *(path + ext for ext in VIDEO_EXTENSIONS)):
      if epath.Path(candidate).exists():
        return candidate
  return None
