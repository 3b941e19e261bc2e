"""Sentencepiece tokenizer trained on a dataset's training captions, and BERT-style encoding."""

import io
from typing import Iterable

import numpy as np
import sentencepiece as spm

from input_pipeline import text_annotations

# Fixed special ids so that models and losses can rely on them: 0 pads (the text tower's attention
# mask is `tokens != PAD_ID`), BOS doubles as BERT's [CLS] and EOS as [SEP].
PAD_ID, UNK_ID, CLS_ID, SEP_ID = 0, 1, 2, 3
MASK_PIECE = "[MASK]"
MASK_ID = 4  # sentencepiece numbers user-defined symbols right after the special ids
FIRST_WORD_ID = 5  # ids from here on are pieces of text


def train(captions: Iterable[str], model_path: str, vocab_size: int) -> None:
  """Trains a unigram sentencepiece model on `captions` and writes it to `model_path`."""
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(captions), model_writer=model, vocab_size=vocab_size,
      model_type="unigram", character_coverage=1.0, normalization_rule_name="nmt_nfkc_cf",
      pad_id=PAD_ID, unk_id=UNK_ID, bos_id=CLS_ID, eos_id=SEP_ID,
      user_defined_symbols=[MASK_PIECE],
      # Small caption corpora support fewer pieces than asked for; take what they support.
      hard_vocab_limit=False, minloglevel=2)
  with open(model_path, "wb") as f:
    f.write(model.getvalue())


class Tokenizer:
  """Encodes text as `[CLS] pieces [SEP] PAD...` of a fixed length."""

  def __init__(self, model_path: str):
    self.model_path = model_path
    self._sp = spm.SentencePieceProcessor(model_file=model_path)
    mask_id = self._sp.piece_to_id(MASK_PIECE)
    if mask_id != MASK_ID:
      raise ValueError(f"{model_path}: piece {MASK_PIECE} has id {mask_id}, not {MASK_ID}: not a "
                       "tokenizer this codebase trained")

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  def encode(self, texts: list[str], max_len: int) -> np.ndarray:
    """Returns int32 [len(texts), max_len]; long texts are truncated but keep their [SEP]."""
    out = np.full((len(texts), max_len), PAD_ID, np.int32)
    for i, ids in enumerate(self._sp.encode(texts)):
      ids = [CLS_ID] + ids[:max_len - 2] + [SEP_ID]
      out[i, :len(ids)] = ids
    return out

  def encode_words(self, words: list[str], spaces: list[bool], max_len: int):
    """Encodes an annotated caption: (int32 tokens [max_len], int32 word index of each token).

    A token's word index is the annotation word it starts in (-1 for [CLS], [SEP], padding and a
    bare word-boundary piece); the pieces of one word share its index. Tokens equal `encode`'s.
    """
    text, owner = text_annotations.rebuild(words, spaces)
    pieces = self._sp.encode(text, return_type="proto").pieces[:max_len - 2]
    tokens = np.full((max_len,), PAD_ID, np.int32)
    word_index = np.full((max_len,), -1, np.int32)
    tokens[0] = CLS_ID
    for i, p in enumerate(pieces, start=1):
      tokens[i] = p.id
      # Offsets are UTF-8 byte positions; a piece may start on the space before its word.
      hit = owner[p.begin:p.end]
      hit = hit[hit >= 0]
      word_index[i] = hit[0] if len(hit) else -1
    tokens[len(pieces) + 1] = SEP_ID
    return tokens, word_index

  def decode(self, tokens: np.ndarray) -> list[str]:
    """Text of each row up to its first [SEP] (generated rows continue with padding)."""
    out = []
    for row in np.asarray(tokens).tolist():
      row = row[:row.index(SEP_ID)] if SEP_ID in row else row
      out.append(self._sp.decode([t for t in row if t not in (PAD_ID, CLS_ID)]))
    return out

  # grain worker processes receive transforms by pickling; ship the model path, not the C++ object.
  def __getstate__(self):
    return {"model_path": self.model_path}

  def __setstate__(self, state):
    self.__init__(state["model_path"])
