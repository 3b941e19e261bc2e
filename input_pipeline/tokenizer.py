"""Tokenizers with BERT-style encoding: a sentencepiece model trained on a dataset's training
captions (`tokenizer.model`), or an imported model's vocabulary (`tokenizer.json` through the
`tokenizers` library: BERT's WordPiece, CLIP's BPE; SigLIP's sentencepiece `tokenizer.model`). All
give the special tokens the same fixed ids."""

import io
import string
from typing import Iterable

import numpy as np
import sentencepiece as spm
import tokenizers
from etils import epath

from input_pipeline import files, text_annotations
from input_pipeline.contract import CLS_ID, MASK_ID, PAD_ID, SEP_ID, UNK_ID
from input_pipeline.errors import DataError

MASK_PIECE = "[MASK]"  # the piece of contract.MASK_ID


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
  files.write(model_path, model.getvalue())


# The file a model's tokenizer is kept in, by kind: a workdir or an exported model holds one.
FILES = ("tokenizer.model", "tokenizer.json")


def load(path: str):
  """The tokenizer of `path`: a sentencepiece `.model` or a Hugging Face `.json`."""
  if not epath.Path(path).is_file():
    raise DataError(f"{path}: no such tokenizer file")
  return HuggingFace(path) if str(path).endswith(".json") else SentencePiece(path)


def find(directory: str) -> str | None:
  """The tokenizer file `directory` holds (one of FILES), or None."""
  found = [str(p) for p in (epath.Path(directory) / f for f in FILES) if p.is_file()]
  if len(found) > 1:
    raise DataError(f"{directory}: holds {' and '.join(FILES)}; a model has one tokenizer")
  return found[0] if found else None


def _fixed_length(rows: list[list[int]], max_len: int) -> np.ndarray:
  """`[CLS] ids [SEP] PAD...` of each row, int32 [len(rows), max_len]; long rows are truncated
  but keep their [SEP]."""
  out = np.full((len(rows), max_len), PAD_ID, np.int32)
  for i, ids in enumerate(rows):
    ids = [CLS_ID] + list(ids[:max_len - 2]) + [SEP_ID]
    out[i, :len(ids)] = ids
  return out


def _word_tokens(ids, spans, owner: np.ndarray, max_len: int):
  """(int32 tokens [max_len], int32 word index [max_len]) of word pieces `ids` whose UTF-8 byte
  spans are `spans`, each token's word being the one its span starts in (`owner` of
  text_annotations.rebuild); -1 for [CLS], [SEP], padding and a piece on spaces only."""
  ids, spans = ids[:max_len - 2], spans[:max_len - 2]
  tokens = _fixed_length([ids], max_len)[0]
  word_index = np.full((max_len,), -1, np.int32)
  for i, (begin, end) in enumerate(spans, start=1):
    hit = owner[begin:end]
    hit = hit[hit >= 0]
    word_index[i] = hit[0] if len(hit) else -1
  return tokens, word_index


def _content(row: list[int]) -> list[int]:
  """The ids of a token row up to its first [SEP], without [CLS], [UNK] and padding (generated
  rows continue with padding; an unknown piece decodes to nothing, as transformers' tokenizers
  skip it)."""
  row = row[:row.index(SEP_ID)] if SEP_ID in row else row
  return [t for t in row if t not in (PAD_ID, CLS_ID, UNK_ID)]


def _renumber(theirs: list[int], size: int) -> tuple[np.ndarray, np.ndarray]:
  """(to_theirs, to_ours) of a vocabulary of `size` ids whose tokens of this codebase's fixed ids
  0 .. 4 are `theirs` (-1: it has none; one token may be two of ours: SigLIP's end of text is
  [SEP] and the padding): ours are those five, then the file's other ids in their order. A token
  that is two of ours maps to the later ([SEP])."""
  rest = np.setdiff1d(np.arange(size), theirs)
  to_theirs = np.concatenate([theirs, rest]).astype(np.int32)
  to_ours = np.full((size,), -1, np.int32)
  to_ours[rest] = np.arange(len(theirs), len(to_theirs))
  for ours, their in enumerate(theirs):
    if their >= 0:
      to_ours[their] = ours
  return to_theirs, to_ours


