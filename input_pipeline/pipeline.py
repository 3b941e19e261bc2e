"""grain input pipeline: frame shards -> per-process batches of uint8 clips and token ids.

Each process builds `global_batch / process_count` examples per batch: in training its rows of
each global batch (`train_dataset`), in evaluation its slice of the records
(`records[process_index::process_count]`). The batches' fields are the contract's
(input_pipeline/contract.py).

Training samples one frame at a random position inside each of T equal segments (TSN-style), one
random caption, a random resized crop (same box for every frame of a clip) and, if enabled, a
caption-aware horizontal flip: a flipped clip has its direction words mirrored ("left" <-> "right"),
so a flip never contradicts its caption. Evaluation takes the centre frame of each segment, the
clip's first caption and a centre crop.

Evaluators read the downstream task fields of the records (`label`, `qa`, `mc`) with `read_field`.
"""

import collections
from collections.abc import Sequence
from typing import Any

import cv2
import grain
import jax
import numpy as np

from input_pipeline import (contract, shards, text_annotations, tfds_source,
                            tokenizer as tokenizer_lib)
from input_pipeline.errors import ConfigError, DataError, one_line

# grain runs transforms on its own threads; OpenCV's thread pool on top of them costs more in
# hand-offs than it gains on frames this small (measured: 15% more CPU per clip).
cv2.setNumThreads(0)


def segment_indices(num_available: int, num_frames: int, rng: np.random.Generator | None,
                    position: float = 0.5):
  """T frame indices, one per equal segment: random inside it (rng given), or at `position`
  (0 = its start, 0.5 = its centre)."""
  offset = position if rng is None else rng.random(num_frames)
  pos = (np.arange(num_frames) + offset) * (num_available / num_frames)
  return np.minimum(pos.astype(np.int64), num_available - 1)


def mirror_words(words: list[str]) -> list[str]:
  """Words with left and right swapped (case kept as in "Left" -> "Right")."""
  out = []
  for w in words:
    m = contract.MIRROR_WORDS.get(w.lower(), w)
    out.append(m.capitalize() if w[:1].isupper() and m is not w else m)
  return out


def mirror_caption(caption: str) -> str:
  return " ".join(mirror_words(caption.split(" ")))


