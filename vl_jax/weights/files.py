"""Reading weight files (safetensors, npz: formats whose loading runs no code) into flat trees,
and fitting a flat tree of imported arrays to a model's parameters."""

import io
import re

import numpy as np
import safetensors.numpy
from etils import epath

from input_pipeline.errors import ConfigError, DataError

# A block of an unrolled stack and the same block in a scanned one (models/layers.run_blocks).
_UNROLLED = re.compile(r"^(.*?)/([A-Za-z]+)_(\d+)/(.*)$")


def read_tensors(path: str) -> dict[str, np.ndarray]:
  """{name: array} of a .safetensors or .npz file (npz without object arrays: no pickle), local or
  at any location epath reaches."""
  if not epath.Path(path).is_file():
    raise DataError(f"{path}: no such weight file")
  try:
    if path.endswith(".safetensors"):
      return safetensors.numpy.load(epath.Path(path).read_bytes())
    if path.endswith(".npz"):
      with np.load(io.BytesIO(epath.Path(path).read_bytes()), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
  except (OSError, ValueError, safetensors.SafetensorError) as e:
    raise DataError(f"{path}: not a readable weight file: {e}") from e
  raise DataError(f"{path}: expected a .safetensors or .npz weight file")


def under(tensors: dict, prefix: str) -> dict:
  """The tensors whose names start with `prefix`, named without it."""
  return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


class Tensors(dict):
  """A checkpoint's tensors as an importer reads them, by name: one the file lacks is a DataError
  naming it, each is checked when first read (check_values), and `check_all_read` names one that
  the import did not read (another layout or architecture), so the conversion itself says which
  tensors a layout has."""

  def __init__(self, tensors: dict[str, np.ndarray], path: str):
    super().__init__(tensors)
    self.path, self.read = path, set()

  def __getitem__(self, name: str) -> np.ndarray:
    if name not in self:
      raise DataError(f"{self.path}: no tensor {name!r}, which the import needs")
    if name not in self.read:
      check_values(name, super().__getitem__(name), self.path)
      self.read.add(name)
    return super().__getitem__(name)

  def module(self, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of the PyTorch module `name`."""
    return self[f"{name}.weight"], self[f"{name}.bias"]

  def check_all_read(self, ignored: re.Pattern | None = None) -> None:
    """DataError naming a tensor that nothing read, except names matching `ignored` (heads and
    buffers of the source model)."""
    extra = sorted(n for n in self.keys() - self.read if not (ignored and ignored.search(n)))
    if extra:
      raise DataError(f"{self.path}: unexpected tensor {extra[0]!r} ({len(extra)} unexpected): "
                      f"not the layout this importer reads, or another architecture")


def to_model_layout(flat: dict[str, np.ndarray], model_names) -> dict[str, np.ndarray]:
  """`flat` (blocks unrolled: "text/layer_3/...") in the layout of a model whose parameters are
  `model_names`: where the model scans a stack ("text/layers/block/..."), the blocks' arrays are
  stacked along a new leading axis."""
  model_names = set(model_names)
  out, stacks = {}, {}
  for name, value in flat.items():
    m = _UNROLLED.match(name)
    scanned = m and f"{m[1]}/{m[2]}s/block/{m[4]}"
    if name not in model_names and scanned in model_names:
      stacks.setdefault(scanned, {})[int(m[3])] = value
    else:
      out[name] = value
  for name, blocks in stacks.items():
    out[name] = np.stack([blocks[i] for i in range(len(blocks))])
  return out


def check_values(name: str, value: np.ndarray, source: str) -> None:
  """A weight must be floating point (an integer or boolean tensor is no kernel: another file's
  or a corrupt one) and finite; errors name the tensor and `source`."""
  if value.dtype.kind not in "fV":  # "V": ml_dtypes' bfloat16, as safetensors reads it
    raise DataError(f"{source}: tensor {name} is {value.dtype}, not floating point")
  bad = int(np.size(value) - np.isfinite(np.asarray(value, np.float32)).sum())
  if bad:
    raise DataError(f"{source}: tensor {name} holds {bad} NaN or Inf values")


def fit(flat: dict[str, np.ndarray], model_shapes: dict[str, tuple], source: str):
  """Checks that every imported array is a parameter of the model, of its shape, floating point
  and finite; errors name the parameter and `source`."""
  for name, value in sorted(flat.items()):
    if name not in model_shapes:
      raise DataError(f"{source}: gives parameter {name}, which the model of this config lacks")
    if tuple(value.shape) != tuple(model_shapes[name]):
      raise DataError(f"{source}: parameter {name} has shape {tuple(value.shape)}, the model of "
                      f"this config {tuple(model_shapes[name])} (another model size?)")
    check_values(name, value, source)


def block_count(names, prefix: str) -> int:
  """How many blocks `prefix`0, `prefix`1, ... the tensor `names` hold ("encoder.layers." for
  PyTorch's names, "Transformer/encoderblock_" for big_vision's)."""
  found = {int(m[1]) for n in names if (m := re.match(re.escape(prefix) + r"(\d+)[./]", n))}
  return max(found) + 1 if found else 0


def require(settings, path: str) -> None:
  """ConfigError naming the first config.model field of `settings` ((field, ours, the
  checkpoint's) triples; the checkpoint's None: it does not say) that differs from the
  checkpoint at `path`."""
  for field, ours, theirs in settings:
    if theirs is not None and ours != theirs:
      raise ConfigError(f"config.model.{field}={ours!r} but {path} needs {theirs!r}")


def torch_attention(weights: dict[str, tuple[np.ndarray, np.ndarray]], num_heads: int,
                    ours: str) -> dict[str, np.ndarray]:
  """flax MultiHeadDotProductAttention's `ours`{query,key,value,out}/{kernel,bias} of PyTorch
  Linear layers' (weight [out, in], bias [out]), keyed by those four names."""
  out = {}
  for part in ("query", "key", "value"):  # [out, in] -> [in, heads, head_dim]
    weight, bias = weights[part]
    out[f"{ours}{part}/kernel"] = weight.T.reshape(weight.shape[1], num_heads, -1)
    out[f"{ours}{part}/bias"] = bias.reshape(num_heads, -1)
  weight, bias = weights["out"]  # [out, in] -> [heads, head_dim, out]
  out[f"{ours}out/kernel"] = weight.T.reshape(num_heads, -1, weight.shape[0])
  out[f"{ours}out/bias"] = bias
  return out


def torch_parts(get, parts, ours: str) -> dict[str, np.ndarray]:
  """Ours of PyTorch Linear and LayerNorm modules `parts` ((theirs, ours, whether it is a norm)
  triples; `get(theirs)` gives the module's (weight, bias)) under the prefix `ours`: a Linear's
  weight [out, in] becomes the kernel [in, out], a LayerNorm's the scale."""
  out = {}
  for their, our, norm in parts:
    weight, bias = get(their)
    out |= {f"{ours}{our}/" + ("scale" if norm else "kernel"): weight if norm else weight.T,
            f"{ours}{our}/bias": bias}
  return out


def big_vision_parts(t, parts, theirs: str, ours: str) -> dict[str, np.ndarray]:
  """Ours of the big_vision modules `parts` of `t` ((theirs, ours, whether it is a LayerNorm)
  triples; a Dense's leaves kernel and bias, a LayerNorm's scale and bias) under the prefixes
  `theirs` and `ours`."""
  return {f"{ours}{our}/{leaf}": t[f"{theirs}{their}/{leaf}"] for their, our, norm in parts
          for leaf in (("scale", "bias") if norm else ("kernel", "bias"))}


def word_embeddings(table: np.ndarray, tokenizer, path: str) -> np.ndarray:
  """The rows of a word-embedding `table` in the order of `tokenizer`'s ids (its renumbering of
  the file's: input_pipeline/tokenizer.py); a special token the vocabulary lacks gets a zero row.
  DataError if the table is not that vocabulary's."""
  if len(table) != len(tokenizer.to_ours):
    raise DataError(f"{path}: {len(table)} word embeddings but {tokenizer.model_path} has "
                    f"{len(tokenizer.to_ours)} tokens: a mismatched tokenizer")
  rows = table[np.maximum(tokenizer.to_theirs, 0)]
  return np.where((tokenizer.to_theirs >= 0)[:, None], rows, 0)
