"""TACo's cascade sampling and its matching loss L3 over the fusion encoder's scores."""

import jax
import jax.numpy as jnp

from vl_jax.losses.token_contrastive import token_similarities


def cascade_scores(video_emb, text_emb, video_tokens, text_tokens, weights, inverse_temperature):
  """[B_text, B_video] scores that pick the hard negatives (TACo's cascade sampling): the
  sentence-level logit of L1, <v_j, t_i> / tau_1, plus the caption's token-level similarities,
  sum_p w_ip s(x_j, y_i^p), with the weights of the token loss. Both terms are the logits their
  losses see: TACo's tau_1 = 1 applies to unnormalised embeddings, ours are unit vectors under a
  learned temperature (a bare cosine in [-1, 1] would leave the choice to the token term). The
  weighted sum (idf normalised per caption) is our reading of "the sum of its token
  similarities", so a caption's score does not grow with its number of nouns and verbs."""
  sentence = jnp.einsum("id,jd->ij", text_emb, video_emb, precision=jax.lax.Precision.HIGHEST)
  tokens = jnp.einsum("ip,ipj->ij", weights, token_similarities(video_tokens, text_tokens))
  return inverse_temperature * sentence + tokens


def hardest_negatives(scores, k: int):
  """[B, k] indices of the k highest-scoring columns of each row i of `scores` [B, B], column i
  (the positive) excluded, k < B. The selection is not differentiated. Non-finite negatives (-inf,
  NaN) rank below every finite one but above the positive, which is never chosen."""
  scores = jax.lax.stop_gradient(scores)
  lowest = jnp.finfo(scores.dtype).min
  finite = jnp.nan_to_num(scores, nan=lowest, posinf=jnp.finfo(scores.dtype).max, neginf=lowest)
  masked = jnp.where(jnp.eye(scores.shape[0], dtype=bool), -jnp.inf, finite)
  return jax.lax.top_k(masked, k)[1]


def candidate_infonce(positive, negatives):
  """InfoNCE of each positive's score [B] against its negatives' scores [B, K] (TACo's L3, no
  temperature): mean_i -log( e^{f_i} / (e^{f_i} + sum_k e^{f_ik}) )."""
  logits = jnp.concatenate([positive[:, None], negatives], axis=1)
  return -jax.nn.log_softmax(logits, axis=1)[:, 0].mean()
