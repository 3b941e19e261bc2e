"""TACo's L3: cascade-sampled hard negatives scored by the fusion encoder.

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

from input_pipeline.errors import ConfigError
from vl_jax.losses.cascade_matching import candidate_infonce, cascade_scores, hardest_negatives
from vl_jax.losses.token_contrastive import content_token_weights, content_tokens
from vl_jax.models import heads
from vl_jax.objectives.objective import Objective
from vl_jax.objectives.token_contrastive import CONTENT_TOKENS, validate_content_tokens

SAMPLING = ("cascade", "random")


def loss(ctx, outputs, batch, cfg, rng):
  video, text, mask = outputs["frame_tokens"], outputs["text_tokens"], outputs["text_mask"]
  b, k = video.shape[0], cfg.num_negatives
  if cfg.sampling == "cascade":
    weights = content_token_weights(batch["token_pos"], batch["token_idf"], tuple(cfg.pos_tags))
    tokens, weights = content_tokens(outputs["text_token_emb"], weights, cfg.max_tokens)
    scores = cascade_scores(outputs["video_emb"], outputs["text_emb"],
                            outputs["video_token_emb"], tokens, weights,
                            outputs["inverse_temperature"])
    scores_t = scores.T
  else:  # "random": the top k of uniform noise, k distinct others, uniformly
    rng_v, rng_t = jax.random.split(rng)
    scores, scores_t = jax.random.uniform(rng_v, (b, b)), jax.random.uniform(rng_t, (b, b))
  videos_of_text = hardest_negatives(scores, k)    # [B, K]: caption i's negative clips
  texts_of_video = hardest_negatives(scores_t, k)  # [B, K]: clip j's negative captions
  flat = lambda x: x.reshape((b * k,) + x.shape[2:])
  repeat = lambda x: jnp.repeat(x, k, axis=0)
  fuse = functools.partial(ctx.apply, method=heads.fuse)
  positive = fuse(video, text, mask)  # each clip with its own caption
  text_side = fuse(flat(video[videos_of_text]), repeat(text), repeat(mask))
  video_side = fuse(repeat(video), flat(text[texts_of_video]), flat(mask[texts_of_video]))
  value = 0.5 * (candidate_infonce(positive, text_side.reshape(b, k))
                 + candidate_infonce(positive, video_side.reshape(b, k)))
  return value, {"positive_score": positive.mean(), "negative_score": text_side.mean()}


def validate(cfg, config, model):
  del model
  b, k = config.batch_size, cfg.num_negatives
  if not 0 < k < b:
    raise ConfigError(f"config.objectives.cascade_matching.num_negatives={k} must be in "
                      f"[1, {b}): the other pairs of the global batch of {b}")
  validate_content_tokens("cascade_matching", cfg)


OBJECTIVE = Objective(loss, dict(weight=1.0, num_negatives=8, sampling="cascade", **CONTENT_TOKENS),
                      validate, head=("fusion_score", "a fusion encoder: set "
                                      "config.model.fusion.depth > 0"),
                      choices={"sampling": SAMPLING})
