import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny, vit_b16_bert_base
from vl_jax.models import builder
from vl_jax.models.video_vit import VideoViT
from vl_jax.train import state as state_lib

VOCAB = 100


def _inputs(data_cfg, batch=3, seed=0):
  rng = np.random.default_rng(seed)
  frames = rng.integers(0, 256, (batch, data_cfg.num_frames, data_cfg.image_size,
                                 data_cfg.image_size, 3), dtype=np.uint8)
  tokens = np.zeros((batch, data_cfg.max_text_len), np.int32)
  tokens[:, :7] = rng.integers(4, VOCAB, (batch, 7))
  return jnp.asarray(frames), jnp.asarray(tokens)


def test_output_shapes_and_unit_norm():
  config = tiny.get_config()
  model = builder.build(config.model, config.data, VOCAB)
  frames, tokens = _inputs(config.data)
  params = model.init(jax.random.key(0), frames, tokens)["params"]
  out = model.apply({"params": params}, frames, tokens)
  d = config.model.embed_dim
  assert out["video_emb"].shape == (3, d) and out["text_emb"].shape == (3, d)
  n = (config.data.image_size // config.model.video.patch_size) ** 2
  assert out["video_tokens"].shape == (3, config.data.num_frames, n, config.model.video.width)
  assert out["text_tokens"].shape == (3, config.data.max_text_len, config.model.text.width)
  np.testing.assert_allclose(jnp.linalg.norm(out["video_emb"], axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(jnp.linalg.norm(out["text_emb"], axis=-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(out["inverse_temperature"], 1 / config.model.temperature.init,
                             rtol=1e-5)


def _video_tower(zero_init_temporal):
  return VideoViT(patch_size=8, width=32, depth=2, num_heads=2, mlp_dim=64, num_frames=4,
                  image_size=16, zero_init_temporal=zero_init_temporal)


@pytest.mark.parametrize("zero_init", [False, True])
def test_temporal_attention_mixes_frames(zero_init):
  """Changing frame 0 changes the tokens of frame 3 only through temporal attention."""
  tower = _video_tower(zero_init)
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (1, 4, 16, 16, 3), dtype=np.uint8)
  other = frames.copy()
  other[:, 0] = 255 - other[:, 0]
  params = tower.init(jax.random.key(0), frames)
  a, b = tower.apply(params, frames)[0], tower.apply(params, other)[0]
  assert float(jnp.abs(a[:, 0] - b[:, 0]).max()) > 0.1
  change = float(jnp.abs(a[:, 3] - b[:, 3]).max())
  if zero_init:
    # Frozen-in-Time initialisation: the temporal branch starts as zero, so frames stay separate.
    assert change == 0.0
  else:
    assert change > 1e-2


def test_fewer_frames_than_built_for_are_accepted_and_more_are_rejected():
  tower = _video_tower(False)
  params = tower.init(jax.random.key(0), jnp.zeros((1, 4, 16, 16, 3), jnp.uint8))
  assert tower.apply(params, jnp.zeros((1, 1, 16, 16, 3), jnp.uint8))[0].shape == (1, 1, 4, 32)
  with pytest.raises(ValueError, match="built for <= 4"):
    tower.apply(params, jnp.zeros((1, 5, 16, 16, 3), jnp.uint8))


def test_vit_b16_bert_base_config_instantiates():
  config = vit_b16_bert_base.get_config()
  model = builder.build(config.model, config.data, vocab_size=30522)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                             *state_lib.dummy_inputs(config.data)))["params"]
  count = lambda tree: sum(np.prod(x.shape) for x in jax.tree.leaves(tree))
  # ViT-B/16 (86M) plus one temporal attention per block (+28M); BERT-base (110M, no pooler).
  assert 110e6 < count(shapes["video"]) < 120e6
  assert 105e6 < count(shapes["text"]) < 112e6
  assert shapes["video"]["pos_embedding"].shape == (1, 1, 196, 768)
