"""Errors caused by the user's input; main.py reports them in one line instead of a traceback."""


class ConfigError(ValueError):
  """A config field holds a value that cannot work; the message names the field."""


class DataError(OSError):
  """A dataset directory or file is missing or malformed; the message names the path."""


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or Inf; the message names the step and the last good checkpoint."""


USER_ERRORS = (ConfigError, DataError, NonFiniteLossError)
