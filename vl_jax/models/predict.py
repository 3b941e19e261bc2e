"""The model as the functions evaluators call (big_vision's predict functions): each takes the
parameters first, so an evaluator never holds the model. A function is None where the model lacks
the head it needs."""

import dataclasses
from typing import Callable

from vl_jax.models import heads
from vl_jax.models.dual_encoder import DualEncoder


@dataclasses.dataclass(frozen=True)
class PredictFns:
  encode_video: Callable  # (params, frames[, mask]) -> DualEncoder.encode_video's outputs
  encode_text: Callable  # (params, tokens) -> DualEncoder.encode_text's outputs
  inverse_temperature: Callable  # (params) -> the learned or fixed 1 / temperature
  fuse: Callable | None  # (params, frame_tokens, text_tokens, text_mask) -> [P] fused scores
  caption_logits: Callable | None  # (params, video_tokens, tokens) -> [B, L, vocab]
  answer_logits: Callable | None  # (params, video encodings, text encodings) -> [B, answers]
  answer_fused: bool  # the answer head reads frame and text tokens, not the two embeddings


def predict_fns(model: DualEncoder) -> PredictFns:
  def fn(method, head: str | None = None):
    if head is not None and head not in model.head_names():
      return None
    return lambda params, *args: model.apply({"params": params}, *args, method=method)
  return PredictFns(encode_video=fn("encode_video"), encode_text=fn("encode_text"),
                    inverse_temperature=fn("inverse_temperature"),
                    fuse=fn(heads.fuse, "fusion_score"),
                    caption_logits=fn(heads.caption_logits, "decoder"),
                    answer_logits=fn(heads.answer_logits, "answer_head"),
                    answer_fused=isinstance(model.head("answer_head"), heads.FusedAnswerHead))