def crop_box(width: int, height: int, scale, ratio, rng: np.random.Generator):
  """Random-resized-crop box (Inception style); the full frame if no sampled box fits."""
  area = width * height
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    w = int(round(np.sqrt(target * aspect)))
    h = int(round(np.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      x0 = int(rng.integers(0, width - w + 1))
      y0 = int(rng.integers(0, height - h + 1))
      return (x0, y0, x0 + w, y0 + h)
  return (0, 0, width, height)


def centre_box(width: int, height: int):
  side = min(width, height)
  x0, y0 = (width - side) // 2, (height - side) // 2
  return (x0, y0, x0 + side, y0 + side)


def decode_jpeg(jpeg: bytes) -> np.ndarray:
  """uint8 [H, W, 3] RGB; OpenCV's libjpeg-turbo decoder is faster than Pillow's here."""
  frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR_RGB)
  if frame is None:
    raise DataError("a stored frame is not a valid JPEG")
  return frame


def crop_resize(frame: np.ndarray, box, size: int, out: np.ndarray | None = None) -> np.ndarray:
  """The box (x0, y0, x1, y1) of `frame` resized to size x size (into `out` if given)."""
  x0, y0, x1, y1 = box
  # Bilinear interpolation is accurate up to 2x downscaling and several times cheaper than an
  # antialiasing filter; larger reductions average over areas instead, which does not alias.
  interpolation = cv2.INTER_AREA if min(x1 - x0, y1 - y0) > 2 * size else cv2.INTER_LINEAR
  return cv2.resize(frame[y0:y1, x0:x1], (size, size), dst=out, interpolation=interpolation)


def eval_clip(frames: Sequence[np.ndarray], num_frames: int, size: int,
              position: float = 0.5) -> np.ndarray:
  """The evaluation view of a video's frames (uint8 [H, W, 3] each, read only where sampled):
  `num_frames` of them at `position` of equal segments, centre-cropped to a square and resized
  to size x size; uint8 [num_frames, size, size, 3]."""
  out = np.empty((num_frames, size, size, 3), np.uint8)
  box = None
  for i, j in enumerate(segment_indices(len(frames), num_frames, None, position)):
    frame = frames[j]
    box = box or centre_box(frame.shape[1], frame.shape[0])
    crop_resize(frame, box, size, out=out[i])
  return out


class Jpegs(Sequence):
  """A record's JPEG frames, decoded when read."""

  def __init__(self, jpegs: list[bytes]):
    self.jpegs = jpegs

  def __len__(self):
    return len(self.jpegs)

  def __getitem__(self, i):
    return decode_jpeg(self.jpegs[i])


class ClipTransform(grain.transforms.RandomMap):
  """Parses a record and makes one example; random choices only when `train` is set."""

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, idf: text_annotations.IdfTable,
               num_frames: int, image_size: int, max_text_len: int, train: bool,
               crop_scale=(0.6, 1.0), crop_ratio=(3 / 4, 4 / 3), hflip: str = "off",
               answers: text_annotations.AnswerVocab | None = None,
               knowledge: text_annotations.KnowledgeVocab | None = None):
    """With `answers`, examples hold a question and its answer's class instead of a caption; with
    `knowledge`, caption examples hold their knowledge vector."""
    if hflip not in ("off", "caption_aware"):
      raise ConfigError(f"config.data.hflip: {hflip!r}, expected 'off' or 'caption_aware'")
    self.tokenizer, self.idf, self.num_frames, self.size = tokenizer, idf, num_frames, image_size
    self.answers, self.knowledge = answers, knowledge
    self.max_text_len, self.train = max_text_len, train
    self.crop_scale, self.crop_ratio, self.hflip = tuple(crop_scale), tuple(crop_ratio), hflip

  def random_map(self, element, rng: np.random.Generator) -> dict[str, Any]:
    return self._example(element, rng if self.train else None, 0.5)

  def views(self, element, num_views: int) -> dict[str, Any]:
    """The evaluation example with `num_views` clips of the video, view k taking the frames at
    (k + 0.5) / num_views of each segment: frames [num_views, T, H, W, 3]."""
    views = [self._example(element, None, (k + 0.5) / num_views) for k in range(num_views)]
    return {**views[0], "frames": np.stack([v["frames"] for v in views])}

  def _example(self, element, rng: np.random.Generator | None, position: float):
    index, data = element
    record = shards.decode_record(data)
    jpegs = Jpegs(record["frames"])
    if rng is None:
      frames, flip, ci = eval_clip(jpegs, self.num_frames, self.size, position), False, 0
    else:
      idx = segment_indices(len(jpegs), self.num_frames, rng)
      first = jpegs[idx[0]]
      box = crop_box(first.shape[1], first.shape[0], self.crop_scale, self.crop_ratio, rng)
      flip = self.hflip == "caption_aware" and rng.random() < 0.5
      ci = rng.integers(len(record["captions"]))
      frames = np.empty((self.num_frames, self.size, self.size, 3), np.uint8)
      for i, j in enumerate(idx):
        crop_resize(first if i == 0 else jpegs[j], box, self.size, out=frames[i])
        if flip:  # in place: a reversed-stride view would make batching 30x slower
          cv2.flip(frames[i], 1, dst=frames[i])
    host = {"clip_id": np.asarray(record["clip_id"]), "index": np.int32(index)}
    if self.answers is not None:
      qa = record.get("qa")
      if not qa:
        raise DataError(f"clip {record['clip_id']!r} has no questions (record field 'qa'), which "
                        f"config.data.text='question' needs")
      q = qa[rng.integers(len(qa)) if rng is not None else 0]
      question, answer = q["question"], q["answer"]
      if flip:
        question, answer = mirror_caption(question), contract.MIRROR_WORDS.get(answer, answer)
      return {"frames": frames, "tokens": self.tokenizer.encode([question], self.max_text_len)[0],
              "answer": np.int32(self.answers(answer)), **host, "caption": np.asarray(question)}
    text = record["text"][ci]
    words = mirror_words(text["words"]) if flip else text["words"]
    example = {"frames": frames, **self.text_features(words, text["spaces"], text["pos"]), **host,
               "caption": np.asarray(text_annotations.rebuild(words, text["spaces"])[0])}
    if self.knowledge is not None:
      entries = text["knowledge"]
      if flip:
        entries = text_annotations.mirror_knowledge(entries, contract.MIRROR_WORDS)
      example["knowledge"] = self.knowledge.vector(entries)
    return example

  def text_features(self, words, spaces, pos) -> dict[str, np.ndarray]:
    """Token ids and, per token, its word's POS id and idf (0 where it has no word)."""
    tokens, word_index = self.tokenizer.encode_words(words, spaces, self.max_text_len)
    # A trailing 0 entry: word index -1 (no word) reads it.
    pos_ids = np.asarray([contract.POS_ID.get(p, 0) for p in pos] + [0], np.int32)
    idf = np.asarray([self.idf(w) for w in words] + [0.0], np.float32)
    return {"tokens": tokens, "token_pos": pos_ids[word_index], "token_idf": idf[word_index]}


