"""Video-text dual encoder: two towers, linear projections to a shared space, unit-norm embeddings."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from input_pipeline.tokenizer import PAD_ID
from vl_jax.errors import ConfigError
from vl_jax.models.caption_decoder import CaptionDecoder
from vl_jax.models.fusion import FusionEncoder
from vl_jax.models.layers import DTYPES, REMAT_POLICIES, Stack, l2_normalize
from vl_jax.models.text_transformer import TextTransformer
from vl_jax.models.video_vit import PIXEL_MEAN, PIXEL_STD, VideoViT


class AnswerHead(nn.Module):
  """Open-ended QA classifier on top of the two towers: an MLP over [v, q, v * q] of the clip's
  and the question's unit embeddings, to one logit per answer class.

  Our choice: the papers fine-tune QA heads on fused features that a dual encoder does not have;
  the product term gives the MLP the pair's interaction, as in bilinear-pooling VQA heads.
  """
  num_answers: int
  hidden: int

  @nn.compact
  def __call__(self, video_emb, text_emb):
    x = jnp.concatenate([video_emb, text_emb, video_emb * text_emb], axis=-1)
    x = nn.LayerNorm(name="norm")(nn.gelu(nn.Dense(self.hidden, name="fc1")(x), approximate=False))
    return nn.Dense(self.num_answers, name="fc2")(x)


class FusedAnswerHead(nn.Module):
  """Open-ended QA through the cross-modal encoder: an MLP from the fused [CLS] of (question,
  clip) to one logit per answer class (the head of BERT-type video-language models)."""
  num_answers: int
  hidden: int

  @nn.compact
  def __call__(self, fused_cls):
    x = nn.gelu(nn.Dense(self.hidden, name="fc1")(fused_cls), approximate=False)
    return nn.Dense(self.num_answers, name="fc2")(nn.LayerNorm(name="norm")(x))


class WordHead(nn.Module):
  """Masked language modeling's head on the cross-modal encoder's caption positions: BERT's
  transform (dense, GELU, layer norm) and a linear map to the vocabulary."""
  vocab_size: int

  @nn.compact
  def __call__(self, x):
    x = nn.gelu(nn.Dense(x.shape[-1], name="transform")(x), approximate=False)
    return nn.Dense(self.vocab_size, name="decoder")(nn.LayerNorm(name="norm")(x))


class MaskedPatchPredictor(nn.Module):
  """MILES's predictor head: each token of the masked clip's video tower output, through a
  two-layer MLP, to the snapshot encoder's feature width (our choice of a "small" head: BEiT's
  is linear; one hidden layer lets the tower's last block serve the contrastive loss too)."""
  hidden: int
  out_dim: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.out_dim, name="fc2")(nn.gelu(nn.Dense(self.hidden, name="fc1")(x),
                                                      approximate=False))


class KnowledgeHead(nn.Module):
  """CLOP's structural knowledge prediction: a unit embedding to one logit per knowledge class.

  Our choices (the abstract says only "predicts the knowledge from the latent representations"):
  the head reads the shared space's unit embeddings, the ones retrieval compares, so that clips of
  similar knowledge must land where the same classes fire; it is linear by default (a deep head
  could sort the classes out on its own and leave the space as it is); and one head serves video
  and text, so that both modalities are pulled to the same knowledge directions. The unit
  embedding is scaled by sqrt(E) first: its entries then have the unit variance that the layers'
  initialisation assumes (unscaled, the tiny CLOP run's SKP loss went from log K = 5.55 to only
  5.30 nats in 60 steps; scaled, to 4.06).
  """
  num_classes: int
  hidden: int  # 0: linear

  @nn.compact
  def __call__(self, emb):
    emb = emb * np.sqrt(emb.shape[-1])
    if self.hidden:
      emb = nn.gelu(nn.Dense(self.hidden, name="fc1")(emb), approximate=False)
    return nn.Dense(self.num_classes, name="fc2")(emb)


