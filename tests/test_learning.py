"""A tiny run really learns, and it needs the order of the frames to tell directions apart."""

import jax
import numpy as np
import pytest

from input_pipeline import pipeline
from input_pipeline.tokenizer import Tokenizer
from tests.helpers import tiny_config
from vl_jax.train import loop

STEPS = 600
VAL_CLIPS = 384  # conftest's synthetic_dir
CHANCE_R1 = 100.0 / VAL_CLIPS


def _train(data_dir, workdir, num_frames):
  config = tiny_config(data_dir, **{
      "batch_size": 32, "total_steps": STEPS, "optimizer.warmup_steps": 50,
      "data.num_frames": num_frames, "mesh.data": 1, "log_every_steps": 100,
      "checkpoint.every_steps": STEPS, "evals.retrieval.every_steps": STEPS})
  state, results = loop.train_and_evaluate(config, str(workdir))
  return config, state, results


@pytest.fixture(scope="module")
def runs(synthetic_dir, tmp_path_factory):
  return {t: _train(synthetic_dir, tmp_path_factory.mktemp(f"frames{t}"), t) for t in (4, 1)}


def direction_accuracy(config, params) -> tuple[float, int]:
  """How often a val clip scores its own caption above the caption with directions mirrored
  ("left" <-> "right"), over every val clip whose caption names a horizontal direction."""
  tokenizer = Tokenizer(f"{config.data.dir}/tokenizer.model")
  _, _, model = loop.setup(config)
  examples = pipeline.eval_examples(config.data, tokenizer, "val", range(VAL_CLIPS))
  examples = [e for e in examples if pipeline.mirror_caption(str(e["caption"])) != e["caption"]]
  frames = np.stack([e["frames"] for e in examples])
  captions = [str(e["caption"]) for e in examples]
  mirrored = [pipeline.mirror_caption(c) for c in captions]
  apply = lambda method, x: model.apply({"params": params}, x, method=method)
  video = apply("encode_video", frames)["video_emb"]
  true = apply("encode_text", tokenizer.encode(captions, config.data.max_text_len))["text_emb"]
  false = apply("encode_text", tokenizer.encode(mirrored, config.data.max_text_len))["text_emb"]
  wins = np.asarray(jax.numpy.sum(video * true, -1) > jax.numpy.sum(video * false, -1))
  return float(wins.mean()), len(wins)


def test_tiny_run_learns_retrieval(runs):
  _, _, results = runs[4]
  r1 = results["retrieval"]["t2v/R@1"]
  print(f"t2v R@1 {r1:.2f}% after {STEPS} steps, chance {CHANCE_R1:.2f}%")
  assert r1 > 20 * CHANCE_R1
  assert results["retrieval"]["v2t/R@1"] > 20 * CHANCE_R1


def test_frame_order_is_needed_for_direction(runs):
  (config4, state4, _), (config1, state1, _) = runs[4], runs[1]
  acc4, n = direction_accuracy(config4, state4.params)
  acc1, _ = direction_accuracy(config1, state1.params)
  print(f"direction accuracy over {n} clips: 4 frames {acc4:.3f}, 1 frame {acc1:.3f}")
  assert n >= 80
  assert acc4 > 0.85
  assert abs(acc1 - 0.5) < 0.15  # a single frame carries no direction: chance
