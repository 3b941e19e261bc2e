"""What main.py and eval.py share: the config flag, joining a multi-process run, one-line errors,
quiet library logs."""

import sys

from absl import app, flags
from ml_collections import config_flags

from vl_jax.errors import USER_ERRORS
from vl_jax.train import distributed, metrics

CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file",
                                         lock_config=True)
WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, metrics and results")


def parse_flags(argv):
  """absl's parser, with a one-line error for an override of a config field that does not exist."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as e:  # how ml_collections reports a missing field
    name = str(e).strip("\"'")
    bad = [a.split("=")[0] for a in argv if a.startswith("--config.") and name in a.split("=")[0]]
    if not bad:
      raise
    sys.exit(f"FATAL Flags parsing error: {bad[0]}: the config has no field {name!r}")


def run(main_fn, required=("config", "workdir")) -> None:
  """Runs `main_fn()` under absl after flag parsing (`required` flags must be given); a user
  error ends the run with one line."""
  flags.mark_flags_as_required(required)

  def wrapped(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    metrics.quiet_library_logs()
    try:
      distributed.initialize()
      main_fn()
    except USER_ERRORS as e:
      sys.exit(f"error: {e}")
  app.run(wrapped, flags_parser=parse_flags)
