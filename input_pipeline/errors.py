"""Errors caused by the user's input that the data layer and vl_jax both raise; main.py reports
them in one line instead of a traceback."""


class ConfigError(ValueError):
  """A config field holds a value that cannot work; the message names the field."""


class DataError(OSError):
  """A dataset directory or file is missing or malformed; the message names the path."""
