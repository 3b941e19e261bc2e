"""TensorFlow Datasets (TFDS) datasets as a data source, read without TensorFlow.

With `config.data.source = "tfds"`, training and evaluation read a dataset that TFDS prepared in
ArrayRecord format (`tfds build --file_format=array_record`; `config.data.tfds.dir` is its
prepared folder, e.g. ~/tensorflow_datasets/ucf101/ucf101_1_256/2.0.0). Its records are read in
place: every TFDS record is a tf.train.Example proto (the wire format of every TFDS feature,
`Video` included), parsed with the copy of the protos tensorflow-datasets ships. So the frames
stay JPEG bytes until the pipeline's frame sampling decodes the ones it uses, and a dataset whose
features.json declares `Video` (which TFDS cannot open without TensorFlow) reads like any other.
Splits are TFDS split strings (`train`, `train[:10%]`, `train+validation`).

What a TFDS dataset lacks and the pipeline needs (each caption's words, POS tags and knowledge, a
tokenizer, idf) is computed once into `config.data.dir`: an index in the project's own format,
one small record per clip without its frames, and the statistics of the training split. Reading
record i of a split joins index record i with TFDS record i: the pipeline then runs exactly as on
the project's shards (same order, per-process slicing, transforms).
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import Any, Iterator

import grain
import numpy as np
from absl import logging
from etils import epath

from input_pipeline import files, formats, shards, text_annotations, tokenizer as tokenizer_lib
from input_pipeline.errors import ConfigError, DataError, one_line

INFO_FILE = "dataset_info.json"  # TFDS's, in its prepared folder
_CHUNK = 256  # examples annotated per spaCy batch
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG's and PNG's first bytes


def _tfds_info(tfds_dir: str) -> dict[str, Any]:
  path = epath.Path(os.path.expanduser(tfds_dir)) / INFO_FILE
  if not path.is_file():
    raise ConfigError(f"config.data.tfds.dir={tfds_dir!r}: no {INFO_FILE}; expected the folder "
                      f"TFDS prepared (e.g. ~/tensorflow_datasets/NAME/CONFIG/VERSION)")
  info = files.read_json(path)
  if info.get("fileFormat") != "array_record":
    raise DataError(f"{path}: file format {info.get('fileFormat', 'tfrecord')!r}; random access "
                    f"needs array_record: prepare it with `tfds build --file_format=array_record`")
  return info


class Examples:
  """Random access to the serialised tf.train.Examples of a TFDS split string, in TFDS order
  (`tfds_dir` may start with ~)."""

  def __init__(self, tfds_dir: str, spec: str):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel  # 0.3 s
    from tensorflow_datasets.core import naming  # pylint: disable=import-outside-toplevel
    info = _tfds_info(tfds_dir)
    splits = {s["name"]: s for s in info["splits"]}
    try:
      parts = tfds.core.ReadInstruction.from_spec(spec).to_absolute({
          name: tfds.core.SplitInfo(name=name, shard_lengths=[int(n) for n in s["shardLengths"]],
                                    num_bytes=0) for name, s in splits.items()})
    except (ValueError, KeyError, AssertionError) as e:
      raise ConfigError(f"split {spec!r} of TFDS dataset {tfds_dir}: {e} (it has splits "
                        f"{sorted(splits)})") from e
    self.fingerprint = hashlib.sha256(json.dumps(info["splits"], sort_keys=True).encode()
                                      ).hexdigest()[:16]
    self._parts, self._sources = [], {}
    for part in parts:
      s = splits[part.splitname]
      if part.splitname not in self._sources:
        template = naming.ShardedFileTemplate(
            data_dir=epath.Path(os.path.expanduser(tfds_dir)), dataset_name=info["name"],
            split=part.splitname,
            template=s.get("filepathTemplate", naming.DEFAULT_FILENAME_TEMPLATE),
            filetype_suffix="array_record")
        paths = [str(p) for p in template.sharded_filepaths(len(s["shardLengths"]))]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
          raise DataError(f"{missing[0]}: a file of split {part.splitname!r} that the TFDS "
                          f"dataset's {INFO_FILE} lists is missing")
        self._sources[part.splitname] = grain.sources.ArrayRecordDataSource(paths)
      total = len(self._sources[part.splitname])
      start, stop = part.from_ or 0, total if part.to is None else part.to
      self._parts.append((part.splitname, start, stop))
    self._ends = np.cumsum([stop - start for _, start, stop in self._parts])

  def __len__(self) -> int:
    return int(self._ends[-1]) if len(self._ends) else 0

  def locate(self, index: int) -> tuple[str, int]:
    """(TFDS split, index in it) of example `index`."""
    k = int(np.searchsorted(self._ends, index, side="right"))
    split, start, _ = self._parts[k]
    return split, start + index - (int(self._ends[k - 1]) if k else 0)

  def __getitem__(self, index: int) -> bytes:
    split, i = self.locate(index)
    return self._sources[split][i]


def parse(data: bytes) -> dict[str, list]:
  """A serialised tf.train.Example as {feature name: its list of values}."""
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=import-outside-toplevel
  example = tf_example_pb2.Example.FromString(data)
  return {k: list(getattr(f, f.WhichOneof("kind")).value) if f.WhichOneof("kind") else []
          for k, f in example.features.feature.items()}


def _class_names(tfds_dir: str, feature: str) -> list[str] | None:
  """A ClassLabel feature's names (TFDS writes them to FEATURE.labels.txt), or None."""
  path = epath.Path(os.path.expanduser(tfds_dir)) / f"{feature}.labels.txt"
  return path.read_text().splitlines() if path.is_file() else None


