"""Caption annotations: POS tags aligned to word pieces, idf, structural knowledge, flips."""

import json
import math

import numpy as np
import pytest

from input_pipeline import contract, pipeline, text_annotations
from input_pipeline.contract import CLS_ID, SEP_ID
from input_pipeline.errors import ConfigError
from input_pipeline.tokenizer import load as load_tokenizer
from tests.helpers import tiny_config


def test_knowledge_from_the_dependency_parse():
  a, = text_annotations.Annotator().annotate(["A young man throws a white ball in the park."])
  assert a["words"][-1] == "." and not a["spaces"][-1] and a["spaces"][0]
  assert a["pos"][a["words"].index("man")] == "NOUN"
  assert a["pos"][a["words"].index("throws")] == "VERB"
  k = set(a["knowledge"])
  assert {"obj:man", "obj:ball", "obj:park", "act:throw", "attr:young", "attr:white"} <= k
  assert {"rel:young/amod/man", "rel:man/nsubj/throw", "rel:ball/dobj/throw",
          "rel:white/amod/ball", "rel:park/in/throw"} <= k
  assert len(a["knowledge"]) == len(k)  # distinct


def test_word_pieces_share_their_words_annotations(synthetic_dir):
  tok = load_tokenizer(f"{synthetic_dir}/tokenizer.model")
  words, spaces = ["a", "greenish", "circle", "moves", "left", ","], [True] * 4 + [False, False]
  tokens, word_index = tok.encode_words(words, spaces, 32)
  text, _ = text_annotations.rebuild(words, spaces)
  assert text == "a greenish circle moves left,"
  np.testing.assert_array_equal(tokens, tok.encode([text], 32)[0])
  n = int((tokens != 0).sum())
  assert tokens[0] == CLS_ID and tokens[n - 1] == SEP_ID
  assert word_index[0] == word_index[n - 1] == -1
  pieces = [tok._sp.id_to_piece(int(t)) for t in tokens[1:n - 1]]
  # Re-joining the pieces of each word gives the word back (pure "▁" pieces belong to no word).
  for i, w in enumerate(words):
    got = "".join(p for p, j in zip(pieces, word_index[1:n - 1]) if j == i).replace("▁", "")
    assert got == w
  assert len(pieces) > len(words)  # "greenish" is split into several pieces


def test_idf_table_over_training_captions(tmp_path):
  annotator = text_annotations.Annotator()
  stats = text_annotations.TextStats()
  stats.add(annotator.annotate(["a dog runs", "a cat runs", "A dog sleeps"]))
  stats.write(str(tmp_path))
  idf = text_annotations.IdfTable(str(tmp_path))
  n = 3
  assert idf("a") == idf("A") == math.log((1 + n) / (1 + 3)) + 1 == 1.0
  assert idf("dog") == math.log(4 / 3) + 1
  assert idf("cat") == math.log(4 / 2) + 1
  assert idf("zebra") == math.log(4) + 1  # unseen: df = 0
  assert idf("cat") > idf("dog") > idf("runs") - 1e-9
  # TACo's appendix, Eq. 7: log(|D| / (1 + df)).
  taco = text_annotations.IdfTable(str(tmp_path), "taco")
  assert taco("dog") == math.log(3 / 3) == 0.0 and taco("cat") == math.log(3 / 2)
  assert taco("a") == math.log(3 / 4) and taco("zebra") == math.log(3)
  with pytest.raises(ConfigError, match=r"config.data.idf='tf': one of \['smooth', 'taco'\]"):
    text_annotations.IdfTable(str(tmp_path), "tf")
  # An earlier version's idf.json (smoothed idf values) gives the same tables.
  with open(tmp_path / "idf.json", "w") as f:
    json.dump({"num_captions": n, "idf": {w: math.log((1 + n) / (1 + df)) + 1
                                         for w, df in stats.word_df.items()}}, f)
  assert text_annotations.IdfTable(str(tmp_path), "taco").idf == taco.idf


def test_pipeline_emits_pos_and_idf_per_token_and_flips_them(synthetic_dir):
  cfg = tiny_config(synthetic_dir)
  tok = load_tokenizer(f"{synthetic_dir}/tokenizer.model")
  transform = pipeline.make_clip_transform(cfg.data, tok, train=False)
  words, spaces = ["a", "red", "circle", "moves", "Left"], [True] * 4 + [False]
  pos = ["DET", "ADJ", "NOUN", "VERB", "ADV"]
  out = transform.text_features(words, spaces, pos)
  _, word_index = tok.encode_words(words, spaces, cfg.data.max_text_len)
  for t in range(cfg.data.max_text_len):
    j = word_index[t]
    want_pos = contract.POS_ID[pos[j]] if j >= 0 else 0
    want_idf = transform.idf(words[j]) if j >= 0 else 0.0
    assert out["token_pos"][t] == want_pos
    assert out["token_idf"][t] == np.float32(want_idf)
  assert (out["token_pos"] == contract.POS_ID["NOUN"]).any()
  assert pipeline.mirror_words(words) == ["a", "red", "circle", "moves", "Right"]


def test_annotator_cache_is_bounded_and_answers_every_caption():
  annotator = text_annotations.Annotator(cache_size=2)
  first = annotator.annotate(["a dog", "a cat"])
  again = annotator.annotate(["a dog", "a bird", "a cow", "a dog"])  # evicts while answering
  assert [a["words"] for a in again] == [["a", "dog"], ["a", "bird"], ["a", "cow"], ["a", "dog"]]
  assert again[0] == first[0] and len(annotator._cache) == 2
