"""How the towers run their blocks: rematerialisation and layer scan change nothing computed;
bfloat16 compute stays within a documented tolerance of float32 over a short run; the mesh and
sharding-rule errors."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax.traverse_util import flatten_dict, unflatten_dict

from input_pipeline import pipeline
from input_pipeline.errors import ConfigError
from tests.helpers import tiny_config
from vl_jax import objectives, sharding
from vl_jax.models import layers
from vl_jax.train import loop, state as state_lib, step as step_lib

# The fusion encoder and the caption decoder run their blocks the same way (layers.run_blocks).
MODEL = {"mesh.data": 1}


def _loss_and_grads(config, batch, params=None):
  mesh, _, model = loop.setup(config)
  params = params or state_lib.init_params(model, config.data, jax.random.key(0))
  fn = jax.jit(jax.value_and_grad(step_lib.make_loss_fn(model, config, mesh), has_aux=True))
  (loss, _), grads = fn(params, batch, jax.random.key(0), {}, None)
  return jax.device_get((loss, params, grads))


def _stacked(params):
  """Unrolled blocks (`block_0`, `block_1`, ...) as the scanned layout (`blocks/block`, a leading
  axis over the blocks)."""
  flat, out = flatten_dict(params, sep="/"), {}
  for name, value in flat.items():
    parts = name.split("/")
    i = next((k for k, p in enumerate(parts) if p.rsplit("_", 1)[-1].isdigit()
              and p.rsplit("_", 1)[0] in ("block", "layer")), None)
    if i is None:
      out[name] = value
      continue
    key = "/".join(parts[:i] + [parts[i].rsplit("_", 1)[0] + "s", "block"] + parts[i + 1:])
    out.setdefault(key, []).append((int(parts[i].rsplit("_", 1)[1]), value))
  return unflatten_dict({k: np.stack([x for _, x in sorted(v)]) if isinstance(v, list) else v
                         for k, v in out.items()}, sep="/")


@pytest.fixture(scope="module")
def batch(synthetic_dir):
  config = tiny_config(synthetic_dir, **MODEL)
  _, tokenizer, _ = loop.setup(config)
  b, _ = pipeline.split_host_fields(next(iter(pipeline.train_dataset(config.data, tokenizer, 8,
                                                                     seed=0))))
  return b


def test_remat_and_scan_compute_the_same_loss_and_gradients(synthetic_dir, batch):
  loss, params, grads = _loss_and_grads(tiny_config(synthetic_dir, **MODEL), batch)
  got, _, got_grads = _loss_and_grads(
      tiny_config(synthetic_dir, **MODEL, **{"model.remat": "dots"}), batch, params)
  np.testing.assert_allclose(got, loss, rtol=1e-6)
  for g, w in zip(jax.tree.leaves(got_grads), jax.tree.leaves(grads)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)

  config = tiny_config(synthetic_dir, **MODEL, **{"model.scan_layers": True, "model.remat": "full"})
  _, fresh, _ = _loss_and_grads(config, batch)
  stacked = _stacked(params)
  assert jax.tree.map(np.shape, stacked) == jax.tree.map(np.shape, fresh)  # the same layout
  assert fresh["video"]["blocks"]["block"]["mlp"]["fc1"]["kernel"].shape == (2, 64, 256)
  got, _, got_grads = _loss_and_grads(config, batch, stacked)
  np.testing.assert_allclose(got, loss, rtol=1e-6)
  for (name, g), w in zip(flatten_dict(got_grads, sep="/").items(),
                          jax.tree.leaves(_stacked(grads))):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6, err_msg=name)


def test_attention_implementations_compute_the_same_loss_and_gradients(synthetic_dir, batch):
  """jax.nn.dot_product_attention ("xla") against flax's own, in every kind of attention the
  model has: the video tower's temporal and spatial attention with a class token, the text
  tower's with padding, the fusion encoder's, the caption decoder's causal and cross-attention.
  ("cudnn" needs an NVIDIA GPU; "auto" is "xla" here.)"""
  model = {**MODEL, "model.fusion.depth": 1, "model.decoder.depth": 1,
           "model.video.cls_token": True,
           "objectives": {"contrastive": objectives.block("contrastive"),
                          "caption": objectives.block("caption"),
                          "cascade_matching": objectives.block("cascade_matching",
                                                               num_negatives=3)}}
  assert layers.attention_implementation("auto", jnp.bfloat16) == "xla"
  loss, params, grads = _loss_and_grads(tiny_config(synthetic_dir, **model), batch)
  got, _, got_grads = _loss_and_grads(
      tiny_config(synthetic_dir, **model, **{"model.attention": "auto"}), batch, params)
  np.testing.assert_allclose(got, loss, rtol=1e-6)
  for (name, g), w in zip(flatten_dict(got_grads, sep="/").items(), jax.tree.leaves(grads)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6, err_msg=name)
  bf16 = {**model, "model.dtype": "bfloat16"}
  loss, _, _ = _loss_and_grads(tiny_config(synthetic_dir, **bf16), batch, params)
  got, _, _ = _loss_and_grads(tiny_config(synthetic_dir, **bf16, **{"model.attention": "xla"}),
                              batch, params)
  np.testing.assert_allclose(got, loss, rtol=BF16_LOSS_RTOL)
  with pytest.raises(ConfigError, match=r"config\.model\.attention='flash'"):
    loop.setup(tiny_config(synthetic_dir, **{"model.attention": "flash"}))


# bfloat16 keeps 8 bits of mantissa (relative rounding 2^-9 = 0.2%); measured on the CI machine,
# the per-step losses of 30 steps differ by at most 0.55% (docs/SCALING.md).
BF16_LOSS_RTOL = 0.02


def test_bfloat16_run_stays_close_to_float32(synthetic_dir, tmp_path):
  runs = {}
  for dtype in ("float32", "bfloat16"):
    config = tiny_config(synthetic_dir, **{
        "batch_size": 16, "total_steps": 30, "optimizer.warmup_steps": 5, "log_every_steps": 1,
        "evals": {}, "mesh.data": 1, "checkpoint.every_steps": 30, "model.dtype": dtype})
    state, _ = loop.train_and_evaluate(config, str(tmp_path / dtype))
    with open(tmp_path / dtype / "metrics.jsonl") as f:
      losses = [r["train/loss"] for r in map(json.loads, f)]
    runs[dtype] = (np.asarray(losses), jax.device_get(state.params))
  (l32, _), (l16, p16) = runs["float32"], runs["bfloat16"]
  assert len(l32) == len(l16) == 30 and l16[-1] < 0.9 * l16[0]  # both learn
  print(f"largest relative loss difference {np.max(np.abs(l16 - l32) / l32):.4f}")
  np.testing.assert_allclose(l16, l32, rtol=BF16_LOSS_RTOL)
  # Master weights stay float32.
  assert {x.dtype for x in jax.tree.leaves(p16)} == {np.dtype(np.float32)}


def test_mesh_and_sharding_rules_errors():
  cfg = lambda **kw: ml_collections.ConfigDict(dict(data=-1, fsdp=1) | kw)
  assert sharding.make_mesh(cfg(fsdp=4)).shape == {"data": 2, "fsdp": 4}
  with pytest.raises(ConfigError, match=r"config\.mesh: data=4 x fsdp=4 devices, but 8"):
    sharding.make_mesh(cfg(data=4, fsdp=4))
  mesh = sharding.make_mesh(cfg(data=2, fsdp=4))
  rules = ((r"^video/.*fc1/kernel$", (None, "fsdp")), (r"bias$", "replicated"),
           (r"kernel$", "fsdp"))
  spec = lambda name, shape: sharding.param_spec(name, shape, rules, mesh)
  assert spec("video/block_0/mlp/fc1/kernel", (64, 256)) == jax.sharding.PartitionSpec(None,
                                                                                       "fsdp")
  assert spec("text/layer_0/mlp/fc1/kernel", (64, 256)) == jax.sharding.PartitionSpec(None,
                                                                                      "fsdp")
  assert spec("text/layer_0/mlp/fc2/kernel", (256, 64)) == jax.sharding.PartitionSpec("fsdp", None)
  assert spec("text/layer_0/mlp/fc2/kernel", (3, 5)) == jax.sharding.PartitionSpec()  # indivisible
  assert spec("text/layer_0/mlp/fc2/bias", (64,)) == jax.sharding.PartitionSpec()
  with pytest.raises(ConfigError, match=r"config\.sharding\.rules: .* one entry per dimension"):
    spec("video/block_0/mlp/fc1/kernel", (64, 256, 2))
  with pytest.raises(ConfigError, match=r"'fsdp' is not a mesh axis that divides 6"):
    spec("video/block_0/mlp/fc1/kernel", (64, 6))
