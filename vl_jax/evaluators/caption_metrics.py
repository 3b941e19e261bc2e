r"""Captioning metrics: BLEU-4, METEOR, ROUGE-L and CIDEr (reported x100, as papers do), computed by
pycocoevalcap, the COCO caption evaluation code behind published MSR-VTT captioning numbers.

    python -m vl_jax.evaluators.caption_metrics --predictions PRED.json --references REF.json

PRED.json maps each video id to its generated caption, REF.json each id to its reference captions.
Captions are tokenized as the reference does: Stanford's PTB tokenizer, lower-cased, punctuation
dropped. It and METEOR run on Java; without a `java` on the PATH the tokenization is done in Python
(the same rules; `python_tokenize`) and METEOR is left out, with a warning.
"""

import contextlib
import io
import json
import re
import shutil
import sys

from absl import flags, logging

from input_pipeline import flag_parsing
from input_pipeline.errors import DataError

try:
  from pycocoevalcap.bleu.bleu import Bleu
  from pycocoevalcap.cider.cider import Cider
  from pycocoevalcap.meteor.meteor import Meteor
  from pycocoevalcap.rouge.rouge import Rouge
  from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
except ImportError as e:
  raise ImportError("captioning metrics need pycocoevalcap: pip install -e '.[captioning]'") from e

# The tokens that pycocoevalcap's PTBTokenizer drops after tokenizing (it lower-cases first, so the
# bracket tokens, upper-case in this list, stay as "-lrb-" and the like).
PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":",
               "-", "--", "...", ";"}
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_RULES = [  # (pattern, replacement), applied in order to the lower-cased caption
    (re.compile(r"[()\[\]{}]"), lambda m: f" {_BRACKETS[m.group()]} "),
    (re.compile(r'"|\.\.\.|--|[;!?$%#]'), r" \g<0> "),
    (re.compile(r"(?<!\d):|:(?!\d)"), " : "),  # not inside times: "10:30"
    (re.compile(r"(\d)(am|pm)\b"), r"\1 \2"),  # "5:00pm" -> "5:00 pm"
    # PTB's split words: "cannot" -> "can not", "gonna" -> "gon na", ...
    (re.compile(r"\b(can)(not)\b|\b(gon|wan)(na)\b|\b(got)(ta)\b|\b(lem|gim)(me)\b"),
     lambda m: " ".join(g for g in m.groups() if g)),
    (re.compile(r",(?!\d)|(?<!\d),"), " , "),  # not inside numbers: "3,000"
    (re.compile(r"(?<=\s)(['`]+)|^(['`]+)"), r" \1\2 "),  # opening quotes
    (re.compile(r"(\w)(n't|'s|'re|'ll|'ve|'m|'d)(?=\s|$)"), r"\1 \2"),  # clitics
    (re.compile(r"(?<=[^\s'])'(?=\s|$)"), " ' "),  # closing quotes
    (re.compile(r"(?<=\s)([^\s.]+)\.(?=\s*$)|^([^\s.]+)\.(?=\s*$)"), r"\1\2 ."),  # final period
]


def python_tokenize(caption: str) -> str:
  """The reference's PTB tokenization in Python, for the usual caption text: lower-cased, clitics
  split off ("don't" -> "do n't"), PTB's split words ("cannot" -> "can not", "gonna" ->
  "gon na"), "$", "%" and "#" split from numbers, brackets as "-lrb-" and the like, punctuation
  dropped, tokens joined by single spaces. Numbers ("3.5", "3,000"), times ("10:30") and
  abbreviations ("u.s.") stay whole. Checked against the Java tokenizer on the cases of
  tests/test_captioning.py; where PTB's lexer has rules of its own beyond these (URLs, e-mail
  addresses, emoticons, fractions, non-ASCII quotes and dashes) it may differ (docs/EVAL.md)."""
  text = caption.lower()
  for pattern, repl in _RULES:
    text = pattern.sub(repl, text)
  return " ".join(t for t in text.split() if t not in PUNCTUATION and t != '"')


def java_available() -> bool:
  return shutil.which("java") is not None


def caption_metrics(predictions: dict[str, str],
                    references: dict[str, list[str]]) -> dict[str, float]:
  """{"BLEU-4", "METEOR" (with Java), "ROUGE-L", "CIDEr"} x100 over the ids of `references`; every
  id needs exactly one prediction. CIDEr's document frequencies come from these references (the
  reference's CIDEr-D setting, so scores depend on the whole test set, as published ones do)."""
  missing = sorted(references.keys() - predictions.keys())
  extra = sorted(predictions.keys() - references.keys())
  if missing or extra:
    raise DataError(f"predictions and references cover other ids: {len(missing)} without a "
                    f"prediction (e.g. {missing[:3]}), {len(extra)} without references "
                    f"(e.g. {extra[:3]})")
  empty = [k for k, refs in references.items() if not refs]
  if empty:
    raise DataError(f"references: id {empty[0]!r} has no reference caption")
  java = java_available()
  if java:
    tokenizer = PTBTokenizer()
    refs = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in references.items()})
    preds = tokenizer.tokenize({k: [{"caption": predictions[k]}] for k in references})
  else:
    logging.warning("no java on the PATH: captions are tokenized in Python and METEOR is left out")
    refs = {k: [python_tokenize(c) for c in v] for k, v in references.items()}
    preds = {k: [python_tokenize(predictions[k])] for k in references}
  scorers = [("BLEU-4", Bleu(4)), ("ROUGE-L", Rouge()), ("CIDEr", Cider())]
  if java:
    scorers.insert(1, ("METEOR", Meteor()))
  out = {}
  for name, scorer in scorers:
    with contextlib.redirect_stdout(io.StringIO()):  # BLEU prints its n-gram counts
      score, _ = scorer.compute_score(refs, preds)
    out[name] = 100.0 * float(score[-1] if name == "BLEU-4" else score)
  return out


def _load(path: str, what: str):
  try:
    with open(path, encoding="utf-8") as f:
      body = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise DataError(f"{path}: cannot read {what}: {e}") from e
  if not isinstance(body, dict):
    raise DataError(f"{path}: expected a JSON object mapping video ids to {what}")
  return body


FLAGS = flags.FlagValues()
define = flag_parsing.definer(FLAGS)
define.string("predictions", None, "JSON: {video id: generated caption}")
define.string("references", None, "JSON: {video id: [reference captions]}")
define.string("out", None, "also write the metrics to this JSON file")
flags.mark_flags_as_required(["predictions", "references"], flag_values=FLAGS)


def main(argv=None) -> None:
  flag_parsing.parse(FLAGS, argv, __doc__)
  try:
    predictions = _load(FLAGS.predictions, "captions")
    references = _load(FLAGS.references, "lists of reference captions")
    bad = [k for k, v in references.items()
           if not isinstance(v, list) or not all(isinstance(c, str) for c in v)]
    if bad:
      raise DataError(f"{FLAGS.references}: id {bad[0]!r}: expected a list of caption strings")
    metrics = caption_metrics(predictions, references)
  except DataError as e:
    sys.exit(f"error: {e}")
  print("  ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump(metrics, f, indent=2)


if __name__ == "__main__":
  main()
