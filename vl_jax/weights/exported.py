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

import ml_collections
import numpy as np
import safetensors.numpy
from etils import epath

from input_pipeline import files as io_files, tokenizer as tokenizer_lib
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
  """Where the model of `path` (local or at any location epath reaches) is; DataError for a
  path that holds none."""
  path = epath.Path(os.path.abspath(path) if io_files.is_local(path) else str(path).rstrip("/"))
  if path.suffix == ".safetensors" and path.is_file():
    return Location(str(path.parent), True)
  if (path / WEIGHTS).is_file():
    return Location(str(path), True)
  if (path / "checkpoints").is_dir():
    return Location(str(path), False)
  if path.name == "checkpoints" and path.is_dir():
    return Location(str(path.parent), False)
  if path.name.isdigit() and path.parent.name == "checkpoints" and path.is_dir():
    return Location(str(path.parent.parent), False, int(path.name))
  raise DataError(f"{path}: not a model: expected a training workdir (with checkpoints/), a "
                  f"checkpoint directory, or an exported model ({WEIGHTS} with {CONFIG})")


def read_config(directory: str) -> ml_collections.ConfigDict:
  """{model, data} of a workdir's resolved config or an export's config."""
  path = epath.Path(directory) / CONFIG
  if not path.is_file():
    raise DataError(f"{directory}: no {CONFIG}; a workdir and an exported model both hold one")
  try:
    body = io_files.read_json(path)
    return ml_collections.ConfigDict({"model": body["model"], "data": body["data"]})
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise DataError(f"{path}: not a vl-jax config (no 'model' and 'data' sections): {e}") from e


def save(out_dir: str, flat_params: dict[str, np.ndarray], config, tokenizer_path: str,
         step: int) -> None:
  """Writes the export of parameters `flat_params` ({path: array}) of a model of `config` to
  `out_dir` (local or at any location epath reaches)."""
  out = epath.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  # Written as the file's mode-0644 bytes: safetensors' own save_file writes through a private
  # temporary file (mode 0600), and an export is for sharing.
  io_files.write(out / WEIGHTS, safetensors.numpy.save(
      {k: np.asarray(v) for k, v in flat_params.items()}, metadata={"format": FORMAT}))
  data = {k: config.data[k].to_dict() if isinstance(config.data[k], ml_collections.ConfigDict)
          else config.data[k] for k in DATA_FIELDS}
  io_files.write_json(out / CONFIG, {"format": FORMAT, "step": step,
                                     "model": config.model.to_dict(), "data": data}, indent=2)
  for name in tokenizer_lib.FILES:  # an export into an older export's directory: one tokenizer
    if (out / name).is_file():
      (out / name).unlink()
  source = epath.Path(tokenizer_path)  # read and written: a copy stays on the source's filesystem
  io_files.write(out / source.name, source.read_bytes())


def read_params(directory: str) -> tuple[dict[str, np.ndarray], int]:
  """({path: array}, step) of an export."""
  step = io_files.read_json(epath.Path(directory) / CONFIG).get("step", 0)
  return files.read_tensors(os.path.join(directory, WEIGHTS)), step
