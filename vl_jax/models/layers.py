"""Transformer building blocks shared by the towers, and how a tower runs its stack of blocks
(compute dtype, rematerialisation, layer scan)."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# What the backward pass keeps of a block's forward pass: "none" all of it (no recomputation),
# "full" only the block's input (everything else is recomputed), "dots" the outputs of its
# matmuls without a batch dimension (the projections; attention and element-wise ops are
# recomputed).
REMAT_POLICIES = ("none", "full", "dots")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# How attention is computed: "flax", flax's own (einsum, float32 softmax); "xla" and "cudnn",
# jax.nn.dot_product_attention with that implementation (cudnn: fused flash attention, NVIDIA GPUs
# in bfloat16 only); "auto", cudnn on a GPU in bfloat16, xla elsewhere. All compute the same
# function (tests/test_stack_options.py).
ATTENTION = ("flax", "xla", "cudnn", "auto")


@dataclasses.dataclass(frozen=True)
class Stack:
  """How a tower runs its blocks (config.model.dtype, remat, scan_layers, attention). `dtype` is
  the compute dtype of the blocks; parameters stay float32 (the optimizer updates float32 master
  weights) and the towers return float32. `attention` is one of ATTENTION but "auto"
  (`attention_implementation` resolves it)."""
  dtype: Any = jnp.float32
  remat: str = "none"
  scan: bool = False
  attention: str = "flax"


def attention_implementation(name: str, dtype) -> str:
  """config.model.attention with "auto" resolved for the default backend and `dtype`."""
  if name != "auto":
    return name
  return "cudnn" if jax.default_backend() == "gpu" and dtype == jnp.bfloat16 else "xla"


def gelu(x):
  """Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), in the form PyTorch and BERT compute it.
  jax.nn.gelu(approximate=False) goes through erfc instead, 3x slower on CPU forward and
  backward (measured: docs/PERFORMANCE.md); the two differ by < 1e-6 absolute."""
  return 0.5 * x * (1 + jax.lax.erf(x * np.sqrt(0.5).astype(x.dtype)))


# The MLP activations of the towers' checkpoints: BERT's and ViT's exact GELU, its tanh
# approximation (big_vision's and SigLIP's), and OpenAI CLIP's x * sigmoid(1.702 x).
ACTIVATIONS = {"gelu": gelu, "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
               "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x)}


class Mlp(nn.Module):
  """Position-wise feed-forward block (BERT / ViT layout: fc1 -> activation -> fc2)."""
  mlp_dim: int
  dtype: Any = jnp.float32
  activation: str = "gelu"  # one of ACTIVATIONS

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    x = nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(x)
    x = ACTIVATIONS[self.activation](x)
    return nn.Dense(width, dtype=self.dtype, name="fc2")(x)


def dot_product_attention(implementation: str):
  """flax's attention_fn through jax.nn.dot_product_attention, which takes [B, T, heads, dim]
  inputs: flax's leading batch dimensions (a video's [B, N] or [B, T]) are folded into one."""
  def attend(query, key, value, mask=None):
    fold = lambda x: x.reshape((-1,) + x.shape[-3:])
    if mask is not None:  # flax's: 1.0 where attended, [..., 1, T, S]
      mask = fold(jnp.broadcast_to(mask, query.shape[:-3] + mask.shape[-3:])).astype(bool)
    out = jax.nn.dot_product_attention(fold(query), fold(key), fold(value), mask=mask,
                                       implementation=implementation)
    return out.reshape(query.shape)
  return attend


def attention(num_heads: int, name: str, stack: Stack,
              zero_init_out: bool = False) -> nn.MultiHeadDotProductAttention:
  """Multi-head attention computed as `stack.attention` says; `zero_init_out` makes the block an
  identity at initialisation. The softmax is float32 whatever the compute dtype."""
  kwargs = {"out_kernel_init": nn.initializers.zeros} if zero_init_out else {}
  if stack.attention != "flax":
    kwargs["attention_fn"] = dot_product_attention(stack.attention)
  return nn.MultiHeadDotProductAttention(num_heads=num_heads, name=name, dtype=stack.dtype,
                                         force_fp32_for_softmax=True, **kwargs)


def layer_norm(name: str, dtype, epsilon: float = 1e-6) -> nn.LayerNorm:
  """Statistics in float32, output in `dtype`."""
  return nn.LayerNorm(epsilon=epsilon, dtype=dtype, name=name)


class _ScanStep(nn.Module):
  """One block as nn.scan's body: (carry, broadcast inputs) -> (carry, nothing)."""
  block: type
  fields: tuple  # (name, value) pairs of the block's attributes

  @nn.compact
  def __call__(self, x, *args):
    return self.block(**dict(self.fields), name="block")(x, *args), None


def run_blocks(block: type, fields: dict, depth: int, stack: Stack, name: str, x, *args):
  """`depth` blocks `block(**fields)` applied in turn to x, each also given `args`.

  Unrolled, block i is the module f"{name}_{i}". With `stack.scan` they are one module
  f"{name}s/block" whose parameters have a leading axis of size `depth` (one block compiled
  instead of `depth`), so checkpoints of the two layouts differ. `stack.remat` says what the
  backward pass keeps of each block (REMAT_POLICIES).
  """
  if stack.remat != "none":
    policy = (jax.checkpoint_policies.dots_with_no_batch_dims_saveable
              if stack.remat == "dots" else None)
    block = nn.remat(block, policy=policy)
  if not stack.scan:
    for i in range(depth):
      x = block(**fields, name=f"{name}_{i}")(x, *args)
    return x
  scanned = nn.scan(_ScanStep, variable_axes={"params": 0}, split_rngs={"params": True},
                    in_axes=(nn.broadcast,) * len(args), length=depth)
  x, _ = scanned(block, tuple(sorted(fields.items())), name=f"{name}s")(x, *args)
  return x


def l2_normalize(x, eps: float = 1e-6):
  return x * jnp.reciprocal(jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps))
