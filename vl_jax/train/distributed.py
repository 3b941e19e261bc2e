"""Joining JAX's multi-controller runtime: one process per host (or per GPU), the same command on
every one (launch/README.md).

    --distributed=auto  (default) join when the command line names a coordinator, or when the
                        environment shows a job of several processes (SLURM, Open MPI, a TPU pod
                        slice of several workers); a single process does nothing
    --distributed=on    always call jax.distributed.initialize(): JAX reads the TPU pod, SLURM or
                        Open MPI environment itself, or the flags below
    --distributed=off   never

The explicit flags (`--coordinator_address`, `--num_processes`, `--process_id`) are what the local
launcher passes; `--local_device_ids` picks this process's accelerators, e.g. one SLURM task per
node that drives all 8 GPUs of its node (`--local_device_ids=0,1,2,3,4,5,6,7`; with one task per
GPU JAX picks SLURM_LOCALID's by itself).
"""

import os

import jax
from absl import flags, logging

from input_pipeline.errors import ConfigError

DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                                "join a multi-process run (vl_jax/train/distributed.py)")
COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                  "host:port of process 0's coordinator service")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "processes in the run")
PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index, 0 .. N-1")
LOCAL_DEVICE_IDS = flags.DEFINE_list("local_device_ids", None,
                                     "the accelerators this process drives (default: all)")

# Variables that say a process belongs to a job of several, and their count.
_JOB_SIZE_VARIABLES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def _multi_process_environment() -> bool:
  if any(int(os.environ.get(v, "1")) > 1 for v in _JOB_SIZE_VARIABLES):
    return True
  # Cloud TPU VMs of a multi-host slice list every worker.
  return len([h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1


def initialize() -> None:
  """Joins the run as the flags and the environment say; call before any other JAX call."""
  explicit = {"coordinator_address": COORDINATOR.value, "num_processes": NUM_PROCESSES.value,
              "process_id": PROCESS_ID.value}
  given = [k for k, v in explicit.items() if v is not None]
  if given and len(given) < len(explicit):
    missing = sorted(explicit.keys() - set(given))
    raise ConfigError(f"--{given[0]} needs --{' and --'.join(missing)} too")
  if DISTRIBUTED.value == "off":
    if given:
      raise ConfigError(f"--{given[0]} contradicts --distributed=off")
    return
  if DISTRIBUTED.value == "auto" and not given and not _multi_process_environment():
    return
  try:
    local_ids = None if LOCAL_DEVICE_IDS.value is None else [int(i) for i in LOCAL_DEVICE_IDS.value]
  except ValueError:
    raise ConfigError(f"--local_device_ids={','.join(LOCAL_DEVICE_IDS.value)}: expected "
                      "integers, e.g. 0,1,2,3") from None
  jax.distributed.initialize(**{k: v for k, v in explicit.items() if v is not None},
                             local_device_ids=local_ids)
  logging.info("process %d of %d: %d local devices, %d in all", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
