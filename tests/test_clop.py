"""CLOP: knowledge classes and vectors, SKP's losses and KCL's similarity, duplicates and guided
negatives against NumPy references, the hardness ordering on a hand-made batch, and one-line config
errors."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import clop, clop_tiny
from input_pipeline import pipeline, shards, text_annotations
from input_pipeline.contract import MIRROR_WORDS
from input_pipeline.errors import ConfigError, DataError
from input_pipeline.tokenizer import load as load_tokenizer
from tests.helpers import tiny_config
from vl_jax.losses import knowledge
from vl_jax.models import builder, heads
from vl_jax.train import loop, state as state_lib, step as step_lib


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


# --- knowledge classes ---------------------------------------------------------------------------

def test_knowledge_vocab_filters_counts_and_kinds(tmp_path):
  entries = [["obj:dog", 9], ["act:run", 7], ["rel:dog/nsubj/run", 5], ["attr:red", 2],
             ["obj:cat", 1]]
  (tmp_path / text_annotations.KNOWLEDGE_FILE).write_text(
      json.dumps({"num_captions": 10, "entries": entries}))
  vocab = text_annotations.KnowledgeVocab(str(tmp_path), 3, 2, ("obj", "act", "attr"))
  assert vocab.entries == ["obj:dog", "act:run", "attr:red"]  # no rel, no count-1 entry
  np.testing.assert_allclose(vocab.idf, [np.log(11 / 10) + 1, np.log(11 / 8) + 1,
                                         np.log(11 / 3) + 1], rtol=1e-6)
  np.testing.assert_allclose(vocab.vector(["attr:red", "obj:cat", "obj:dog"]),
                             [vocab.idf[0], 0, vocab.idf[2]])
  padded = text_annotations.KnowledgeVocab(str(tmp_path), 8, 1, ("obj",))
  assert padded.entries == ["obj:dog", "obj:cat"] and padded.vector(["obj:cat"]).shape == (8,)
  with pytest.raises(ConfigError, match=r"kinds=\('obj', 'colour'\): expected"):
    text_annotations.KnowledgeVocab(str(tmp_path), 3, 2, ("obj", "colour"))
  with pytest.raises(DataError, match="no entry of kinds \\('rel',\\) is in 6 or more captions"):
    text_annotations.KnowledgeVocab(str(tmp_path), 3, 6, ("rel",))
  with pytest.raises(DataError, match="knowledge_vocab.json: missing"):
    text_annotations.KnowledgeVocab(str(tmp_path / "none"), 3, 2, ("obj",))


def test_mirrored_knowledge():
  assert text_annotations.mirror_knowledge(
      ["rel:left/to/move", "attr:leftward", "obj:circle"], MIRROR_WORDS) == [
          "rel:right/to/move", "attr:rightward", "obj:circle"]


def test_training_batches_hold_each_captions_knowledge(synthetic_dir):
  """Without flips, each example's vector is exactly its caption's entries at their idf."""
  config = tiny_config(synthetic_dir, **{"data.knowledge.size": 64, "data.hflip": "off"})
  tokenizer = load_tokenizer(f"{synthetic_dir}/tokenizer.model")
  batch = next(iter(pipeline.train_dataset(config.data, tokenizer, 16, seed=0)))
  vocab = pipeline.knowledge_vocab(config.data)
  records = pipeline.records(synthetic_dir, "train")
  assert batch["knowledge"].shape == (16, 64) and batch["knowledge"].dtype == np.float32
  for i in range(16):
    record = shards.decode_record(records[int(batch["index"][i])][1])
    text = next(t for t in record["text"]
                if text_annotations.rebuild(t["words"], t["spaces"])[0] == batch["caption"][i])
    np.testing.assert_array_equal(batch["knowledge"][i], vocab.vector(text["knowledge"]))
    assert (batch["knowledge"][i] > 0).sum() >= 3  # an object, an attribute, a relation at least


# --- SKP -----------------------------------------------------------------------------------------

def test_skp_losses_and_r_precision_against_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(5, 7)).astype(np.float32)
  present = rng.random((5, 7)) < 0.4
  present[3] = False  # a caption without knowledge counts in neither loss's softmax form
  present[0] = [1, 1, 0, 0, 0, 0, 0]
  y = present.astype(np.float64)
  per = -(y * _log_softmax(logits.astype(np.float64))).sum(1) / np.maximum(y.sum(1), 1)
  keep = y.sum(1) > 0
  np.testing.assert_allclose(knowledge.multilabel_softmax(logits, present), per[keep].mean(),
                             rtol=1e-5)
  sig = 1 / (1 + np.exp(-logits.astype(np.float64)))
  bce = -(y * np.log(sig) + (1 - y) * np.log(1 - sig)).mean()
  np.testing.assert_allclose(knowledge.multilabel_bce(logits, present), bce, rtol=1e-5)
  # R-precision: the fraction of the R true classes among the R highest logits.
  order = np.argsort(-logits, axis=1)
  want = [present[b, order[b, :present[b].sum()]].mean() for b in range(5) if keep[b]]
  np.testing.assert_allclose(knowledge.r_precision(logits, present), np.mean(want), rtol=1e-6)
  perfect = np.where(present, 5.0, -5.0)
  assert float(knowledge.r_precision(perfect, present)) == 1.0


# --- KCL -----------------------------------------------------------------------------------------

def _numpy_similarity(x, kind):
  b = len(x)
  out = np.zeros((b, b))
  for i in range(b):
    for j in range(b):
      if kind == "jaccard":
        union = np.maximum(x[i], x[j]).sum()
        out[i, j] = np.minimum(x[i], x[j]).sum() / union if union else 0.0
      else:
        n = np.linalg.norm(x[i]) * np.linalg.norm(x[j])
        out[i, j] = x[i] @ x[j] / n if n else 0.0
  return out


@pytest.mark.parametrize("kind", knowledge.SIMILARITIES)
def test_knowledge_similarity_against_numpy(kind):
  rng = np.random.default_rng(1)
  idf = rng.uniform(1, 4, size=9)
  present = rng.random((6, 9)) < 0.4
  present[2] = False  # no knowledge at all
  present[4] = present[1]  # the same classes as caption 1
  x = np.where(present, idf, 0.0).astype(np.float32)
  sim, same = knowledge.knowledge_similarity(x, kind)
  np.testing.assert_allclose(sim, _numpy_similarity(x.astype(np.float64), kind), atol=1e-6)
  want_same = (present[:, None] == present[None]).all(-1)
  np.testing.assert_array_equal(same, want_same)
  assert float(sim[1, 4]) == pytest.approx(1.0) and float(sim[2, 2]) == 0.0


def test_duplicates_need_the_same_tokens_and_knowledge():
  tokens = np.array([[2, 7, 8, 3], [2, 7, 8, 3], [2, 7, 9, 3], [2, 7, 8, 3]])
  same = np.ones((4, 4), bool)
  same[0, 3] = same[3, 0] = False  # the same text, other knowledge (e.g. a mirrored parse)
  want = np.zeros((4, 4), bool)
  want[0, 1] = want[1, 0] = want[1, 3] = want[3, 1] = True
  np.testing.assert_array_equal(knowledge.duplicates(tokens, same), want)


def _numpy_weighted_infonce(s, h, negatives, beta):
  """Loop form: -log e^{s_ii} / (e^{s_ii} + sum_{j in N(i)} w_ij e^{s_ij}) per row."""
  out = []
  for i in range(len(s)):
    n = np.flatnonzero(negatives[i])
    w = np.exp(beta * h[i, n]) / np.exp(beta * h[i, n]).mean() if len(n) else np.zeros(0)
    out.append(-np.log(np.exp(s[i, i]) / (np.exp(s[i, i]) + (w * np.exp(s[i, n])).sum())))
  return np.mean(out)


def _batch(seed, b=6, d=8):
  rng = np.random.default_rng(seed)
  unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
  v, t = unit(rng.normal(size=(b, d))), unit(rng.normal(size=(b, d)))
  h = rng.random((b, b))
  h = (h + h.T) / 2
  negatives = ~np.eye(b, dtype=bool)
  negatives[0, 5] = negatives[5, 0] = False  # a duplicate pair
  return v.astype(np.float32), t.astype(np.float32), h.astype(np.float32), negatives


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_weighted_kcl_against_numpy(beta):
  v, t, h, negatives = _batch(0)
  scale = 5.0
  got = knowledge.knowledge_infonce(v, t, scale, h, negatives, beta, "weight", 0,
                                    jax.random.key(0))
  s = scale * v.astype(np.float64) @ t.T.astype(np.float64)
  want = 0.5 * (_numpy_weighted_infonce(s, h, negatives, beta)
                + _numpy_weighted_infonce(s.T, h, negatives, beta))
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_knowledge_similar_negatives_weigh_more_than_unrelated_ones():
  """A hand-made batch: clip 0 is "a red circle moves left". Its negatives are, by knowledge, a red
  circle moving right (similar), a red square moving left (similar), a blue triangle growing
  (unrelated) and its exact duplicate. With equal similarities s_0j, InfoNCE's gradient on s_0j
  is negative j's weight in the denominator: similar ones must get more, the duplicate none."""
  classes = ["obj:circle", "obj:square", "obj:triangle", "attr:red", "attr:blue", "act:move",
             "act:grow", "rel:left/to/move", "rel:right/to/move"]
  captions = [("obj:circle", "attr:red", "act:move", "rel:left/to/move"),
              ("obj:circle", "attr:red", "act:move", "rel:right/to/move"),
              ("obj:square", "attr:red", "act:move", "rel:left/to/move"),
              ("obj:triangle", "attr:blue", "act:grow"),
              ("obj:circle", "attr:red", "act:move", "rel:left/to/move")]
  x = np.array([[1.0 if c in cap else 0.0 for c in classes] for cap in captions], np.float32)
  tokens = np.array([[2, 10, 11, 3], [2, 10, 12, 3], [2, 13, 11, 3], [2, 14, 15, 3],
                     [2, 10, 11, 3]])
  h, same = knowledge.knowledge_similarity(x, "jaccard")
  negatives = ~knowledge.duplicates(tokens, same) & ~np.eye(5, dtype=bool)
  grad = jax.grad(lambda s: -jax.nn.log_softmax(knowledge.guided_logits(
      s, h, negatives, 2.0, "weight", 0, None)[0])[0])(jnp.zeros((5, 5)))[0]
  assert grad[1] > grad[3] and grad[2] > grad[3] > 0
  assert grad[4] == 0  # the duplicate is no negative
  np.testing.assert_allclose(grad[1] / grad[3], np.exp(2.0 * (h[0, 1] - h[0, 3])), rtol=1e-5)


