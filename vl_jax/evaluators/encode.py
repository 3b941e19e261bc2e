"""The model's two towers applied to whole splits and to lists of texts, on the mesh, from any
number of processes: what every evaluator embeds with."""

import functools
import math

import jax
import numpy as np
from jax.experimental import multihost_utils

from input_pipeline import pipeline
from vl_jax import sharding
from vl_jax.errors import NonFiniteOutputError
from vl_jax.losses.token_contrastive import content_token_weights
from vl_jax.models import layers


def check_finite(outputs: dict[str, np.ndarray], what: str) -> None:
  """NonFiniteOutputError naming `what` and how many rows of which output hold a NaN or Inf: a
  broken model's outputs are refused, never scored (a NaN compares false with every threshold)."""
  for name, x in outputs.items():
    if np.issubdtype(x.dtype, np.floating):
      bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
      if bad.any():
        raise NonFiniteOutputError(
            f"{what}: {int(bad.sum())} of {len(x)} rows of the model's {name!r} are NaN or Inf "
            f"(first: row {int(np.flatnonzero(bad)[0])}); nothing was scored")


class Encoder:
  """Unit-norm embeddings of clips and texts, replicated on every process; `what` names the
  batch-size field in errors. With `tokens`, also the token-level features that TACo's scores
  need: each clip's frame tokens and projected tokens, each caption's tower tokens, mask,
  projected tokens and content-token weights."""

  def __init__(self, predict, mesh, data_cfg, tokenizer, batch_size: int, what: str):
    sharding.check_batch_size(batch_size, mesh, what)
    self.mesh, self.data_cfg, self.tokenizer = mesh, data_cfg, tokenizer
    self.batch_size = batch_size
    replicated = sharding.replicated(mesh)
    self._rows = sharding.batch_sharding(mesh)

    def video(params, b, tokens):
      # [B, clips, T, H, W, 3]: the clips of a video are encoded and their outputs averaged.
      frames = b["frames"]
      out = predict.encode_video(params, frames.reshape((-1,) + frames.shape[2:]))
      per_video = lambda x: x.reshape(frames.shape[:2] + x.shape[1:]).mean(axis=1)
      res = {"video": layers.l2_normalize(per_video(out["video_emb"]))}
      if tokens:
        res |= {"frame_tokens": per_video(out["frame_tokens"]),
                "video_token_emb": per_video(out["video_token_emb"])}
      return res

    def text(params, b, tokens):
      out = predict.encode_text(params, b["tokens"])
      res = {"text": out["text_emb"]}
      if tokens:
        res |= {"text_tokens": out["text_tokens"], "text_mask": out["text_mask"],
                "text_token_emb": out["text_token_emb"],
                "weights": content_token_weights(b["token_pos"], b["token_idf"])}
      return res

    jit = lambda f: jax.jit(f, static_argnames="tokens", out_shardings=replicated)
    self._video = jit(video)
    self._video_text = jit(lambda params, b, tokens: video(params, b, tokens) | text(params, b,
                                                                                     tokens))
    self._text = jit(text)

  def _batches(self, dataset, num_local: int):
    """This process's batches padded to the global batch; every process yields the same number,
    since the encoders are collectives. The padding rows have index -1."""
    local_bs = pipeline.local_batch_size(self.batch_size)
    most = int(np.max(multihost_utils.process_allgather(np.int64(num_local))))
    it, template = iter(dataset), None
    for _ in range(math.ceil(most / local_bs)):
      batch = next(it, None)
      if batch is None:  # this process ran out before others: an all-padding batch
        batch = {k: v[:0] for k, v in template.items()}
      template = batch
      valid = len(batch["index"])
      pad = lambda x: np.concatenate([x, np.zeros((local_bs - valid,) + x.shape[1:], x.dtype)])
      device, host = pipeline.split_host_fields(batch)
      index = np.full(local_bs, -1, np.int32)
      index[:valid] = host["index"]
      yield pipeline.to_devices({k: pad(v) for k, v in device.items()}, self._rows), index

  def _encode_all(self, encode, dataset, num_local, params, split: str):
    """({output: array} of every real row, record index), in record order, gathered from all
    processes (a record's captions stay in their order); NonFiniteOutputError if any is NaN/Inf."""
    outs, indices = [], []
    for batch, index in self._batches(dataset, num_local):
      outs.append(jax.tree.map(np.asarray, encode(params, batch)))
      # Rows of the global batch are the processes' slices in process order.
      indices.append(multihost_utils.process_allgather(index, tiled=True))
    index = np.concatenate(indices)
    rows = np.flatnonzero(index >= 0)
    rows = rows[np.argsort(index[rows], kind="stable")]
    out = {k: np.concatenate([o[k] for o in outs])[rows] for k in outs[0]}
    check_finite(out, f"split {split!r} of {self.data_cfg.dir}")
    return out, index[rows]

  def clips(self, params, split: str, num_clips: int = 1, first_caption: bool = False,
            tokens: bool = False):
    """({"video": embeddings[, token features]}, record index) of `split` in record order, each
    video's outputs averaged over `num_clips` clips of it; with `first_caption`, also "text", each
    clip's first caption's embedding (one pass for both)."""
    encode = self._video_text if first_caption else self._video
    return self.map_clips(functools.partial(encode, tokens=tokens), params, split, num_clips)

  def map_clips(self, fn, params, split: str, num_clips: int = 1):
    """`fn(params, batch) -> {name: [B, ...]}`, jitted with replicated outputs, over every clip of
    `split` (batches of the evaluation view: frames [B, num_clips, T, H, W, 3], the first
    caption's tokens): ({name: array}, record index), in record order."""
    n = len(pipeline.records(self.data_cfg.dir, split)
            [jax.process_index()::jax.process_count()])
    dataset = pipeline.eval_dataset(self.data_cfg, self.tokenizer, split, self.batch_size,
                                    num_clips)
    return self._encode_all(fn, dataset, n, params, split)

  def captions(self, params, split: str, tokens: bool = False):
    """({"text": embedding of every caption of `split`[, token features]}, its record index), in
    record order."""
    dataset, n = pipeline.caption_dataset(self.data_cfg, self.tokenizer, split, self.batch_size)
    return self._encode_all(functools.partial(self._text, tokens=tokens), dataset, n, params,
                            split)

  def map_rows(self, fn, params, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`fn(params, batch) -> {name: [rows, ...]}`, jitted with replicated outputs, over the rows
    of `inputs` (the same arrays on every process) in global batches of `batch_size`: each
    process supplies its slice of every batch. The last batch is padded with zeros (for token
    ids: padding)."""
    rows = len(next(iter(inputs.values())))
    local_bs = pipeline.local_batch_size(self.batch_size)
    total = math.ceil(rows / self.batch_size) * self.batch_size
    padded = {k: np.concatenate([v, np.zeros((total - rows,) + v.shape[1:], v.dtype)])
              for k, v in inputs.items()}
    outs = []
    for start in range(0, total, self.batch_size):
      mine = start + jax.process_index() * local_bs
      batch = pipeline.to_devices({k: v[mine:mine + local_bs] for k, v in padded.items()},
                                  self._rows)
      outs.append(jax.tree.map(np.asarray, fn(params, batch)))
    return {k: np.concatenate([o[k] for o in outs])[:rows] for k in outs[0]}

  def texts(self, params, texts: list[str]) -> np.ndarray:
    """Embeddings of `texts` (the same list on every process), in order."""
    tokens = self.tokenizer.encode(texts, self.data_cfg.max_text_len)
    out = self.map_rows(lambda params, b: self._text(params, b, tokens=False), params,
                        {"tokens": tokens})
    check_finite(out, f"{len(texts)} texts ({texts[0]!r}, ...)")
    return out["text"]


class Evaluator:
  """What every evaluator holds: its name and config (`config.evals.<name>`), `every_steps`, the
  data config and tokenizer, and an Encoder of the model's predict functions at the config's
  batch size. A subclass prepares the rest in `setup` and scores in `run`."""

  def __init__(self, name, cfg, *, predict, mesh, data_cfg, tokenizer):
    self.name, self.cfg, self.data_cfg, self.tokenizer = name, cfg, data_cfg, tokenizer
    self.every_steps = cfg.every_steps
    self.encoder = Encoder(predict, mesh, data_cfg, tokenizer, cfg.batch_size,
                           f"config.evals.{name}.batch_size")
    self.setup(predict, mesh)

  def setup(self, predict, mesh) -> None:
    """What the evaluator prepares once: its checks (one-line ConfigErrors naming
    config.evals.<name>), its jitted functions and the task fields it reads."""

  def read_field(self, field: str, task: str) -> list:
    """The task field `field` of every record of the split, in record order (read_field)."""
    return pipeline.read_field(self.data_cfg.dir, self.cfg.split, field,
                               f"evaluator {self.name!r} ({task})")

  def videos(self, params) -> np.ndarray:
    """The split's clip embeddings in record order, each video's `num_clips` clips averaged."""
    return self.encoder.clips(params, self.cfg.split, self.cfg.num_clips)[0]["video"]