_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _canonical(text: str) -> str:
  """SigLIP's text canonicalisation, as transformers' SiglipTokenizer applies it (big_vision's
  prompt engineering): lower-cased, ASCII punctuation removed, whitespace collapsed."""
  return " ".join(text.lower().translate(_PUNCTUATION).split())


class _Renumbered:
  """What both tokenizers share: the renumbered vocabulary (`to_theirs`, `to_ours`; the file's ids
  of token rows for decoding) and, since grain's worker processes receive transforms by pickling,
  a state that is the file's path, not the library's object."""

  def __getstate__(self):
    return {"model_path": self.model_path}

  def __setstate__(self, state):
    self.__init__(state["model_path"])

  @property
  def vocab_size(self) -> int:
    return len(self.to_theirs)

  def _file_ids(self, tokens: np.ndarray) -> list[list[int]]:
    """The file's ids of each row's content (_content), without the specials the file lacks."""
    return [[t for t in self.to_theirs[_content(row)].tolist() if t >= 0]
            for row in np.asarray(tokens).tolist()]


class SentencePiece(_Renumbered):
  """A sentencepiece model: one this codebase trained ([MASK] at MASK_ID), or SigLIP's vocabulary
  (T5's layout: <pad> </s> <unk> first, no begin token). Encodes text as
  `[CLS] pieces [SEP] PAD...` of a fixed length. SigLIP's ids are renumbered as
  HuggingFace's are: its </s> is [SEP] and the padding (SigLIP pads with it), [CLS] and [MASK] are
  new (an imported model gets a zero word embedding for each), and captions are canonicalised as
  SigLIP's tokenizer does (_canonical)."""

  SIGLIP_PIECES = ("<pad>", "</s>", "<unk>")  # SigLIP's ids 0, 1, 2

  def __init__(self, model_path: str):
    self.model_path = model_path
    try:
      self._sp = spm.SentencePieceProcessor(model_proto=epath.Path(model_path).read_bytes())
    except (OSError, RuntimeError) as e:
      raise DataError(f"{model_path}: not a sentencepiece model: {e}") from e
    size = self._sp.get_piece_size()
    first = tuple(self._sp.id_to_piece(i) for i in range(min(3, size)))
    self.siglip = self._sp.piece_to_id(MASK_PIECE) != MASK_ID and first == self.SIGLIP_PIECES
    if self._sp.piece_to_id(MASK_PIECE) != MASK_ID and not self.siglip:
      raise DataError(f"{model_path}: piece {MASK_PIECE} has id "
                      f"{self._sp.piece_to_id(MASK_PIECE)}, not {MASK_ID}, and ids 0-2 are not "
                      f"SigLIP's {' '.join(self.SIGLIP_PIECES)}: neither a tokenizer this codebase "
                      f"trained nor SigLIP's")
    theirs = [1, 2, -1, 1, -1] if self.siglip else [PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID]
    self.to_theirs, self.to_ours = _renumber(theirs, size)

  def encode(self, texts: list[str], max_len: int) -> np.ndarray:
    """Returns int32 [len(texts), max_len]; long texts are truncated but keep their [SEP]."""
    texts = [_canonical(t) for t in texts] if self.siglip else texts
    return _fixed_length([self.to_ours[ids] for ids in self._sp.encode(texts)], max_len)

  def encode_words(self, words: list[str], spaces: list[bool], max_len: int):
    """Encodes an annotated caption: (int32 tokens [max_len], int32 word index of each token).

    A token's word index is the annotation word it starts in (-1 for [CLS], [SEP], padding and a
    bare word-boundary piece); the pieces of one word share its index. Tokens equal `encode`'s.
    """
    if self.siglip:  # word by word; sentencepiece collapses the spaces a removed word leaves
      words = [w.lower().translate(_PUNCTUATION) for w in words]
    text, owner = text_annotations.rebuild(words, spaces)
    # Offsets are UTF-8 byte positions; a piece may start on the space before its word.
    pieces = self._sp.encode(text, return_type="proto").pieces
    return _word_tokens(self.to_ours[[p.id for p in pieces]], [(p.begin, p.end) for p in pieces],
                        owner, max_len)

  def decode(self, tokens: np.ndarray) -> list[str]:
    """Text of each row up to its first [SEP] (generated rows continue with padding)."""
    return [self._sp.decode(ids).strip() for ids in self._file_ids(tokens)]


