"""The model of a config: the dual encoder with the heads its config asks for, the model config
validated once, before anything is built."""

import ml_collections

from input_pipeline.errors import ConfigError
from vl_jax.models import heads
from vl_jax.models.caption_decoder import CaptionDecoder
from vl_jax.models.dual_encoder import DualEncoder
from vl_jax.models.fusion import FusionEncoder
from vl_jax.models.layers import (ACTIVATIONS, ATTENTION, DTYPES, REMAT_POLICIES, Stack,
                                  attention_implementation)
from vl_jax.models.text_transformer import ARCHS, TextTransformer
from vl_jax.models.video_vit import PIXEL_MEAN, PIXEL_STD, POOLS, VideoViT

QA_HEADS = ("dual", "fusion")
KNOWLEDGE_INPUTS = ("video", "text")


def validate(model_cfg: ml_collections.ConfigDict, data_cfg: ml_collections.ConfigDict) -> None:
  """One-line ConfigErrors naming the field of a model config that cannot be built."""
  f, k, v, t = model_cfg.fusion, model_cfg.knowledge_head, model_cfg.video, model_cfg.text
  # .get: a workdir's or export's config from before the field (builds as it was trained).
  for field, value, known in (("qa_head", model_cfg.qa_head, QA_HEADS),
                              ("dtype", model_cfg.dtype, DTYPES),
                              ("attention", model_cfg.get("attention", "flax"), ATTENTION),
                              ("remat", model_cfg.remat, REMAT_POLICIES),
                              ("video.pool", v.get("pool", "mean"), POOLS),
                              ("video.activation", v.get("activation", "gelu"), ACTIVATIONS),
                              ("text.arch", t.get("arch", "bert"), ARCHS),
                              ("text.activation", t.get("activation", "gelu"), ACTIVATIONS)):
    if value not in known:
      raise ConfigError(f"config.model.{field}={value!r}: expected one of {tuple(known)}")
  num_answers = data_cfg.num_answers if data_cfg.text == "question" else 0
  if not f.depth and (f.masked_heads or (num_answers and model_cfg.qa_head == "fusion")):
    raise ConfigError("config.model.fusion.masked_heads and config.model.qa_head='fusion' need "
                      "the cross-modal encoder: set config.model.fusion.depth > 0")
  if not set(k.inputs) <= set(KNOWLEDGE_INPUTS) or len(set(k.inputs)) != len(k.inputs):
    raise ConfigError(f"config.model.knowledge_head.inputs={tuple(k.inputs)}: expected distinct "
                      f"names among {KNOWLEDGE_INPUTS}")
  if k.inputs and not data_cfg.knowledge.size:
    raise ConfigError("config.model.knowledge_head.inputs needs knowledge classes: set "
                      "config.data.knowledge.size > 0")
  if (v.get("pool") == "cls" or v.get("frame_cls")) and not v.get("cls_token"):
    raise ConfigError("config.model.video.pool='cls' and video.frame_cls need the class token: "
                      "set config.model.video.cls_token=True")


def build(model_cfg: ml_collections.ConfigDict, data_cfg: ml_collections.ConfigDict,
          vocab_size: int) -> DualEncoder:
  validate(model_cfg, data_cfg)
  v, t, f, d = model_cfg.video, model_cfg.text, model_cfg.fusion, model_cfg.decoder
  k = model_cfg.knowledge_head
  dtype = DTYPES[model_cfg.dtype]
  # .get: a workdir's or export's config from before the field (builds as it was trained).
  stack = Stack(dtype, model_cfg.remat, model_cfg.scan_layers,
                attention_implementation(model_cfg.get("attention", "flax"), dtype))
  parts = []
  if f.depth:  # the cross-modal encoder and TACo's score of its fused pairs
    parts += [FusionEncoder(width=f.width, depth=f.depth, num_heads=f.num_heads,
                            mlp_dim=f.mlp_dim, max_text_len=data_cfg.max_text_len,
                            num_frames=data_cfg.num_frames, stack=stack, name="fusion"),
              heads.PairScore(1, name="fusion_score")]
  if f.masked_heads:  # CoCo-BERT's masked word and frame heads on the cross-modal encoder
    parts += [heads.WordHead(vocab_size, name="word_head"),
              heads.FrameHead(v.width, name="frame_head")]
  if d.depth:  # CoCo-BERT's caption decoder
    parts.append(CaptionDecoder(vocab_size=vocab_size, width=d.width, depth=d.depth,
                                num_heads=d.num_heads, mlp_dim=d.mlp_dim,
                                max_len=data_cfg.max_text_len, stack=stack, name="decoder"))
  if model_cfg.masked_video.predictor_hidden:  # MILES's masked-patch predictor
    parts.append(heads.MaskedPatchPredictor(model_cfg.masked_video.predictor_hidden, v.width,
                                            name="predictor"))
  if k.inputs:  # CLOP's knowledge head
    parts.append(heads.KnowledgeHead(data_cfg.knowledge.size, k.hidden, tuple(k.inputs),
                                     name="knowledge_head"))
  if model_cfg.get("sigmoid_bias", False):  # SigLIP's bias of the sigmoid loss
    parts.append(heads.SigmoidBias(name="sigmoid_bias"))
  if data_cfg.text == "question" and data_cfg.num_answers:  # open-ended QA
    parts.append(heads.AnswerHead(data_cfg.num_answers, 2 * model_cfg.embed_dim,
                                  name="answer_head") if model_cfg.qa_head == "dual" else
                 heads.FusedAnswerHead(data_cfg.num_answers, 2 * f.width, name="answer_head"))
  return DualEncoder(
      video=VideoViT(patch_size=v.patch_size, width=v.width, depth=v.depth, num_heads=v.num_heads,
                     mlp_dim=v.mlp_dim, num_frames=data_cfg.num_frames,
                     image_size=data_cfg.image_size, zero_init_temporal=v.zero_init_temporal,
                     temporal_embedding_init_std=v.temporal_embedding_init_std,
                     # .get: the resolved configs of runs older than these fields (a workdir's
                     # config.json, which pretrained.load reads) lack them.
                     use_mask_token=v.mask_token, cls_token=v.get("cls_token", False),
                     frame_cls=v.get("frame_cls", False), temporal=v.get("temporal", True),
                     pre_norm=v.get("pre_norm", False), activation=v.get("activation", "gelu"),
                     norm_epsilon=v.get("norm_epsilon", 1e-6), pool=v.get("pool", "mean"),
                     pixel_mean=tuple(v.get("pixel_mean", PIXEL_MEAN)),
                     pixel_std=tuple(v.get("pixel_std", PIXEL_STD)), stack=stack),
      text=TextTransformer(vocab_size=vocab_size, width=t.width, depth=t.depth,
                           num_heads=t.num_heads, mlp_dim=t.mlp_dim, max_len=data_cfg.max_text_len,
                           arch=t.get("arch", "bert"), activation=t.get("activation", "gelu"),
                           norm_epsilon=t.get("norm_epsilon", 1e-5), stack=stack),
      embed_dim=model_cfg.embed_dim, temperature_init=model_cfg.temperature.init,
      learn_temperature=model_cfg.temperature.learn, heads=tuple(parts))
