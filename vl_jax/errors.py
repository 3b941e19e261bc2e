"""Errors of training and evaluation; with the data layer's (input_pipeline/errors.py), the
errors main.py reports in one line instead of a traceback."""

from input_pipeline.errors import ConfigError, DataError


class CheckpointError(OSError):
  """A checkpoint was not written, or does not restore; the message names its step and
  directory."""


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or Inf; the message names the step and the last good checkpoint."""


class NonFiniteOutputError(FloatingPointError):
  """A model's outputs (embeddings, scores) hold NaN or Inf; the message names the inputs and how
  many rows."""


USER_ERRORS = (ConfigError, DataError, CheckpointError, NonFiniteLossError, NonFiniteOutputError)
