"""Fine-tuning starts: parameters and tokenizer from another run's workdir (`config.init_from`)."""

import os

import jax
from absl import logging
from flax.traverse_util import flatten_dict, unflatten_dict

from input_pipeline import shards
from vl_jax.errors import ConfigError, DataError
from vl_jax.train import checkpoint


def tokenizer_path(config, workdir: str | None) -> str:
  """The tokenizer a run uses: its workdir's copy (a run writes one when it starts), else that of
  `config.init_from.workdir` (a model keeps the tokenizer it was trained with), else the dataset's."""
  if workdir and os.path.isfile(os.path.join(workdir, shards.TOKENIZER_FILE)):
    return os.path.join(workdir, shards.TOKENIZER_FILE)
  source = config.init_from.workdir
  if source is None:
    raise ConfigError("config.init_from.workdir is not set: this config fine-tunes a pre-trained "
                      "model; pass --config.init_from.workdir=PRETRAINING_WORKDIR ('' for random)")
  if source:
    path = os.path.join(source, shards.TOKENIZER_FILE)
    if not os.path.isfile(path):
      raise DataError(f"config.init_from.workdir={source!r}: no {shards.TOKENIZER_FILE}; is it "
                      f"the workdir of a training run?")
    return path
  return os.path.join(config.data.dir, shards.TOKENIZER_FILE)


def interpolate_frames(stored, shape):
  """Temporal position embeddings [1, T, 1, D] resized linearly along T to `shape`'s frames
  (Frozen-in-Time's curriculum: a 1-frame model's single embedding becomes every frame's, a 4-frame
  model's four are spread over 8 frames)."""
  return jax.image.resize(stored, shape, method="linear")


# Parameters that may differ in shape between a checkpoint and the model, and how they adapt.
RESIZE = {"video/temporal_embedding": interpolate_frames}


def load(init_cfg, params, abstract_params):
  """`params` with every parameter that the checkpoint of `init_cfg.workdir` shares replaced by
  the stored one; the others (a new head) keep their fresh initialisation. The temporal position
  embeddings of another frame count are interpolated (RESIZE); any other shared parameter of
  another shape (another model size) is an error naming it."""
  ckpt_dir = os.path.join(init_cfg.workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise DataError(f"config.init_from.workdir={init_cfg.workdir!r}: no checkpoints directory")
  ckpt = checkpoint.Checkpointer(ckpt_dir, every_steps=1, keep=1, use_async=False)
  try:
    try:
      step = ckpt.pick_step(None if init_cfg.step == -1 else init_cfg.step)
    except DataError as e:
      raise DataError(f"config.init_from: {e}") from e
    try:
      stored = flatten_dict(ckpt.restore_params(step, abstract_params, missing_ok=True,
                                                resizable=tuple(RESIZE)), sep="/")
    except ValueError as e:
      raise ConfigError(f"config.init_from: {ckpt_dir}/{step} does not fit the model of this "
                        f"config: {e}") from e
  finally:
    ckpt.close()
  fresh = flatten_dict(params, sep="/")
  for name, resize in RESIZE.items():
    if name in stored and stored[name].shape != fresh[name].shape:
      logging.info("%s: resized from %s to %s", name, stored[name].shape, fresh[name].shape)
      stored[name] = jax.device_put(resize(stored[name], fresh[name].shape),
                                    fresh[name].sharding)
  new = sorted(fresh.keys() - stored.keys())
  logging.info("initialised %d of %d parameter arrays from step %d of %s; new: %s", len(stored),
               len(fresh), step, init_cfg.workdir, ", ".join(new) or "none")
  return unflatten_dict({**fresh, **stored}, sep="/")
