"""Writes a vl-jax dataset as a TensorFlow Datasets (TFDS) dataset, readable without TensorFlow.

    python -m input_pipeline.tfds_export --data_dir data/msrvtt --out ~/tensorflow_datasets \\
        [--splits train,val] [--name msrvtt_vl]

writes OUT/NAME/VERSION/ in ArrayRecord format, in the records' order, with these features:

    clip_id      Text
    video        Sequence(Image(jpeg))   the stored JPEG frames, as they are
    captions     Sequence(Text)
    annotations  Text                    JSON: per caption, its words, POS tags, lemmas, knowledge
    fps          float32
    meta         Text                    JSON
    label        Text                    when the dataset's records have one; likewise
    qa, mc       Text                    (JSON) for questions and multiple choice

`tfds.builder_from_directory(OUT/NAME/VERSION).as_data_source(split)` reads it anywhere, and
vl-jax reads it back as a TFDS source (config.data.source = "tfds"), frames in place.
"""

import json
import os
import sys
import tempfile

import numpy as np
from absl import flags

from input_pipeline import flag_parsing, pipeline, shards
from input_pipeline.errors import DataError

VERSION = "1.0.0"


def _features(task_fields: list[str]):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  f = tfds.features
  return f.FeaturesDict({
      "clip_id": f.Text(), "captions": f.Sequence(f.Text()), "annotations": f.Text(),
      "video": f.Sequence(f.Image(shape=(None, None, 3), encoding_format="jpeg")),
      "fps": f.Scalar(np.float32), "meta": f.Text(), **{t: f.Text() for t in task_fields}})


def _example(record: dict, task_fields: list[str]) -> dict:
  task = {t: record[t] if t == "label" else json.dumps(record[t]) for t in task_fields}
  return {"clip_id": record["clip_id"], "captions": record["captions"],
          "annotations": json.dumps(record["text"]), "video": record["frames"],
          "fps": np.float32(record["fps"]), "meta": json.dumps(record["meta"]), **task}


def export(data_dir: str, out: str, splits: list[str], name: str) -> str:
  """Writes `splits` of the dataset in `data_dir` under `out`; returns the TFDS folder."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  first = {s: shards.decode_record(pipeline.records(data_dir, s)[0][1]) for s in splits}
  task_fields = [t for t in shards.TASK_FIELDS if all(t in r for r in first.values())]

  def examples(split):
    for index, data in pipeline.records(data_dir, split):
      record = shards.decode_record(data)
      missing = [t for t in task_fields if t not in record]
      if missing:
        raise DataError(f"{data_dir}/{split}: record {index} has no {missing[0]!r}, which the "
                        f"split's first record has")
      yield f"{index:012d}", _example(record, task_fields)

  class ExportedDataset(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The dataset's splits in their record order."""
    VERSION = tfds.core.Version(VERSION)

    def __init__(self, **kwargs):
      self.name = name
      super().__init__(**kwargs)

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=_features(task_fields),
                                   disable_shuffling=True,
                                   description=f"vl-jax dataset {data_dir}, exported")

    def _split_generators(self, dl_manager):
      del dl_manager
      return {s: examples(s) for s in splits}

    def _generate_examples(self):
      raise NotImplementedError  # each split has its generator

  builder = ExportedDataset(data_dir=out, file_format="array_record")
  with tempfile.TemporaryDirectory() as downloads:  # TFDS's, empty: keeps `out` to the dataset
    builder.download_and_prepare(download_dir=downloads)
  return str(builder.data_dir)


FLAGS = flags.FlagValues()
define = flag_parsing.definer(FLAGS)
define.string("data_dir", None, "the vl-jax dataset to export")
define.string("out", None, "TFDS data folder to write into (e.g. ~/tensorflow_datasets)")
define.list("splits", None, "splits to export (default: all)")
define.string("name", None, "the TFDS dataset's name (default: the dataset's name)")
flags.mark_flags_as_required(["data_dir", "out"], flag_values=FLAGS)


def main(argv=None) -> None:
  flag_parsing.parse(FLAGS, argv, __doc__)
  try:
    info = shards.read_info(FLAGS.data_dir)
    splits = FLAGS.splits or sorted(info["splits"])
    unknown = [s for s in splits if s not in info["splits"]]
    if unknown:
      flag_parsing.fail(f"--splits: {FLAGS.data_dir} has no split {unknown[0]!r} (it has "
                        f"{sorted(info['splits'])})")
    name = FLAGS.name or info["name"]
    folder = export(FLAGS.data_dir, os.path.expanduser(FLAGS.out), splits, name)
  except DataError as e:
    sys.exit(f"error: {e}")
  print(f"wrote TFDS dataset {name} ({', '.join(splits)}) to {folder}")


if __name__ == "__main__":
  main()
