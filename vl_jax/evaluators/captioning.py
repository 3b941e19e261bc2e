"""Captioning (MSR-VTT captioning): the caption decoder writes a caption for every clip of `split`,
greedily or by beam search, and it is scored against all of the clip's reference captions with
BLEU-4, METEOR (where Java is installed), ROUGE-L and CIDEr (evaluators/caption_metrics.py)."""

import os

import jax
import jax.numpy as jnp

from input_pipeline import files
from input_pipeline.errors import ConfigError
from vl_jax import sharding
from vl_jax.evaluators import encode
from vl_jax.models import decoding


def generate(predict, params, frames, max_len: int, beam: int, alpha: float):
  """[B, max_len] generated tokens ([CLS] caption [SEP] PAD...) for clips `frames` [B, T, H, W, 3];
  beam 1 is greedy decoding."""
  video = predict.encode_video(params, frames)["video_tokens"]
  # Every hypothesis reads its clip: [B * beam, ...], the beams of a clip adjacent.
  video = jnp.repeat(video, beam, axis=0)
  return decoding.beam_search(lambda tokens: predict.caption_logits(params, video, tokens),
                              frames.shape[0], max_len, beam, alpha)


class CaptioningEvaluator(encode.Evaluator):
  """Caption metrics (x100) over every clip of `split`; writes the captions to
  `captions_{split}.json` (clip id -> caption) in the artifacts directory.

  Config: `split`, `batch_size`, `every_steps`, `beam` (1: greedy), `length_penalty` (GNMT's alpha,
  used by beam search). The model needs the caption decoder (config.model.decoder.depth > 0).
  """

  def setup(self, predict, mesh):
    # Imported here: the metrics need pycocoevalcap, an optional extra that only captioning needs.
    from vl_jax.evaluators import caption_metrics  # noqa: PLC0415
    self.metrics, cfg = caption_metrics.caption_metrics, self.cfg
    if predict.caption_logits is None:
      raise ConfigError(f"config.evals.{self.name}: the captioning evaluator needs the caption "
                        "decoder (config.model.decoder.depth > 0)")
    if cfg.beam < 1:
      raise ConfigError(f"config.evals.{self.name}.beam={cfg.beam}: must be 1 (greedy) or more")
    self._generate = jax.jit(
        lambda params, b: {"tokens": generate(predict, params, b["frames"][:, 0],
                                              self.data_cfg.max_text_len, cfg.beam,
                                              cfg.length_penalty)},
        out_shardings=sharding.replicated(mesh))
    self.clip_ids = [str(c) for c in self.read_field("clip_id", "captioning")]
    self.references = dict(zip(self.clip_ids, self.read_field("captions", "captioning")))

  def captions(self, params) -> dict[str, str]:
    """{clip id: generated caption} of every clip of the split."""
    out, index = self.encoder.map_clips(self._generate, params, self.cfg.split)
    return {self.clip_ids[i]: text
            for i, text in zip(index, self.tokenizer.decode(out["tokens"]))}

  def run(self, params, artifacts_dir: str | None = None) -> dict[str, float]:
    predictions = self.captions(params)
    if artifacts_dir and jax.process_index() == 0:
      files.write_json(os.path.join(artifacts_dir, f"captions_{self.cfg.split}.json"),
                       predictions, indent=1)
    return self.metrics(predictions, self.references)
