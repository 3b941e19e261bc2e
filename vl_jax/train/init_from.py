"""Where a run's parameters start (`config.init_from`): another run's workdir or an exported model
(fine-tuning), or imported weights (vl_jax/weights/): a Hugging Face BERT-family text model and
ViT image weights, or an image-text model (CLIP, SigLIP) for both towers. The tokenizer comes with
the model."""

import os

import jax
import numpy as np
from absl import logging
from flax.traverse_util import flatten_dict, unflatten_dict

from input_pipeline import shards, tokenizer as tokenizer_lib
from input_pipeline.errors import ConfigError, DataError
from vl_jax.errors import CheckpointError
from vl_jax.train import checkpoint
from vl_jax.weights import bert, clip, exported, files, siglip, vit


# The sources a config may require (a placeholder), as its error says how to give them.
REQUIRED = {"workdir": "a pre-trained model (--config.init_from.workdir=WORKDIR)",
            "image_text": "an image-text model (--config.init_from.image_text=DIRECTORY, CLIP's or "
                          "SigLIP's: docs/PRETRAINED.md)"}


def check(init_cfg) -> None:
  """One source at most, and the one a config requires (a placeholder) set."""
  unset = [n for n in REQUIRED if init_cfg.get(n, "") is None]
  if unset and not any(init_cfg.get(n) for n in REQUIRED):
    raise ConfigError(f"config.init_from.{' and '.join(unset)} "
                      f"{'is' if len(unset) == 1 else 'are'} not set: this config starts from "
                      f"{' or from '.join(REQUIRED[n] for n in unset)}; '' for random weights")
  sources = [n for n in REQUIRED if init_cfg.get(n)]
  if init_cfg.text or init_cfg.video:
    sources.append("text / video")
  if len(sources) > 1:
    raise ConfigError(f"config.init_from: set one of workdir (a whole model), image_text (both "
                      f"towers) or text / video (one tower each), not {' and '.join(sources)}")


def image_text_importer(directory: str):
  """The module that imports the image-text model in `directory`: siglip (a big_vision .npz)
  or clip (Hugging Face's or open_clip's files)."""
  return siglip if siglip.checkpoint_path(directory) else clip


def imports(config) -> dict[str, np.ndarray]:
  """{parameter path: array} of the imported weights of `config.init_from` (text, video,
  image_text; {} for none), blocks unrolled, each checked against config.model: read before the
  model is initialised and compiled (minutes at base size), so that a mismatch is one line
  first."""
  init_cfg, model_cfg, data_cfg = config.init_from, config.model, config.data
  check(init_cfg)
  out = {}
  if init_cfg.text:
    out |= bert.load(init_cfg.text, model_cfg.text, data_cfg.max_text_len)
  if init_cfg.video:
    out |= vit.load(init_cfg.video, model_cfg.video, data_cfg.num_frames, data_cfg.image_size)
  if init_cfg.get("image_text"):
    out |= image_text_importer(init_cfg.image_text).load(init_cfg.image_text, model_cfg, data_cfg)
  return out


def tokenizer_path(config, workdir: str | None) -> str:
  """The tokenizer a run uses: its workdir's copy (a run writes one when it starts), else that of
  `config.init_from.workdir` (a model keeps the tokenizer it was trained with) or of the imported
  text or image-text model, else the dataset's."""
  if workdir and tokenizer_lib.find(workdir):
    return tokenizer_lib.find(workdir)
  check(config.init_from)
  source = config.init_from.workdir
  if source:
    path = tokenizer_lib.find(exported.locate(source).directory)
    if path is None:
      raise DataError(f"config.init_from.workdir={source!r}: holds no tokenizer "
                      f"({' or '.join(tokenizer_lib.FILES)}); is it a training workdir or an "
                      f"exported model?")
    return path
  if config.init_from.text:
    return os.path.join(config.init_from.text, bert.TOKENIZER)
  if config.init_from.get("image_text"):
    directory = config.init_from.image_text
    return os.path.join(directory, image_text_importer(directory).TOKENIZER)
  return os.path.join(config.data.dir, shards.TOKENIZER_FILE)


def interpolate_frames(stored, shape):
  """Temporal position embeddings [1, T, 1, D] resized linearly along T to `shape`'s frames
  (Frozen-in-Time's curriculum: a 1-frame model's single embedding becomes every frame's, a 4-frame
  model's four are spread over 8 frames)."""
  return jax.image.resize(stored, shape, method="linear")


# Parameters that may differ in shape between a checkpoint and the model, and how they adapt.
RESIZE = {"video/temporal_embedding": interpolate_frames}


