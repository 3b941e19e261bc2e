r"""Compiles a config's train step for a target topology, without the hardware, and says whether
it fits in the devices' memory.

    python launch/aot_check.py --config configs/vit_b16_bert_base.py --target 8xH100 \
        [--batch 1024] [--config.mesh.fsdp=8 --config.model.dtype=bfloat16 ...] [--out F.json]

`--target` is one of vl_jax/train/aot.TARGETS (v5e-8, v5e-256, v4-32, v5p-128, v6e-8, v6e-256,
1xH100, 8xH100, 8xA100-40, 40xA100-40), or `--devices N --memory_gib G` for another. The mesh is
the config's (config.mesh) over the target's devices: a TPU slice's own, compiled by the TPU
compiler, where libtpu is installed (pip install -e '.[tpu]'); otherwise this machine's CPU stands
in for them. The batch is the config's unless `--batch` says otherwise. Prints per-device memory,
the compiler, and whether it fits (vl_jax/train/aot.py says how far to trust the estimate) and
exits 0 if it fits, 1 if not.
"""

import json
import os
import sys
import time

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import jax
from absl import flags

from input_pipeline.errors import ConfigError
from vl_jax import cli, sharding
from vl_jax.train import aot

_TARGET = flags.DEFINE_enum("target", None, list(aot.TARGETS), "the topology to compile for")
_DEVICES = flags.DEFINE_integer("devices", None, "instead of --target: the device count")
_MEMORY = flags.DEFINE_float("memory_gib", None, "instead of --target: memory per device, GiB")
_BATCH = flags.DEFINE_integer("batch", None, "global batch size (default: config.batch_size)")
_VOCAB = flags.DEFINE_integer("vocab_size", 30522, "the tokenizer's vocabulary size")
_OUT = flags.DEFINE_string("out", None, "also write the report to this JSON file")


def main():
  if (_TARGET.value is None) == (_DEVICES.value is None or _MEMORY.value is None):
    raise ConfigError("give --target, or --devices and --memory_gib")
  target = (aot.TARGETS[_TARGET.value] if _TARGET.value else
            aot.Target(_DEVICES.value, _MEMORY.value, f"{_DEVICES.value} devices"))
  # The TPU compiler needs no TPU; CPU devices stand in for any other target's (set before
  # anything starts the backend).
  jax.config.update("jax_platforms", "cpu")
  devices = aot.tpu_devices(target)
  if devices is None:
    jax.config.update("jax_num_cpu_devices", target.devices)
  config = cli.CONFIG.value
  with config.unlocked():  # the target's devices, all of them
    config.mesh.data = -1
  mesh = sharding.make_mesh(config.mesh, devices)
  batch = _BATCH.value or config.batch_size
  report = {"target": _TARGET.value or "custom", "description": target.description,
            "devices": target.devices, "mesh": dict(mesh.shape), "batch": batch,
            "compiler": mesh.devices.flat[0].device_kind if devices else "CPU stand-in",
            "batch_per_device": batch // target.devices}
  t = time.perf_counter()
  try:
    compiled = aot.compile_train_step(config, mesh, _VOCAB.value, batch)
  except jax.errors.JaxRuntimeError as e:
    # The TPU compiler refuses a program larger than the chip's memory: that is the verdict.
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    report |= {"compile_s": time.perf_counter() - t, "fits": False,
               "compiler_error": str(e).strip().splitlines()[0][:500]}
    verdict = f"does NOT fit: {report['compiler_error']}"
  else:
    report |= {"compile_s": time.perf_counter() - t,
               **aot.memory_report(compiled, target.memory_gib)}
    verdict = (f"{'fits' if report['fits'] else 'does NOT fit'}: {report['total_GiB']:.2f} GiB "
               f"per device of {target.memory_gib} GiB ({aot.HEADROOM:.0%} kept free)")
  print(" | ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                   for k, v in report.items() if k != "compiler_error"))
  print(verdict)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(report, f, indent=2)
  sys.exit(0 if report["fits"] else 1)


if __name__ == "__main__":
  cli.run(main, required=("config",))
