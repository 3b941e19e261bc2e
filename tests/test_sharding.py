"""The same loss and gradients on a 1-device mesh and on the 8 fake devices of the test session,
with the parameters split over them (FSDP)."""

import jax
import numpy as np
import pytest

from input_pipeline import pipeline
from input_pipeline.tokenizer import load as load_tokenizer
from tests.helpers import tiny_config
from vl_jax import sharding
from vl_jax.train import loop, state as state_lib, step as step_lib


def _one_step(config, batch):
  """The state after one train step from the same initialisation, and the step's metrics. The
  optimizer state holds the gradients: after one step Adam's first moment is (1 - b1) g (of the
  clipped g), so comparing it compares the gradients without compiling them apart."""
  mesh, _, model = loop.setup(config)
  tx, schedule = state_lib.make_optimizer(config.optimizer, config.total_steps)
  state, shardings = state_lib.create(model, tx, config, mesh)
  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(model, tx, schedule, config, mesh), shardings,
      sharding.batch_sharding(mesh))
  state, metrics = train_step(state, pipeline.to_devices(batch, sharding.batch_sharding(mesh)))
  # Block on each step: un-blocked collectives on 4+ fake devices on 2 cores can deadlock.
  metrics = jax.block_until_ready(metrics)
  kernel = state.params["video"]["block_0"]["mlp"]["fc1"]["kernel"]
  return jax.device_get((metrics, state.opt_state, state.params, state.ema_params)), \
      (mesh.devices.size, kernel.sharding.shard_shape(kernel.shape))


CONTENT = {"pos_tags": ("NOUN", "VERB"), "max_tokens": 12}
# TACo's, MILES's and CLOP's objectives in one model (objectives combine freely).
METHODS = {"model.fusion.depth": 2, "model.masked_video.predictor_hidden": 64,
           "model.video.mask_token": True, "data.knowledge.size": 64,
           "model.knowledge_head.inputs": ("video", "text"),
           "ema": {"modules": ("video",), "momentum": 0.9, "final_momentum": 1.0},
           "objectives": {
               "contrastive": {"weight": 1.0, "chunked": False, "directions": "t2v"},
               "token_contrastive": {"weight": 0.5, "temperature": 1.0, **CONTENT},
               "cascade_matching": {"weight": 1.0, "num_negatives": 4, "sampling": "cascade",
                                    **CONTENT},
               "masked_video": {"weight": 1.0, "mask_ratio": 0.5, "pattern": "tube",
                                "block_size": (2, 2, 2), "target_layer": -1,
                                "normalize_targets": True, "loss": "smooth_l1"},
               "skp": {"weight": 1.0, "loss": "softmax"},
               "kcl": {"weight": 1.0, "similarity": "jaccard", "idf": True,
                       "negatives": "sample", "beta": 2.0, "num_negatives": 4}}}


def test_sharded_step_equals_single_device(synthetic_dir):
  """On one device, and on a (data 2, fsdp 4) mesh: the batch split 8 ways, the parameters, their
  moments and their average split 4 ways, the sentence-level InfoNCE chunked round the 8 devices.
  With TACo's objectives (the sentence-level InfoNCE over the global batch, the token
  similarities, the cascade's choice of negatives across the global batch and the fused pairs),
  MILES's (masks drawn the same on any number of devices, the snapshot's targets, its EMA) and
  CLOP's (knowledge similarity, duplicates and sampled negatives over the global batch)."""
  assert jax.device_count() == 8
  config = tiny_config(synthetic_dir, batch_size=16, **METHODS)
  tokenizer = load_tokenizer(f"{synthetic_dir}/tokenizer.model")
  batch, _ = pipeline.split_host_fields(
      next(iter(pipeline.train_dataset(config.data, tokenizer, 16, seed=0))))

  results = {}
  for devices, fsdp in ((1, 1), (2, 4)):
    config.mesh.data, config.mesh.fsdp = devices, fsdp
    config.objectives.contrastive.chunked = fsdp > 1
    results[devices * fsdp] = _one_step(config, batch)
  (metrics1, opt1, params1, ema1), (n1, shard1) = results[1]
  (metrics8, opt8, params8, ema8), (n8, shard8) = results[8]
  assert (n1, n8) == (1, 8)
  assert shard1 == (64, 256) and shard8 == (64, 64)  # fc1's kernel, whole and split 4 ways
  assert metrics8.keys() == metrics1.keys()
  for name in metrics1:  # every objective's loss and metrics, the gradient norm
    np.testing.assert_allclose(metrics8[name], metrics1[name], rtol=1e-5, err_msg=name)
  mu1 = jax.tree.leaves(opt1[1][0].mu)  # the AdamW moments after clipping
  mu8 = jax.tree.leaves(opt8[1][0].mu)
  assert len(mu1) == len(jax.tree.leaves(params1)) and any(np.abs(m).max() > 0 for m in mu1)
  for g8, g1 in zip(mu8, mu1):
    np.testing.assert_allclose(g8, g1, rtol=1e-3, atol=1e-7)
  for p8, p1 in zip(jax.tree.leaves((params8, ema8)), jax.tree.leaves((params1, ema1))):
    np.testing.assert_allclose(p8, p1, rtol=1e-4, atol=1e-6)


def test_batch_not_divisible_by_devices_fails_before_compiling(synthetic_dir, tmp_path):
  config = tiny_config(synthetic_dir, batch_size=12)
  with pytest.raises(ValueError, match=r"config\.batch_size=12 is not divisible by the 8 devices"):
    loop.train_and_evaluate(config, str(tmp_path / "work"))
  assert not (tmp_path / "work").exists()