def stored_params(path: str, abstract_params, step: int | None = None, missing_ok: bool = False,
                  resizable: tuple[str, ...] = (), strict: bool = False) -> tuple[dict, int]:
  """({name: array} in `abstract_params`' shardings, step) of the model at `path` (a workdir, a
  checkpoint directory or an export: exported.locate), its checkpoint `step` (None: the one
  `path` names, else the latest). Parameters only the stored model has (training-only parts,
  another head) are skipped; one the model has and the stored one lacks is an error unless
  `missing_ok`; one of another shape is an error naming it, except those of `resizable`, which
  come back in their stored shape. An export's tensors must be floating point and finite (errors
  name the tensor); with `strict` (the model is the export's own), it may hold no other tensor."""
  where = exported.locate(path)
  if not where.exported:
    ckpt_dir = os.path.join(where.directory, "checkpoints")
    ckpt = checkpoint.Checkpointer(ckpt_dir, every_steps=1, keep=1, use_async=False)
    try:
      def restore(s):
        try:
          return ckpt.restore_params(s, abstract_params, missing_ok, resizable)
        except ValueError as e:
          raise ConfigError(f"{ckpt_dir}/{s} does not fit the model of this config: {e}") from e

      step = step if step is not None else where.step
      if step is not None:  # a named step is restored or is an error
        step = ckpt.pick_step(step)
        params = restore(step)
      else:  # the newest good one: one that does not restore or holds a NaN is skipped, said so
        ckpt.pick_step(None)  # DataError if there is none
        params, step = ckpt.newest_good(restore, set_aside=False)
        if step is None:
          raise CheckpointError(f"{ckpt_dir}: no checkpoint restores (each is named above)")
    finally:
      ckpt.close()
    return flatten_dict(params, sep="/"), step
  stored, step = exported.read_params(where.directory)
  wanted = flatten_dict(abstract_params, sep="/")
  source = f"{where.directory}/{exported.WEIGHTS}"
  if strict and (extra := sorted(stored.keys() - wanted.keys())):
    raise DataError(f"{source}: unexpected tensor {extra[0]!r} ({len(extra)} unexpected), which "
                    f"the model of its {exported.CONFIG} lacks")
  out = {}
  for name in sorted(wanted):
    if name not in stored:
      if missing_ok:
        continue
      raise ConfigError(f"{source}: no parameter {name}, which the model of this config has "
                        f"(another model?)")
    have, want = stored[name].shape, tuple(wanted[name].shape)
    if have != want and name not in resizable:
      raise ConfigError(f"{source}: parameter {name} has shape {have}, the model of this config "
                        f"{want} (another model size?)")
    files.check_values(name, stored[name], source)
    out[name] = jax.device_put(stored[name].astype(wanted[name].dtype), wanted[name].sharding)
  return out, step


def load(init_cfg, params, abstract_params, imported: dict[str, np.ndarray] | None = None):
  """`params` with the parameters of `init_cfg`'s source in place of the fresh ones.

  From a model (`init_cfg.workdir`: a workdir, checkpoint directory or export), every parameter
  it shares with this one; the others (a new head) keep their fresh initialisation. The temporal
  position embeddings of another frame count are interpolated (RESIZE); any other shared parameter
  of another shape (another model size) is an error naming it.
  From imported weights (`init_cfg.text`, `.video`, `.image_text`), every array of `imported`
  (what `imports` read), each of the model's shape.
  """
  check(init_cfg)
  if init_cfg.workdir:
    try:
      stored, step = stored_params(init_cfg.workdir, abstract_params,
                                   None if init_cfg.step == -1 else init_cfg.step,
                                   missing_ok=True, resizable=tuple(RESIZE))
    except (ConfigError, DataError) as e:
      raise type(e)(f"config.init_from.workdir: {e}") from e
    source = f"step {step} of {init_cfg.workdir}"
  else:
    wanted = flatten_dict(abstract_params, sep="/")
    source = " and ".join(p for p in (init_cfg.text, init_cfg.video, init_cfg.get("image_text"))
                          if p)
    imported = files.to_model_layout(imported, wanted)
    files.fit(imported, {k: v.shape for k, v in wanted.items()}, source)
    stored = {k: jax.device_put(np.asarray(v, wanted[k].dtype), wanted[k].sharding)
              for k, v in imported.items()}
  fresh = flatten_dict(params, sep="/")
  for name, resize in RESIZE.items():
    if name in stored and stored[name].shape != fresh[name].shape:
      logging.info("%s: resized from %s to %s", name, stored[name].shape, fresh[name].shape)
      stored[name] = jax.device_put(resize(stored[name], fresh[name].shape),
                                    fresh[name].sharding)
  new = sorted(fresh.keys() - stored.keys())
  logging.info("initialised %d of %d parameter arrays from %s; new: %s", len(stored),
               len(fresh), source, ", ".join(new) or "none")
  return unflatten_dict({**fresh, **stored}, sep="/")
