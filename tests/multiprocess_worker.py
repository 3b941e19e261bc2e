r"""One process of the multi-process tests, started by launch/local.py: main.py's training (without
its evaluators), plus what the tests compare.

    python launch/local.py --processes 2 -- python -m tests.multiprocess_worker \
        --config configs/tiny.py --workdir W --out DIR [--kill_at_step K]

Writes DIR/clips_<process>.jsonl (per step, the clip ids this process read; appended across
restarts) and, when training ends, DIR/params_<process>.npz (the final parameters as this process
holds them). With --kill_at_step it SIGKILLs itself after that step, before its checkpoint
(with --kill_only=I, only process I does).
"""

import json
import os
import signal

import jax
import numpy as np
from absl import flags
from flax.traverse_util import flatten_dict

from vl_jax import cli
from vl_jax.train import loop

_OUT = flags.DEFINE_string("out", None, "directory for the records")
_KILL_AT = flags.DEFINE_integer("kill_at_step", None, "SIGKILL this process after this step")
_KILL_ONLY = flags.DEFINE_integer("kill_only", None, "with --kill_at_step: only this process")


def main():
  config = cli.CONFIG.value
  with config.unlocked():
    config.evals = {}
  os.makedirs(_OUT.value, exist_ok=True)
  index = jax.process_index()

  def on_step(step, host):
    with open(os.path.join(_OUT.value, f"clips_{index}.jsonl"), "a") as f:
      f.write(json.dumps({"step": step, "clips": [str(c) for c in host["clip_id"]]}) + "\n")
    if step == _KILL_AT.value and _KILL_ONLY.value in (None, index):
      os.kill(os.getpid(), signal.SIGKILL)
    return False

  state, _ = loop.train_and_evaluate(config, cli.WORKDIR.value, on_step)
  params = flatten_dict(jax.device_get(state.params), sep="/")
  np.savez(os.path.join(_OUT.value, f"params_{index}.npz"), **params)


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  cli.run(main)
