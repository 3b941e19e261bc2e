"""Transformer building blocks shared by the towers."""

import flax.linen as nn
import jax.numpy as jnp


class Mlp(nn.Module):
  """Position-wise feed-forward block (BERT / ViT layout: fc1 -> GELU -> fc2)."""
  mlp_dim: int

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    x = nn.Dense(self.mlp_dim, name="fc1")(x)
    x = nn.gelu(x, approximate=False)
    return nn.Dense(width, name="fc2")(x)


def attention(num_heads: int, name: str, zero_init_out: bool = False) -> nn.MultiHeadDotProductAttention:
  """Multi-head self-attention; `zero_init_out` makes the block an identity at initialisation."""
  kwargs = {"out_kernel_init": nn.initializers.zeros} if zero_init_out else {}
  return nn.MultiHeadDotProductAttention(num_heads=num_heads, name=name, **kwargs)


def l2_normalize(x, eps: float = 1e-6):
  return x * jnp.reciprocal(jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps))
