"""Writing the JSON files of datasets and runs (dataset_info.json, reports, eval_results.json)."""

import json
import os
from typing import Any


def write_json(path: str, body: Any, indent: int | None = None) -> None:
  """Writes `body` to `path` atomically: a reader sees the old file or the new, never a part."""
  with open(path + ".tmp", "w") as f:
    json.dump(body, f, indent=indent, sort_keys=True)
  os.replace(path + ".tmp", path)
