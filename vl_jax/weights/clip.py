"""CLIP weights into both towers, both projections and the learned temperature: a Hugging Face
`CLIPModel` directory (`config.json`, `model.safetensors`, `tokenizer.json`, as the hub stores
openai/clip-vit-base-patch16), or open_clip's naming (a directory with
`open_clip_model.safetensors` and CLIP's `tokenizer.json`).

- The vision transformer becomes the video tower as vit.py places an image model: its blocks the
  spatial attention and MLP, `ln_pre` the tower's `pre_norm`, `ln_post` the final norm, the class
  token (its position added into it) each frame's class token, the temporal branch at zero; the
  embedding is made of the class tokens (config.model.video.pool="cls"). So a clip of identical
  frames gives CLIP's image embedding.
- The text transformer becomes the "clip" text tower (causal, pooled at the end-of-text token);
  its word embeddings are permuted like the tokenizer's ids (input_pipeline/tokenizer.HuggingFace),
  and [PAD], [UNK] and [MASK], which CLIP lacks, start at zero. Position embeddings past
  config.data.max_text_len are dropped.
- The projections (CLIP's have no bias: ours start at zero) and `logit_scale`, the log inverse
  temperature, when config.model.temperature.learn.
open_clip files do not store the number of heads, the MLP activation (OpenAI's models: quick_gelu;
most LAION ones: gelu) or the norm epsilon: config.model must have the model's.
"""

import os
import re

import numpy as np
from etils import epath

from input_pipeline import files as io_files, tokenizer as tokenizer_lib
from input_pipeline.errors import ConfigError, DataError
from vl_jax.weights import files, vit

TOKENIZER = "tokenizer.json"
WEIGHTS = "model.safetensors"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
# Hugging Face's CLIPVisionConfig and CLIPTextConfig defaults, for a config.json that omits them.
DEFAULTS = dict(num_attention_heads=None, hidden_act="quick_gelu", layer_norm_eps=1e-5)
TOWERS = (("video", "vision_model."), ("text", "text_model."))
# Tensors a CLIP checkpoint may hold that the towers have no use for.
IGNORED = re.compile(r"(position_ids|attn_mask)$")
# A block's parts in Hugging Face's names: (theirs, ours in the video tower, ours in the text one).
BLOCK = (("layer_norm1", "norm_spatial", "attention_norm"), ("layer_norm2", "norm_mlp", "mlp_norm"),
         ("mlp.fc1", "mlp/fc1", "mlp/fc1"), ("mlp.fc2", "mlp/fc2", "mlp/fc2"))
ATTENTION = (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value"), ("out_proj", "out"))
# open_clip's names of Hugging Face's (prefixes before a block's parts; the parts themselves).
OPEN_CLIP_PREFIXES = (("visual.transformer.resblocks.", "vision_model.encoder.layers."),
                      ("transformer.resblocks.", "text_model.encoder.layers."))
OPEN_CLIP_PARTS = (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                   ("mlp.c_proj", "mlp.fc2"), ("attn.out_proj", "self_attn.out_proj"))
OPEN_CLIP_NAMES = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}


def _from_open_clip(t: dict, path: str) -> dict:
  """Hugging Face's names and layouts of an open_clip state dict."""
  depths = [files.block_count(t, theirs) for theirs, _ in OPEN_CLIP_PREFIXES]
  t = files.Tensors(t, path)
  out = {hf: t[oc] for oc, hf in OPEN_CLIP_NAMES.items()}
  out["visual_projection.weight"] = t["visual.proj"].T  # open_clip's [in, out]
  out["text_projection.weight"] = t["text_projection"].T
  for (theirs, ours), depth in zip(OPEN_CLIP_PREFIXES, depths):
    for i in range(depth):
      for part, hf_part in OPEN_CLIP_PARTS:
        for s in ("weight", "bias"):
          out[f"{ours}{i}.{hf_part}.{s}"] = t[f"{theirs}{i}.{part}.{s}"]
      for s in ("weight", "bias"):  # q, k, v stacked on the rows
        for j, q in enumerate(np.split(t[f"{theirs}{i}.attn.in_proj_{s}"], 3)):
          out[f"{ours}{i}.self_attn.{ATTENTION[j][0]}.{s}"] = q
  t.check_all_read(IGNORED)
  return out


def _read(directory: str) -> tuple[dict, dict, str]:
  """(tensors in Hugging Face's names, {tower: its config.json section or {}}, weight path)."""
  hf_path, oc_path = os.path.join(directory, WEIGHTS), os.path.join(directory, OPEN_CLIP_WEIGHTS)
  if epath.Path(oc_path).is_file():
    return _from_open_clip(files.read_tensors(oc_path), oc_path), {"video": {}, "text": {}}, oc_path
  config_path = os.path.join(directory, "config.json")
  if not epath.Path(config_path).is_file():
    raise DataError(f"config.init_from.image_text={directory!r}: neither a Hugging Face CLIPModel "
                    f"directory (config.json, {WEIGHTS}, {TOKENIZER}), open_clip's "
                    f"({OPEN_CLIP_WEIGHTS}, {TOKENIZER}) nor SigLIP's (a big_vision .npz, "
                    f"tokenizer.model)")
  hf = io_files.read_json(config_path)
  if hf.get("model_type") != "clip":
    raise DataError(f"{config_path}: model_type {hf.get('model_type')!r}, not 'clip'")
  t = files.read_tensors(hf_path)
  t = files.under(t, "clip.") or t  # a task model nesting the CLIPModel
  # Early hub files of OpenAI's models keep the towers' settings under *_config_dict.
  section = lambda name: hf.get(f"{name}_config") or hf.get(f"{name}_config_dict") or {}
  return t, {"video": section("vision"), "text": section("text")}, hf_path


