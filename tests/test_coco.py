"""CoCo-BERT: masked views, the CoCo terms and frame NCE against NumPy references, the queue, and
the caption decoder's greedy and beam-search decoding against step-by-step and exhaustive
references."""

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import coco_tiny
from input_pipeline.contract import CLS_ID, FIRST_WORD_ID, MASK_ID, PAD_ID, SEP_ID
from input_pipeline.errors import ConfigError
from tests.helpers import tiny_config
from vl_jax import objectives
from vl_jax.losses.masked_modeling import frame_nce
from vl_jax.models import builder, decoding, heads
from vl_jax.objectives import coco
from vl_jax.objectives.masks import mask_frames, mask_words
from vl_jax.objectives.objective import Context
from vl_jax.train import queue as queue_lib


def _captions(rng, rows, length, vocab):
  """[CLS] words [SEP] PAD... rows of 0 to length - 2 words."""
  tokens = np.full((rows, length), PAD_ID, np.int32)
  for i, n in enumerate(rng.integers(0, length - 1, rows)):
    tokens[i, :n + 2] = [CLS_ID, *rng.integers(FIRST_WORD_ID, vocab, n), SEP_ID]
  return tokens


def test_word_masks_have_the_rate_and_bert_replacements_and_spare_special_tokens():
  rng = np.random.default_rng(0)
  vocab, tokens = 60, _captions(np.random.default_rng(0), 4000, 24, 60)
  noisy, selected = map(np.asarray, jax.jit(
      lambda k, t: mask_words(k, t, 0.15, MASK_ID, vocab))(jax.random.key(1), tokens))
  words = (tokens >= FIRST_WORD_ID).sum(axis=1)
  expected = np.where(words > 0, np.maximum(1, np.round(0.15 * words)), 0)
  np.testing.assert_array_equal(selected.sum(axis=1), expected)
  assert not selected[tokens < FIRST_WORD_ID].any()  # never padding, [CLS] or [SEP]
  np.testing.assert_array_equal(noisy[~selected], tokens[~selected])
  kind = noisy[selected]
  masked, kept = (kind == MASK_ID).mean(), (kind == tokens[selected]).mean()
  # 80% [MASK]; 10% a random word (which is the same word 1 time in 55); 10% unchanged. Over
  # ~7,000 selected tokens one standard error is < 0.005.
  assert masked == pytest.approx(0.8, abs=0.02)
  assert kept == pytest.approx(0.1 + 0.1 / (vocab - FIRST_WORD_ID), abs=0.015)
  assert (kind[(kind != MASK_ID)] >= FIRST_WORD_ID).all()
  # Every selectable word is as likely to be selected: the first and the last word of 20-word rows.
  full = words == 22
  first, last = selected[full, 1].mean(), selected[full, 22].mean()
  assert abs(first - last) < 0.06 and abs(first - 3 / 22) < 0.06
  del rng


def test_frame_masks_hide_whole_frames_or_patches_at_the_rate():
  grid = (4, 3, 3)
  frames = np.asarray(mask_frames(jax.random.key(0), 4000, grid, 0.25, "frame"))
  per_frame = frames.sum(axis=2)
  assert set(np.unique(per_frame)) == {0, 9}  # whole frames only
  assert (per_frame.astype(bool).sum(axis=1) == 1).all()  # round(0.25 * 4) = 1 frame per clip
  assert np.abs(per_frame.astype(bool).mean(axis=0) - 0.25).max() < 0.03  # any frame equally
  # A rate between multiples of 1 / T rounds to whole frames: 0.4 * 4 = 1.6 -> 2.
  two = np.asarray(mask_frames(jax.random.key(1), 64, grid, 0.4, "frame"))
  assert (two.sum(axis=(1, 2)) == 18).all()
  patches = np.asarray(mask_frames(jax.random.key(2), 4000, grid, 0.25, "patch"))
  assert (patches.sum(axis=(1, 2)) == 9).all()  # round(0.25 * 36)
  assert np.abs(patches.mean(axis=0) - 0.25).max() < 0.03


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _infonce_rows(q, k, negatives, inv_temp):
  """-1/B sum_i log softmax over [k; negatives] of q_i, at k_i: by explicit sums."""
  out = 0.0
  for i in range(len(q)):
    logits = [inv_temp * float(q[i] @ c) for c in np.concatenate([k, negatives])]
    out -= logits[i] - np.log(np.sum(np.exp(logits)))
  return out / len(q)


