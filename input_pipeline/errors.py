"""Errors caused by the user's input that the data layer and vl_jax both raise; main.py reports
them in one line instead of a traceback."""


class ConfigError(ValueError):
  """A config field holds a value that cannot work; the message names the field."""


class DataError(OSError):
  """A dataset directory or file is missing or malformed; the message names the path."""


def one_line(e: BaseException, limit: int = 300) -> str:
  """Another library's exception in one short line, for a message of ours: its type and the
  first line of its message (tensorstore's and msgpack's run over several)."""
  lines = str(e).strip().splitlines()
  return f"{type(e).__name__}: {lines[0][:limit] if lines else ''}"