def local_batch_size(global_batch_size: int) -> int:
  if global_batch_size % jax.process_count():
    raise ConfigError(f"batch size {global_batch_size} is not divisible by the "
                      f"{jax.process_count()} processes")
  return global_batch_size // jax.process_count()


def answer_vocab(data_cfg) -> text_annotations.AnswerVocab | None:
  """The answer classes of a QA config (`config.data.text = "question"`), else None."""
  if data_cfg.text not in ("caption", "question"):
    raise ConfigError(f"config.data.text={data_cfg.text!r}: expected 'caption' or 'question'")
  if data_cfg.text == "caption":
    return None
  if data_cfg.num_answers <= 0:
    raise ConfigError("config.data.text='question' needs config.data.num_answers > 0 (the size "
                      "of the answer vocabulary)")
  return text_annotations.AnswerVocab(data_cfg.dir, data_cfg.num_answers)


def knowledge_vocab(data_cfg) -> text_annotations.KnowledgeVocab | None:
  """The knowledge classes of a config with `config.data.knowledge.size > 0` (CLOP), else None.
  They are config.data.dir's, whichever source a caption comes from: they are the model's."""
  k = data_cfg.knowledge
  if k.size < 0 or k.min_count < 1:
    raise ConfigError(f"config.data.knowledge: size={k.size} must be >= 0 and min_count="
                      f"{k.min_count} >= 1")
  if not k.size or data_cfg.text != "caption":
    return None
  return text_annotations.KnowledgeVocab(data_cfg.dir, k.size, k.min_count, k.kinds)


def make_clip_transform(data_cfg, tokenizer, train: bool, source_dir: str | None = None
                        ) -> ClipTransform:
  """Training examples hold the config's text (`config.data.text`); evaluation ones always a
  caption (evaluators that need questions read them with `read_field`). `source_dir`: a mixture
  source's dataset, whose idf weights its captions (default: `config.data.dir`)."""
  # A model's config from before `idf` was a field (its exports, workdirs) used the smoothed form.
  idf = text_annotations.IdfTable(source_dir or data_cfg.dir, data_cfg.get("idf", "smooth"))
  return ClipTransform(tokenizer, idf,
                       data_cfg.num_frames, data_cfg.image_size, data_cfg.max_text_len,
                       train=train, crop_scale=data_cfg.crop_scale, crop_ratio=data_cfg.crop_ratio,
                       hflip=data_cfg.hflip, answers=answer_vocab(data_cfg) if train else None,
                       knowledge=knowledge_vocab(data_cfg) if train else None)


