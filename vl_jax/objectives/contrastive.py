"""The plain dual-encoder baseline: symmetric video-text InfoNCE on the pooled embeddings."""

from vl_jax.losses.contrastive import symmetric_infonce


def objective(outputs, batch, cfg, rng):
  del batch, cfg, rng  # the positives are the batch's own pairs
  loss = symmetric_infonce(outputs["video_emb"], outputs["text_emb"],
                           outputs["inverse_temperature"])
  return loss, {"temperature": 1.0 / outputs["inverse_temperature"]}
