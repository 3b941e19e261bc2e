"""SigLIP weights into both towers, the learned temperature and bias: a directory holding one
big_vision SigLIP checkpoint (`.npz`, e.g. webli_en_b16_224_63724782.npz) and its sentencepiece
vocabulary as `tokenizer.model` (the English models': big_vision's c4_en,
cc_en.32000/sentencepiece.model).

- The image ViT becomes the video tower as vit.py places an image model (its blocks the spatial
  attention and MLP, the temporal branch at zero), and its attention-pooling head (MAPHead) the
  tower's map_head, over every frame's patch tokens (config.model.video.pool="map"): a clip of
  identical frames gives SigLIP's image embedding. SigLIP's image embedding is the pooled feature
  itself: the video projection starts as the identity (config.model.embed_dim = the width).
- The text transformer becomes the "siglip" text tower (vl_jax/models/text_transformer.py): no
  mask, pooled at the last position, its `head` the text projection. SigLIP's text has no begin
  token: the tower's position 0 ([CLS] here) is masked out and the checkpoint's positions start at
  1, so config.data.max_text_len = SigLIP's length + 1 (65 for its 64 tokens) reproduces it. Its
  word embeddings are permuted like the tokenizer's ids (input_pipeline/tokenizer.SentencePiece).
- `t` is the log inverse temperature (config.model.temperature.learn) and `b` the sigmoid loss's
  bias (config.model.sigmoid_bias).
"""

import os

import numpy as np
from etils import epath

from input_pipeline import tokenizer as tokenizer_lib
from input_pipeline.errors import ConfigError, DataError
from vl_jax.weights import files, vit

TOKENIZER = "tokenizer.model"
# A big_vision encoder block's parts: (theirs, ours in the text tower, whether it is a norm).
TEXT_BLOCK = (("LayerNorm_0", "attention_norm", True), ("LayerNorm_1", "mlp_norm", True),
              ("MlpBlock_0/Dense_0", "mlp/fc1", False), ("MlpBlock_0/Dense_1", "mlp/fc2", False),
              *((f"MultiHeadDotProductAttention_0/{p}", f"attention/{p}", False)
                for p in ("query", "key", "value", "out")))
MAP_HEAD = (("LayerNorm_0", "norm", True), ("MlpBlock_0/Dense_0", "mlp/fc1", False),
            ("MlpBlock_0/Dense_1", "mlp/fc2", False),
            *((f"MultiHeadDotProductAttention_0/{p}", f"attention/{p}", False)
              for p in ("query", "key", "value", "out")))


def checkpoint_path(directory: str) -> str:
  """The one .npz of `directory`, or None if it holds none; DataError for several."""
  found = sorted(str(p) for p in epath.Path(directory).glob("*.npz"))
  if len(found) > 1:
    raise DataError(f"config.init_from.image_text={directory!r}: holds {len(found)} .npz files; "
                    f"a SigLIP directory holds one checkpoint")
  return found[0] if found else None


def _tree(path: str) -> tuple[dict, files.Tensors, files.Tensors]:
  """(image, text, top-level) subtrees of a big_vision SigLIP checkpoint, scanned stacks
  unrolled; the image's is read by vit.big_vision_image."""
  t = files.read_tensors(path)
  t = vit.unrolled({k.removeprefix("params/"): v for k, v in t.items()})
  img, txt = files.under(t, "img/"), files.under(t, "txt/")
  if not img or not txt:
    raise DataError(f"{path}: no img/ and txt/ parameters: not a big_vision SigLIP checkpoint")
  rest = {k: v for k, v in t.items() if not k.startswith(("img/", "txt/"))}
  return img, files.Tensors(txt, f"{path} (txt/)"), files.Tensors(rest, path)


