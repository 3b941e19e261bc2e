r"""Scores a checkpoint on the evaluators of a config.

    python eval.py --config configs/tiny.py --workdir /tmp/vl_jax_tiny [--step N] [--evals a,b]

Restores the parameters of the workdir's latest checkpoint (or of step N) on the devices at hand,
runs the evaluators the config declares (or those named), prints a table and writes
WORKDIR/eval_results.json.
"""

from absl import flags

from vl_jax import cli
from vl_jax.evaluators import run

_STEP = flags.DEFINE_integer("step", None, "checkpoint step to score (default: the latest)")
_EVALS = flags.DEFINE_list("evals", None, "evaluators of config.evals to run (default: all)")


def main():
  run.evaluate_checkpoint(cli.CONFIG.value, cli.WORKDIR.value, _STEP.value, _EVALS.value)


if __name__ == "__main__":
  cli.run(main)
