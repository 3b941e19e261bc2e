r"""Pre-trains a video-text model.

    python main.py --config configs/tiny.py --workdir /tmp/vl_jax_tiny [--config.FIELD=VALUE ...]

Re-running the same command resumes from the workdir's latest checkpoint.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from vl_jax.train import loop, metrics

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, metrics and results")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  metrics.quiet_library_logs()
  logging.info("workdir: %s", _WORKDIR.value)
  loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
