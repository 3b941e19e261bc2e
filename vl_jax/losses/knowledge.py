"""CLOP's knowledge losses: structural knowledge prediction (SKP) and knowledge-guided contrastive
learning (KCL). Only CLOP's abstract is public: each formula below is our reading of it.

A caption's knowledge is a vector x in R^K over the knowledge classes: x_k = w_k (the class's idf
over the training captions) when the caption holds class k, else 0 (input_pipeline/pipeline.py).
"""

import jax
import jax.numpy as jnp
import optax

SIMILARITIES = ("jaccard", "cosine")
NEGATIVES = ("weight", "sample")


def multilabel_softmax(logits, present):
  """SKP's loss "softmax": cross-entropy against the caption's classes spread evenly,

      L = -1/B' * sum_b sum_k (y_bk / |y_b|) log softmax(z_b)_k

  over the B' captions with at least one class (y_b in {0, 1}^K, z_b the logits). Our default:
  Mahajan et al. (2018) found it better than per-class sigmoids for sparse multi-label tags, and
  its scale (log K at the start) is the contrastive loss's.
  """
  y = present.astype(jnp.float32)
  count = y.sum(-1, keepdims=True)
  per_caption = optax.losses.softmax_cross_entropy(logits, y / jnp.maximum(count, 1.0))
  has = (count[:, 0] > 0).astype(jnp.float32)
  return (per_caption * has).sum() / jnp.maximum(has.sum(), 1.0)


def multilabel_bce(logits, present):
  """SKP's loss "bce": binary cross-entropy of every class, averaged over captions and classes,

      L = -1/(BK) * sum_b sum_k [ y_bk log sigma(z_bk) + (1 - y_bk) log(1 - sigma(z_bk)) ].
  """
  return optax.losses.sigmoid_binary_cross_entropy(logits, present.astype(jnp.float32)).mean()


def r_precision(logits, present):
  """SKP's metric: the fraction of a caption's R classes among its R most likely ones, averaged
  over the captions with knowledge (1: the head ranks exactly the caption's classes first)."""
  count = present.sum(-1)
  rank = jnp.argsort(jnp.argsort(-logits, axis=-1), axis=-1)
  hits = (present & (rank < count[:, None])).sum(-1)
  has = count > 0
  return jnp.where(has, hits / jnp.maximum(count, 1), 0.0).sum() / jnp.maximum(has.sum(), 1)


def knowledge_similarity(knowledge, kind: str):
  """[B, B] similarity of the captions' knowledge vectors x [B, K] (non-negative), and [B, B]
  whether two captions hold exactly the same classes.

  "jaccard", the weighted Jaccard index  sum_k min(x_ik, x_jk) / sum_k max(x_ik, x_jk);
  "cosine",  <x_i, x_j> / (|x_i| |x_j|).
  Both are 0 when a caption holds no class. Since a class has the same weight in every caption,
  min(x_ik, x_jk) = x_ik [x_jk > 0]: the intersections are one matmul.
  """
  if kind not in SIMILARITIES:
    raise ValueError(f"knowledge similarity {kind!r}: expected one of {SIMILARITIES}")
  hi = jax.lax.Precision.HIGHEST
  present = (knowledge > 0).astype(knowledge.dtype)
  total = knowledge.sum(-1)
  inter = jnp.einsum("ik,jk->ij", knowledge, present, precision=hi)
  union = total[:, None] + total[None, :] - inter
  same = inter >= union * (1 - 1e-6)  # also two captions without any class
  if kind == "jaccard":
    return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0), same
  norm = jnp.sqrt((knowledge ** 2).sum(-1))
  dot = jnp.einsum("ik,jk->ij", knowledge, knowledge, precision=hi)
  denom = norm[:, None] * norm[None, :]
  return jnp.where(denom > 0, dot / jnp.where(denom > 0, denom, 1.0), 0.0), same


def duplicates(tokens, same_knowledge):
  """[B, B] pairs i != j that are true duplicates: the same caption tokens and the same knowledge
  (never negatives of each other)."""
  same_tokens = (tokens[:, None, :] == tokens[None, :, :]).all(-1)
  return same_tokens & same_knowledge & ~jnp.eye(tokens.shape[0], dtype=bool)


def guided_logits(logits, hardness, negatives, beta: float, variant: str, num_negatives: int,
                  rng):
  """KCL's logits of the anchors (rows) over their candidates (columns), the positive on the
  diagonal, with the knowledge hardness h_ij of each candidate in [0, 1] and `negatives` [B, B]
  the candidates that may serve as negatives (never the positive nor a duplicate: -inf).

  "weight" up-weights hard negatives in InfoNCE's denominator (Robinson et al.'s hard-negative
  importance weights, with knowledge similarity instead of embedding similarity as hardness):

      w_ij = exp(beta h_ij) / mean_{j' in N(i)} exp(beta h_ij'),   s'_ij = s_ij + log w_ij

  so the weights average 1 over a row's negatives N(i) (beta = 0: plain InfoNCE).
  "sample" keeps `num_negatives` negatives per anchor, drawn without replacement with
  probabilities proportional to exp(beta h_ij) (Gumbel top-k), and drops the rest.
  """
  if variant not in NEGATIVES:
    raise ValueError(f"KCL negatives {variant!r}: expected one of {NEGATIVES}")
  b = logits.shape[0]
  score = jnp.where(negatives, beta * hardness, -jnp.inf)
  if variant == "weight":
    count = negatives.sum(-1, keepdims=True)
    log_mean = jax.nn.logsumexp(score, axis=-1, keepdims=True) - jnp.log(jnp.maximum(count, 1))
    guided = jnp.where(negatives, logits + jnp.where(negatives, score - log_mean, 0.0), -jnp.inf)
  else:
    k = min(num_negatives, b - 1)
    score = score + jax.random.gumbel(rng, score.shape)
    kth = jax.lax.top_k(score, k)[0][:, -1:]
    guided = jnp.where(negatives & (score >= kth), logits, -jnp.inf)
  return jnp.where(jnp.eye(b, dtype=bool), logits, guided)


def knowledge_infonce(video_emb, text_emb, inverse_temperature, hardness, negatives,
                      beta: float, variant: str, num_negatives: int, rng):
  """KCL: the symmetric video-text InfoNCE (losses/contrastive.symmetric_infonce) with each
  direction's negatives guided by knowledge (`guided_logits`; `hardness` and `negatives` are
  symmetric, so one matrix serves video -> text and text -> video):

      L = 1/(2B) * sum_i [ -log softmax_j(s'_ij)[i] - log softmax_j(s'^T_ij)[i] ]

  "sample" draws each direction's negatives on its own.
  """
  logits = inverse_temperature * jnp.einsum("id,jd->ij", video_emb, text_emb,
                                            precision=jax.lax.Precision.HIGHEST)
  v2t_rng, t2v_rng = jax.random.split(rng)
  labels = jnp.arange(logits.shape[0])[:, None]
  losses = []
  for s, key in ((logits, v2t_rng), (logits.T, t2v_rng)):
    guided = guided_logits(s, hardness, negatives, beta, variant, num_negatives, key)
    losses.append(-jnp.take_along_axis(jax.nn.log_softmax(guided, axis=1), labels, axis=1).mean())
  return 0.5 * (losses[0] + losses[1])