def _symmetric(a, b, inv_temp):
  empty = np.zeros((0, a.shape[1]))
  return 0.5 * (_infonce_rows(a, b, empty, inv_temp) + _infonce_rows(b, a, empty, inv_temp))


def _coco_outputs(rng, b=6, d=8):
  names = ("video_emb", "text_emb", "masked_video_emb", "masked_text_emb")
  return {n: _unit(rng.normal(size=(b, d))).astype(np.float32) for n in names}


@pytest.mark.parametrize("inter,intra", [(1.0, 1.0), (0.5, 2.0)])
def test_coco_terms_against_numpy(inter, intra):
  rng = np.random.default_rng(0)
  outputs = _coco_outputs(rng) | {"inverse_temperature": np.float32(1 / 0.07)}
  cfg = ml_collections.ConfigDict(dict(weight=1.0, inter=inter, intra=intra))
  loss, terms = jax.jit(lambda o: coco.OBJECTIVE.loss(Context(None, None), o, {}, cfg, None))(
      outputs)
  s = 1 / 0.07
  want = {"inter_video": _symmetric(outputs["masked_video_emb"], outputs["text_emb"], s),
          "inter_text": _symmetric(outputs["masked_text_emb"], outputs["video_emb"], s),
          "intra_video": _symmetric(outputs["masked_video_emb"], outputs["video_emb"], s),
          "intra_text": _symmetric(outputs["masked_text_emb"], outputs["text_emb"], s)}
  for name, value in want.items():
    np.testing.assert_allclose(terms[name], value, rtol=1e-5, err_msg=name)
  total = (inter * (want["inter_video"] + want["inter_text"])
           + intra * (want["intra_video"] + want["intra_text"])) / 2
  np.testing.assert_allclose(loss, total, rtol=1e-5)


def test_coco_terms_with_a_queue_against_numpy():
  """MoCo's form: each masked view against its momentum key, the batch's other keys and the
  queue; the keys get no gradient, the queries do."""
  rng = np.random.default_rng(1)
  outputs = _coco_outputs(rng) | {"inverse_temperature": np.float32(10.0)}
  keys = {"video_emb": _unit(rng.normal(size=(6, 8))), "text_emb": _unit(rng.normal(size=(6, 8)))}
  queue = {"video_emb": _unit(rng.normal(size=(5, 8))), "text_emb": _unit(rng.normal(size=(5, 8)))}
  cfg = ml_collections.ConfigDict(dict(weight=1.0, inter=1.0, intra=1.0))

  def loss(o, k):
    ctx = Context(None, None, queue=queue, momentum_keys=jax.lax.stop_gradient(k))
    return coco.OBJECTIVE.loss(ctx, o, {}, cfg, None)

  (value, terms), grads = jax.value_and_grad(loss, has_aux=True, argnums=(0, 1))(outputs, keys)
  pairs = {"inter_video": ("masked_video_emb", "text_emb"),
           "inter_text": ("masked_text_emb", "video_emb"),
           "intra_video": ("masked_video_emb", "video_emb"),
           "intra_text": ("masked_text_emb", "text_emb")}
  for name, (q, k) in pairs.items():
    np.testing.assert_allclose(terms[name], _infonce_rows(outputs[q], keys[k], queue[k], 10.0),
                               rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(value, sum(terms.values()) / 2, rtol=1e-6)
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads[1]))
  assert float(jnp.abs(grads[0]["masked_video_emb"]).max()) > 0