class DualEncoder(nn.Module):
  video: VideoViT
  text: TextTransformer
  embed_dim: int
  temperature_init: float
  learn_temperature: bool
  num_answers: int = 0  # > 0: an answer head, and outputs hold `answer_logits`
  qa_head: str = "dual"  # the answer head's input: "dual" (the two embeddings) or "fusion"
  # The cross-modal encoder. TACo: outputs hold `pair_scores`, the fused pairs' scores.
  fusion: FusionEncoder | None = None
  # CoCo-BERT: heads on the cross-modal encoder for masked words (vocabulary logits) and masked
  # frames (the frame tokens' features).
  masked_heads: bool = False
  decoder: CaptionDecoder | None = None  # CoCo-BERT's caption decoder (`caption_logits`)
  # MILES: predicts masked patches' snapshot features (`predict_masked`).
  predictor: MaskedPatchPredictor | None = None
  # CLOP: the knowledge head and the embeddings it reads (outputs hold `<input>_knowledge_logits`).
  knowledge_head: KnowledgeHead | None = None
  knowledge_inputs: tuple[str, ...] = ()

  def setup(self):
    self.video_proj = nn.Dense(self.embed_dim, name="video_proj")
    self.text_proj = nn.Dense(self.embed_dim, name="text_proj")
    if self.num_answers and self.qa_head == "dual":
      self.answer_head = AnswerHead(self.num_answers, 2 * self.embed_dim, name="answer_head")
    elif self.num_answers:
      self.answer_head = FusedAnswerHead(self.num_answers, 2 * self.fusion.width,
                                         name="answer_head")
    if self.fusion is not None:
      self.fusion_score = nn.Dense(1, name="fusion_score")
    if self.masked_heads:
      self.word_head = WordHead(self.text.vocab_size, name="word_head")
      self.frame_head = nn.Dense(self.video.width, name="frame_head")
    if self.learn_temperature:
      # Learned in log space (CLIP), so it stays positive.
      # A strongly typed float32: a weak-typed init would change type after the first update,
      # which recompiles the train step.
      self.log_inv_temperature = self.param(
          "log_inv_temperature",
          lambda _: jnp.full((), np.log(1.0 / self.temperature_init), jnp.float32))

  def encode_video(self, frames, mask=None) -> dict[str, Any]:
    """Tower tokens [B, T, N, D]; the unit embedding of their mean; each token projected into the
    shared space, [B, T * N, E] (TACo's token loss; unused outputs cost nothing under jit). With
    `mask` [B, T, N], the masked patches are the tower's mask token."""
    tokens = self.video(frames, mask=mask)  # [B, T, N, D]
    pooled = tokens.mean(axis=(1, 2))
    return {"video_tokens": tokens, "video_emb": l2_normalize(self.video_proj(pooled)),
            "video_token_emb": self.video_proj(tokens.reshape(tokens.shape[0], -1,
                                                              tokens.shape[-1]))}

  def encode_text(self, tokens) -> dict[str, Any]:
    """Tower tokens [B, L, D]; the unit embedding of [CLS]; each token projected, [B, L, E]."""
    feats = self.text(tokens)  # [B, L, D]
    return {"text_tokens": feats, "text_mask": tokens != PAD_ID,
            "text_emb": l2_normalize(self.text_proj(feats[:, 0])),
            "text_token_emb": self.text_proj(feats)}

  def inverse_temperature(self):
    if self.learn_temperature:
      return jnp.exp(self.log_inv_temperature)
    return jnp.full((), 1.0 / self.temperature_init, jnp.float32)

  def answer_logits(self, video_emb, text_emb):
    """[B, num_answers] logits of the answers to questions `text_emb` about clips `video_emb`
    (qa_head "dual")."""
    return self.answer_head(video_emb, text_emb)

  def fused_answer_logits(self, frame_tokens, text_tokens, text_mask):
    """[B, num_answers] logits of the answers to questions (tower tokens [B, L, Dt] and mask)
    about clips with frame tokens [B, T, Dv] (qa_head "fusion")."""
    return self.answer_head(self.fuse_features(frame_tokens, text_tokens, text_mask)[:, 0])

  def fuse_features(self, frame_tokens, text_tokens, text_mask):
    """[P, L + T, W] cross-modal features of P clips' frame tokens [P, T, Dv] (`frame_tokens` of
    the outputs) and P captions' tower tokens [P, L, Dt] with their mask; the caption first."""
    return self.fusion(frame_tokens, text_tokens, text_mask)

  def fuse(self, frame_tokens, text_tokens, text_mask):
    """[P] TACo fusion scores of pairs: a linear score of the fused [CLS]."""
    return self.fusion_score(self.fuse_features(frame_tokens, text_tokens, text_mask)[:, 0])[:, 0]

  def predict_words(self, fused_text):
    """[P, L, vocab] logits of the caption's tokens from their fused features [P, L, W]."""
    return self.word_head(fused_text)

  def predict_frames(self, fused_frames):
    """[P, T, Dv] predictions of the frame tokens from their fused features [P, T, W]."""
    return self.frame_head(fused_frames)

  def caption_logits(self, video_tokens, tokens):
    """[B, L, vocab] next-token logits of captions `tokens` [B, L] of clips with tower tokens
    `video_tokens` [B, T, N, D] (position i predicts token i + 1)."""
    return self.decoder(video_tokens.reshape(video_tokens.shape[0], -1, video_tokens.shape[-1]),
                        tokens)

  def video_features(self, frames, layer: int | None = None):
    """The video tower's tokens [B, T, N, D] after block `layer` (None: the tower's output)."""
    return self.video(frames, layer=layer)

  def predict_masked(self, frames, mask):
    """[B, T, N, D'] predictions of every patch's snapshot feature from the clip with the patches
    of `mask` [B, T, N] replaced by the mask token (only the masked ones are trained)."""
    return self.predictor(self.video(frames, mask=mask))

  def __call__(self, frames, tokens) -> dict[str, Any]:
    out = {**self.encode_video(frames), **self.encode_text(tokens),
           "inverse_temperature": self.inverse_temperature()}
    if self.fusion is not None:
      # A clip enters the fusion encoder as one token per frame, the mean of its patch tokens.
      out["frame_tokens"] = out["video_tokens"].mean(axis=2)
      # Each clip with its own caption: the positives of cascade matching.
      out["pair_scores"] = self.fuse(out["frame_tokens"], out["text_tokens"], out["text_mask"])
    for name in self.knowledge_inputs:
      out[f"{name}_knowledge_logits"] = self.knowledge_head(out[f"{name}_emb"])
    if self.num_answers and self.qa_head == "dual":
      out["answer_logits"] = self.answer_logits(out["video_emb"], out["text_emb"])
    elif self.num_answers:
      out["answer_logits"] = self.fused_answer_logits(out["frame_tokens"], out["text_tokens"],
                                                      out["text_mask"])
    if self.is_initializing():  # creates the parameters of the heads that objectives call
      self._init_heads(frames, tokens, out)
    return out

  def _init_heads(self, frames, tokens, out):
    if self.masked_heads:
      fused = self.fuse_features(out["frame_tokens"], out["text_tokens"], out["text_mask"])
      self.predict_words(fused[:, :tokens.shape[1]])
      self.predict_frames(fused[:, tokens.shape[1]:])
    if self.decoder is not None:
      self.caption_logits(out["video_tokens"], tokens)
    if self.predictor is not None:
      self.predict_masked(frames, jnp.zeros(out["video_tokens"].shape[:3], bool))