class _ShardRecords:
  """The records of a split's shard files as one random-access source: a record that cannot be
  read or decoded is named by its shard file and its index in that file, in one line."""

  def __init__(self, files):
    self._files = list(files)
    self._source = grain.sources.ArrayRecordDataSource(self._files)
    self._ends = None  # each file's end in the split's record order, counted on the first error

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> bytes:
    try:
      data = self._source[index]
      shards.decode_record(data)  # checked here, where the record's file and position are known
    except Exception as e:  # pylint: disable=broad-except  # any bad record: named, raised
      reason = str(e) if isinstance(e, DataError) else f"unreadable ({one_line(e, 200)})"
      raise DataError(f"{self._where(index)}: {reason}") from e
    return data

  def _where(self, index: int) -> str:
    if self._ends is None:
      self._ends = np.cumsum([len(grain.sources.ArrayRecordDataSource([f])) for f in self._files])
    k = int(np.searchsorted(self._ends, index, side="right"))
    return f"{self._files[k]}: record {index - (int(self._ends[k - 1]) if k else 0)}"


def records(data_dir: str, split: str) -> grain.MapDataset:
  """(record index, serialised record) pairs of `split`: of its shards, or of the TFDS dataset
  it indexes (tfds_source.py)."""
  files = shards.split_files(data_dir, split)
  tfds = shards.read_info(data_dir)["splits"][split].get("tfds")
  source = tfds_source.TfdsRecords(files, tfds) if tfds else _ShardRecords(files)
  return grain.MapDataset.source(source).map_with_index(lambda i, data: (i, data))


def training_sources(data_cfg) -> list[tuple[str, str, str, float]]:
  """(config name, dataset dir, split, weight) of each training source: `config.data` itself, then
  the entries of `config.data.mixture` (e.g. image-text pairs as 1-frame clips next to videos)."""
  sources = [("config.data", data_cfg.dir, data_cfg.train_split, data_cfg.weight)]
  sources += [(f"config.data.mixture.{name}", src.dir, src.train_split, src.weight)
              for name, src in data_cfg.mixture.items()]
  for name, _, _, weight in sources:
    if not weight > 0:
      raise ConfigError(f"{name}.weight={weight}: a training source's weight must be > 0")
  return sources


def train_dataset(data_cfg, tokenizer, global_batch_size: int, seed: int,
                  start_step: int = 0) -> grain.IterDataset:
  """Infinite, shuffled batches: this process's slice of the global batches from step
  `start_step` + 1 on.

  Every process orders the whole dataset alike and every random choice (shuffle order per epoch,
  frames, crop, flip, caption) is a pure function of `seed` and the element's position in that
  order. Global batch s is examples [s·B, (s+1)·B) of it, and process p reads rows
  [p·B/P, (p+1)·B/P) of each, which is where `jax.make_array_from_process_local_data` puts them:
  the global batches, hence the run, are the same for any number of processes, the processes read
  disjoint clips, and a run resumed at any step (on any number of processes) sees exactly what an
  uninterrupted one would have seen. With a mixture (`config.data.mixture`) each source is
  shuffled and transformed on its own (with its own idf, all with this tokenizer and frame count:
  a 1-frame image fills the T frames of a clip with copies of itself) and grain interleaves them in
  proportion to their weights, example by example, so a batch holds examples of every source.
  """
  sources, parts = training_sources(data_cfg), []
  for i, (_, source_dir, split, _) in enumerate(sources):
    ds = records(source_dir, split).seed(seed + i).shuffle().repeat(None)
    ds = ds.random_map(make_clip_transform(data_cfg, tokenizer, train=True, source_dir=source_dir))
    parts.append(ds.map(lambda example, i=i: {**example, "source": np.int32(i)}))
  ds = parts[0] if len(parts) == 1 else grain.MapDataset.mix(parts, [w for *_, w in sources])
  ds = ds.batch(local_batch_size(global_batch_size), drop_remainder=True)
  # Local batches p, p + P, p + 2P, ...: rows [p·B/P, (p+1)·B/P) of global batches 0, 1, 2, ...
  ds = ds[jax.process_index()::jax.process_count()][start_step:]
  it = ds.to_iter_dataset(_read_options(data_cfg))
  if data_cfg.worker_count:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_cfg.worker_count))
  return it