def test_queue_is_fifo_and_needs_a_momentum_encoder():
  ema = ml_collections.ConfigDict(dict(modules=queue_lib.MOMENTUM_GROUPS))
  queue = queue_lib.init(ml_collections.ConfigDict(dict(size=5)), ema, 3, jax.random.key(0))
  np.testing.assert_allclose(np.linalg.norm(queue["video_emb"], axis=1), 1.0, rtol=1e-5)
  keys = {n: jnp.full((2, 3), i + 1.0) for i, n in enumerate(("video_emb", "text_emb"))}
  new = queue_lib.enqueue(queue, keys)
  np.testing.assert_array_equal(new["text_emb"][:2], 2.0)  # the newest first
  np.testing.assert_array_equal(new["video_emb"][2:], queue["video_emb"][:3])  # oldest dropped
  assert queue_lib.init(ml_collections.ConfigDict(dict(size=0)), ema, 3, None) == {}
  with pytest.raises(ConfigError, match=r"config.ema.modules lacks \['text', 'text_proj'\]"):
    queue_lib.init(ml_collections.ConfigDict(dict(size=5)),
                   ml_collections.ConfigDict(dict(modules=("video", "video_proj"))), 3, None)


def test_frame_nce_against_numpy():
  rng = np.random.default_rng(2)
  p, y = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
  w = (rng.random((3, 4)) < 0.5).astype(np.float32)
  w[0, 0] = 0.5
  pf, yf = _unit(p.reshape(12, 5)), _unit(y.reshape(12, 5))
  per_frame = [-(8.0 * pf[i] @ yf[i] - np.log(np.exp(8.0 * pf[i] @ yf.T).sum()))
               for i in range(12)]
  want = (np.asarray(per_frame) * w.reshape(-1)).sum() / w.sum()
  np.testing.assert_allclose(frame_nce(p, y, w, 8.0), want, rtol=1e-5)


def _decoder_model():
  config = tiny_config("unused", base=coco_tiny.get_config())
  config.model.decoder.depth = 1
  return builder.build(config.model, config.data, vocab_size=40), config


@pytest.fixture(scope="module")
def decoder():
  """A random-initialised decoder over random clips, with a growing [SEP] bias so that the
  sequences end at different lengths."""
  model, config = _decoder_model()
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (5, 4, 24, 24, 3), np.uint8)
  tokens = np.zeros((5, config.data.max_text_len), np.int32)
  params = jax.jit(lambda *a: model.init(*a, method="initialize"))(jax.random.key(0), frames,
                                                                   tokens)["params"]
  video = model.apply({"params": params}, frames, method="encode_video")["video_tokens"]
  bias = jnp.zeros((40,)).at[SEP_ID].set(1.0)

  def logits_fn(video, tokens):
    logits = 4.0 * model.apply({"params": params}, video, tokens, method=heads.caption_logits)
    return logits + jnp.arange(tokens.shape[1])[:, None] * 0.5 * bias
  return logits_fn, video, config.data.max_text_len


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_one_equals_the_step_by_step_greedy_reference(decoder, alpha):
  """A beam of 1 (greedy decoding), the jitted loop over a padded buffer, equals decoding one
  growing prefix at a time in Python by the most likely token; the length penalty changes nothing
  with one hypothesis."""
  logits_fn, video, max_len = decoder
  got = np.asarray(jax.jit(lambda v: decoding.beam_search(lambda t: logits_fn(v, t), 5, max_len,
                                                          beam=1, alpha=alpha))(video))
  lengths = []
  for i in range(5):
    prefix = [CLS_ID]
    while len(prefix) < max_len and prefix[-1] != SEP_ID:
      logits = np.array(logits_fn(video[i:i + 1], jnp.asarray([prefix]))[0, -1])
      logits[list(decoding.BANNED)] = -np.inf
      prefix.append(int(logits.argmax()))
    lengths.append(len(prefix))
    np.testing.assert_array_equal(got[i], prefix + [PAD_ID] * (max_len - len(prefix)))
  assert len(set(lengths)) > 1 and min(lengths) < max_len  # ended at [SEP], not all alike


