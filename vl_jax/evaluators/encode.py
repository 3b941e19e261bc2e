"""The model's two towers applied to whole splits and to lists of texts, on the mesh, from any
number of processes: what every evaluator embeds with."""

import math

import jax
import numpy as np
from jax.experimental import multihost_utils

from input_pipeline import pipeline
from input_pipeline.tokenizer import PAD_ID
from vl_jax.models import layers
from vl_jax.train import mesh as mesh_lib


class Encoder:
  """Unit-norm embeddings of clips and texts, replicated on every process; `what` names the
  batch-size field in errors."""

  def __init__(self, model, mesh, data_cfg, tokenizer, batch_size: int, what: str):
    mesh_lib.check_batch_size(batch_size, mesh, what)
    self.model, self.mesh, self.data_cfg, self.tokenizer = model, mesh, data_cfg, tokenizer
    self.batch_size = batch_size
    replicated = mesh_lib.replicated(mesh)

    def video(params, b):
      # [B, clips, T, H, W, 3]: the clips of a video are encoded and their embeddings averaged.
      frames = b["frames"]
      emb = model.apply({"params": params}, frames.reshape((-1,) + frames.shape[2:]),
                        method="encode_video")["video_emb"]
      return layers.l2_normalize(emb.reshape(frames.shape[:2] + emb.shape[1:]).mean(axis=1))

    text = lambda params, b: model.apply({"params": params}, b["tokens"],
                                         method="encode_text")["text_emb"]
    self._video = jax.jit(lambda params, b: (video(params, b),), out_shardings=replicated)
    self._video_text = jax.jit(lambda params, b: (video(params, b), text(params, b)),
                               out_shardings=replicated)
    self._text = jax.jit(lambda params, b: (text(params, b),), out_shardings=replicated)

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
      yield mesh_lib.global_batch({k: pad(v) for k, v in device.items()}, self.mesh), index

  def _encode_all(self, encode, dataset, num_local, params):
    """(embeddings of each output of `encode`, record index) of every real row, in record order,
    gathered from all processes (a record's captions stay in their order)."""
    outs, indices = [], []
    for batch, index in self._batches(dataset, num_local):
      outs.append([np.asarray(x) for x in encode(params, batch)])
      # Rows of the global batch are the processes' slices in process order.
      indices.append(multihost_utils.process_allgather(index, tiled=True))
    index = np.concatenate(indices)
    rows = np.flatnonzero(index >= 0)
    rows = rows[np.argsort(index[rows], kind="stable")]
    return [np.concatenate(x)[rows] for x in zip(*outs)], index[rows]

  def clips(self, params, split: str, num_clips: int = 1, first_caption: bool = False):
    """(video embeddings in record order, record index) of `split`, each the average over
    `num_clips` clips of the video; with `first_caption`, also each clip's first caption's
    embedding (one pass for both)."""
    n = len(pipeline.records(self.data_cfg.dir, split)
            [jax.process_index()::jax.process_count()])
    dataset = pipeline.eval_dataset(self.data_cfg, self.tokenizer, split, self.batch_size,
                                    num_clips)
    embs, index = self._encode_all(self._video_text if first_caption else self._video, dataset,
                                   n, params)
    return (*embs, index)

  def captions(self, params, split: str):
    """(embedding of every caption of `split`, its record index), in record order."""
    dataset, n = pipeline.caption_dataset(self.data_cfg, self.tokenizer, split, self.batch_size)
    (text,), index = self._encode_all(self._text, dataset, n, params)
    return text, index

  def texts(self, params, texts: list[str]) -> np.ndarray:
    """Embeddings of `texts` (the same list on every process), in order."""
    tokens = self.tokenizer.encode(texts, self.data_cfg.max_text_len)
    local_bs = pipeline.local_batch_size(self.batch_size)
    rows = math.ceil(len(tokens) / self.batch_size) * self.batch_size
    tokens = np.concatenate([tokens, np.full((rows - len(tokens), tokens.shape[1]), PAD_ID,
                                             tokens.dtype)])
    out = []
    for start in range(0, rows, self.batch_size):
      # Each process supplies its slice of the global batch; the result is replicated.
      mine = start + jax.process_index() * local_bs
      batch = mesh_lib.global_batch({"tokens": tokens[mine:mine + local_bs]}, self.mesh)
      out.append(np.asarray(self._text(params, batch)[0]))
    return np.concatenate(out)[:len(texts)] if out else np.zeros((0, 0), np.float32)
