"""Makes sure `config.data.dir` holds a dataset before training, generating the synthetic one."""

import os
from collections.abc import Sequence

from absl import logging

from input_pipeline import files, shards, synthetic, text_annotations, tfds_source
from input_pipeline.errors import ConfigError, DataError

# The configs' synthetic datasets live here and are generated on first use; anywhere else a
# missing dataset is a mistyped path, never a reason to write 6,000 clips.
SYNTHETIC_ROOT = os.path.join(os.path.expanduser("~"), ".cache", "vl_jax")

def ensure_dataset(data_cfg, splits: Sequence[str] = ()) -> None:
  """`config.data`'s dataset and those of its mixture sources (`config.data.mixture`); with
  `config.data.source = "tfds"`, the index of its training split and of `splits`, the
  evaluators'."""
  kind = data_cfg.get("source", "shards")  # configs recorded before sources were a field
  if kind not in ("shards", "tfds"):
    raise ConfigError(f"config.data.source={kind!r}: expected 'shards' or 'tfds'")
  if kind == "tfds":
    # The synthetic default would take the index in (a later synthetic run would then read it).
    if not data_cfg.dir or os.path.abspath(data_cfg.dir).startswith(SYNTHETIC_ROOT + os.sep):
      raise ConfigError(f"config.data.dir={data_cfg.dir!r}: with source 'tfds' it is the folder "
                        f"that keeps the index of the TFDS dataset: pass --config.data.dir=PATH "
                        f"(docs/DATA.md)")
    tfds_source.ensure_index(data_cfg, list(splits))
  else:
    _ensure_one(data_cfg, "config.data")
  for name, source in data_cfg.mixture.items():
    _ensure_one(source, f"config.data.mixture.{name}")


def _ensure_one(data_cfg, field: str) -> None:
  if not data_cfg.dir:
    raise ConfigError(f"{field}.dir is not set: pass --{field}.dir=PATH to a dataset")
  if not files.is_local(data_cfg.dir):
    # array_record's reader opens local files only (a gs:// shard hangs it, measured).
    raise ConfigError(f"{field}.dir={data_cfg.dir!r}: shards are read from a local path; mount "
                      f"the bucket with gcsfuse (gcsfuse --implicit-dirs -o ro BUCKET "
                      f"/tmp/gcs/BUCKET) and pass the mounted path (docs/SCALING.md, Storage)")
  info = os.path.join(data_cfg.dir, shards.INFO_FILE)
  if os.path.isfile(info):
    missing = [f for f in (shards.TOKENIZER_FILE, text_annotations.IDF_FILE)
               if not os.path.isfile(os.path.join(data_cfg.dir, f))]
    if missing:
      raise DataError(f"{field}.dir={data_cfg.dir!r}: no {' or '.join(missing)}; convert the "
                      f"dataset's training split into it first (input_pipeline.convert --split "
                      f"train), or give a test-only dataset's split --vocab_split")
    return
  if data_cfg.name != "synthetic":
    raise DataError(f"{field}.dir={data_cfg.dir!r}: no dataset there (no "
                    f"{shards.INFO_FILE}); convert one with input_pipeline.convert")
  if os.path.exists(data_cfg.dir):
    raise DataError(f"{field}.dir={data_cfg.dir!r} exists but holds no "
                    f"{shards.INFO_FILE}; remove it or point elsewhere")
  if not os.path.abspath(data_cfg.dir).startswith(SYNTHETIC_ROOT + os.sep):
    raise DataError(f"{field}.dir={data_cfg.dir!r}: no dataset there (no {shards.INFO_FILE}); "
                    f"the synthetic dataset is generated on first use only under "
                    f"{SYNTHETIC_ROOT}: check the path, or generate one there with "
                    f"`python -m input_pipeline.synthetic --out {data_cfg.dir}`")
  s = data_cfg.synthetic
  logging.info("generating the synthetic dataset in %s (%d train, %d val clips; once, about "
               "2 minutes on 2 CPU cores)", data_cfg.dir, s.num_train, s.num_val)
  try:
    synthetic.generate(data_cfg.dir, s.num_train, s.num_val, s.seed, num_frames=s.num_frames,
                       size=s.size, captions_per_clip=s.captions_per_clip,
                       palette=synthetic.Palette(still=s.still))
  except OSError:
    # Another process (a second host or a concurrent run) finished it first: fine if complete.
    if not os.path.isfile(info):
      raise
