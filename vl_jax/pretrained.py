"""Trained models in notebooks and scripts, with no training machinery:

    from vl_jax import pretrained
    model = pretrained.load("/tmp/vl_jax_tiny")     # a workdir, a checkpoint or an export
    scores = model.similarity(model.encode_video(["a.mp4", "b.mp4"]), model.encode_text(["..."]))

`load` reads what exported.locate accepts. Encoding runs on the default device, jitted once per
batch shape (inputs are padded to whole batches). Videos get evaluation's view: a file is decoded
as the converter stores it (input_pipeline/convert.py's defaults: 8 frames at the centres of equal
segments, short side 224), then the model's frames are sampled and centre-cropped as in evaluation
(input_pipeline/pipeline.eval_clip); frames given as arrays get the same sampling and crop.
"""

import os
from collections.abc import Sequence

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from input_pipeline import convert, pipeline, tokenizer as tokenizer_lib, video_decode
from input_pipeline.errors import ConfigError, DataError, one_line
from vl_jax.models import builder
from vl_jax.train import init_from, state as state_lib
from vl_jax.weights import exported


class Model:
  """A dual encoder's parameters with its config and tokenizer."""

  def __init__(self, config, params, tokenizer, step: int):
    self.config, self.params, self.tokenizer, self.step = config, params, tokenizer, step
    self.module = builder.build(config.model, config.data, tokenizer.vocab_size)
    apply = lambda method, key: jax.jit(
        lambda p, x: self.module.apply({"params": p}, x, method=method)[key])
    self._text, self._video = apply("encode_text", "text_emb"), apply("encode_video", "video_emb")

  @property
  def num_frames(self) -> int:
    return self.config.data.num_frames

  @property
  def image_size(self) -> int:
    return self.config.data.image_size

  def tokenize(self, texts: Sequence[str]) -> np.ndarray:
    return self.tokenizer.encode(list(texts), self.config.data.max_text_len)

  def encode_text(self, texts: str | Sequence[str], batch_size: int = 64) -> np.ndarray:
    """float32 [len(texts), E] unit embeddings."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    return _batched(lambda x: self._text(self.params, x), self.tokenize(texts), batch_size)

  def clip(self, video) -> np.ndarray:
    """uint8 [T, S, S, 3], the model's view of one video: a file path, or its frames as a uint8
    array [F, H, W, 3] or a list of [H, W, 3] arrays."""
    if isinstance(video, (str, os.PathLike)):
      video = read_video(os.fspath(video))
    frames = [np.asarray(f) for f in video]
    if not frames or any(f.ndim != 3 or f.shape[-1] != 3 or f.dtype != np.uint8 for f in frames):
      raise ValueError("a video's frames must be uint8 [H, W, 3] RGB arrays, at least one")
    return pipeline.eval_clip(frames, self.num_frames, self.image_size)

  def encode_video(self, videos, batch_size: int = 16) -> np.ndarray:
    """float32 [N, E] unit embeddings of `videos`: one video (a path, or frames uint8
    [F, H, W, 3]), a batch of them (uint8 [N, F, H, W, 3]) or a list of paths and frame arrays."""
    if isinstance(videos, (str, os.PathLike)) or (isinstance(videos, np.ndarray) and
                                                  videos.ndim == 4):
      videos = [videos]
    return self.encode_clips(np.stack([self.clip(v) for v in videos]), batch_size)

  def encode_clips(self, clips: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """float32 [N, E] unit embeddings of clips already in the model's view (`clip`): uint8
    [N, T, S, S, 3]."""
    return _batched(lambda x: self._video(self.params, x), clips, batch_size)

  def similarity(self, video_emb, text_emb) -> np.ndarray:
    """[videos, texts] cosine similarities of unit embeddings (what retrieval ranks by)."""
    return np.asarray(video_emb) @ np.asarray(text_emb).T

  def export(self, out_dir: str) -> None:
    """A self-contained copy in `out_dir` that `load` reads (vl_jax/weights/exported.py)."""
    flat = {k: np.asarray(v) for k, v in flatten_dict(self.params, sep="/").items()}
    exported.save(out_dir, flat, self.config, self.tokenizer.model_path, self.step)


def _batched(fn, inputs: np.ndarray, batch_size: int) -> np.ndarray:
  """`fn` over `inputs` in batches of `batch_size` rows, the last one padded with zeros: one
  compiled shape."""
  outs = []
  for start in range(0, len(inputs), batch_size):
    chunk = inputs[start:start + batch_size]
    pad = np.zeros((batch_size - len(chunk),) + chunk.shape[1:], chunk.dtype)
    outs.append(np.asarray(fn(np.concatenate([chunk, pad])))[:len(chunk)])
  return np.concatenate(outs)


def read_video(path: str) -> list[np.ndarray]:
  """The frames of a video (or an image) file as the converter stores them."""
  try:
    if video_decode.is_image(path):
      clip = video_decode.load_image(path, convert.DEFAULT_SIZE)
    else:
      clip = video_decode.decode_video(path, None, None, convert.DEFAULT_NUM_FRAMES, None,
                                       convert.DEFAULT_MAX_FRAMES, convert.DEFAULT_SIZE)
  except video_decode.DecodeError as e:
    raise DataError(f"{path}: {e}") from e
  return [np.asarray(img.convert("RGB")) for img in clip.frames]


def load(path: str, step: int | None = None) -> Model:
  """The model at `path` (a training workdir, a checkpoint directory or an exported model), its
  checkpoint `step` for a workdir (None: the one `path` names, else the latest)."""
  where = exported.locate(path)
  config = exported.read_config(where.directory)
  token_file = tokenizer_lib.find(where.directory)
  if token_file is None:
    raise DataError(f"{where.directory}: no tokenizer file ({' or '.join(tokenizer_lib.FILES)})")
  tokenizer = tokenizer_lib.load(token_file)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  try:  # the model its config describes, shapes only: a missing or mistyped field fails here
    module = builder.build(config.model, config.data, tokenizer.vocab_size)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
        jax.eval_shape(lambda rng: state_lib.init_params(module, config.data, rng),
                       jax.random.key(0)))
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    raise DataError(f"{where.directory}/{exported.CONFIG}: not a model config this version "
                    f"reads ({one_line(e, 200)})") from e
  try:
    params, step = init_from.stored_params(path, abstract, step, strict=True)
  except ConfigError as e:
    raise ConfigError(f"{e}; the model's config ({where.directory}/{exported.CONFIG}) and "
                      f"tokenizer ({token_file}, {tokenizer.vocab_size} tokens) must be those it "
                      f"was trained with") from e
  return Model(config, unflatten_dict(params, sep="/"), tokenizer, step)
