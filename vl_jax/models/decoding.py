"""Beam-search caption generation (a beam of 1: greedy decoding) with static shapes, jit-compiled
end to end.

It takes `logits_fn(tokens [N, L]) -> [N, L, V]`, a causal next-token model (the logits at
position i depend on tokens 0 .. i only: CaptionDecoder), and fill a fixed [.., L] buffer that
starts as [CLS] PAD ...; step t writes position t from the logits at t - 1. A sequence ends at its
[SEP], after which it holds padding. The loop is a `lax.while_loop` that stops once every sequence
has ended or the buffer is full. Each step recomputes the prefix (no key/value cache): captions are
short (L = 32 here), and the step then equals the teacher-forced decoder exactly.

Padding, [CLS] and [MASK] are never generated (UNK and [SEP] are).
"""

import jax
import jax.numpy as jnp

from input_pipeline.contract import CLS_ID, MASK_ID, PAD_ID, SEP_ID

BANNED = (PAD_ID, CLS_ID, MASK_ID)


def _next_log_probs(logits_fn, tokens, t):
  """[N, V] log-probabilities of position t's token, the banned ids excluded."""
  logits = jax.lax.dynamic_index_in_dim(logits_fn(tokens), t - 1, axis=1, keepdims=False)
  logits = logits.astype(jnp.float32).at[:, jnp.asarray(BANNED)].set(-jnp.inf)
  return jax.nn.log_softmax(logits, axis=-1)


def length_normalized(scores, lengths, alpha: float):
  """GNMT's length penalty: score / ((5 + length) / 6)^alpha (alpha 0: the summed log-prob)."""
  return scores / ((5.0 + lengths) / 6.0) ** alpha


def beam_search(logits_fn, batch_size: int, max_len: int, beam: int, alpha: float = 0.0):
  """[B, L] tokens: the best of `beam` hypotheses kept per clip by summed log-probability; at the
  end they are ranked by `length_normalized` (their length counts the generated tokens, [SEP]
  included). An ended hypothesis keeps its score and extends only with padding, so it competes
  with the live ones until the end. With beam 1 this is greedy decoding: at each step the most
  likely next token."""
  b, k = batch_size, beam

  def body(carry):
    t, tokens, scores, done = carry
    log_probs = _next_log_probs(logits_fn, tokens.reshape(b * k, max_len), t)
    log_probs = log_probs.reshape(b, k, -1)
    vocab = log_probs.shape[-1]
    ended = jnp.full((vocab,), -jnp.inf).at[PAD_ID].set(0.0)  # padding at no cost
    log_probs = jnp.where(done[..., None], ended, log_probs)
    scores, flat = jax.lax.top_k((scores[..., None] + log_probs).reshape(b, k * vocab), k)
    source, token = flat // vocab, (flat % vocab).astype(jnp.int32)
    tokens = jnp.take_along_axis(tokens, source[..., None], axis=1).at[:, :, t].set(token)
    done = jnp.take_along_axis(done, source, axis=1) | (token == SEP_ID)
    return t + 1, tokens, scores, done

  cond = lambda carry: (carry[0] < max_len) & ~carry[3].all()
  # Only the first hypothesis is live at the start: k copies of it would fill the beam with
  # duplicates.
  scores = jnp.full((b, k), -jnp.inf).at[:, 0].set(0.0)
  start = jnp.full((b, k, max_len), PAD_ID, jnp.int32).at[..., 0].set(CLS_ID)
  init = (jnp.int32(1), start, scores, jnp.zeros((b, k), bool))
  _, tokens, scores, _ = jax.lax.while_loop(cond, body, init)
  lengths = ((tokens != PAD_ID) & (tokens != CLS_ID)).sum(-1)
  best = length_normalized(scores, lengths, alpha).argmax(-1)
  return jnp.take_along_axis(tokens, best[:, None, None], axis=1)[:, 0]
