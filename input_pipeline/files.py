"""Reading and writing the files of datasets and runs at any location `etils.epath` reaches: a
local path, gs:// (through gcsfs) or any other fsspec filesystem installed."""

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from typing import Any, Iterator

import fsspec.config
from etils import epath

PathLike = str | os.PathLike

# gcsfs caches each folder's listing, sizes included, for the life of the process: a file that
# another process rewrote (eval.py's eval_results.json, another host's write) would then be read
# at its old size, cut short (measured). Every listing and size is asked for afresh instead.
fsspec.config.conf.setdefault("gs", {})["use_listings_cache"] = False


# Why the synthetic generator's --out must be local: array_record writes local files only.
LOCAL_SHARDS = ("the shards are written to a local path: write them there, then copy the folder "
                "to the bucket (gcloud storage cp -r OUT gs://BUCKET/) and read it through a "
                "gcsfuse mount (docs/SCALING.md, Storage)")


def is_local(path: PathLike) -> bool:
  return "://" not in os.fspath(path)


def absolute(path: PathLike) -> str:
  """A local path made absolute; any other location as it is."""
  return os.path.abspath(path) if is_local(path) else os.fspath(path)


def temporary_name(path: PathLike) -> str:
  """A name beside `path` for writing it before a rename, unique to this writer: two writers of
  one file (a retried conversion task beside its first attempt) never write into each other's."""
  return f"{os.fspath(path)}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"


def write(path: PathLike, data: str | bytes) -> None:
  """Writes `data` to `path` whole: a reader sees the old file or the new, never a part (locally
  through a rename; an object store writes an object whole)."""
  path = epath.Path(path)
  target = epath.Path(temporary_name(path)) if is_local(path) else path
  target.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
  if target != path:
    target.replace(path)


def publish(local_file: str, path: PathLike) -> None:
  """Moves the finished local file `local_file` to `path` (any location), whole: a rename on a
  local disk, an upload (an object appears only once written whole) elsewhere."""
  if is_local(path):
    os.replace(local_file, path)
    return
  with open(local_file, "rb") as f, epath.Path(path).open("wb") as g:
    shutil.copyfileobj(f, g, 1 << 24)
  os.remove(local_file)


@contextlib.contextmanager
def local_copy(path: PathLike) -> Iterator[str]:
  """A local path holding `path`'s bytes for the duration (the file itself when it is local), for
  libraries that open local files only (PyAV, Pillow)."""
  if is_local(path):
    yield os.fspath(path)
    return
  with tempfile.NamedTemporaryFile(suffix=os.path.splitext(os.fspath(path))[1]) as f:
    with epath.Path(path).open("rb") as source:
      shutil.copyfileobj(source, f, 1 << 24)
    f.flush()
    yield f.name


def copy_folder(local: PathLike, target: PathLike) -> None:
  """Copies every file under the local folder `local` to the same relative path under `target`
  (any location): for what a library writes only to a local disk (TensorBoard's events, the
  profiler's trace) and a workdir keeps elsewhere."""
  for root, _, names in os.walk(local):
    for name in names:
      source = os.path.join(root, name)
      dest = epath.Path(target) / os.path.relpath(source, local)
      dest.parent.mkdir(parents=True, exist_ok=True)
      with open(source, "rb") as f:
        write(dest, f.read())


def write_json(path: PathLike, body: Any, indent: int | None = None) -> None:
  write(path, json.dumps(body, indent=indent, sort_keys=True))


def write_json_lines(path: PathLike, rows: list[Any]) -> None:
  write(path, "".join(json.dumps(row) + "\n" for row in rows))


def read_json(path: PathLike) -> Any:
  return json.loads(epath.Path(path).read_text())
