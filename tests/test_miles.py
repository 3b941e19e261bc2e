"""MILES: masks, the masked regression against a NumPy reference, the EMA snapshot (its update,
no gradient, checkpoints), the image-video mixture and the 1 -> 4 frame continuation."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import miles_tiny
from input_pipeline import pipeline, synthetic
from input_pipeline.errors import ConfigError
from input_pipeline.tokenizer import load as load_tokenizer
from tests.helpers import tiny_config
from vl_jax import objectives, sharding
from vl_jax.losses.masked_modeling import masked_regression, normalize_targets
from vl_jax.models import builder
from vl_jax.objectives.masks import space_time_mask
from vl_jax.train import ema as ema_lib, init_from, loop, state as state_lib, step as step_lib


def test_tube_masks_have_the_ratio_and_the_same_patches_in_every_frame():
  grid, ratio, clips = (4, 6, 6), 0.5, 2048
  masks = np.asarray(jax.jit(lambda k: space_time_mask(k, clips, grid, ratio, "tube"))(
      jax.random.key(0)))
  assert masks.shape == (clips, 4, 36) and masks.dtype == bool
  assert (masks.sum(axis=(1, 2)) == 4 * 18).all()  # exactly round(0.5 * 36) tubes per clip
  assert (masks == masks[:, :1]).all()  # a tube: the same positions in every frame
  assert len({m.tobytes() for m in masks}) == clips  # every clip its own
  # Every position is masked as often: 0.5 +- 0.011 (one standard error) over 2,048 clips.
  assert np.abs(masks.mean(axis=(0, 1)) - 0.5).max() < 0.045


def test_block_masks_mask_whole_boxes_but_one_to_the_exact_ratio():
  grid, block, ratio = (4, 6, 6), (2, 2, 2), 0.4
  masks = np.asarray(space_time_mask(jax.random.key(0), 32, grid, ratio, "block", block))
  count = round(ratio * 144)
  assert (masks.reshape(32, -1).sum(axis=1) == count).all()
  boxes = masks.reshape(32, 2, 2, 3, 2, 3, 2).transpose(0, 1, 3, 5, 2, 4, 6).reshape(32, 18, 8)
  per_box = boxes.sum(axis=2)  # masked patches in each 2 x 2 x 2 box
  partial = ((per_box > 0) & (per_box < 8)).sum(axis=1)
  assert (partial <= 1).all() and ((per_box == 8).sum(axis=1) == count // 8).all()


def test_masked_video_settings_are_checked_before_the_step_is_traced():
  config = miles_tiny.get_config().unlock()
  model = builder.build(config.model, config.data, 64)
  for field, value, message in (
      ("pattern", "random", "masked_video.pattern='random': expected one of"),
      ("mask_ratio", 1.0, r"masked_video.mask_ratio=1.0: must be in \(0, 1\)"),
      ("block_size", (2, 0, 2), r"masked_video.block_size=\(2, 0, 2\): expected 3 positive"),
      ("loss", "l1", "masked_video.loss='l1': expected one of")):
    bad = config.objectives.masked_video.copy_and_resolve_references()
    bad[field] = value
    with pytest.raises(ConfigError, match=message):
      objectives.REGISTRY["masked_video"].check("masked_video", bad, config, model)


def reference_regression(p, y, m, loss):
  if loss == "smooth_l1":
    e = np.abs(p - y)
    per = np.where(e < 1, 0.5 * e ** 2, e - 0.5).mean(-1)
  elif loss == "l2":
    per = ((p - y) ** 2).mean(-1)
  else:
    per = 1 - (p * y).sum(-1) / (np.linalg.norm(p, axis=-1) * np.linalg.norm(y, axis=-1))
  return (per * m).sum() / m.sum()


@pytest.mark.parametrize("loss", ["smooth_l1", "l2", "cosine"])
def test_masked_regression_matches_numpy_and_counts_masked_patches_only(loss):
  rng = np.random.default_rng(0)
  p, y = rng.normal(size=(2, 3, 5, 8)) * 1.5, rng.normal(size=(2, 3, 5, 8))
  m = rng.random((2, 3, 5)) < 0.4
  fn = lambda p: masked_regression(p, y, m, loss)
  np.testing.assert_allclose(fn(p), reference_regression(p, y, m, loss), rtol=1e-5)
  assert float(fn(np.where(m[..., None], y, p))) == pytest.approx(0.0, abs=1e-6)
  changed = np.where(m[..., None], p, rng.normal(size=p.shape) * 10)  # only unmasked ones differ
  np.testing.assert_allclose(fn(changed), fn(p), rtol=1e-6)
  grad = np.asarray(jax.grad(fn)(jnp.asarray(p, jnp.float32)))
  assert (grad[~m] == 0).all() and np.abs(grad[m]).max() > 0
  # The gradient of a masked patch, against the reference's finite differences.
  i = tuple(np.argwhere(m)[0]) + (3,)
  step = np.zeros_like(p)
  step[i] = 1e-3
  numeric = (reference_regression(p + step, y, m, loss) -
             reference_regression(p - step, y, m, loss)) / 2e-3
  assert grad[i] == pytest.approx(numeric, rel=1e-3, abs=1e-6)


def test_normalized_targets_have_zero_mean_and_unit_variance_per_patch():
  x = np.random.default_rng(0).normal(3.0, 5.0, size=(4, 7, 16))
  z = np.asarray(normalize_targets(jnp.asarray(x)))
  np.testing.assert_allclose(z.mean(-1), 0, atol=1e-5)
  np.testing.assert_allclose(z.std(-1), 1, atol=1e-4)


def test_ema_momentum_follows_its_cosine_schedule():
  cfg = ml_collections.ConfigDict(dict(modules=("video",), momentum=0.9, final_momentum=1.0))
  m = [float(ema_lib.momentum(cfg, k, 100)) for k in (0, 50, 100, 200)]
  np.testing.assert_allclose(m, [0.9, 0.95, 1.0, 1.0], rtol=1e-6)
  with pytest.raises(ConfigError, match=r"config.ema.modules: no parameter group \['vision'\]"):
    ema_lib.validate(ml_collections.ConfigDict(dict(modules=("vision",), momentum=0.9,
                                                    final_momentum=1.0)), {"video": {}})


def miles_config(data_dir, **overrides):
  return tiny_config(data_dir, base=miles_tiny.get_config(), **{
      "batch_size": 4, "mesh.data": 1, "ema.momentum": 0.9, "ema.final_momentum": 0.9,
      "model.video.depth": 1, "model.text.depth": 1, **overrides})


def test_snapshot_gets_no_gradient_and_follows_the_ema_formula(synthetic_dir):
  config = miles_config(synthetic_dir)
  mesh, tokenizer, model = loop.setup(config)
  tx, schedule = state_lib.make_optimizer(config.optimizer, config.total_steps)
  state, shardings = state_lib.create(model, tx, config, mesh)
  batch, _ = pipeline.split_host_fields(next(iter(pipeline.train_dataset(
      config.data, tokenizer, config.batch_size, config.seed))))
  assert set(state.ema_params) == {"video"} and "mask_token" in state.params["video"]
  loss_fn = step_lib.make_loss_fn(model, config)
  rng = step_lib.step_rng(config.seed, 0)
  grads = jax.jit(jax.grad(lambda p, e: loss_fn(p, batch, rng, e, {})[0], argnums=(0, 1)))(
      state.params, state.ema_params)
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads[1]))
  assert float(jnp.abs(grads[0]["predictor"]["fc1"]["kernel"]).max()) > 0
  assert float(jnp.abs(grads[0]["video"]["mask_token"]).max()) > 0

  train_step = step_lib.jit_train_step(step_lib.make_train_step(model, tx, schedule, config),
                                       shardings, sharding.batch_sharding(mesh))
  for _ in range(2):
    before = jax.device_get(state.ema_params["video"])
    state, metrics = train_step(state, pipeline.to_devices(batch, sharding.batch_sharding(mesh)))
    expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, before,
                            jax.device_get(state.params["video"]))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 jax.device_get(state.ema_params["video"]), expected)
    assert float(metrics["ema_momentum"]) == pytest.approx(0.9)
  assert float(metrics["masked_video/masked_fraction"]) == pytest.approx(0.5)

  # Without its snapshot or its predictor head, the objective says what is missing.
  for overrides, message in (({"ema.modules": ()}, "config.ema.modules must hold 'video'"),
                             ({"model.masked_video.predictor_hidden": 0}, "predictor_hidden > 0")):
    bad = miles_config(synthetic_dir, **overrides)
    bad_model = builder.build(bad.model, bad.data, tokenizer.vocab_size)
    with pytest.raises(ConfigError, match=message):
      step_lib.make_loss_fn(bad_model, bad)


def test_mixture_interleaves_sources_by_weight(synthetic_dir, tmp_path):
  """Still images (1-frame clips) mixed 1:3 with videos, at 4 frames: every fourth example is an
  image, its frame repeated; the images' captions never name a motion other than staying still."""
  images = str(tmp_path / "images")
  synthetic.generate(images, num_train=40, num_val=4, seed=1, num_frames=1,
                     palette=synthetic.Palette(still=True))
  config = tiny_config(synthetic_dir, **{"data.weight": 3.0})
  with config.unlocked():
    config.data.mixture = {"images": dict(name="synthetic", dir=images, train_split="train",
                                          weight=1.0)}
  tokenizer = load_tokenizer(f"{synthetic_dir}/tokenizer.model")
  it = iter(pipeline.train_dataset(config.data, tokenizer, 32, seed=0))
  batches = [next(it) for _ in range(4)]
  source = np.concatenate([b["source"] for b in batches])
  assert (source == 1).sum() == 32  # a quarter of 128
  frames = np.concatenate([b["frames"] for b in batches])
  assert (frames[source == 1] == frames[source == 1][:, :1]).all()
  motions = [p for ps in synthetic.MOTION_PHRASES.values() for p in ps
             if ps is not synthetic.MOTION_PHRASES["still"]]
  captions = np.concatenate([b["caption"] for b in batches])[source == 1]
  assert not any(m in str(c) for c in captions for m in motions)
  config.data.mixture.images.weight = 0.0
  with pytest.raises(ConfigError, match=r"config.data.mixture.images.weight=0.0: .* must be > 0"):
    pipeline.train_dataset(config.data, tokenizer, 32, seed=0)