def eval_dataset(data_cfg, tokenizer, split: str, global_batch_size: int,
                 num_views: int = 1) -> grain.IterDataset:
  """One ordered pass over this process's slice of `split`; the last batch may be short. Frames
  are [B, num_views, T, H, W, 3] (see ClipTransform.views)."""
  ds = records(data_cfg.dir, split)[jax.process_index()::jax.process_count()]
  transform = make_clip_transform(data_cfg, tokenizer, train=False)
  return _in_order(ds.map(lambda x: transform.views(x, num_views)), data_cfg, global_batch_size)


def caption_dataset(data_cfg, tokenizer, split: str,
                    global_batch_size: int) -> tuple[grain.IterDataset, int]:
  """Every caption of this process's slice of `split`, in record order, as batches of tokens (with
  POS and idf) and `index`, the caption's record; and how many captions there are."""
  transform = make_clip_transform(data_cfg, tokenizer, train=False)
  items = [(index, text)
           for index, data in records(data_cfg.dir, split)[jax.process_index()::jax.process_count()]
           for text in shards.decode_record(data)["text"]]
  ds = grain.MapDataset.source(items).map(
      lambda x: {**transform.text_features(x[1]["words"], x[1]["spaces"], x[1]["pos"]),
                 "index": np.int32(x[0])})
  return _in_order(ds, data_cfg, global_batch_size), len(items)


def _in_order(ds: grain.MapDataset, data_cfg, global_batch_size: int) -> grain.IterDataset:
  """`ds` in batches of this process's share of `global_batch_size`, the last one short."""
  ds = ds.batch(local_batch_size(global_batch_size), drop_remainder=False)
  return ds.to_iter_dataset(_read_options(data_cfg))


def _read_options(data_cfg) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=data_cfg.num_threads, prefetch_buffer_size=data_cfg.prefetch)


def read_field(data_dir: str, split: str, field: str, needed_by: str) -> list[Any]:
  """The task field `field` (shards.TASK_FIELDS) of every record of `split`, in record order.

  Every process reads the whole split: one more pass over its files, whose frames are read and
  dropped. A record without the field is an error naming the split, the field and `needed_by`.
  """
  out = []
  for index, data in records(data_dir, split):
    value = shards.decode_record(data).get(field)
    if value is None:
      raise DataError(f"{data_dir}/{split}: record {index} has no field {field!r}, which "
                      f"{needed_by} needs (docs/EVAL.md says which datasets carry it)")
    out.append(value)
  return out


def eval_examples(data_cfg, tokenizer, split: str, indices) -> list[dict[str, Any]]:
  """The evaluation view of specific records (for pictures), read directly by index."""
  split_records = records(data_cfg.dir, split)
  transform = make_clip_transform(data_cfg, tokenizer, train=False)
  return [transform.random_map(split_records[int(i)], None) for i in indices]


def split_host_fields(batch: dict[str, np.ndarray]):
  """(device fields, host-only fields) of a batch."""
  device = {k: v for k, v in batch.items() if k not in contract.HOST_ONLY_FIELDS}
  host = {k: v for k, v in batch.items() if k in contract.HOST_ONLY_FIELDS}
  return device, host


def to_devices(batch: dict[str, np.ndarray],
               sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """Each process's slice of every field, assembled into global arrays laid out by `sharding`
  (the batch dimension split over the devices)."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def device_batches(dataset, sharding: jax.sharding.Sharding, prefetch: int = 2):
  """Yields (global device batch, host-only fields) for each batch of `dataset`, the device fields
  placed by `sharding`. `prefetch` batches are placed ahead of the one yielded: their copies to
  the devices, which JAX makes asynchronously, overlap the steps before them."""
  ahead = collections.deque()
  for batch in dataset:
    device, host = split_host_fields(batch)
    ahead.append((to_devices(device, sharding), host))
    if len(ahead) > prefetch:
      yield ahead.popleft()
  yield from ahead