class HuggingFace(_Renumbered):
  """A Hugging Face `tokenizer.json` (BERT's WordPiece, CLIP's byte-level BPE) with the encoding of
  SentencePiece. Its ids are renumbered so that the special tokens have this codebase's fixed ids
  (SPECIALS: [PAD] [UNK] [CLS] [SEP] [MASK] become 0 .. 4; CLIP's begin and end of text are [CLS]
  and [SEP]); the other ids keep their order after them. `to_ours` maps the file's ids to ours,
  `to_theirs` ours to the file's, -1 for a special the vocabulary lacks (CLIP has no [PAD], [UNK]
  or [MASK]: an imported model gets a new word embedding for each). An imported word-embedding
  table is permuted alike (vl_jax/weights/), so the model computes what the original does."""

  # Per fixed id 0 .. 4, the tokens that are it in the vocabularies this codebase imports.
  SPECIALS = (("[PAD]",), ("[UNK]",), ("[CLS]", "<|startoftext|>"), ("[SEP]", "<|endoftext|>"),
              ("[MASK]",))
  REQUIRED = (CLS_ID, SEP_ID)  # a caption's begin and end, which the towers read

  def __init__(self, model_path: str):
    self.model_path = model_path
    try:
      self._tok = tokenizers.Tokenizer.from_str(epath.Path(model_path).read_text())
    except Exception as e:  # the library raises a bare Exception on a malformed file
      raise DataError(f"{model_path}: not a Hugging Face tokenizer file: {e}") from e
    self._tok.no_truncation()
    self._tok.no_padding()
    vocab = self._tok.get_vocab(with_added_tokens=True)
    # The token of each fixed id, None where the vocabulary has none.
    self.specials = tuple(next((t for t in names if t in vocab), None) for names in self.SPECIALS)
    missing = [self.SPECIALS[i][0] for i in self.REQUIRED if self.specials[i] is None]
    if missing:
      raise DataError(f"{model_path}: no {' or '.join(missing)} token (nor CLIP's "
                      f"<|startoftext|> and <|endoftext|>): not a BERT or CLIP vocabulary")
    theirs = [vocab[t] if t is not None else -1 for t in self.specials]
    self.to_theirs, self.to_ours = _renumber(
        theirs, self._tok.get_vocab_size(with_added_tokens=True))

  def encode(self, texts: list[str], max_len: int) -> np.ndarray:
    encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
    return _fixed_length([self.to_ours[e.ids] for e in encodings], max_len)

  def encode_words(self, words: list[str], spaces: list[bool], max_len: int):
    """As SentencePiece.encode_words."""
    text, owner = text_annotations.rebuild(words, spaces)
    encoding = self._tok.encode(text, add_special_tokens=False)
    # The library's offsets count characters; the owner table counts UTF-8 bytes.
    byte_at = np.concatenate([[0], np.cumsum([len(c.encode("utf-8")) for c in text])])
    spans = [(byte_at[b], byte_at[e]) for b, e in encoding.offsets]
    return _word_tokens(self.to_ours[encoding.ids], spans, owner, max_len)

  def decode(self, tokens: np.ndarray) -> list[str]:
    texts = self._tok.decode_batch(self._file_ids(tokens), skip_special_tokens=True)
    # CLIP's BPE marks a word's last piece with a suffix that its decoder keeps ("dog</w>").
    suffix = getattr(self._tok.model, "end_of_word_suffix", None)
    return [t.replace(suffix, " ").strip() for t in texts] if suffix else texts


Tokenizer = SentencePiece | HuggingFace
