"""ViT image weights into the video tower (models/video_vit.py): a big_vision checkpoint (`.npz`,
also the original google-research/vision_transformer layout and scanned stacks) or a timm one
(`.safetensors`).

What maps where, and the choices (Frozen-in-Time's recipe where it has one):
- the patch embedding is the tower's per-frame 2D convolution (same patch size required), the
  image blocks' attention is the spatial attention, their MLP the MLP, the final norm the final
  norm; a class token, if the checkpoint has one, needs config.model.video.cls_token (its
  position embedding is added into it);
- the temporal branch starts at zero: the temporal attention's output projection and the temporal
  position embeddings are zero (its norm and query/key/value keep their fresh initialisation), so a
  clip of identical frames gives the image model's patch features;
- patch position embeddings of another grid are resampled bilinearly (jax.image.resize,
  half-pixel centres) to the tower's image_size / patch_size grid.
The attention heads of a timm file are not stored in it: config.model.video.num_heads must be the
model's.
"""

import math
import re

import jax
import numpy as np

from input_pipeline.errors import ConfigError, DataError
from vl_jax.weights import files

IGNORED = re.compile(r"^(head[./]|fc_norm\.|pre_logits[./]|MAPHead_0/)")
# Block parts: (theirs, ours, whether it is a norm). big_vision / vision_transformer's, then timm's
# but the attention (q, k, v stacked in `attn.qkv`, then `attn.proj`).
BIG_VISION = (("LayerNorm_0", "norm_spatial", True), ("LayerNorm_1", "norm_mlp", True),
              ("MlpBlock_0/Dense_0", "mlp/fc1", False), ("MlpBlock_0/Dense_1", "mlp/fc2", False),
              *((f"MultiHeadDotProductAttention_0/{p}", f"attn_spatial/{p}", False)
                for p in ("query", "key", "value", "out")))
TIMM = (("norm1", "norm_spatial", True), ("norm2", "norm_mlp", True), ("mlp.fc1", "mlp/fc1", False),
        ("mlp.fc2", "mlp/fc2", False))


def unrolled(t: dict) -> dict:
  """`t` with big_vision's scanned stacks (`.../encoderblock/...`, a leading axis of blocks)
  unrolled into `.../encoderblock_{i}/...`."""
  t = dict(t)
  for k in [k for k in t if "encoderblock/" in k]:
    stacked = t.pop(k)
    t |= {k.replace("encoderblock/", f"encoderblock_{i}/"): v for i, v in enumerate(stacked)}
  return t


def big_vision_image(t: dict, depth: int, path: str) -> dict:
  """Ours (before the position embeddings are placed: video_tower) of a big_vision /
  vision_transformer image tree."""
  for prefix in ("params/", "opt/target/"):
    if t and all(k.startswith(prefix) for k in t):
      t = files.under(t, prefix)
  t = files.Tensors(unrolled(t), path)
  pos = "pos_embedding" if "pos_embedding" in t else "Transformer/posembed_input/pos_embedding"
  out = {"embedding/kernel": t["embedding/kernel"], "embedding/bias": t["embedding/bias"],
         "pos_embedding": t[pos].reshape(-1, t[pos].shape[-1]),
         "encoder_norm/scale": t["Transformer/encoder_norm/scale"],
         "encoder_norm/bias": t["Transformer/encoder_norm/bias"]}
  if "cls" in t:
    out["cls_token"] = t["cls"].reshape(-1)
  for i in range(depth):
    out |= files.big_vision_parts(t, BIG_VISION, f"Transformer/encoderblock_{i}/", f"block_{i}/")
  t.check_all_read(IGNORED)
  return out


