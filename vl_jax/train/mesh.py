"""Device mesh and the shardings of the train state and batches."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vl_jax.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(mesh_cfg) -> Mesh:
  """A ('data',) mesh over `mesh_cfg.data` devices (-1: all), in jax.devices() order everywhere."""
  devices = jax.devices()
  n = len(devices) if mesh_cfg.data == -1 else mesh_cfg.data
  if not 0 < n <= len(devices):
    raise ConfigError(f"config.mesh.data={mesh_cfg.data}: {len(devices)} devices available")
  # Built with the Mesh constructor: jax.make_mesh defaults to Explicit axes, which flax rejects.
  return Mesh(np.asarray(devices[:n]), (DATA_AXIS,))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "config.batch_size") -> None:
  n = mesh.devices.size
  if batch_size % n or batch_size % jax.process_count():
    raise ConfigError(f"{what}={batch_size} is not divisible by the {n} devices of the mesh "
                      f"({jax.process_count()} processes)")


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each process's slice into global arrays sharded along the batch dimension."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}