def test_beam_search_as_wide_as_the_tree_finds_the_most_likely_caption():
  """With 5 allowed tokens and 3 positions to fill, a beam of 25 keeps every prefix and must find
  the exhaustive search's best sequence (ended ones count with their [SEP])."""
  vocab, length = 8, 4  # ids 0..7: PAD, UNK, CLS, SEP, MASK banned but SEP; 1, 3, 5, 6, 7 allowed
  rng = np.random.default_rng(3)
  table = jnp.asarray(rng.normal(size=(vocab, vocab)) * 2.0)
  mix = jnp.asarray(rng.normal(size=(vocab, vocab)))

  def logits_fn(tokens):  # causal: position i sees tokens 0 .. i
    one_hot = jax.nn.one_hot(tokens, vocab)
    return one_hot @ table + jnp.cumsum(one_hot, axis=1) @ mix

  def log_prob(seq):
    total, tokens = 0.0, [CLS_ID]
    for tok in seq:
      logits = np.array(logits_fn(jnp.asarray([tokens]))[0, -1])
      logits[list(decoding.BANNED)] = -np.inf
      total += logits[tok] - np.log(np.exp(logits[np.isfinite(logits)]).sum())
      tokens.append(tok)
    return total

  allowed = [t for t in range(vocab) if t not in decoding.BANNED]
  candidates = [seq for n in range(1, length) for seq in itertools.product(allowed, repeat=n)
                if SEP_ID not in seq[:-1] and (n == length - 1 or seq[-1] == SEP_ID)]
  best = max(candidates, key=log_prob)
  got = np.asarray(decoding.beam_search(logits_fn, 1, length, beam=25))[0]
  np.testing.assert_array_equal(got, [CLS_ID, *best] + [PAD_ID] * (length - 1 - len(best)))


def _validate(config):
  """objectives.validate on the model of `config`, built but never initialised."""
  objectives.validate(config, builder.build(config.model, config.data, vocab_size=40))


def test_objectives_name_the_config_their_missing_parts_need():
  config = lambda **overrides: tiny_config("unused", base=coco_tiny.get_config(), **overrides)
  _validate(config())
  for overrides, message in (
      ({"model.fusion.masked_heads": False}, "needs the cross-modal encoder's masked heads: .* "
                                             "masked_heads=True"),
      ({"objectives": {"masked_language": objectives.block("masked_language")},
        "masking.words.rate": 0.0}, r"masked_language needs masked views: set "
                                    r"config.masking.words.rate > 0"),
      ({"objectives": {"masked_frames": objectives.block("masked_frames")},
        "masking.frames.rate": 0.0}, r"config.masking.frames.rate > 0"),
      ({"model.decoder.depth": 0}, r"caption needs the caption decoder: set "
                                   r"config.model.decoder.depth > 0"),
      ({"model.video.mask_token": False}, "frames.rate > 0 needs the video tower's mask token"),
      ({"masking.frames.unit": "tube"}, "config.masking.frames.unit='tube'"),
      ({"data.num_frames": 1}, "unit='frame' needs clips of 2 frames"),
      ({"masking.words.rate": 1.0}, r"config.masking.words.rate=1.0: must be in \[0, 1\)"),
      ({"objectives.masked_frames.loss": "l1"}, "masked_frames.loss='l1': expected one of"),
      ({"objectives.nce": {"weight": 1.0}}, r"config.objectives: unknown \['nce'\]")):
    with pytest.raises(ConfigError, match=message):
      _validate(config(**overrides))


@pytest.mark.parametrize("part", ["words", "frames"])
def test_an_unmasked_view_is_a_config_error(part):
  """Rate 0 would make the intra-modal term contrast a sample with itself: refused before
  anything is initialised or compiled."""
  config = coco_tiny.get_config().unlock()
  config.masking[part].rate = 0.0
  with pytest.raises(ConfigError, match=rf"config.masking.{part}.rate=0.0: config.objectives.coco"):
    _validate(config)