def test_sampled_negatives_follow_hardness_and_skip_duplicates():
  _, _, h, negatives = _batch(2, b=8)
  h = np.zeros_like(h)
  h[0, 1] = h[1, 0] = 0.9  # the hard negative of anchor 0
  s = jnp.zeros((8, 8))
  counts = np.zeros(8)
  for seed in range(200):
    guided = np.asarray(knowledge.guided_logits(s, h, negatives, 2.0, "sample", 3,
                                                jax.random.key(seed)))
    kept = np.isfinite(guided)
    assert kept[np.arange(8), np.arange(8)].all()  # every positive
    assert (kept.sum(1) == 4).all()  # and 3 negatives
    assert not kept[0, 5] and not kept[5, 0]  # never the duplicate
    counts += kept[0]
  # Anchor 0 has 6 candidates; the hard one, of weight w = e^1.8 = 6.05 against 1 for the
  # others, is missed by 3 draws without replacement with probability
  # 5/(w+5) * 4/(w+4) * 3/(w+3) = 0.06; the others are drawn (3 - 0.94) / 5 = 41% of the time.
  w = np.exp(1.8)
  p_hard = 1 - 5 / (w + 5) * 4 / (w + 4) * 3 / (w + 3)
  assert abs(counts[1] - 200 * p_hard) < 12  # 3.5 standard deviations
  assert np.abs(counts[[2, 3, 4, 6, 7]] - 200 * (3 - p_hard) / 5).max() < 25