QA_HEADS = ("dual", "fusion")
KNOWLEDGE_INPUTS = ("video", "text")


def build(model_cfg: ml_collections.ConfigDict, data_cfg: ml_collections.ConfigDict,
          vocab_size: int) -> DualEncoder:
  v, t, f, d = model_cfg.video, model_cfg.text, model_cfg.fusion, model_cfg.decoder
  predictor_hidden = model_cfg.masked_video.predictor_hidden
  num_answers = data_cfg.num_answers if data_cfg.text == "question" else 0
  if model_cfg.qa_head not in QA_HEADS:
    raise ConfigError(f"config.model.qa_head={model_cfg.qa_head!r}: expected one of {QA_HEADS}")
  if not f.depth and (f.masked_heads or (num_answers and model_cfg.qa_head == "fusion")):
    raise ConfigError("config.model.fusion.masked_heads and config.model.qa_head='fusion' need "
                      "the cross-modal encoder: set config.model.fusion.depth > 0")
  k = model_cfg.knowledge_head
  if not set(k.inputs) <= set(KNOWLEDGE_INPUTS) or len(set(k.inputs)) != len(k.inputs):
    raise ConfigError(f"config.model.knowledge_head.inputs={tuple(k.inputs)}: expected distinct "
                      f"names among {KNOWLEDGE_INPUTS}")
  if k.inputs and not data_cfg.knowledge.size:
    raise ConfigError("config.model.knowledge_head.inputs needs knowledge classes: set "
                      "config.data.knowledge.size > 0")
  if model_cfg.dtype not in DTYPES:
    raise ConfigError(f"config.model.dtype={model_cfg.dtype!r}: expected one of {tuple(DTYPES)}")
  if model_cfg.remat not in REMAT_POLICIES:
    raise ConfigError(f"config.model.remat={model_cfg.remat!r}: expected one of "
                      f"{REMAT_POLICIES}")
  stack = Stack(DTYPES[model_cfg.dtype], model_cfg.remat, model_cfg.scan_layers)
  return DualEncoder(
      video=VideoViT(patch_size=v.patch_size, width=v.width, depth=v.depth, num_heads=v.num_heads,
                     mlp_dim=v.mlp_dim, num_frames=data_cfg.num_frames,
                     image_size=data_cfg.image_size, zero_init_temporal=v.zero_init_temporal,
                     temporal_embedding_init_std=v.temporal_embedding_init_std,
                     # .get: the resolved configs of runs older than these fields (a workdir's
                     # config.json, which pretrained.load reads) lack them.
                     use_mask_token=v.mask_token, cls_token=v.get("cls_token", False),
                     pixel_mean=tuple(v.get("pixel_mean", PIXEL_MEAN)),
                     pixel_std=tuple(v.get("pixel_std", PIXEL_STD)), stack=stack),
      text=TextTransformer(vocab_size=vocab_size, width=t.width, depth=t.depth,
                           num_heads=t.num_heads, mlp_dim=t.mlp_dim, max_len=data_cfg.max_text_len,
                           stack=stack),
      embed_dim=model_cfg.embed_dim, temperature_init=model_cfg.temperature.init,
      learn_temperature=model_cfg.temperature.learn,
      num_answers=num_answers, qa_head=model_cfg.qa_head,
      fusion=FusionEncoder(width=f.width, depth=f.depth, num_heads=f.num_heads, mlp_dim=f.mlp_dim,
                           max_text_len=data_cfg.max_text_len, num_frames=data_cfg.num_frames,
                           stack=stack)
      if f.depth else None,
      masked_heads=f.masked_heads,
      decoder=CaptionDecoder(vocab_size=vocab_size, width=d.width, depth=d.depth,
                             num_heads=d.num_heads, mlp_dim=d.mlp_dim,
                             max_len=data_cfg.max_text_len, stack=stack)
      if d.depth else None,
      predictor=MaskedPatchPredictor(predictor_hidden, v.width) if predictor_hidden else None,
      knowledge_head=KnowledgeHead(data_cfg.knowledge.size, k.hidden) if k.inputs else None,
      knowledge_inputs=tuple(k.inputs))
