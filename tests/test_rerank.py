"""TACo's re-ranking in the retrieval evaluator: hand-made ranks, and re-ranking every candidate
equal to ranking all pairs by the summed score."""

import jax
import ml_collections
import numpy as np
import pytest

from input_pipeline import synthetic
from input_pipeline.errors import ConfigError
from tests.helpers import tiny_config
from vl_jax import sharding
from vl_jax.evaluators import ranking, rerank, retrieval
from vl_jax.models import heads
from vl_jax.models.predict import predict_fns
from vl_jax.train import loop, state as state_lib


def test_reranked_ranks_by_hand():
  base = np.array([0, 7, 4])
  scores = np.array([[0.1, 0.9, 0.5],    # right (col 2) behind col 1: rank 1
                     [0.3, 0.3, 0.2],    # right (col 0) tied with col 1: ties count against
                     [0.9, 0.8, 0.7]])   # no right candidate: keeps its dual-encoder rank
  right = np.array([[False, False, True], [True, False, False], [False, False, False]])
  np.testing.assert_array_equal(rerank.reranked_ranks(base, scores, right), [1, 1, 4])
  two_right = np.array([[True, False, True], [True, True, False], [False] * 3])
  np.testing.assert_array_equal(rerank.reranked_ranks(base, scores, two_right), [1, 0, 4])


def test_top_candidates_are_the_highest_dot_products():
  rng = np.random.default_rng(0)
  q, c = rng.normal(size=(37, 8)), rng.normal(size=(50, 8))
  top = rerank.top_candidates(q, c, 5, block=16)
  np.testing.assert_array_equal(top, np.argsort(-(q @ c.T), axis=1)[:, :5])


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("small") / "data")
  synthetic.generate(out, num_train=48, num_val=16, seed=3)
  return out


@pytest.mark.parametrize("captions", ["first", "all"])
def test_reranking_every_candidate_ranks_all_pairs_by_the_summed_score(small_dir, captions):
  config = tiny_config(small_dir, **{"model.fusion.depth": 2, "mesh.data": 8})
  mesh, tokenizer, model = loop.setup(config)
  params = jax.jit(lambda rng: state_lib.init_params(model, config.data, rng),
                   out_shardings=sharding.replicated(mesh))(jax.random.key(0))
  cfg = ml_collections.ConfigDict(dict(config.evals.retrieval) | dict(
      captions=captions, batch_size=8, rerank_top_k=64))  # every candidate: 16 clips, 48 captions
  ev = retrieval.RetrievalEvaluator("r", cfg, predict=predict_fns(model), mesh=mesh,
                                    data_cfg=config.data, tokenizer=tokenizer)
  metrics = ev.run(params)
  emb = ev.embed(params, tokens=True)
  clips, caps = emb.video_features, emb.text_features
  nt, nv = len(emb.text), len(emb.video)
  # Every (caption, clip) pair scored directly, each term the logit of its loss: clips for a
  # caption by s1 + s2 + s3.
  ti, vj = np.repeat(np.arange(nt), nv), np.tile(np.arange(nv), nt)
  p = {**{k: v[vj] for k, v in clips.items()}, **{k: v[ti] for k, v in caps.items()}}
  s1 = np.asarray(model.apply({"params": params}, method="inverse_temperature")) * np.einsum(
      "pd,pd->p", emb.text[ti], emb.video[vj])
  s2 = (p["weights"] * np.einsum("pld,pkd->plk", p["text_token_emb"],
                                 p["video_token_emb"]).max(-1)).sum(1)
  s3 = np.asarray(jax.jit(lambda *x: model.apply({"params": params}, *x, method=heads.fuse))(
      p["frame_tokens"], p["text_tokens"], p["text_mask"]))
  total = (s1 + s2 + s3).reshape(nt, nv)
  right = emb.text_video[:, None] == np.arange(nv)[None, :]
  best_t = np.where(right, total, -np.inf).max(1)
  t2v = ((total >= best_t[:, None] - ranking.TIE_TOLERANCE) & ~right).sum(1)
  # Captions for a clip by s1 + s3: without the token term.
  total = (s1 + s3).reshape(nt, nv)
  best_v = np.where(right, total, -np.inf).max(0)
  v2t = ((total >= best_v[None, :] - ranking.TIE_TOLERANCE) & ~right).sum(0)
  want = ranking.rank_metrics(t2v, "t2v_rerank") | ranking.rank_metrics(v2t, "v2t_rerank")
  for k, v in want.items():
    assert metrics[k] == pytest.approx(v, abs=1e-6), k
  assert metrics["t2v/R@1"] >= 0 and "t2v_dsl/R@1" not in metrics


def test_reranking_needs_a_fusion_encoder_and_known_terms(small_dir):
  config = tiny_config(small_dir, **{"evals.retrieval.rerank_top_k": 5})
  mesh, tokenizer, model = loop.setup(config)
  with pytest.raises(ConfigError, match="rerank_top_k=5 needs a model with a fusion encoder"):
    retrieval.RetrievalEvaluator("r", config.evals.retrieval, predict=predict_fns(model), mesh=mesh,
                                 data_cfg=config.data, tokenizer=tokenizer)
  config = tiny_config(small_dir, **{"model.fusion.depth": 2, "evals.retrieval.rerank_top_k": 5,
                                     "evals.retrieval.rerank_terms": ("sentence", "tokens")})
  mesh, tokenizer, model = loop.setup(config)
  with pytest.raises(ConfigError, match=r"rerank_terms=\('sentence', 'tokens'\): a non-empty"):
    retrieval.RetrievalEvaluator("r", config.evals.retrieval, predict=predict_fns(model), mesh=mesh,
                                 data_cfg=config.data, tokenizer=tokenizer)
