r"""Runs one command as N processes of one JAX run on this machine, each with its own CPU devices.

    python launch/local.py --processes 2 --devices_per_process 1 -- \
        python main.py --config configs/tiny.py --workdir /tmp/vl_jax_2proc

Each process gets the command plus `--coordinator_address=localhost:PORT --num_processes=N
--process_id=i` (vl_jax/train/distributed.py) and `N` CPU devices of its own; their output is
interleaved on this one's, each line prefixed with `[i]`. If one process fails the others are
stopped, the launcher says which one failed and how (its status, or the signal that killed it) and
exits with its status (128 + the signal's number for a signal); after `--timeout` seconds all are
killed and it
exits with 124. This is how the tests run multi-process training, and how to try a multi-host
config before a pod or a cluster is at hand.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import app, flags

GRACE_S = 10.0  # after a process fails, how long the others get to end by themselves


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def process_env(devices: int) -> dict[str, str]:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
  env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
  return env


def _relay(index: int, stream) -> None:
  for line in stream:
    sys.stdout.write(f"[{index}] {line}")
    sys.stdout.flush()


def stop(procs: list[subprocess.Popen], sig=signal.SIGTERM, grace_s: float = 10.0) -> None:
  for p in procs:
    if p.poll() is None:
      p.send_signal(sig)
  deadline = time.monotonic() + grace_s
  for p in procs:
    try:
      p.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()


def _first_failure(procs: list[subprocess.Popen]) -> int | None:
  """The index of a process that ended with an error; of several, one that a signal killed (the
  others' errors are usually the consequence: a collective with it failed)."""
  ended = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
  return min(ended, key=lambda i: (procs[i].returncode >= 0, i)) if ended else None


def launch(command: list[str], processes: int, devices_per_process: int, timeout: float) -> int:
  """Runs the processes to the end; returns 0, the first failure's status, or 124 on timeout."""
  address = f"localhost:{free_port()}"
  env = process_env(devices_per_process)
  procs, relays = [], []
  for i in range(processes):
    p = subprocess.Popen(command + [f"--coordinator_address={address}",
                                    f"--num_processes={processes}", f"--process_id={i}"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs.append(p)
    relays.append(threading.Thread(target=_relay, args=(i, p.stdout), daemon=True))
    relays[-1].start()
  # A signal to the launcher stops the processes too (SIGKILL cannot be caught: kill the
  # launcher's process group for that).
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda signum, _: (stop(procs), sys.exit(128 + signum)))
  deadline = time.monotonic() + timeout
  failed = None  # the process that failed first; of several at once, one a signal killed
  while failed is None and any(p.poll() is None for p in procs):
    if time.monotonic() > deadline:
      print(f"launch/local.py: timeout after {timeout:.0f} s; killing all processes", flush=True)
      stop(procs, signal.SIGKILL)
      for t in relays:
        t.join(timeout=5)
      return 124
    failed = _first_failure(procs)
    time.sleep(0.1)
  if failed is None:  # all ended: one may have failed in the last interval
    failed = _first_failure(procs)
  if failed is not None:
    # The others' collectives with it fail and they end by themselves, each saying so in a
    # line; those that do not (blocked elsewhere) are stopped.
    deadline = time.monotonic() + GRACE_S
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
      time.sleep(0.1)
    stop(procs)
  for t in relays:
    t.join(timeout=5)
  if failed is None:
    return 0
  code = procs[failed].returncode
  how = (f"was killed by {signal.Signals(-code).name}" if code < 0 else
         f"exited with status {code}")
  print(f"launch/local.py: process {failed} {how}; the other processes were stopped", flush=True)
  return 128 - code if code < 0 else code  # a shell's status for a signal


FLAGS = flags.FLAGS
flags.DEFINE_integer("processes", 2, "processes to start", lower_bound=1)
flags.DEFINE_integer("devices_per_process", 1, "CPU devices of each process", lower_bound=1)
flags.DEFINE_float("timeout", 3600.0, "seconds, then kill all")


def main(argv) -> int:
  command = argv[1:]  # what follows --
  if not command:
    raise app.UsageError("no command: put it after --")
  return launch(command, FLAGS.processes, FLAGS.devices_per_process, FLAGS.timeout)


if __name__ == "__main__":
  app.run(main)
