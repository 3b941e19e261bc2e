"""Device mesh and the shardings of the train state and batches.

The mesh has two axes, `data` and `fsdp` (config.mesh). The batch is split over both; parameters
(and their optimizer moments and averages) are split over `fsdp` as the regex rules of
`config.sharding.rules` say, and gathered by XLA where a layer needs them whole (ZeRO-3 / FSDP).
With fsdp = 1 every parameter is replicated: plain data parallelism.
"""

import re

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from input_pipeline.errors import ConfigError

DATA_AXIS, FSDP_AXIS = "data", "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)  # the batch dimension is split over both


def make_mesh(mesh_cfg, devices=None) -> Mesh:
  """A (data, fsdp) mesh over `mesh_cfg.data` x `mesh_cfg.fsdp` devices (data -1: all that
  fsdp divides), in jax.devices() order everywhere: the fsdp groups are consecutive devices, i.e.
  within a host when fsdp divides the devices per host, and process p holds rows
  [p·B/P, (p+1)·B/P) of every batch. `devices`: others than jax.devices() (a topology's, for
  ahead-of-time compilation)."""
  devices = jax.devices() if devices is None else list(devices)
  fsdp = mesh_cfg.fsdp
  data = len(devices) // max(fsdp, 1) if mesh_cfg.data == -1 else mesh_cfg.data
  if fsdp < 1 or data < 1 or data * fsdp > len(devices):
    raise ConfigError(f"config.mesh: data={mesh_cfg.data} x fsdp={fsdp} devices, but "
                      f"{len(devices)} are available")
  # Built with the Mesh constructor: jax.make_mesh defaults to Explicit axes, which flax rejects.
  return Mesh(np.asarray(devices[:data * fsdp]).reshape(data, fsdp), BATCH_AXES)


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "config.batch_size") -> None:
  n = mesh.devices.size
  if batch_size % n or batch_size % jax.process_count():
    raise ConfigError(f"{what}={batch_size} is not divisible by the {n} devices of the mesh "
                      f"({jax.process_count()} processes)")


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def _fsdp_spec(shape, n: int) -> P:
  """The largest dimension that `n` divides goes on the fsdp axis; none: replicated."""
  dims = [d for d in np.argsort(shape)[::-1] if shape[d] % n == 0]
  if n == 1 or not dims:
    return P()
  spec = [None] * len(shape)
  spec[dims[0]] = FSDP_AXIS
  return P(*spec)


def param_spec(name: str, shape, rules, mesh: Mesh) -> P:
  """The spec of the first rule whose regex `re.search`es `name` ("video/block_0/mlp/fc1/kernel");
  none: replicated. A rule's spec is "fsdp" (the largest dimension that the fsdp axis divides),
  "replicated", or one mesh axis name (or None) per dimension."""
  for pattern, spec in rules:
    if not re.search(pattern, name):
      continue
    if spec == "fsdp":
      return _fsdp_spec(shape, mesh.shape[FSDP_AXIS])
    if spec == "replicated":
      return P()
    spec = tuple(spec)
    where = f"config.sharding.rules: {pattern!r} -> {spec} for {name} of shape {tuple(shape)}"
    if len(spec) != len(shape):
      raise ConfigError(f"{where}: one entry per dimension needed")
    for dim, axis in zip(shape, spec):
      if axis is not None and (axis not in mesh.shape or dim % mesh.shape[axis]):
        raise ConfigError(f"{where}: {axis!r} is not a mesh axis that divides {dim}")
    return P(*spec)
  return P()


def param_shardings(params, rules, mesh: Mesh):
  """NamedShardings of a parameter tree (arrays or shapes) under `rules` (param_spec)."""
  flat = flatten_dict(params, sep="/")
  return unflatten_dict({name: NamedSharding(mesh, param_spec(name, x.shape, rules, mesh))
                         for name, x in flat.items()}, sep="/")
