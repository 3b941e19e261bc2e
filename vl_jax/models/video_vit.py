"""Video ViT with divided space-time attention (Frozen-in-Time / TimeSformer).

Frames are cut into non-overlapping patches (a 2D convolution applied to every frame), plus learned
spatial and temporal position embeddings. Every block applies, each with a pre-norm residual:
temporal attention (each patch position attends across frames), then spatial attention (each
frame's patches attend to each other), then the MLP.

With a class token (ViT checkpoints that have one, vl_jax/weights/vit.py), each frame's spatial
attention also sees it, its updates are averaged over the frames (TimeSformer), and it stays out of
the temporal attention; the tower still returns the patch tokens only. With the temporal branch at
zero (`zero_init_temporal`, zero temporal embeddings), a clip of identical frames then gives the
image model's patch features.

Imported image-text towers add what their image model has (vl_jax/weights/clip.py,
vl_jax/weights/siglip.py): CLIP's norm before the blocks (`pre_norm`), one class token per frame
(`frame_cls`, CLIP4Clip: each frame is the image model's), no temporal branch at all (`temporal`
False: frames encoded independently), another MLP activation and norm epsilon, and the pooled
feature the embedding is made of (`pool`): the mean of the patch tokens, the class tokens, or
SigLIP's attention-pooling head.
"""


import flax.linen as nn
import jax.numpy as jnp

from vl_jax.models.layers import Mlp, Stack, attention, layer_norm, run_blocks

# What the tower pools its tokens into (VideoViT.pool): the mean of the patch tokens [B, D], each
# frame's class token [B, T, D], or the attention-pooling head over all patch tokens [B, D].
POOLS = ("mean", "cls", "map")

# ImageNet statistics, the convention of timm's ViT checkpoints; big_vision's take [-1, 1] pixels,
# mean and std 0.5 (config.model.video.pixel_mean / pixel_std).
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


def normalize_pixels(frames, mean=PIXEL_MEAN, std=PIXEL_STD):
  """uint8 RGB in [0, 255] -> float32 (x / 255 - mean) / std."""
  x = frames.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean)) / jnp.asarray(std)


class DividedSpaceTimeBlock(nn.Module):
  num_heads: int
  mlp_dim: int
  zero_init_temporal: bool
  cls_token: bool = False  # position 0 of every frame is the class token
  frame_cls: bool = False  # each frame's own class token; else one, its frames' updates averaged
  temporal: bool = True  # the temporal attention (False: each frame on its own)
  activation: str = "gelu"
  epsilon: float = 1e-6
  stack: Stack = Stack()

  @nn.compact
  def __call__(self, x):  # x: [B, T, N, D] (N counts the class token)
    dtype, eps = self.stack.dtype, self.epsilon
    first = int(self.cls_token)
    if self.temporal:  # over axis T for every patch position: move T next to the features
      patches = x[:, :, first:]
      y = layer_norm("norm_temporal", dtype, eps)(patches).swapaxes(1, 2)  # [B, N, T, D]
      y = attention(self.num_heads, "attn_temporal", self.stack, self.zero_init_temporal)(y)
      x = jnp.concatenate([x[:, :, :first], patches + y.swapaxes(1, 2)], axis=2)
    y = layer_norm("norm_spatial", dtype, eps)(x)
    y = attention(self.num_heads, "attn_spatial", self.stack)(y)
    if self.cls_token and not self.frame_cls:  # one class token: its frames' updates averaged
      y = y.at[:, :, 0].set(y[:, :, 0].mean(axis=1, keepdims=True))
    x = x + y
    y = Mlp(self.mlp_dim, dtype, self.activation, name="mlp")(layer_norm("norm_mlp", dtype, eps)(x))
    return x + y


class MapHead(nn.Module):
  """Multihead attention pooling (big_vision's MAPHead, SigLIP's image pooling): a learned probe
  attends to the tokens, then a pre-norm MLP with a residual. [B, S, D] -> [B, D]."""
  num_heads: int
  mlp_dim: int
  activation: str = "gelu_tanh"
  epsilon: float = 1e-6
  stack: Stack = Stack()

  @nn.compact
  def __call__(self, x):
    b, _, d = x.shape
    probe = self.param("probe", nn.initializers.xavier_uniform(), (1, 1, d))
    x = attention(self.num_heads, "attention", self.stack)(
        jnp.broadcast_to(probe, (b, 1, d)).astype(x.dtype), x)
    y = layer_norm("norm", self.stack.dtype, self.epsilon)(x)
    return (x + Mlp(self.mlp_dim, self.stack.dtype, self.activation, name="mlp")(y))[:, 0]