def _check_fields(tfds_cfg, example: dict[str, list]) -> None:
  """One line naming the config field whose feature the dataset lacks, before anything is built."""
  for field in ("video", "caption", "label", "clip_id"):
    name = tfds_cfg[field]
    if name and name not in example:
      raise ConfigError(f"config.data.tfds.{field}={name!r}: TFDS dataset {tfds_cfg.dir} has no "
                        f"such feature (it has {sorted(example)})")
  if not tfds_cfg.video:
    raise ConfigError("config.data.tfds.video is not set: name the dataset's frames feature")
  video = example[tfds_cfg.video]
  if not video or not isinstance(video[0], bytes) or not video[0].startswith(_IMAGE_MAGIC):
    raise ConfigError(f"config.data.tfds.video={tfds_cfg.video!r}: not encoded frames (a Video or "
                      f"Sequence(Image) feature of JPEG or PNG images)")
  if not tfds_cfg.caption and not tfds_cfg.label:
    raise ConfigError("config.data.tfds: name a caption feature (caption=...) or a label feature "
                      "(label=..., whose class names become the captions)")


def _text(values: list) -> list[str]:
  return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


def _index_records(tfds_cfg, spec: str, examples: Examples,
                   annotator: text_annotations.Annotator) -> Iterator[dict[str, Any]]:
  """The index records of `spec`: each example's id, captions and their annotations, label."""
  names = _class_names(tfds_cfg.dir, tfds_cfg.label) if tfds_cfg.label else None
  for first in range(0, len(examples), _CHUNK):
    rows = []
    for i in range(first, min(first + _CHUNK, len(examples))):
      example = parse(examples[i])
      record = {"clip_id": f"{spec}/{i}", "frames": [], "fps": 0.0,
                "meta": {"tfds": dict(zip(("split", "index"), examples.locate(i)))}}
      if tfds_cfg.clip_id:
        record["clip_id"] = _text(example[tfds_cfg.clip_id])[0]
      if tfds_cfg.label:
        label = example[tfds_cfg.label][0]
        if names and isinstance(label, int) and not 0 <= label < len(names):
          raise DataError(f"TFDS dataset {tfds_cfg.dir}, {spec} example {i}: class {label} of "
                          f"feature {tfds_cfg.label!r} is not among its {len(names)} names")
        record["label"] = names[label] if names and isinstance(label, int) else _text([label])[0]
      captions = _text(example[tfds_cfg.caption]) if tfds_cfg.caption else []
      captions = [" ".join(c.split()) for c in captions if c.strip()]
      if not captions and tfds_cfg.label:  # a classification clip: its class name in words
        captions = [formats.class_caption(record["label"])]
      record["captions"] = captions
      if not captions:
        raise DataError(f"TFDS dataset {tfds_cfg.dir}, {spec} example {i}: no caption in "
                        f"feature {tfds_cfg.caption!r}")
      rows.append(record)
    texts = annotator.annotate([c for r in rows for c in r["captions"]])
    for r in rows:
      r["text"], texts = texts[:len(r["captions"])], texts[len(r["captions"]):]
      yield r


def _split_dir_name(spec: str) -> str:
  """A folder name for a split string ("train[:10%]" -> "train_10_-1a2b3c4d")."""
  if re.fullmatch(r"[A-Za-z0-9_-]+", spec):
    return spec
  return re.sub(r"[^A-Za-z0-9_-]+", "_", spec) + "-" + hashlib.sha256(spec.encode()).hexdigest()[:8]