def _timm(t: dict, depth: int, num_heads: int, path: str) -> dict:
  """Ours (before the position embeddings are placed) of a timm VisionTransformer state dict."""
  t = files.Tensors(t, path)
  w = t["patch_embed.proj.weight"]  # [D, 3, p, p] -> [p, p, 3, D]
  width = w.shape[0]
  out = {"embedding/kernel": w.transpose(2, 3, 1, 0), "embedding/bias": t["patch_embed.proj.bias"],
         "pos_embedding": t["pos_embed"].reshape(-1, width),
         "encoder_norm/scale": t["norm.weight"], "encoder_norm/bias": t["norm.bias"]}
  if "cls_token" in t:
    out["cls_token"] = t["cls_token"].reshape(-1)
  for i in range(depth):
    get = lambda n: t.module(f"blocks.{i}.{n}")
    out |= files.torch_parts(get, TIMM, f"block_{i}/")
    qkv = zip(*(np.split(x, 3) for x in get("attn.qkv")))  # q, k, v stacked on the rows
    out |= files.torch_attention({**dict(zip(("query", "key", "value"), qkv)),
                                  "out": get("attn.proj")}, num_heads, f"block_{i}/attn_spatial/")
  t.check_all_read(IGNORED)
  return out


def load(path: str, video_cfg, num_frames: int, image_size: int) -> dict[str, np.ndarray]:
  """{"video/...": array} of the ViT checkpoint at `path`, unrolled (files.to_model_layout), for
  the tower of `video_cfg` on `num_frames` frames of `image_size`."""
  t = files.read_tensors(path)
  timm = "patch_embed.proj.weight" in t
  # Block names after any prefix ("params/Transformer/..."), of a scanned stack once unrolled.
  depth = files.block_count(t if timm else [n.split("Transformer/", 1)[-1] for n in unrolled(t)],
                            "blocks." if timm else "encoderblock_")
  if depth != video_cfg.depth:
    raise ConfigError(f"config.model.video.depth={video_cfg.depth} but {path} has {depth} blocks")
  ours = _timm(t, depth, video_cfg.num_heads, path) if timm else big_vision_image(t, depth, path)
  if not timm and (heads := ours["block_0/attn_spatial/query/kernel"].shape[1]) != \
      video_cfg.num_heads:
    raise ConfigError(f"config.model.video.num_heads={video_cfg.num_heads} but {path} has "
                      f"{heads} heads")
  return video_tower(ours, video_cfg, num_frames, image_size, path)


def video_tower(ours: dict, video_cfg, num_frames: int, image_size: int,
                path: str) -> dict[str, np.ndarray]:
  """{"video/...": array} of an image model's parameters `ours` (named as the tower's, with
  "pos_embedding" [patches (+ 1 for a class token's row first), D] and "cls_token" [D] as
  stored): the class token's position added into it, the patch positions resampled to the
  tower's grid, the temporal branch at zero. ConfigError where config.model.video differs from
  the checkpoint."""
  depth = video_cfg.depth
  patch, width = ours["embedding/kernel"].shape[0], ours["embedding/kernel"].shape[-1]
  if patch != video_cfg.patch_size:
    raise ConfigError(f"config.model.video.patch_size={video_cfg.patch_size} but {path} has "
                      f"{patch}x{patch} patches")
  has_cls = "cls_token" in ours
  if has_cls != bool(video_cfg.cls_token):
    raise ConfigError(f"config.model.video.cls_token={video_cfg.cls_token} but {path} "
                      f"{'has a' if has_cls else 'has no'} class token: set it to {has_cls}")
  pos = ours.pop("pos_embedding")
  if has_cls:
    if math.isqrt(len(pos) - 1) ** 2 == len(pos) - 1:  # the class token's row first
      ours["cls_token"], pos = ours["cls_token"] + pos[0], pos[1:]
    ours["cls_token"] = ours["cls_token"].reshape(1, 1, 1, width)
  side, grid = math.isqrt(len(pos)), image_size // patch
  if side * side != len(pos):
    raise DataError(f"{path}: {len(pos)} patch position embeddings: not a square grid")
  if side != grid:
    pos = np.asarray(jax.image.resize(pos.reshape(side, side, width), (grid, grid, width),
                                      "bilinear"))
  ours["pos_embedding"] = pos.reshape(1, 1, grid * grid, width)
  if video_cfg.get("temporal", True):  # the temporal branch at zero
    ours["temporal_embedding"] = np.zeros((1, num_frames, 1, width))
    heads = video_cfg.num_heads
    for i in range(depth):
      ours[f"block_{i}/attn_temporal/out/kernel"] = np.zeros((heads, width // heads, width))
      ours[f"block_{i}/attn_temporal/out/bias"] = np.zeros((width,))
  return {f"video/{k}": np.ascontiguousarray(v, np.float32) for k, v in ours.items()}
