"""CoCo-BERT's CoCo objective: masked inputs are noisy views of the unmasked ones, matched
contrastively across and within the modalities.

With m(.) a masked view (config.masking) and N(q, k) a contrastive loss whose positives are the
batch's own pairs,

    L = inter / 2 * [N(m(v), t) + N(v, m(t))]      inter-modal matching
      + intra / 2 * [N(m(v), v) + N(m(t), t)]      intra-modal denoising

over the unit embeddings of the two towers (the paper's abstract; the weights and the 1/2 are our
choice). N is the symmetric InfoNCE over the global batch (TACo's L1, losses/contrastive.py), with
the model's temperature. With a queue (config.queue.size > 0), N is MoCo's: each masked view, a
query, against its unmasked key from the momentum encoder (the average of both towers,
config.ema), the batch's other keys and the queue of past keys (`queue_infonce`); the unmasked
side then gets no gradient, as in MoCo. The unmasked pairs' own loss is the `contrastive`
objective, kept or dropped separately.
"""

from input_pipeline.errors import ConfigError
from vl_jax.losses.contrastive import queue_infonce, symmetric_infonce
from vl_jax.objectives.objective import Objective

# (metric name, the masked view's output, the unmasked output it matches)
TERMS = (("inter_video", "masked_video_emb", "text_emb"),
         ("inter_text", "masked_text_emb", "video_emb"),
         ("intra_video", "masked_video_emb", "video_emb"),
         ("intra_text", "masked_text_emb", "text_emb"))


def loss(ctx, outputs, batch, cfg, rng):
  del batch, rng  # the views were drawn with the step (objectives/views.py)
  inv_t = outputs["inverse_temperature"]
  losses = {}
  for name, query, key in TERMS:
    if ctx.queue:
      losses[name] = queue_infonce(outputs[query], ctx.momentum_keys[key], ctx.queue[key], inv_t)
    else:
      losses[name] = symmetric_infonce(outputs[query], outputs[key], inv_t)
  value = (cfg.inter * (losses["inter_video"] + losses["inter_text"])
           + cfg.intra * (losses["intra_video"] + losses["intra_text"])) / 2
  return value, losses


def validate(cfg, config, model):
  del cfg, model
  # An unmasked "view" would make the intra-modal term a sample against itself: no denoising.
  for part in ("words", "frames"):
    rate = config.masking[part].rate
    if not rate > 0:
      raise ConfigError(f"config.masking.{part}.rate={rate}: config.objectives.coco contrasts "
                        f"masked views with the unmasked inputs and needs a rate in (0, 1)")


OBJECTIVE = Objective(loss, dict(weight=1.0, inter=1.0, intra=1.0), validate)