def ensure_index(data_cfg, splits: list[str]) -> None:
  """Makes sure `config.data.dir` indexes each of `splits` of the TFDS dataset (building what is
  missing; the training split's statistics and tokenizer too), and that what it holds was built
  from this TFDS dataset, as it is now, with these fields."""
  tfds_cfg, out = data_cfg.tfds, data_cfg.dir
  if not tfds_cfg.dir:
    raise ConfigError("config.data.source='tfds' needs config.data.tfds.dir: the folder TFDS "
                      "prepared the dataset in")
  if not files.is_local(out):
    raise ConfigError(f"config.data.dir={out!r}: the TFDS index is read from a local path")
  info_path = os.path.join(out, shards.INFO_FILE)
  info = shards.read_info(out) if os.path.isfile(info_path) else {"name": "tfds", "splits": {}}
  for spec in dict.fromkeys([data_cfg.train_split, *splits]):
    examples = Examples(tfds_cfg.dir, spec)
    source = {"dir": tfds_cfg.dir, "spec": spec, "fingerprint": examples.fingerprint,
              "fields": {f: tfds_cfg[f] for f in ("video", "caption", "label", "clip_id")}}
    if spec in info["splits"]:
      if info["splits"][spec].get("tfds") != source:
        raise DataError(f"{info_path}: split {spec!r} was indexed from another TFDS dataset, "
                        f"version or fields ({info['splits'][spec].get('tfds')}); point "
                        f"config.data.dir at a new folder, or delete this one")
      continue
    if not len(examples):
      raise DataError(f"TFDS dataset {tfds_cfg.dir}: split {spec!r} is empty")
    _check_fields(tfds_cfg, parse(examples[0]))
    logging.info("indexing %d examples of %s %s into %s (once)", len(examples), tfds_cfg.dir,
                 spec, out)
    info["splits"][spec] = _build(data_cfg, spec, examples, source, spec == data_cfg.train_split)
    shards.write_info(out, info)


def _build(data_cfg, spec, examples, source, is_train) -> dict[str, Any]:
  """Writes the index of `spec` (and, for the training split, the tokenizer and statistics) and
  returns its dataset_info.json entry. The folder appears whole (a rename), so a killed build
  leaves nothing half-written."""
  out, name = data_cfg.dir, _split_dir_name(spec)
  os.makedirs(out, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=out, prefix=".building-")
  stats, captions = text_annotations.TextStats(), []

  def records():
    for r in _index_records(data_cfg.tfds, spec, examples, text_annotations.Annotator()):
      stats.add(r["text"])
      captions.extend(r["captions"])
      yield r
  try:
    paths = shards.write_split(tmp, name, records(), num_shards=max(1, len(examples) // 100_000),
                               num_records=len(examples))
    try:
      os.rename(os.path.join(tmp, name), os.path.join(out, name))
    except OSError:
      # A folder already there was renamed into place whole by another process (of this run,
      # or one killed before it wrote dataset_info.json): the same records, kept as they are.
      if not os.path.isdir(os.path.join(out, name)):
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  if is_train:
    tokenizer_lib.train(captions, os.path.join(out, shards.TOKENIZER_FILE),
                        data_cfg.tfds.vocab_size)
    stats.write(out)
  return {"num_clips": len(examples), "files": paths, "tfds": source}


class TfdsRecords:
  """A split's records as the pipeline reads them: index record i with the frames of TFDS
  example i, serialised like a shard's record."""

  def __init__(self, index_files: list[str], source: dict[str, Any]):
    self._index = grain.sources.ArrayRecordDataSource(index_files)
    self._dir = source["dir"]
    self._examples = Examples(source["dir"], source["spec"])
    self._video = source["fields"]["video"]
    if self._examples.fingerprint != source["fingerprint"] or len(self._examples) != len(
        self._index):
      raise DataError(f"TFDS dataset {source['dir']} changed since split {source['spec']!r} was "
                      f"indexed: delete the index folder (config.data.dir) to rebuild it")

  def __len__(self) -> int:
    return len(self._index)

  def __getitem__(self, index: int) -> bytes:
    record = shards.decode_record(self._index[index])
    split, i = self._examples.locate(index)
    if record["meta"]["tfds"] != {"split": split, "index": i}:
      raise DataError(f"{self._dir}: index record {index} is of {record['meta']['tfds']}, not "
                      f"{split} example {i}: delete the index folder (config.data.dir)")
    try:
      record["frames"] = parse(self._examples[index])[self._video]
    except Exception as e:  # pylint: disable=broad-except  # any bad record: named, raised
      raise DataError(f"TFDS dataset {self._dir}: {split} example {i}: unreadable "
                      f"({one_line(e, 200)})") from e
    if not record["frames"]:
      raise DataError(f"TFDS dataset {self._dir}: {split} example {i}: no frames in feature "
                      f"{self._video!r}")
    return shards.encode_record(record)
