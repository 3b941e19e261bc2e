r"""Pre-trains a video-text model.

    python main.py --config configs/tiny.py --workdir /tmp/vl_jax_tiny [--config.FIELD=VALUE ...]

Re-running the same command resumes from the workdir's latest checkpoint.
"""

from absl import logging

from vl_jax import cli
from vl_jax.train import loop


def main():
  logging.info("workdir: %s", cli.WORKDIR.value)
  loop.train_and_evaluate(cli.CONFIG.value, cli.WORKDIR.value)


if __name__ == "__main__":
  cli.run(main)