# --- wiring --------------------------------------------------------------------------------------

def test_clop_config_errors(synthetic_dir):
  config = lambda **o: tiny_config(synthetic_dir, base=clop_tiny.get_config(),
                                   **{"mesh.data": 1, **o})
  with pytest.raises(ConfigError, match=r"knowledge_head.inputs needs knowledge classes: set "
                                        r"config.data.knowledge.size > 0"):
    loop.setup(config(**{"data.knowledge.size": 0}))
  with pytest.raises(ConfigError, match=r"knowledge_head.inputs=\('video', 'audio'\)"):
    loop.setup(config(**{"model.knowledge_head.inputs": ("video", "audio")}))
  with pytest.raises(ConfigError, match=r"data.knowledge: size=4 must be >= 0 and min_count=0"):
    pipeline.knowledge_vocab(config(**{"data.knowledge.size": 4,
                                       "data.knowledge.min_count": 0}).data)

  # The objectives' errors, raised before the step is traced.
  def loss(cfg, drop=()):
    _, tokenizer, model = loop.setup(cfg)
    batch, _ = pipeline.split_host_fields(next(iter(
        pipeline.train_dataset(cfg.data, tokenizer, 8, seed=0))))
    params = state_lib.init_params(model, cfg.data, jax.random.key(0))
    batch = {k: v for k, v in batch.items() if k not in drop}
    return step_lib.make_loss_fn(model, cfg)(params, batch, jax.random.key(0), {}, None)

  for overrides, message in (
      ({"objectives.skp.loss": "l2"}, r"skp.loss='l2': expected one of \['bce', 'softmax'\]"),
      ({"objectives.kcl.negatives": "mine"}, "kcl.negatives='mine': expected one of"),
      ({"objectives.kcl.similarity": "dice"}, "kcl.similarity='dice': expected one of"),
      ({"objectives.kcl.negatives": "sample", "objectives.kcl.num_negatives": 0},
       "kcl.num_negatives=0: must be >= 1"),
      ({"model.knowledge_head.inputs": ()}, "objectives.skp needs the knowledge head")):
    with pytest.raises(ConfigError, match=message):
      loss(config(**overrides))
  with pytest.raises(ConfigError, match=r"objectives.kcl needs the captions' knowledge: set "
                                        r"config.data.knowledge.size > 0"):
    loss(config(**{"data.knowledge.size": 0, "model.knowledge_head.inputs": ()}))


