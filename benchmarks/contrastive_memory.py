r"""Contrastive-loss memory per device as devices grow: the global InfoNCE against its chunked
`shard_map` form, value and gradients, at a fixed batch per device (the global batch grows with
the devices, as it does when a run scales out).

    python benchmarks/contrastive_memory.py [--per_device 1024] [--dim 256] [--devices 1,2,4,8]

Nothing runs: each variant is compiled for a mesh of the first n devices, with the embeddings
sharded along it, and XLA's memory analysis of the compiled program gives one device's temporary
buffers (arguments and outputs apart). On CPU the script asks XLA for as many fake devices as the
largest mesh needs.
"""

import json
import os
import platform
import sys

# Python puts this script's folder first on the path, where benchmarks/input_pipeline.py would
# shadow the input_pipeline package: the repository root takes its place.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("per_device", 1024, "clips per device")
flags.DEFINE_integer("dim", 256, "embedding width")
flags.DEFINE_string("devices", "1,2,4,8", "device counts to compile for")
flags.DEFINE_string("out", "benchmarks/contrastive_memory_results.json", "the JSON to write")
# Parsed here, before jax is imported: the device count decides the XLA_FLAGS below.
FLAGS(sys.argv)
COUNTS = [int(n) for n in FLAGS.devices.split(",")]
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  # Only the CPU backend reads it; set before JAX starts.
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={max(COUNTS)}").strip()

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vl_jax.losses.contrastive import chunked_symmetric_infonce, symmetric_infonce


def temp_bytes(fn, mesh: Mesh, batch: int, dim: int) -> int:
  rows = NamedSharding(mesh, P("data"))
  emb = jax.ShapeDtypeStruct((batch, dim), jnp.float32, sharding=rows)
  inv = jax.ShapeDtypeStruct((), jnp.float32, sharding=NamedSharding(mesh, P()))
  compiled = jax.jit(jax.value_and_grad(fn, argnums=(0, 1, 2))).lower(emb, emb, inv).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def main(argv):
  del argv
  if max(COUNTS) > jax.device_count():
    sys.exit(f"--devices {FLAGS.devices}: only {jax.device_count()} devices")
  rows = []
  for n in COUNTS:
    mesh = Mesh(np.asarray(jax.devices()[:n]), ("data",))
    batch = n * FLAGS.per_device
    row = {"devices": n, "batch": batch, "dim": FLAGS.dim}
    row["global_MB"] = temp_bytes(symmetric_infonce, mesh, batch, FLAGS.dim) / 2 ** 20
    row["chunked_MB"] = temp_bytes(lambda v, t, i: chunked_symmetric_infonce(v, t, i, mesh),
                                   mesh, batch, FLAGS.dim) / 2 ** 20
    rows.append(row)
  machine = {"platform": platform.platform(), "devices": [str(d) for d in jax.devices()],
             "jax": jax.__version__}
  print(f"value and gradients of the symmetric InfoNCE, {FLAGS.per_device} x {FLAGS.dim} per "
        f"device, "
        f"temporary memory per device (MB), {jax.devices()[0].platform}:")
  print("devices | global batch | global | chunked")
  for r in rows:
    print(f"{r['devices']} | {r['batch']} | {r['global_MB']:.1f} | {r['chunked_MB']:.1f}")
  with open(FLAGS.out, "w") as f:
    json.dump({"machine": machine, "results": rows}, f, indent=2)
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