def test_four_frames_continue_from_one_with_interpolated_temporal_embeddings(motion_pretrained):
  """The curriculum's second stage: a 4-frame model from the 1-frame run's checkpoint."""
  config1, workdir1, state1, _ = motion_pretrained[1]
  config4 = tiny_config(config1.data.dir, **{"data.num_frames": 4, "mesh.data": 1,
                                             "init_from.workdir": workdir1})
  mesh, _, model4 = loop.setup(config4)
  params = state_lib.init_params(model4, config4.data, jax.random.key(1))
  abstract = state_lib.abstract_params(model4, config4, mesh)
  loaded = init_from.load(config4.init_from, params, abstract)
  stored = np.asarray(state1.params["video"]["temporal_embedding"])  # [1, 1, 1, D]
  np.testing.assert_allclose(loaded["video"]["temporal_embedding"],
                             np.repeat(stored, 4, axis=1), rtol=1e-6)
  np.testing.assert_array_equal(loaded["video"]["pos_embedding"],
                                state1.params["video"]["pos_embedding"])
  # From 4 frames to 8: linear interpolation between the stored embeddings.
  four = jnp.arange(4.0).reshape(1, 4, 1, 1)
  eight = np.asarray(init_from.interpolate_frames(four, (1, 8, 1, 1))).ravel()
  np.testing.assert_allclose(eight, [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3], atol=1e-6)