def _check_config(model_cfg, data_cfg, t: dict, configs: dict, path: str) -> None:
  """ConfigError naming the config.model field that differs from the checkpoint at `path`."""
  v, txt = model_cfg.video, model_cfg.text
  patch = t["vision_model.embeddings.patch_embedding.weight"]
  required = [("video.cls_token", v.get("cls_token"), True),
              ("video.pre_norm", v.get("pre_norm"), True), ("video.pool", v.get("pool"), "cls"),
              ("text.arch", txt.get("arch"), "clip"),
              ("video.patch_size", v.patch_size, patch.shape[-1]),
              ("embed_dim", model_cfg.embed_dim, t["visual_projection.weight"].shape[0])]
  for tower, prefix in TOWERS:
    cfg, hf = model_cfg[tower], {**DEFAULTS, **configs[tower]}
    fc1 = t[f"{prefix}encoder.layers.0.mlp.fc1.weight"]
    required += [(f"{tower}.width", cfg.width, fc1.shape[1]),
                 (f"{tower}.depth", cfg.depth, files.block_count(t, f"{prefix}encoder.layers.")),
                 (f"{tower}.mlp_dim", cfg.mlp_dim, fc1.shape[0])]
    if configs[tower]:  # what an open_clip file does not store
      required += [(f"{tower}.num_heads", cfg.num_heads, hf["num_attention_heads"]),
                   (f"{tower}.activation", cfg.get("activation"), hf["hidden_act"]),
                   (f"{tower}.norm_epsilon", cfg.get("norm_epsilon"), hf["layer_norm_eps"])]
  files.require(required, path)
  positions = len(t["text_model.embeddings.position_embedding.weight"])
  if positions < data_cfg.max_text_len:
    raise ConfigError(f"config.data.max_text_len={data_cfg.max_text_len} but {path} has only "
                      f"{positions} text positions")


def load(directory: str, model_cfg, data_cfg) -> dict[str, np.ndarray]:
  """{path: array} of the CLIP checkpoint in `directory` for the model of `model_cfg` on the data
  shapes of `data_cfg`, blocks unrolled (files.to_model_layout)."""
  t, configs, path = _read(directory)
  t = files.Tensors(t, path)
  depths = {tower: files.block_count(t, f"{prefix}encoder.layers.") for tower, prefix in TOWERS}
  _check_config(model_cfg, data_cfg, t, configs, path)
  tokenizer = tokenizer_lib.HuggingFace(os.path.join(directory, TOKENIZER))
  if tokenizer.specials[2:4] != ("<|startoftext|>", "<|endoftext|>"):
    raise DataError(f"{tokenizer.model_path}: begins and ends a caption with "
                    f"{tokenizer.specials[2]} and {tokenizer.specials[3]}: not CLIP's tokenizer")
  out = {}
  for tower, prefix in TOWERS:
    video = tower == "video"
    parts = [(theirs, v if video else txt, "norm" in theirs) for theirs, v, txt in BLOCK]
    for i in range(depths[tower]):
      get = lambda part: t.module(f"{prefix}encoder.layers.{i}.{part}")
      ours = f"block_{i}/" if video else f"layer_{i}/"
      out |= files.torch_attention({q: get(f"self_attn.{p}") for p, q in ATTENTION},
                                   model_cfg[tower].num_heads,
                                   ours + ("attn_spatial/" if video else "attention/"))
      out |= files.torch_parts(get, parts, ours)
  video = {k: v for k, v in out.items() if k.startswith("block_")}
  patch = t["vision_model.embeddings.patch_embedding.weight"]  # [D, 3, p, p] -> [p, p, 3, D]
  width = patch.shape[0]
  video |= {"embedding/kernel": patch.transpose(2, 3, 1, 0), "embedding/bias": np.zeros(width),
            "cls_token": t["vision_model.embeddings.class_embedding"],
            "pos_embedding": t["vision_model.embeddings.position_embedding.weight"],
            "pre_norm/scale": t["vision_model.pre_layrnorm.weight"],
            "pre_norm/bias": t["vision_model.pre_layrnorm.bias"],
            "encoder_norm/scale": t["vision_model.post_layernorm.weight"],
            "encoder_norm/bias": t["vision_model.post_layernorm.bias"]}
  result = vit.video_tower(video, model_cfg.video, data_cfg.num_frames, data_cfg.image_size, path)
  text = {k: v for k, v in out.items() if k.startswith("layer_")}
  text |= {"word_embeddings/embedding": files.word_embeddings(
               t["text_model.embeddings.token_embedding.weight"], tokenizer, path),
           "position_embeddings":
               t["text_model.embeddings.position_embedding.weight"][:data_cfg.max_text_len],
           "final_norm/scale": t["text_model.final_layer_norm.weight"],
           "final_norm/bias": t["text_model.final_layer_norm.bias"]}
  result |= {f"text/{k}": v for k, v in text.items()}
  for ours, theirs in (("video_proj", "visual_projection"), ("text_proj", "text_projection")):
    weight = t[f"{theirs}.weight"]
    result |= {f"{ours}/kernel": weight.T, f"{ours}/bias": np.zeros(weight.shape[0])}
  log_inv_temperature = t["logit_scale"].reshape(())  # read (and checked) either way
  if model_cfg.temperature.learn:
    result["log_inv_temperature"] = log_inv_temperature
  t.check_all_read(IGNORED)
  return {k: np.array(v, np.float32, order="C") for k, v in result.items()}  # 0-d stays 0-d