@pytest.mark.parametrize("hidden", [0, 16])
def test_the_knowledge_head_reads_both_embeddings(hidden):
  """One head (linear, or with a hidden layer) gives K logits per clip and per caption."""
  config = clop_tiny.get_config().unlock()
  config.model.knowledge_head.hidden = hidden
  model = builder.build(config.model, config.data, 128)
  params = jax.eval_shape(lambda: state_lib.init_params(model, config.data, jax.random.key(0)))
  head = {name: layer["kernel"].shape for name, layer in params["knowledge_head"].items()}
  assert head == ({"fc2": (128, 256)} if not hidden else {"fc1": (128, 16), "fc2": (16, 256)})
  frames, tokens = state_lib.dummy_inputs(config.data)
  out = jax.eval_shape(lambda p: model.apply({"params": p}, frames, tokens), params)
  for name in ("video", "text"):
    logits = jax.eval_shape(lambda p, e: model.apply({"params": p}, e,
                                                     method=heads.knowledge_logits),
                            params, out[f"{name}_emb"])
    assert logits.shape == (frames.shape[0], 256)


def test_pre_training_configs():
  config = clop.get_config()
  model = builder.build(config.model, config.data, 30522)
  assert (model.head("knowledge_head").num_classes, model.head("knowledge_head").inputs) == (
      1000, ("video", "text"))
  assert set(config.objectives) == {"kcl", "skp"} and config.objectives.kcl.negatives == "weight"
  assert clop.get_config("cc3m,sample").objectives.kcl.negatives == "sample"
  assert set(clop.get_config("contrastive").objectives) == {"contrastive"}
  with pytest.raises(ValueError, match="'sample' chooses KCL's negatives"):
    clop.get_config("sample,contrastive")
  assert set(clop_tiny.get_config("skp").objectives) == {"contrastive", "skp"}
  with pytest.raises(ValueError, match="skp and sample exclude each other"):
    clop_tiny.get_config("skp,sample")
