"""absl flags for the command-line tools that are also called in-process with an argument list
(the converter, the synthetic generator, export, embed, the caption metrics). Each keeps its flags
in its own FlagValues, so that two tools defining the same flag (--out) live in one process."""

import sys

from absl import flags


def fail(message: str):
  """A usage error: one line on stderr, exit status 2."""
  sys.stderr.write(f"error: {message}\n")
  raise SystemExit(2)


def parse(flag_values: flags.FlagValues, argv: list[str] | None, description: str,
          passthrough: bool = False) -> list[str]:
  """Parses `argv` (the arguments after the program's name; None: the command line's) into
  `flag_values`, starting from their defaults, and returns the arguments after `--` (allowed with
  `passthrough`: another library's options). --help prints `description` and the flags."""
  argv = sys.argv[1:] if argv is None else list(argv)
  if {"--help", "-h", "--helpfull"} & set(argv):
    print(f"{description}\n\n{flag_values.get_help()}")
    raise SystemExit(0)
  flag_values.unparse_flags()
  try:
    rest = flag_values([sys.argv[0], *argv])
  except flags.Error as e:
    fail(str(e))
  if len(rest) > 1 and not (passthrough and "--" in argv):
    fail(f"unexpected arguments {rest[1:]}")
  return rest[1:]
