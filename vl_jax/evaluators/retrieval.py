"""Text-video retrieval: R@1/5/10 (percent), median and mean rank, both directions.

Similarities are computed in blocks (ranking.py), so memory stays O(block) for any split size.
"""

import dataclasses
import os

import jax
import numpy as np
from absl import logging

from vl_jax.evaluators import encode, picture, ranking
from vl_jax.errors import ConfigError


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
    self.name, self.cfg, self.data_cfg, self.tokenizer = name, cfg, data_cfg, tokenizer
    self.every_steps = cfg.every_steps
    self.encoder = encode.Encoder(model, mesh, data_cfg, tokenizer, cfg.batch_size,
                                  f"config.evals.{name}.batch_size")

  def embed(self, params) -> Embeddings:
    first = self.cfg.captions == "first"
    video, *text, index = self.encoder.clips(params, self.cfg.split, self.cfg.num_clips,
                                             first_caption=first)
    if first:
      return Embeddings(video, index, text[0], np.arange(len(video)))
    text, text_index = self.encoder.captions(params, self.cfg.split)
    return Embeddings(video, index, text, np.searchsorted(index, text_index))

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
