"""Ahead-of-time compilation of the train step for a target topology, and whether it fits.

The step is lowered from abstract inputs (shapes, dtypes and shardings only: nothing is
allocated) on a mesh of the target's device count and compiled with XLA's SPMD partitioner; XLA's
buffer assignment then gives each device's bytes: its shards of the train state and batch, the
new state (donated: it reuses the old one's buffers) and the temporaries of the forward and
backward pass.

A TPU target is compiled by the TPU compiler itself when libtpu is installed (the `tpu` extra):
JAX describes the slice's topology (jax.experimental.topologies) on a machine without TPUs, as
MaxText's train_compile does, and the memory analysis and any error are the TPU's. Otherwise,
and for GPU targets, the host's CPU devices stand in for the target's (launch/aot_check.py): the
layout and the partitioning are the target's but fusion and scheduling are the CPU compiler's,
so the temporaries are an estimate. Either way a step "fits" only with `HEADROOM` of the memory
left for the runtime, the compiler's differences and fragmentation.
"""

import dataclasses
import importlib.util

import jax
import numpy as np

from input_pipeline.contract import UPOS
from vl_jax import sharding
from vl_jax.models import builder
from vl_jax.train import state as state_lib, step as step_lib

GiB = 2 ** 30
HEADROOM = 0.10


@dataclasses.dataclass(frozen=True)
class Target:
  devices: int
  memory_gib: float  # per device
  description: str
  # A TPU slice: jax.experimental.topologies.get_topology_desc's arguments (MaxText's names).
  tpu: dict | None = None


TARGETS = {
    "v5e-8": Target(8, 16, "TPU v5e, 8 chips of 16 GiB HBM", dict(topology_name="v5e:2x4")),
    "v5e-256": Target(256, 16, "TPU v5e pod, 256 chips of 16 GiB HBM",
                      dict(topology_name="v5e:16x16")),
    "v4-32": Target(16, 32, "TPU v4, 16 chips of 32 GiB HBM",
                    dict(topology_name="v4:2x2x4", chip_config_name="megacore")),
    "v5p-128": Target(64, 95, "TPU v5p, 64 chips of 95 GiB HBM",
                      dict(topology_name="v5p:4x4x4", chip_config_name="megacore")),
    "v6e-8": Target(8, 32, "TPU v6e (Trillium), 8 chips of 32 GiB HBM",
                    dict(topology_name="v6e:2x4")),
    "v6e-256": Target(256, 32, "TPU v6e (Trillium) pod, 256 chips of 32 GiB HBM",
                      dict(topology_name="v6e:16x16")),
    "1xH100": Target(1, 80, "one NVIDIA H100 80 GB"),
    "8xH100": Target(8, 80, "one node of 8 NVIDIA H100 80 GB"),
    "8xA100-40": Target(8, 40, "one node of 8 NVIDIA A100 40 GB"),
    "40xA100-40": Target(40, 40, "5 nodes of 8 NVIDIA A100 40 GB (MILES's 4-frame stage)"),
}


def tpu_devices(target: Target) -> list | None:
  """The devices of a TPU target's topology, for the TPU compiler; None for a GPU target or
  without libtpu (then CPU devices stand in)."""
  if target.tpu is None or importlib.util.find_spec("libtpu") is None:
    return None
  from jax.experimental import topologies  # noqa: PLC0415  # needs libtpu
  devices = topologies.get_topology_desc(platform="tpu", **target.tpu).devices
  assert len(devices) == target.devices, (target, len(devices))
  return devices


def example_batch(data_cfg, batch: int, vocab_size: int, rng: np.random.Generator):
  """A host batch of the train step's fields for `data_cfg`, random: uint8 frames, token ids,
  POS tags, idf and (CLOP) about 8 knowledge classes per caption at their idf."""
  d, shape = data_cfg, (batch, data_cfg.max_text_len)
  host = {"frames": rng.integers(0, 256, (batch, d.num_frames, d.image_size, d.image_size, 3),
                                 dtype=np.uint8),
          "tokens": rng.integers(4, vocab_size, shape).astype(np.int32),
          "token_pos": rng.integers(1, len(UPOS) + 1, shape).astype(np.int32),
          "token_idf": rng.uniform(1, 10, shape).astype(np.float32)}
  if d.knowledge.size:
    k = (batch, d.knowledge.size)
    host["knowledge"] = np.where(rng.random(k) < 8 / k[1], rng.uniform(1, 10, k), 0.0).astype(
        np.float32)
  return host


def compile_train_step(config, mesh, vocab_size: int, batch: int):
  """The train step of `config` compiled for `mesh` at global batch `batch`, from abstract
  inputs."""
  sharding.check_batch_size(batch, mesh, "the batch size")
  model = builder.build(config.model, config.data, vocab_size)
  tx, schedule = state_lib.make_optimizer(config.optimizer, config.total_steps)
  state, shardings = state_lib.abstract_state(model, tx, config, mesh)
  rows = sharding.batch_sharding(mesh)
  one = example_batch(config.data, 1, vocab_size, np.random.default_rng(0))
  inputs = {k: jax.ShapeDtypeStruct((batch,) + v.shape[1:], v.dtype, sharding=rows)
            for k, v in one.items()}
  step = step_lib.jit_train_step(step_lib.make_train_step(model, tx, schedule, config, mesh),
                                 shardings, rows)
  return step.lower(state, inputs).compile()


def device_bytes(compiled) -> int:
  """One device's bytes for a compiled step (XLA's memory analysis): inputs, outputs that do not
  reuse a donated input's buffer, temporaries and code."""
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes + m.generated_code_size_in_bytes)


def memory_report(compiled, memory_gib: float) -> dict:
  """Per-device bytes of a compiled step, in parts, against `memory_gib`."""
  m, total = compiled.memory_analysis(), device_bytes(compiled)
  return {"arguments_GiB": m.argument_size_in_bytes / GiB,
          "outputs_not_aliased_GiB": (m.output_size_in_bytes - m.alias_size_in_bytes) / GiB,
          "temporaries_GiB": m.temp_size_in_bytes / GiB, "total_GiB": total / GiB,
          "capacity_GiB": memory_gib, "fits": total <= (1 - HEADROOM) * memory_gib * GiB}
