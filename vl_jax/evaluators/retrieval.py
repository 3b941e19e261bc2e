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
from vl_jax.train import mesh as mesh_lib


@dataclasses.dataclass
class Embeddings:
  """Unit-norm embeddings of a split, in record order; row i of each is record `index[i]`."""
  video: np.ndarray
  text: np.ndarray
  index: np.ndarray


def retrieval_metrics(text: np.ndarray, video: np.ndarray, text_video: np.ndarray,
                      block: int = ranking.DEFAULT_BLOCK) -> dict[str, float]:
  """Both directions' metrics; caption i describes video `text_video[i]`."""
  t2v, v2t = ranking.retrieval_ranks(text, video, text_video, block)
  return {**ranking.rank_metrics(t2v, "t2v"), **ranking.rank_metrics(v2t, "v2t")}


class RetrievalEvaluator:
  """Encodes a split with the model's two towers and ranks every caption against every clip."""

  def __init__(self, name, cfg, *, model, mesh, data_cfg, tokenizer):
    self.name, self.cfg, self.model, self.mesh = name, cfg, model, mesh
    self.data_cfg, self.tokenizer = data_cfg, tokenizer
    self.every_steps = cfg.every_steps
    mesh_lib.check_batch_size(cfg.batch_size, mesh, f"config.evals.{name}.batch_size")
    self._encode = jax.jit(
        lambda params, frames, tokens: (
            model.apply({"params": params}, frames, method="encode_video")["video_emb"],
            model.apply({"params": params}, tokens, method="encode_text")["text_emb"]),
        out_shardings=mesh_lib.replicated(mesh))

  def _batches(self):
    """This process's padded batches; every process yields the same number (collectives)."""
    n = pipeline.num_records(self.data_cfg.dir, self.cfg.split)
    local_bs = pipeline.local_batch_size(self.cfg.batch_size)
    num_batches = math.ceil(math.ceil(n / jax.process_count()) / local_bs)
    it = iter(pipeline.eval_dataset(self.data_cfg, self.tokenizer, self.cfg.split,
                                    self.cfg.batch_size))
    template = None
    for _ in range(num_batches):
      batch = next(it, None)
      if batch is None:  # this process ran out before others: an all-padding batch
        batch = {k: v[:0] for k, v in template.items()}
      template = batch
      valid = len(batch["index"])
      pad = lambda x: np.concatenate([x, np.zeros((local_bs - valid,) + x.shape[1:], x.dtype)])
      device, host = pipeline.split_host_fields(batch)
      index = np.full(local_bs, -1, np.int32)
      index[:valid] = host["index"]
      yield {k: pad(v) for k, v in device.items()}, index

  def embed(self, params) -> Embeddings:
    videos, texts, indices = [], [], []
    for device, index in self._batches():
      batch = mesh_lib.global_batch(device, self.mesh)
      v, t = self._encode(params, batch["frames"], batch["tokens"])
      videos.append(np.asarray(v))
      texts.append(np.asarray(t))
      # Rows of the global batch are the processes' slices in process order.
      indices.append(multihost_utils.process_allgather(index, tiled=True))
    index = np.concatenate(indices)
    rows = np.flatnonzero(index >= 0)
    rows = rows[np.argsort(index[rows], kind="stable")]
    return Embeddings(video=np.concatenate(videos)[rows], text=np.concatenate(texts)[rows],
                      index=index[rows])

  def run(self, params, artifacts_dir: str | None = None) -> dict[str, float]:
    """Metrics of `params`; with `artifacts_dir`, also draws `<dir>/<name>.png` (process 0)."""
    emb = self.embed(params)
    if artifacts_dir is not None and jax.process_index() == 0:
      path = os.path.join(artifacts_dir, f"{self.name}.png")
      picture.draw_retrieval(path, emb, self.data_cfg, self.tokenizer, self.cfg.split)
      logging.info("wrote %s", path)
    return retrieval_metrics(emb.text, emb.video, np.arange(len(emb.video)),
                             self.cfg.block)