def _check_config(model_cfg, data_cfg, img: dict, txt: dict, path: str) -> None:
  v, t = model_cfg.video, model_cfg.text
  width = img["embedding/kernel"].shape[-1]
  text_fc1 = txt["Encoder_0/encoderblock_0/MlpBlock_0/Dense_0/kernel"]
  required = [
      ("video.cls_token", v.get("cls_token"), False), ("video.pre_norm", v.get("pre_norm"), False),
      ("video.pool", v.get("pool"), "map"), ("text.arch", t.get("arch"), "siglip"),
      ("video.width", v.width, width),
      ("video.depth", v.depth, files.block_count(img, "Transformer/encoderblock_")),
      ("video.num_heads", v.num_heads,
       img["Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel"].shape[1]),
      ("video.mlp_dim", v.mlp_dim,
       img["Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel"].shape[1]),
      ("video.patch_size", v.patch_size, img["embedding/kernel"].shape[0]),
      ("text.width", t.width, text_fc1.shape[0]),
      ("text.depth", t.depth, files.block_count(txt, "Encoder_0/encoderblock_")),
      ("text.num_heads", t.num_heads,
       txt["Encoder_0/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel"].shape[1]),
      ("text.mlp_dim", t.mlp_dim, text_fc1.shape[1]),
      # SigLIP's MLPs (flax's default GELU: tanh) and norms (flax's default epsilon)
      ("video.activation", v.get("activation"), "gelu_tanh"),
      ("text.activation", t.get("activation"), "gelu_tanh"),
      ("video.norm_epsilon", v.get("norm_epsilon"), 1e-6),
      ("text.norm_epsilon", t.get("norm_epsilon"), 1e-6),
      ("embed_dim", model_cfg.embed_dim, width)]
  files.require(required, path)
  if (out := txt["head/kernel"].shape[1]) != width:
    raise DataError(f"{path}: a text head of {out} outputs for a {width}-wide image embedding")
  positions = txt["pos_embedding"].reshape(-1, t.width).shape[0]
  if positions + 1 < data_cfg.max_text_len:
    raise ConfigError(f"config.data.max_text_len={data_cfg.max_text_len} but {path} has only "
                      f"{positions} text positions (+ 1 for [CLS])")


def load(directory: str, model_cfg, data_cfg) -> dict[str, np.ndarray]:
  """{path: array} of the SigLIP checkpoint in `directory` for the model of `model_cfg` on the
  data shapes of `data_cfg`, blocks unrolled (files.to_model_layout)."""
  path = checkpoint_path(directory)
  img, txt, top = _tree(path)
  if "head/kernel" in img:
    raise DataError(f"{path}: an image head (img/head), which SigLIP's image embedding lacks and "
                    f"the import does not read")
  _check_config(model_cfg, data_cfg, img, txt, path)
  tokenizer = tokenizer_lib.load(os.path.join(directory, TOKENIZER))
  if not getattr(tokenizer, "siglip", False):
    raise DataError(f"{tokenizer.model_path}: not SigLIP's vocabulary (ids 0-2 "
                    f"{' '.join(tokenizer_lib.SentencePiece.SIGLIP_PIECES)})")

  video = vit.big_vision_image(img, model_cfg.video.depth, path)
  head = files.Tensors({k: v for k, v in img.items() if k.startswith("MAPHead_0/")},
                       f"{path} (img/)")
  video |= {"map_head/probe": head["MAPHead_0/probe"],
            **files.big_vision_parts(head, MAP_HEAD, "MAPHead_0/", "map_head/")}
  result = vit.video_tower(video, model_cfg.video, data_cfg.num_frames, data_cfg.image_size, path)
  width = model_cfg.embed_dim
  result |= {"video_proj/kernel": np.eye(width), "video_proj/bias": np.zeros(width)}

  text = {k: v for i in range(model_cfg.text.depth) for k, v in files.big_vision_parts(
      txt, TEXT_BLOCK, f"Encoder_0/encoderblock_{i}/", f"layer_{i}/").items()}
  positions = txt["pos_embedding"].reshape(-1, model_cfg.text.width)
  text |= {"word_embeddings/embedding": files.word_embeddings(txt["Embed_0/embedding"],
                                                              tokenizer, path),
           "position_embeddings": np.concatenate(  # position 0: [CLS], masked out
               [np.zeros_like(positions[:1]), positions])[:data_cfg.max_text_len],
           "final_norm/scale": txt["Encoder_0/encoder_norm/scale"],
           "final_norm/bias": txt["Encoder_0/encoder_norm/bias"]}
  result |= {f"text/{k}": v for k, v in text.items()}
  result |= {"text_proj/kernel": txt["head/kernel"], "text_proj/bias": txt["head/bias"]}
  t, b = top["t"].reshape(()), top["b"].reshape(())  # read (and checked) either way
  if model_cfg.temperature.learn:
    result["log_inv_temperature"] = t
  if model_cfg.get("sigmoid_bias", False):
    result["sigmoid_bias/bias"] = b
  for read in (txt, top, head):
    read.check_all_read()
  return {k: np.array(v, np.float32, order="C") for k, v in result.items()}  # 0-d stays 0-d
