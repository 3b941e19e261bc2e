"""TACo's L3: cascade-sampled hard negatives scored by the fusion encoder.

    config.objectives.cascade_matching = dict(weight=1.0, num_negatives=8,
                                              pos_tags=("NOUN", "VERB"), max_tokens=12)

For each caption, the `num_negatives` clips of the global batch with the highest cascade score
(sentence plus token similarity) other than its own, and for each clip the captions likewise, are
fused with it; the fused scores of the positive pair and its negatives give an InfoNCE in each
direction, averaged. The token similarity takes each caption's `max_tokens` content tokens, as
token_contrastive does. Needs a model with a fusion encoder (`config.model.fusion.depth` > 0).
"""

import jax.numpy as jnp

from vl_jax.errors import ConfigError
from vl_jax.losses.cascade import candidate_infonce, cascade_scores, hardest_negatives
from vl_jax.losses.token_contrastive import content_token_weights, content_tokens


def objective(outputs, batch, cfg):
  if "fuse" not in outputs:
    raise ConfigError("config.objectives.cascade_matching needs a fusion encoder: set "
                      "config.model.fusion.depth > 0")
  weights = content_token_weights(batch["token_pos"], batch["token_idf"], tuple(cfg.pos_tags))
  tokens, weights = content_tokens(outputs["text_token_emb"], weights, cfg.max_tokens)
  scores = cascade_scores(outputs["video_emb"], outputs["text_emb"], outputs["video_token_emb"],
                          tokens, weights)
  k = cfg.num_negatives
  videos_of_text = hardest_negatives(scores, k)    # [B, K]: caption i's negative clips
  texts_of_video = hardest_negatives(scores.T, k)  # [B, K]: clip j's negative captions
  video, text, mask = outputs["frame_tokens"], outputs["text_tokens"], outputs["text_mask"]
  b = video.shape[0]
  flat = lambda x: x.reshape((b * k,) + x.shape[2:])
  repeat = lambda x: jnp.repeat(x, k, axis=0)
  text_side = outputs["fuse"](flat(video[videos_of_text]), repeat(text), repeat(mask))
  video_side = outputs["fuse"](repeat(video), flat(text[texts_of_video]),
                               flat(mask[texts_of_video]))
  positive = outputs["pair_scores"]
  loss = 0.5 * (candidate_infonce(positive, text_side.reshape(b, k))
                + candidate_infonce(positive, video_side.reshape(b, k)))
  return loss, {"positive_score": positive.mean(), "negative_score": text_side.mean()}
