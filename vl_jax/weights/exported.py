"""Where a model lives, and the self-contained export format.

A model is one of:
- a training workdir (config.json, its tokenizer, checkpoints/STEP/),
- a checkpoint directory inside one (WORKDIR/checkpoints, or WORKDIR/checkpoints/STEP),
- an exported model: a directory of `model.safetensors` (every parameter, named by its path
  in the parameter tree, "video/block_0/attn_spatial/query/kernel"), `config.json` (the model's
  config and the data shapes it was built for) and its tokenizer file; or that
  `model.safetensors` itself.
Nothing in it is pickled: loading one runs no code.
"""

import dataclasses
import json
import os
import shutil

import ml_collections
import numpy as np
import safetensors.numpy

from input_pipeline import tokenizer as tokenizer_lib
from input_pipeline.errors import DataError
from vl_jax.weights import files

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT = "vl-jax-model/1"
# The config.data fields that shape the model (models/builder.build and its inputs).
DATA_FIELDS = ("num_frames", "image_size", "max_text_len", "text", "num_answers", "knowledge")


@dataclasses.dataclass(frozen=True)
class Location:
  directory: str  # the workdir or the export's directory: config.json and the tokenizer
  exported: bool
  step: int | None = None  # a workdir's checkpoint step (None: the latest)


def locate(path: str) -> Location:
  """Where the model of `path` is; DataError for a path that holds none."""
  path = os.path.abspath(path.rstrip("/"))
  if os.path.isfile(path) and path.endswith(".safetensors"):
    return Location(os.path.dirname(path), True)
  if os.path.isfile(os.path.join(path, WEIGHTS)):
    return Location(path, True)
  if os.path.isdir(os.path.join(path, "checkpoints")):
    return Location(path, False)
  parent, name = os.path.split(path)
  if name == "checkpoints" and os.path.isdir(path):
    return Location(parent, False)
  if name.isdigit() and os.path.basename(parent) == "checkpoints" and os.path.isdir(path):
    return Location(os.path.dirname(parent), False, int(name))
  raise DataError(f"{path}: not a model: expected a training workdir (with checkpoints/), a "
                  f"checkpoint directory, or an exported model ({WEIGHTS} with {CONFIG})")


def model_dir(path: str) -> str:
  return locate(path).directory


def read_config(directory: str) -> ml_collections.ConfigDict:
  """{model, data} of a workdir's resolved config or an export's config."""
  path = os.path.join(directory, CONFIG)
  if not os.path.isfile(path):
    raise DataError(f"{directory}: no {CONFIG}; a workdir and an exported model both hold one")
  try:
    with open(path) as f:
      body = json.load(f)
    return ml_collections.ConfigDict({"model": body["model"], "data": body["data"]})
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise DataError(f"{path}: not a vl-jax config (no 'model' and 'data' sections): {e}") from e


def save(out_dir: str, flat_params: dict[str, np.ndarray], config, tokenizer_path: str,
         step: int) -> None:
  """Writes the export of parameters `flat_params` ({path: array}) of a model of `config`."""
  os.makedirs(out_dir, exist_ok=True)
  safetensors.numpy.save_file({k: np.asarray(v) for k, v in flat_params.items()},
                              os.path.join(out_dir, WEIGHTS), metadata={"format": FORMAT})
  # safetensors writes through a private temporary file (mode 0600): an export is for sharing,
  # so it gets the mode any new file gets (the umask's).
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(os.path.join(out_dir, WEIGHTS), 0o666 & ~umask)
  data = {k: config.data[k].to_dict() if isinstance(config.data[k], ml_collections.ConfigDict)
          else config.data[k] for k in DATA_FIELDS}
  with open(os.path.join(out_dir, CONFIG), "w") as f:
    json.dump({"format": FORMAT, "step": step, "model": config.model.to_dict(), "data": data}, f,
              indent=2, sort_keys=True)
  for name in tokenizer_lib.FILES:  # an export into an older export's directory: one tokenizer
    if os.path.isfile(os.path.join(out_dir, name)):
      os.remove(os.path.join(out_dir, name))
  shutil.copyfile(tokenizer_path, os.path.join(out_dir, os.path.basename(tokenizer_path)))


def read_params(directory: str) -> tuple[dict[str, np.ndarray], int]:
  """({path: array}, step) of an export."""
  with open(os.path.join(directory, CONFIG)) as f:
    step = json.load(f).get("step", 0)
  return files.read_tensors(os.path.join(directory, WEIGHTS)), step
