"""A workdir's recorded config: the default of every later command on that workdir.

A run writes its resolved config to `config.json` and appends it, with the start step and the
time, to `config_history.jsonl`, so that the record of every start survives a changed resume.
Resuming (main.py) or scoring (eval.py) with the config file the run was started with takes the
recorded values as defaults, and command-line overrides still apply: a run trained with
`--config.data.dir=D` is resumed and scored on D without repeating the flag. A resume whose data
or model fields differ from the recorded ones stops with one line listing them, unless the user
accepts the change (`--accept_config_change`).
"""

import datetime
import json
import os

import ml_collections
from etils import epath
from flax.traverse_util import flatten_dict

from input_pipeline import files
from input_pipeline.errors import ConfigError

CONFIG_FILE = "config.json"
HISTORY_FILE = "config_history.jsonl"
# Fields of config.data and config.model that change how a run computes, not what it learns.
RUNTIME_FIELDS = frozenset({"data.num_threads", "data.prefetch", "data.worker_count",
                            "model.remat", "model.attention"})


def _plain(config) -> dict:
  """The config as JSON values (tuples as lists): what config.json holds."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def recorded(workdir: str) -> dict | None:
  """The config a run in `workdir` last started with (JSON values), or None."""
  path = epath.Path(workdir) / CONFIG_FILE
  if not path.is_file():
    return None
  try:
    return files.read_json(path)
  except json.JSONDecodeError as e:
    raise ConfigError(f"{path}: not a JSON config ({e}); move it aside to start afresh") from e


def has_checkpoints(workdir: str) -> bool:
  """Whether `workdir` holds a checkpoint step directory (a run to resume or score)."""
  directory = epath.Path(workdir) / "checkpoints"
  return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def same_source(a: str, b: str) -> bool:
  """Whether two --config arguments ("configs/x.py[:ARG]") name the same config."""
  norm = lambda s: (os.path.abspath(s.split(":", 1)[0]),) + tuple(s.split(":", 1)[1:])
  return norm(a) == norm(b)


def recorded_source(workdir: str) -> str | None:
  """The --config argument ("configs/tiny.py" or "configs/x.py:ARG") of the latest start recorded
  in `workdir`, or None (no record, or started through the Python API)."""
  path = epath.Path(workdir) / HISTORY_FILE
  if not path.is_file():
    return None
  lines = [line for line in path.read_text().splitlines() if line.strip()]
  return json.loads(lines[-1]).get("source") if lines else None


def _as_field(current, value):
  """`value` (from JSON) in the type of the config's `current` value: lists back to tuples."""
  if isinstance(current, tuple) and isinstance(value, list):
    return tuple(_as_field(c, v) for c, v in zip(current, value)) if len(current) == len(
        value) else tuple(_as_field(None, v) for v in value)
  if current is None and isinstance(value, list):
    return tuple(_as_field(None, v) for v in value)
  return value


def with_defaults(config: ml_collections.ConfigDict, record: dict,
                  overrides: dict) -> ml_collections.ConfigDict:
  """`config` with the values of `record` (a recorded config) in place of the config file's,
  except the dotted fields of `overrides` (the command line's), which keep their given values."""
  def overridden(path: str) -> bool:
    return any(o == path or o.startswith(path + ".") for o in overrides)

  def merge(node: ml_collections.ConfigDict, rec: dict, prefix: str) -> None:
    # A block of named entries (config.evals, config.objectives, config.data.mixture: every value
    # a block) holds the recorded entries only; in any other block, a field the record lacks is
    # one added since, and keeps its default.
    if node and all(isinstance(v, ml_collections.ConfigDict) for v in node.values()):
      for key in [k for k in node if k not in rec and not overridden(prefix + k)]:
        del node[key]
    for key, value in rec.items():
      path = prefix + key
      if path in overrides:
        continue
      current = node.get(key) if key in node else None
      if isinstance(current, ml_collections.ConfigDict) and isinstance(value, dict):
        merge(current, value, path + ".")
      else:
        node[key] = _as_field(current, value)
  config = ml_collections.ConfigDict(config.to_dict())  # a copy, its types kept
  merge(config, record, "")
  return config.lock()


def changed_fields(config: ml_collections.ConfigDict, record: dict) -> list[str]:
  """The data and model fields whose values differ between `config` and `record`. A field only
  one side has is a field this version added or dropped, not a change of the run's."""
  now, then = (flatten_dict(c, sep=".") for c in (_plain(config), record))
  names = sorted(k for k in now.keys() & then.keys()
                 if k.startswith(("data.", "model.")) and k not in RUNTIME_FIELDS)
  return [f"{k}: {then[k]!r} -> {now[k]!r}" for k in names if now[k] != then[k]]


def check_resume(config: ml_collections.ConfigDict, workdir: str, accept_change: bool) -> None:
  """ConfigError listing the data and model fields of `config` that differ from `workdir`'s
  recorded config, unless `accept_change`. A workdir without a record passes."""
  record = recorded(workdir)
  if record is None or accept_change:
    return
  changes = changed_fields(config, record)
  if changes:
    raise ConfigError(
        f"{epath.Path(workdir) / CONFIG_FILE}: this run would change the data or model of the "
        f"run it resumes ({'; '.join(changes)}); pass --accept_config_change to resume with the "
        f"change, or another --workdir")


def record(workdir: str, config: ml_collections.ConfigDict, start_step: int,
           source: str | None) -> None:
  """Writes `config` as `workdir`'s config.json and appends it to the history (process 0's job).
  A config.json older than the history (an earlier version's workdir) enters it first."""
  history = epath.Path(workdir) / HISTORY_FILE
  lines = []
  old = recorded(workdir)
  if old is not None and not history.exists():
    lines.append({"start_step": None, "time": None, "source": None, "config": old})
  lines.append({"start_step": start_step, "source": source, "config": _plain(config),
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds")})
  # Rewritten whole, not appended: object stores (gs://) have no append.
  earlier = history.read_text() if history.exists() else ""
  files.write(history, earlier + "".join(json.dumps(line, sort_keys=True) + "\n"
                                        for line in lines))
  files.write_json(epath.Path(workdir) / CONFIG_FILE, _plain(config), indent=2)
