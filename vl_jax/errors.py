"""Errors caused by the user's input; main.py reports them in one line instead of a traceback."""


class ConfigError(ValueError):
  """A config field holds a value that cannot work; the message names the field."""


class DataError(OSError):
  """A dataset directory or file is missing or malformed; the message names the path."""


class CheckpointError(OSError):
  """A checkpoint was not written, or does not restore; the message names its step and
  directory."""


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or Inf; the message names the step and the last good checkpoint."""


class NonFiniteOutputError(FloatingPointError):
  """A model's outputs (embeddings, scores) hold NaN or Inf; the message names the inputs and how
  many rows."""


USER_ERRORS = (ConfigError, DataError, CheckpointError, NonFiniteLossError, NonFiniteOutputError)
