"""TACo's token-level contrastive loss (L2): nouns and verbs of a caption against every clip."""

import jax
import jax.numpy as jnp

from input_pipeline.contract import POS_ID


def content_token_weights(token_pos, token_idf, tags=("NOUN", "VERB")):
  """[B, L] weights of the tokens whose word has one of `tags`: their idf normalised to sum to 1
  over each caption (0 elsewhere, and for a caption without such tokens).

  The pipeline gives every word piece its word's POS and idf, so the pieces of one word share the
  word's weight (each piece weighs the word's idf before the normalisation): our reading of TACo's
  "idf-weighted" tokens, which the paper does not spell out for word pieces.
  """
  selected = jnp.isin(token_pos, jnp.asarray([POS_ID[t] for t in tags]))
  idf = jnp.where(selected, token_idf, 0.0)
  return idf / jnp.maximum(idf.sum(axis=1, keepdims=True), 1e-9)


def content_tokens(text_tokens, weights, max_tokens: int):
  """The `max_tokens` highest-weighted tokens of each caption, [B, C, D], with their weights
  renormalised per caption, [B, C]. The token losses then compare C tokens per caption with the
  clips instead of all L (most are function words, [SEP] or padding, of weight 0): the same loss
  while a caption has at most C content tokens, and about L / C times cheaper. C is
  min(`max_tokens`, L): a caption shorter than `max_tokens` keeps all its tokens."""
  top, index = jax.lax.top_k(weights, min(max_tokens, weights.shape[1]))
  tokens = jnp.take_along_axis(text_tokens, index[..., None], axis=1)
  return tokens, top / jnp.maximum(top.sum(axis=1, keepdims=True), 1e-9)


def token_similarities(video_tokens, text_tokens):
  """[B_text, L, B_video]: s(x_j, y_i^p) = max_k <x_j^k, y_i^p>, each caption token's best match
  among each clip's tokens (video_tokens [B, K, D], text_tokens [B, L, D])."""
  return jnp.einsum("ipd,jkd->ipjk", text_tokens, video_tokens,
                    precision=jax.lax.Precision.HIGHEST).max(axis=-1)


def token_infonce(video_tokens, text_tokens, weights, inverse_temperature):
  """TACo's token-level InfoNCE, the paper's L2: text tokens against clips over the global batch.

  With x_j^k the K token embeddings of clip j, y_i^p the embedding of token p of caption i and
  w_ip its weight (`content_token_weights`),

      s(x_j, y_i^p) = max_k <x_j^k, y_i^p>
      L2 = 1/|I| sum_{i in I} sum_p w_ip * -log softmax_j(s(x_j, y_i^p) / tau)[i]

  where I holds the captions with any weighted token. `video_tokens` [B, K, D], `text_tokens`
  [B, L, D], `weights` [B, L]; B is the global batch (the arrays are normally sharded along it).
  """
  sim = token_similarities(video_tokens, text_tokens)
  log_p = jax.nn.log_softmax(inverse_temperature * sim, axis=-1)
  own = jnp.diagonal(log_p, axis1=0, axis2=2).T  # [B, L]: log p of each token's own clip
  per_caption = -(weights * own).sum(axis=1)
  has_tokens = weights.sum(axis=1) > 0
  return per_caption.sum() / jnp.maximum(has_tokens.sum(), 1)
