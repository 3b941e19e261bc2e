"""Text-video retrieval: R@1/5/10 (percent), median and mean rank, both directions.

Similarities are computed in blocks (ranking.py), so memory stays O(block) for any split size.
"""

import dataclasses
import math
import os

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from input_pipeline import pipeline
from vl_jax.evaluators import picture, ranking
from vl_jax.errors import ConfigError
from vl_jax.models import layers
from vl_jax.train import mesh as mesh_lib


@dataclasses.dataclass
class Embeddings:
  """Unit-norm embeddings of a split: videos in record order (row i is record `index[i]`) and
  captions, caption i describing video row `text_video[i]`."""
  video: np.ndarray
  index: np.ndarray
  text: np.ndarray
  text_video: np.ndarray

  def first_captions(self) -> "Embeddings":
    """One caption per video, its first, in video order."""
    _, first = np.unique(self.text_video, return_index=True)
    return Embeddings(self.video, self.index, self.text[first], np.arange(len(self.video)))


def retrieval_metrics(text: np.ndarray, video: np.ndarray, text_video: np.ndarray,
                      block: int = ranking.DEFAULT_BLOCK,
                      dual_softmax_scale: float = 0.0) -> dict[str, float]:
  """Both directions' metrics; caption i describes video `text_video[i]`. With
  `dual_softmax_scale` > 0, also the dual-softmax re-ranked ones as `t2v_dsl/...`, `v2t_dsl/...`."""
  t2v, v2t = ranking.retrieval_ranks(text, video, text_video, block)
  out = {**ranking.rank_metrics(t2v, "t2v"), **ranking.rank_metrics(v2t, "v2t")}
  if dual_softmax_scale:
    t2v, v2t = ranking.retrieval_ranks(text, video, text_video, block, dual_softmax_scale)
    out |= {**ranking.rank_metrics(t2v, "t2v_dsl"), **ranking.rank_metrics(v2t, "v2t_dsl")}
  return out


class RetrievalEvaluator:
  """Encodes a split with the model's two towers and ranks every caption against every clip.

  `captions`: "first" queries with each clip's first caption; "all" with every caption of every
  clip, each a separate query (the MSVD convention). `num_clips` clips of each video are encoded
  and their embeddings averaged (test-time multi-clip evaluation).
  """

  def __init__(self, name, cfg, *, model, mesh, data_cfg, tokenizer):
    if cfg.captions not in ("first", "all"):
      raise ConfigError(f"config.evals.{name}.captions={cfg.captions!r}: expected 'first' or 'all'")
    self.name, self.cfg, self.model, self.mesh = name, cfg, model, mesh
    self.data_cfg, self.tokenizer = data_cfg, tokenizer
    self.every_steps = cfg.every_steps
    mesh_lib.check_batch_size(cfg.batch_size, mesh, f"config.evals.{name}.batch_size")
    replicated = mesh_lib.replicated(mesh)
    def video(params, b):
      # [B, clips, T, H, W, 3]: the clips of a video are encoded and their embeddings averaged.
      frames = b["frames"]
      emb = model.apply({"params": params}, frames.reshape((-1,) + frames.shape[2:]),
                        method="encode_video")["video_emb"]
      return layers.l2_normalize(emb.reshape(frames.shape[:2] + emb.shape[1:]).mean(axis=1))

    text = lambda params, b: model.apply({"params": params}, b["tokens"],
                                         method="encode_text")["text_emb"]
    self._encode_clips = jax.jit(  # "first": a clip and its first caption in one pass
        lambda params, b: (video(params, b), text(params, b)) if cfg.captions == "first"
        else (video(params, b),), out_shardings=replicated)
    self._encode_captions = jax.jit(lambda params, b: (text(params, b),),
                                    out_shardings=replicated)

  def _batches(self, dataset, num_local: int):
    """This process's batches padded to the global batch; every process yields the same number,
    since the encoders are collectives. The padding rows have index -1."""
    local_bs = pipeline.local_batch_size(self.cfg.batch_size)
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

  def embed(self, params) -> Embeddings:
    n = len(pipeline.records(self.data_cfg.dir, self.cfg.split)
            [jax.process_index()::jax.process_count()])
    clips = pipeline.eval_dataset(self.data_cfg, self.tokenizer, self.cfg.split,
                                  self.cfg.batch_size, self.cfg.num_clips)
    embs, index = self._encode_all(self._encode_clips, clips, n, params)
    if self.cfg.captions == "first":
      video, text = embs
      return Embeddings(video, index, text, np.arange(len(video)))
    captions, num_captions = pipeline.caption_dataset(self.data_cfg, self.tokenizer,
                                                      self.cfg.split, self.cfg.batch_size)
    (text,), text_index = self._encode_all(self._encode_captions, captions, num_captions, params)
    return Embeddings(embs[0], index, text, np.searchsorted(index, text_index))

  def run(self, params, artifacts_dir: str | None = None) -> dict[str, float]:
    """Metrics of `params`; with `artifacts_dir`, also draws `<dir>/<name>.png` (process 0)."""
    emb = self.embed(params)
    if artifacts_dir is not None and jax.process_index() == 0:
      path = os.path.join(artifacts_dir, f"{self.name}.png")
      picture.draw_retrieval(path, emb.first_captions(), self.data_cfg, self.tokenizer,
                             self.cfg.split)
      logging.info("wrote %s", path)
    return retrieval_metrics(emb.text, emb.video, emb.text_video, self.cfg.block,
                             self.cfg.dual_softmax_scale)
