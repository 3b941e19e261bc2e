r"""Scores a checkpoint on the evaluators of a config.

    python eval.py --config configs/tiny.py --workdir /tmp/vl_jax_tiny [--step N] [--evals a,b]

Restores the parameters of the workdir's newest good checkpoint (or of step N) on the devices at
hand, runs the evaluators the config declares (or those named), prints a table and records them,
with the step, checkpoint and dataset, in WORKDIR/eval_results.json. With the config file the run
was trained with, the run's recorded config is the default (overrides still apply).
"""

from absl import flags

from vl_jax import cli, evaluate

_STEP = flags.DEFINE_integer("step", None, "checkpoint step to score (default: the latest)")
_EVALS = flags.DEFINE_list("evals", None, "evaluators of config.evals to run (default: all)")


def main():
  evaluate.evaluate_checkpoint(cli.config(cli.WORKDIR.value), cli.WORKDIR.value, _STEP.value,
                          _EVALS.value)


if __name__ == "__main__":
  cli.run(main)
