"""The frame-shard format shared by the synthetic dataset and converted real videos.

A dataset directory holds:

    DIR/dataset_info.json          name, format version, frame size, per-split file lists and counts
    DIR/tokenizer.model            sentencepiece model trained on the training captions
    DIR/idf.json                   idf of the training captions' words (text_annotations.py)
    DIR/knowledge_vocab.json       knowledge entries of the training captions with their counts
    DIR/<split>/<split>-00000-of-0000K.array_record

Each ArrayRecord record is one clip, serialised with msgpack (a data-only format: reading a shard
never executes code) as a map with these fields:

    clip_id   str             unique within the dataset
    captions  list[str]       one or more captions of the clip
    text      list[map]       per caption: words, POS tags, lemmas, knowledge (text_annotations.py)
    frames    list[bytes]     JPEG-encoded RGB frames in temporal order
    fps       float           rate the stored frames were sampled at from the source (0: image)
    meta      map             free-form, JSON-compatible (the synthetic dataset stores its scene)

and, for downstream tasks, any of these optional fields:

    label     str             action class (zero-shot classification: UCF101, HMDB51, Kinetics)
    qa        list[map]       questions about the clip, each {"question": str, "answer": str}
                                (open-ended QA: MSRVTT-QA, MSVD-QA)
    mc        map             {"options": list[str], "answer": int}: candidate captions and the
                                index of the right one (multiple choice: MSR-VTT MC)
"""

import os
from typing import Any, Iterable, Sequence

import msgpack
from array_record.python.array_record_module import ArrayRecordWriter
from etils import epath

from input_pipeline import files
from input_pipeline.errors import DataError, one_line

FORMAT_VERSION = 2
# group_size:1 keeps every record individually addressable for random access; JPEG frames do not
# compress, so the default zstd would only cost time when reading.
WRITER_OPTIONS = "group_size:1,uncompressed"
INFO_FILE = "dataset_info.json"
TOKENIZER_FILE = "tokenizer.model"
RECORD_FIELDS = ("clip_id", "captions", "text", "frames", "fps", "meta")
TASK_FIELDS = ("label", "qa", "mc")


def encode_record(record: dict[str, Any]) -> bytes:
  missing = [f for f in RECORD_FIELDS if f not in record]
  if missing:
    raise ValueError(f"clip record {record.get('clip_id', '?')!r} lacks fields {missing}")
  fields = RECORD_FIELDS + tuple(f for f in TASK_FIELDS if record.get(f) is not None)
  return msgpack.packb({f: record[f] for f in fields}, use_bin_type=True)


def decode_record(data: bytes) -> dict[str, Any]:
  """The record's fields; DataError if `data` is not a clip record."""
  try:
    record = msgpack.unpackb(data, raw=False)
  except (ValueError, msgpack.exceptions.UnpackException) as e:
    raise DataError(f"corrupt ({one_line(e, 200)})") from e
  if not isinstance(record, dict) or "clip_id" not in record:
    raise DataError("corrupt (not a clip record)")
  return record


def shard_name(split: str, index: int, count: int) -> str:
  return f"{split}-{index:05d}-of-{count:05d}.array_record"


def write_split(out_dir: str, split: str, records: Iterable[dict[str, Any]],
                num_shards: int, num_records: int) -> list[str]:
  """Writes records to `num_shards` shards in contiguous blocks (shard order = record order)."""
  split_dir = os.path.join(out_dir, split)
  os.makedirs(split_dir, exist_ok=True)
  per_shard = -(-num_records // num_shards)
  names = [shard_name(split, i, num_shards) for i in range(num_shards)]
  writers = [None] * num_shards
  count = 0
  try:
    for i, record in enumerate(records):
      s = i // per_shard
      if writers[s] is None:
        writers[s] = ArrayRecordWriter(os.path.join(split_dir, names[s]), WRITER_OPTIONS)
      writers[s].write(encode_record(record))
      count += 1
  finally:
    for w in writers:
      if w is not None:
        w.close()
  if count != num_records:
    raise ValueError(f"split {split!r}: expected {num_records} records, got {count}")
  return [os.path.join(split, n) for n in names]


def read_info(data_dir: str) -> dict[str, Any]:
  path = epath.Path(data_dir) / INFO_FILE
  if not path.is_file():
    raise DataError(f"{path}: no {INFO_FILE}; is {data_dir!r} a vl-jax dataset directory?")
  info = files.read_json(path)
  if info.get("format_version") != FORMAT_VERSION:
    raise DataError(f"{path}: format_version {info.get('format_version')!r}, this code reads "
                    f"{FORMAT_VERSION}; convert or generate the dataset again")
  return info


def write_info(data_dir: str, info: dict[str, Any]) -> None:
  files.write_json(os.path.join(data_dir, INFO_FILE), dict(info, format_version=FORMAT_VERSION),
                   indent=2)


def split_files(data_dir: str, split: str) -> Sequence[str]:
  """`split`'s shard files, each checked to exist."""
  info = read_info(data_dir)
  if split not in info["splits"]:
    raise DataError(f"{os.path.join(data_dir, INFO_FILE)}: no split {split!r} "
                    f"(has {sorted(info['splits'])})")
  files = [os.path.join(data_dir, f) for f in info["splits"][split]["files"]]
  for f in files:
    if not os.path.isfile(f):
      raise DataError(f"{f}: shard listed in {INFO_FILE} is missing")
  return files
