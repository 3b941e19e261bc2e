"""Text-video retrieval: R@1/5/10 (percent), median and mean rank, both directions.

Similarities are computed in blocks (ranking.py), so memory stays O(block) for any split size.
"""

import dataclasses
import functools
import os

import jax
import numpy as np
from absl import logging

from input_pipeline.errors import ConfigError
from vl_jax import sharding
from vl_jax.evaluators import encode, picture, ranking, rerank


@dataclasses.dataclass
class Embeddings:
  """Unit-norm embeddings of a split: videos in record order (row i is record `index[i]`) and
  captions, caption i describing video row `text_video[i]`; optionally the token features of each
  video and caption (encode.Encoder's `tokens` outputs, for TACo's re-ranking)."""
  video: np.ndarray
  index: np.ndarray
  text: np.ndarray
  text_video: np.ndarray
  video_features: dict = dataclasses.field(default_factory=dict)
  text_features: dict = dataclasses.field(default_factory=dict)

  def first_captions(self) -> "Embeddings":
    """One caption per video, its first, in video order."""
    _, first = np.unique(self.text_video, return_index=True)
    return Embeddings(self.video, self.index, self.text[first], np.arange(len(self.video)),
                      self.video_features, {k: v[first] for k, v in self.text_features.items()})


def retrieval_metrics(text: np.ndarray, video: np.ndarray, text_video: np.ndarray,
                      block: int = ranking.DEFAULT_BLOCK, dual_softmax_scale: float = 0.0,
                      ranks: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
  """Both directions' metrics; caption i describes video `text_video[i]` (`ranks`: the plain
  ranks if already computed). With `dual_softmax_scale` > 0, also the dual-softmax re-ranked ones
  as `t2v_dsl/...`, `v2t_dsl/...`."""
  t2v, v2t = ranks or ranking.retrieval_ranks(text, video, text_video, block)
  out = {**ranking.rank_metrics(t2v, "t2v"), **ranking.rank_metrics(v2t, "v2t")}
  if dual_softmax_scale:
    t2v, v2t = ranking.retrieval_ranks(text, video, text_video, block, dual_softmax_scale)
    out |= {**ranking.rank_metrics(t2v, "t2v_dsl"), **ranking.rank_metrics(v2t, "v2t_dsl")}
  return out


class RetrievalEvaluator(encode.Evaluator):
  """Encodes a split with the model's two towers and ranks every caption against every clip.

  `captions`: "first" queries with each clip's first caption; "all" with every caption of every
  clip, each a separate query (the MSVD convention). `num_clips` clips of each video are encoded
  and their embeddings averaged (test-time multi-clip evaluation). With `rerank_top_k` > 0 (a
  model with a fusion encoder: TACo), each query's top-k candidates are also re-ranked by TACo's
  summed score (of the `rerank_terms`), reported as `t2v_rerank/...` and `v2t_rerank/...`
  (rerank.py). Captions re-ranked for a clip (v2t) leave the token term out: L2 ranks clips for a
  caption only, so its scores carry per-caption offsets that no loss removes (measured on the
  synthetic set: v2t R@1 36.3% by sentence + fusion, 21.5% with the token term added).
  """

  def setup(self, predict, mesh):
    cfg, field = self.cfg, f"config.evals.{self.name}"
    if cfg.captions not in ("first", "all"):
      raise ConfigError(f"{field}.captions={cfg.captions!r}: expected 'first' or 'all'")
    if cfg.rerank_top_k and predict.fuse is None:
      raise ConfigError(f"{field}.rerank_top_k={cfg.rerank_top_k} needs a model with a fusion "
                        f"encoder (config.model.fusion.depth > 0)")
    terms = tuple(cfg.rerank_terms)
    if not terms or set(terms) - set(rerank.TERMS):
      raise ConfigError(f"{field}.rerank_terms={terms}: a non-empty selection of {rerank.TERMS}")
    # Per direction; None where no term is left (v2t of a token-only selection): not re-ranked.
    self._pair_scores = {
        direction: jax.jit(functools.partial(rerank.pair_scores, predict, terms=kept),
                           out_shardings=sharding.replicated(mesh)) if kept else None
        for direction, kept in (("t2v", terms), ("v2t", tuple(t for t in terms if t != "token")))}

  def embed(self, params, tokens: bool = False) -> Embeddings:
    """The split's embeddings; with `tokens`, also their token features."""
    first = self.cfg.captions == "first"
    clips, index = self.encoder.clips(params, self.cfg.split, self.cfg.num_clips,
                                      first_caption=first and not tokens, tokens=tokens)
    video = clips.pop("video")
    if first and not tokens:
      return Embeddings(video, index, clips["text"], np.arange(len(video)))
    captions, text_index = self.encoder.captions(params, self.cfg.split, tokens=tokens)
    emb = Embeddings(video, index, captions.pop("text"), np.searchsorted(index, text_index),
                     clips, captions)
    return emb.first_captions() if first else emb

  def reranked_metrics(self, params, emb: Embeddings,
                       base: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """TACo's re-ranking of the top `rerank_top_k` candidates, both directions; `base` are the
    dual encoder's ranks."""
    k = self.cfg.rerank_top_k
    out = {}
    for direction, queries, candidates, ranks in (
        ("t2v", emb.text, emb.video, base[0]), ("v2t", emb.video, emb.text, base[1])):
      if self._pair_scores[direction] is None:
        continue
      top = rerank.top_candidates(queries, candidates, k, self.cfg.block)
      q = np.repeat(np.arange(len(queries)), top.shape[1])
      video_rows, text_rows = (top.ravel(), q) if direction == "t2v" else (q, top.ravel())
      pairs = {**{n: v[video_rows] for n, v in emb.video_features.items()},
               **{n: v[text_rows] for n, v in emb.text_features.items()},
               "video_emb": emb.video[video_rows], "text_emb": emb.text[text_rows]}
      scores = self.encoder.map_rows(self._pair_scores[direction], params, pairs)["score"]
      right = emb.text_video[text_rows] == video_rows
      out |= ranking.rank_metrics(rerank.reranked_ranks(ranks, scores.reshape(top.shape),
                                                        right.reshape(top.shape)),
                                  f"{direction}_rerank")
    return out

  def run(self, params, artifacts_dir: str | None = None) -> dict[str, float]:
    """Metrics of `params`; with `artifacts_dir`, also draws `<dir>/<name>.png` (process 0)."""
    emb = self.embed(params, tokens=bool(self.cfg.rerank_top_k))
    if artifacts_dir is not None and jax.process_index() == 0:
      path = os.path.join(artifacts_dir, f"{self.name}.png")
      picture.draw_retrieval(path, emb.first_captions(), self.data_cfg, self.tokenizer,
                             self.cfg.split)
      logging.info("wrote %s", path)
    ranks = ranking.retrieval_ranks(emb.text, emb.video, emb.text_video, self.cfg.block)
    out = retrieval_metrics(emb.text, emb.video, emb.text_video, self.cfg.block,
                            self.cfg.dual_softmax_scale, ranks)
    if self.cfg.rerank_top_k:
      out |= self.reranked_metrics(params, emb, ranks)
    return out
