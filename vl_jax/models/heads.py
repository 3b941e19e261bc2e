"""The methods' heads on top of the dual encoder, and the functions that apply them.

A head is a module the builder (models/builder.py) gives a fixed name, its parameters' top-level
group; `initialize(model, frames, tokens, outputs)` calls it once so that `init` creates its
parameters. The cross-modal encoder (models/fusion.py) and the caption decoder
(models/caption_decoder.py) are heads too. The functions below take the bound DualEncoder as
their first argument and are called through `model.apply(variables, ..., method=heads.<function>)`.
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from vl_jax.models.layers import gelu


def fuse_features(model, frame_tokens, text_tokens, text_mask):
  """[P, L + T, W] cross-modal features of P clips' frame tokens [P, T, Dv] (`frame_tokens` of
  the outputs) and P captions' tower tokens [P, L, Dt] with their mask; the caption first."""
  return model.head("fusion")(frame_tokens, text_tokens, text_mask)


def fuse(model, frame_tokens, text_tokens, text_mask):
  """[P] TACo fusion scores of pairs: a linear score of the fused [CLS]."""
  return model.head("fusion_score")(fuse_features(model, frame_tokens, text_tokens,
                                                  text_mask)[:, 0])[:, 0]


def predict_words(model, fused_text):
  """[P, L, vocab] logits of the caption's tokens from their fused features [P, L, W]."""
  return model.head("word_head")(fused_text)


def predict_frames(model, fused_frames):
  """[P, T, Dv] predictions of the frame tokens from their fused features [P, T, W]."""
  return model.head("frame_head")(fused_frames)


def caption_logits(model, video_tokens, tokens):
  """[B, L, vocab] next-token logits of captions `tokens` [B, L] of clips with tower tokens
  `video_tokens` [B, T, N, D] (position i predicts token i + 1)."""
  return model.head("decoder")(
      video_tokens.reshape(video_tokens.shape[0], -1, video_tokens.shape[-1]), tokens)


def predict_masked(model, frames, mask):
  """[B, T, N, D'] predictions of every patch's snapshot feature from the clip with the patches
  of `mask` [B, T, N] replaced by the mask token (only the masked ones are trained)."""
  return model.head("predictor")(model.video(frames, mask=mask)[0])


def knowledge_logits(model, emb):
  """[B, K] knowledge-class logits of unit embeddings [B, E]."""
  return model.head("knowledge_head")(emb)


def answer_logits(model, video, text):
  """[B, num_answers] logits of the answers to questions about clips, from the clips' and the
  questions' encodings (`encode_video` and `encode_text` outputs)."""
  return model.head("answer_head").from_encodings(model, video, text)


def sigmoid_bias(model):
  """The learned bias of SigLIP's sigmoid loss, a scalar."""
  return model.head("sigmoid_bias")()


class SigmoidBias(nn.Module):
  """SigLIP's bias b of the pairwise sigmoid loss (losses/contrastive.sigmoid_loss), started at
  -10 as SigLIP starts it: with B - 1 negatives to each positive, a bias that makes every pair
  improbable keeps the negatives from dominating the first steps."""

  @nn.compact
  def __call__(self):
    return self.param("bias", lambda _: jnp.full((), -10.0, jnp.float32))

  def initialize(self, model, frames, tokens, out):
    del model, frames, tokens, out
    self()


class PairScore(nn.Dense):
  """TACo's fusion score: a linear map of the fused [CLS] (features=1)."""

  def initialize(self, model, frames, tokens, out):
    del frames, tokens
    fuse(model, out["frame_tokens"], out["text_tokens"], out["text_mask"])


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
    x = nn.LayerNorm(name="norm")(gelu(nn.Dense(self.hidden, name="fc1")(x)))
    return nn.Dense(self.num_answers, name="fc2")(x)

  def from_encodings(self, model, video, text):
    del model
    return self(video["video_emb"], text["text_emb"])

  def initialize(self, model, frames, tokens, out):
    del frames, tokens
    self.from_encodings(model, out, out)


class FusedAnswerHead(AnswerHead):
  """Open-ended QA through the cross-modal encoder: an MLP from the fused [CLS] of (question,
  clip) to one logit per answer class (the head of BERT-type video-language models)."""

  @nn.compact
  def __call__(self, fused_cls):
    x = gelu(nn.Dense(self.hidden, name="fc1")(fused_cls))
    return nn.Dense(self.num_answers, name="fc2")(nn.LayerNorm(name="norm")(x))

  def from_encodings(self, model, video, text):
    return self(fuse_features(model, video["frame_tokens"], text["text_tokens"],
                              text["text_mask"])[:, 0])


class WordHead(nn.Module):
  """Masked language modeling's head on the cross-modal encoder's caption positions: BERT's
  transform (dense, GELU, layer norm) and a linear map to the vocabulary."""
  vocab_size: int

  @nn.compact
  def __call__(self, x):
    x = gelu(nn.Dense(x.shape[-1], name="transform")(x))
    return nn.Dense(self.vocab_size, name="decoder")(nn.LayerNorm(name="norm")(x))

  def initialize(self, model, frames, tokens, out):
    del frames
    fused = fuse_features(model, out["frame_tokens"], out["text_tokens"], out["text_mask"])
    self(fused[:, :tokens.shape[1]])


class FrameHead(nn.Dense):
  """Masked frame modeling's head on the cross-modal encoder's frame positions: a linear map to
  the video tower's width."""

  def initialize(self, model, frames, tokens, out):
    del frames
    fused = fuse_features(model, out["frame_tokens"], out["text_tokens"], out["text_mask"])
    self(fused[:, tokens.shape[1]:])


class MaskedPatchPredictor(nn.Module):
  """MILES's predictor head: each token of the masked clip's video tower output, through a
  two-layer MLP, to the snapshot encoder's feature width (our choice of a "small" head: BEiT's
  is linear; one hidden layer lets the tower's last block serve the contrastive loss too)."""
  hidden: int
  out_dim: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.out_dim, name="fc2")(gelu(nn.Dense(self.hidden, name="fc1")(x)))

  def initialize(self, model, frames, tokens, out):
    del tokens
    predict_masked(model, frames, jnp.zeros(out["video_tokens"].shape[:3], bool))


class KnowledgeHead(nn.Module):
  """CLOP's structural knowledge prediction: a unit embedding to one logit per knowledge class,
  for the embeddings of `inputs` ("video", "text").

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
  inputs: tuple[str, ...]

  @nn.compact
  def __call__(self, emb):
    emb = emb * np.sqrt(emb.shape[-1])
    if self.hidden:
      emb = gelu(nn.Dense(self.hidden, name="fc1")(emb))
    return nn.Dense(self.num_classes, name="fc2")(emb)

  def initialize(self, model, frames, tokens, out):
    del model, frames, tokens
    for name in self.inputs:
      self(out[f"{name}_emb"])
