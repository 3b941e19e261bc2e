"""Captioning metrics: the reference implementation's values on a fixed example, hand-computed
BLEU-4 and ROUGE-L, the Python tokenization equal to the reference's, the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest

from vl_jax.evaluators import caption_metrics

REFERENCES = {
    "v1": ["A man is playing a guitar.", "Someone plays the guitar on stage!",
           "a man plays an acoustic guitar"],
    "v2": ["A cat sits on a red mat.", "The cat is sitting on the mat.",
           "a cat is resting on a mat"],
    "v3": ["Two people are cooking pasta in a kitchen.",
           "A couple cooks (pasta) together -- it's fun.", "people cook food in the kitchen"]}
PREDICTIONS = {"v1": "a man is playing the guitar", "v2": "a cat is sitting on a mat",
               "v3": "two people are cooking in the kitchen"}
# pycocoevalcap 1.2 (PTB tokenizer, Java METEOR 1.5) on the example above, x100.
REFERENCE_VALUES = {"BLEU-4": 62.71498824738801, "METEOR": 40.793528535679954,
                    "ROUGE-L": 82.69909835784567, "CIDEr": 319.7808810183284}
# What the reference's PTB tokenizer makes of captions with brackets, clitics, quotes and numbers.
PTB_TOKENIZED = {
    "A couple cooks (pasta) together -- it's fun.":
        "a couple cooks -lrb- pasta -rrb- together it 's fun",
    'He said "hello" and didn\'t wait...': "he said hello and did n't wait",
    "a well-known man; the dog's toy: red, blue!": "a well-known man the dog 's toy red blue",
    "Don't stop [now] {ok} I'm here, you'll see":
        "do n't stop -lsb- now -rsb- -lcb- ok -rcb- i 'm here you 'll see",
    "3.5 million people in U.S. cities": "3.5 million people in u.s. cities",
    "a man's 'quoted' word": "a man 's quoted word",
    "3,000 dogs, and 2 cats.": "3,000 dogs and 2 cats",
    "the dogs' bowls are full": "the dogs bowls are full",
    "Mr. Smith walks home.": "mr. smith walks home",
    # Times, PTB's split words, symbols before and after numbers.
    "The meeting is at 10:30 today.": "the meeting is at 10:30 today",
    "I cannot go, gonna stay.": "i can not go gon na stay",
    'He said "wanna" twice': "he said wan na twice",
    "it costs $5 and 50% off": "it costs $ 5 and 50 % off",
    "gotta see: the #1 show": "got ta see the # 1 show",
    "lemme in; gimme that at 5:00pm": "lem me in gim me that at 5:00 pm",
    "Cannot stop the cannon, the can": "can not stop the cannon the can",
}


@pytest.mark.parametrize("caption", sorted(PTB_TOKENIZED))
def test_python_tokenization_equals_the_reference(caption):
  assert caption_metrics.python_tokenize(caption) == PTB_TOKENIZED[caption]


@pytest.mark.skipif(not caption_metrics.java_available(), reason="the PTB tokenizer needs java")
def test_the_table_is_what_the_java_tokenizer_says():
  from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
  captions = sorted(PTB_TOKENIZED)
  got = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
  assert {c: got[i][0] for i, c in enumerate(captions)} == PTB_TOKENIZED


@pytest.mark.skipif(not caption_metrics.java_available(),
                    reason="METEOR and PTB tokenizer need java")
def test_reference_values_on_a_fixed_example():
  metrics = caption_metrics.caption_metrics(PREDICTIONS, REFERENCES)
  assert metrics == pytest.approx(REFERENCE_VALUES, rel=1e-9)


def test_without_java_the_same_values_less_meteor(monkeypatch):
  monkeypatch.setattr(caption_metrics, "java_available", lambda: False)
  metrics = caption_metrics.caption_metrics(PREDICTIONS, REFERENCES)
  assert metrics == pytest.approx({k: v for k, v in REFERENCE_VALUES.items() if k != "METEOR"},
                                  rel=1e-9)


def test_bleu4_and_rouge_l_by_hand(monkeypatch):
  """'a man is playing the guitar' against 'a man is playing a guitar': clipped n-gram precisions
  5/6, 3/5, 2/4, 1/3 and no brevity penalty; the longest common subsequence has 5 of 6 words."""
  monkeypatch.setattr(caption_metrics, "java_available", lambda: False)
  metrics = caption_metrics.caption_metrics({"v": "a man is playing the guitar"},
                                       {"v": ["a man is playing a guitar"]})
  bleu4 = np.prod([5 / 6, 3 / 5, 2 / 4, 1 / 3]) ** 0.25
  assert metrics["BLEU-4"] == pytest.approx(100 * bleu4, rel=1e-6)
  assert metrics["ROUGE-L"] == pytest.approx(100 * 5 / 6, rel=1e-6)  # P = R = 5/6
  same = caption_metrics.caption_metrics({"v": "A man plays."}, {"v": ["a man plays"]})
  assert same["ROUGE-L"] == pytest.approx(100.0)


def test_cli_and_its_one_line_errors(tmp_path):
  pred, ref, out = tmp_path / "pred.json", tmp_path / "ref.json", tmp_path / "metrics.json"
  pred.write_text(json.dumps(PREDICTIONS))
  ref.write_text(json.dumps(REFERENCES))
  run = lambda *a: subprocess.run([sys.executable, "-m", "vl_jax.evaluators.caption_metrics", *a],
                                  capture_output=True, text=True, timeout=300)
  done = run("--predictions", str(pred), "--references", str(ref), "--out", str(out))
  assert done.returncode == 0, done.stderr[-2000:]
  assert json.loads(out.read_text())["CIDEr"] == pytest.approx(REFERENCE_VALUES["CIDEr"])
  assert "CIDEr 319.78" in done.stdout
  pred.write_text(json.dumps({"v1": "a man"}))
  done = run("--predictions", str(pred), "--references", str(ref))
  assert done.returncode == 1
  assert done.stderr.strip().count("\n") == 0
  assert "2 without a prediction (e.g. ['v2', 'v3'])" in done.stderr
