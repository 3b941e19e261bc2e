"""What main.py and eval.py share: the config flag, joining a multi-process run, one-line errors,
quiet library logs."""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from vl_jax.errors import USER_ERRORS
from vl_jax.train import distributed, metrics, run_config

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


def config_source() -> str:
  """The --config argument: "configs/x.py" or "configs/x.py:ARG"."""
  return config_flags.get_config_filename(flags.FLAGS["config"])


def config(workdir: str):
  """The config of a command on `workdir`: with the config file the run in `workdir` was started
  with, its recorded config is the default and the command line's --config.FIELD overrides apply
  on top (run_config.py); with another config file (a downstream task scored on the run's model),
  that config as given."""
  given = CONFIG.value
  record = run_config.recorded(workdir)
  if record is None:
    return given
  source = run_config.recorded_source(workdir)
  if source is not None and not run_config.same_source(source, config_source()):
    logging.info("%s was started with --config %s: using --config %s as given", workdir, source,
                 config_source())
    return given
  logging.info("defaults from %s's recorded config; the command line's overrides apply on top",
               workdir)
  return run_config.with_defaults(given, record,
                                  config_flags.get_override_values(flags.FLAGS["config"]))


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
      # The one line, and nothing after it: a failed checkpoint write leaves orbax's background
      # tasks to print their own tracebacks as the interpreter shuts down.
      print(f"error: {e}", file=sys.stderr, flush=True)
      os._exit(1)
  app.run(wrapped, flags_parser=parse_flags)