class VideoViT(nn.Module):
  """Returns the final-normed space-time patch tokens [B, T, N, D] (or an earlier block's,
  unnormed) and what `pool` pools them into (None for an earlier block)."""
  patch_size: int
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  num_frames: int
  image_size: int
  zero_init_temporal: bool = True  # Frozen-in-Time: the video tower starts as the image model
  # Frame order reaches the tower only through these. At the ViT-standard 0.02 they are a ~2% signal
  # next to the patch embeddings, and a from-scratch contrastive run makes "left" and "right"
  # captions alike before the temporal branch learns to tell them apart (docs/DATA.md).
  temporal_embedding_init_std: float = 0.02
  use_mask_token: bool = False  # MILES: a learned embedding takes the place of masked patches
  cls_token: bool = False  # a class token in the spatial attention (imported ViTs that have one)
  frame_cls: bool = False  # each frame keeps its own class token (CLIP4Clip)
  temporal: bool = True  # the temporal attention and embeddings (False: frames independent)
  pre_norm: bool = False  # a LayerNorm of the embeddings before the blocks (CLIP's ln_pre)
  activation: str = "gelu"  # the MLPs' (layers.ACTIVATIONS)
  norm_epsilon: float = 1e-6
  pool: str = "mean"  # one of POOLS
  pixel_mean: tuple = PIXEL_MEAN
  pixel_std: tuple = PIXEL_STD
  stack: Stack = Stack()

  @nn.compact
  def __call__(self, frames, mask=None, layer: int | None = None):
    """frames: uint8 [B, T, H, W, 3]; mask: bool [B, T, N], True where the patch embedding is
    replaced by the mask token (before the position embeddings are added, as in BEiT); layer: the
    block (1 .. depth, or -depth .. -1 from the end) whose output is returned, the last one's
    through the final norm (None: the last; with a scanned stack, the last only). Returns
    (tokens, pooled), float32 whatever the compute dtype."""
    b, t, h, w, _ = frames.shape
    layer = self.depth if layer is None else layer
    if not (1 <= layer <= self.depth or -self.depth <= layer <= -1):
      raise ValueError(f"layer {layer}: the video tower has blocks 1 .. {self.depth} "
                       f"(-{self.depth} .. -1 from the end)")
    layer = layer if layer > 0 else self.depth + 1 + layer
    if self.stack.scan and layer != self.depth:
      raise ValueError(f"layer {layer}: a scanned stack of blocks returns the last block's output "
                       f"only; set config.model.scan_layers=False")
    if t > self.num_frames or h != self.image_size or w != self.image_size:
      raise ValueError(f"video tower built for <= {self.num_frames} x {self.image_size}^2 frames, "
                       f"got {t} x {h} x {w}")
    x = normalize_pixels(frames, self.pixel_mean, self.pixel_std).reshape(b * t, h, w, 3)
    p = self.patch_size
    x = nn.Conv(self.width, (p, p), strides=(p, p), padding="VALID", dtype=self.stack.dtype,
                name="embedding")(x)
    x = x.reshape(b, t, -1, self.width)
    n = x.shape[2]
    init = nn.initializers.normal(0.02)
    if self.use_mask_token:
      mask_token = self.param("mask_token", init, (1, 1, 1, self.width))
      if mask is not None:
        x = jnp.where(mask[..., None], mask_token.astype(x.dtype), x)
    elif mask is not None:
      raise ValueError("a mask needs the video tower's mask token: set "
                       "config.model.video.mask_token=True")
    x = x + self.param("pos_embedding", init, (1, 1, n, self.width))
    if self.temporal:
      temporal_init = nn.initializers.normal(self.temporal_embedding_init_std)
      x = x + self.param("temporal_embedding", temporal_init,
                         (1, self.num_frames, 1, self.width))[:, :t]
    if self.cls_token:
      cls = self.param("cls_token", init, (1, 1, 1, self.width)).astype(x.dtype)
      x = jnp.concatenate([jnp.broadcast_to(cls, (b, t, 1, self.width)), x], axis=2)
    if self.pre_norm:
      x = nn.LayerNorm(epsilon=self.norm_epsilon, name="pre_norm")(x)
    eps = self.norm_epsilon
    x = run_blocks(DividedSpaceTimeBlock,
                   dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                        zero_init_temporal=self.zero_init_temporal, cls_token=self.cls_token,
                        frame_cls=self.frame_cls, temporal=self.temporal,
                        activation=self.activation, epsilon=eps, stack=self.stack),
                   layer, self.stack, "block", x.astype(self.stack.dtype))
    if layer != self.depth:
      return x[:, :, int(self.cls_token):].astype(jnp.float32), None
    x = nn.LayerNorm(epsilon=eps, name="encoder_norm")(x)
    tokens = x[:, :, int(self.cls_token):]
    if self.pool == "cls":
      pooled = x[:, :, 0]
    elif self.pool == "map":
      pooled = MapHead(self.num_heads, self.mlp_dim, self.activation, eps, self.stack,
                       name="map_head")(tokens.reshape(b, -1, self.width))
    else:
      pooled = tokens.mean(axis=(1, 2))
    return tokens.astype(jnp.float32), pooled.astype(jnp.float32)
