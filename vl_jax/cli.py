"""What main.py and eval.py share: the config flag, joining a multi-process run, one-line errors,
quiet library logs."""

import os
import re
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from input_pipeline.errors import one_line
from vl_jax.errors import USER_ERRORS
from vl_jax.train import distributed, metrics, run_config, runtime

CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file",
                                         lock_config=True)
WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, metrics and results")


def _missing_field(e: Exception, argv) -> str:
  """One line for ml_collections' error on an override of a field the config lacks (its message
  may add "Did you mean ..." on a line of its own)."""
  text = str(e).encode().decode("unicode_escape")
  names = re.findall(r"'(\w+)'", text)
  name = names[0] if names else text.strip("\"' \n")
  bad = [a.split("=")[0] for a in argv if a.startswith("--config.")
         and a.split("=")[0].split(".")[-1] == name] or [a.split("=")[0] for a in argv
                                                      if a.startswith("--config.") and name in a]
  hint = re.search(r'Did you mean "([^"]+)"', text)
  return (f"{bad[0] if bad else '--config'}: the config has no field {name!r}" +
          (f" (did you mean {hint.group(1)!r}?)" if hint else ""))


def _one_line(e: Exception) -> str:
  """absl's flag error in one line: a config file's own exception is the last line of the
  traceback it carries."""
  if isinstance(e, SyntaxError):
    return f"--config: {e.filename}:{e.lineno}: {e.msg}"
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  if not lines:
    return type(e).__name__
  if len(lines) == 1:
    return lines[0]
  return f"{lines[0].removesuffix(':')}: {lines[-1]}"


def parse_flags(argv):
  """absl's parser, with one line for a bad flag: an override of a field that does not exist (a
  near miss names the field meant), a missing config file, one that does not run, a config
  argument it refuses, a value of the wrong type."""
  try:
    rest = flags.FLAGS(argv)
    if flags.FLAGS["config"].present:
      CONFIG.value.keys()  # loaded lazily: its errors belong here, before anything runs
    return rest
  except (AttributeError, KeyError) as e:  # how ml_collections reports a missing field
    sys.exit(f"error: {_missing_field(e, argv)}")
  except (flags.Error, SyntaxError, OSError, ValueError, TypeError) as e:
    sys.exit(f"error: {_one_line(e)}")


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
  if record is None or not run_config.has_checkpoints(workdir):
    return given  # no run to follow: a start that failed before its first checkpoint sets nothing
  source = run_config.recorded_source(workdir)
  if source is not None and not run_config.same_source(source, config_source()):
    logging.info("%s was started with --config %s: using --config %s as given", workdir, source,
                 config_source())
    return given
  logging.info("defaults from %s's recorded config; the command line's overrides apply on top",
               workdir)
  return run_config.with_defaults(given, record,
                                  config_flags.get_override_values(flags.FLAGS["config"]))


# How the runtime reports that another process of the run is gone (Gloo on CPU, the coordination
# service's heartbeats elsewhere).
_PEER_LOST = re.compile(r"Gloo|Connection reset|connection closed|peer|heartbeat|coordination "
                        r"service", re.IGNORECASE)


def _exit_with(line: str) -> None:
  """The one line, and nothing after it: a failed checkpoint write leaves orbax's background tasks
  to print their own tracebacks as the interpreter shuts down, a lost peer the runtime's."""
  print(line, file=sys.stderr, flush=True)
  os._exit(1)


def run(main_fn, required=("config", "workdir")) -> None:
  """Runs `main_fn()` under absl after flag parsing (`required` flags must be given); a user
  error ends the run with one line."""
  flags.mark_flags_as_required(required)

  def wrapped(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    metrics.quiet_library_logs()
    runtime.prepare_cpu_backend()
    try:
      distributed.initialize()
      main_fn()
    except USER_ERRORS as e:
      _exit_with(f"error: {e}")
    except jax.errors.JaxRuntimeError as e:
      if not (jax.process_count() > 1 and _PEER_LOST.search(str(e))):
        raise
      _exit_with(f"error: process {jax.process_index()} of {jax.process_count()}: a collective "
                 f"with the other processes failed, so one of them stopped or was killed "
                 f"(its own output says why): {one_line(e)}")
  app.run(wrapped, flags_parser=parse_flags)
