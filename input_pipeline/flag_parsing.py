"""absl flags for the command-line tools that are also called in-process with an argument list
(the converter, the synthetic generator, export, embed, the caption metrics). Each keeps its flags
in its own FlagValues (defined through `definer`), so that two tools defining the same flag
(--out) live in one process."""

import functools
import sys
import types

from absl import flags


def definer(flag_values: flags.FlagValues) -> types.SimpleNamespace:
  """absl's DEFINE_string, _integer, _float, _bool, _enum and _list into `flag_values`, by kind:
  `define.integer(name, default, help, **kwargs)`."""
  return types.SimpleNamespace(**{
      kind: functools.partial(getattr(flags, f"DEFINE_{kind}"), flag_values=flag_values)
      for kind in ("string", "integer", "float", "bool", "enum", "list")})


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
  except flags.Error as e:  # several required flags missing: a line each, joined
    fail("; ".join(line.strip() for line in str(e).splitlines() if line.strip()))
  if len(rest) > 1 and not (passthrough and "--" in argv):
    fail(f"unexpected arguments {rest[1:]}")
  return rest[1:]
