"""TACo's L3: cascade-sampled hard negatives scored by the fusion encoder.

    config.objectives.cascade_matching = dict(weight=1.0, num_negatives=8, sampling="cascade",
                                              pos_tags=("NOUN", "VERB"), max_tokens=12)

For each caption, the `num_negatives` clips of the global batch with the highest cascade score
(sentence plus token similarity) other than its own, and for each clip the captions likewise, are
fused with it; the fused scores of the positive pair and its negatives give an InfoNCE in each
direction, averaged. The token similarity takes each caption's `max_tokens` content tokens, as
token_contrastive does. `sampling="random"` draws the negatives uniformly from the rest of the
global batch instead: the baseline of TACo's ablation (its Table 3). Needs a model with a fusion
encoder (`config.model.fusion.depth` > 0).
"""

import functools

import jax
import jax.numpy as jnp

from vl_jax.errors import ConfigError
from vl_jax.losses.cascade import candidate_infonce, cascade_scores, hardest_negatives
from vl_jax.losses.token_contrastive import content_token_weights, content_tokens


def objective(outputs, batch, cfg, rng):
  if outputs["model"].fusion is None:
    raise ConfigError("config.objectives.cascade_matching needs a fusion encoder: set "
                      "config.model.fusion.depth > 0")
  video, text, mask = outputs["frame_tokens"], outputs["text_tokens"], outputs["text_mask"]
  b, k = video.shape[0], cfg.num_negatives
  if not 0 < k < b:
    raise ConfigError(f"config.objectives.cascade_matching.num_negatives={k} must be in "
                      f"[1, {b}): the other pairs of the global batch of {b}")
  if cfg.sampling == "cascade":
    weights = content_token_weights(batch["token_pos"], batch["token_idf"], tuple(cfg.pos_tags))
    tokens, weights = content_tokens(outputs["text_token_emb"], weights, cfg.max_tokens)
    scores = cascade_scores(outputs["video_emb"], outputs["text_emb"],
                            outputs["video_token_emb"], tokens, weights,
                            outputs["inverse_temperature"])
    scores_t = scores.T
  elif cfg.sampling == "random":  # the top k of uniform noise: k distinct others, uniformly
    rng_v, rng_t = jax.random.split(rng)
    scores, scores_t = jax.random.uniform(rng_v, (b, b)), jax.random.uniform(rng_t, (b, b))
  else:
    raise ConfigError(f"config.objectives.cascade_matching.sampling={cfg.sampling!r}: "
                      "'cascade' or 'random'")
  videos_of_text = hardest_negatives(scores, k)    # [B, K]: caption i's negative clips
  texts_of_video = hardest_negatives(scores_t, k)  # [B, K]: clip j's negative captions
  flat = lambda x: x.reshape((b * k,) + x.shape[2:])
  repeat = lambda x: jnp.repeat(x, k, axis=0)
  fuse = functools.partial(outputs["apply"], method="fuse")
  text_side = fuse(flat(video[videos_of_text]), repeat(text), repeat(mask))
  video_side = fuse(repeat(video), flat(text[texts_of_video]), flat(mask[texts_of_video]))
  positive = outputs["pair_scores"]
  loss = 0.5 * (candidate_infonce(positive, text_side.reshape(b, k))
                + candidate_infonce(positive, video_side.reshape(b, k)))
  return loss, {"positive_score": positive.mean(), "negative_score": text_side.mean()}
