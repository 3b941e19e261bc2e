"""Embeddings for large jobs: a converted dataset's videos (evaluation's view, record order) or the
lines of a text file, written to .npy with progress.

    python -m vl_jax.embed --model MODEL --data_dir DATASET --split val --out videos.npy
    python -m vl_jax.embed --model MODEL --texts queries.txt --out texts.npy

Row i of the output is record i of the split (its clip ids go to OUT's name with `.clip_ids.txt`)
or line i of the text file; float32 [rows, E] unit embeddings.
"""

import io
import os
import sys

import numpy as np
import tqdm
from absl import flags
from etils import epath

from input_pipeline import files, flag_parsing, pipeline, shards
from input_pipeline.errors import DataError
from vl_jax import pretrained
from vl_jax.errors import USER_ERRORS


def embed_split(model: pretrained.Model, data_dir: str, split: str, batch_size: int):
  """(float32 [records, E], clip ids) of every record of `split` in record order."""
  records = pipeline.records(data_dir, split)
  embeddings, ids = [], []
  for start in tqdm.trange(0, len(records), batch_size, unit="batch", desc=f"{split} videos"):
    batch = [shards.decode_record(records[i][1])
             for i in range(start, min(start + batch_size, len(records)))]
    clips = [pipeline.eval_clip(pipeline.Jpegs(r["frames"]), model.num_frames, model.image_size)
             for r in batch]
    embeddings.append(model.encode_clips(np.stack(clips), batch_size))
    ids += [r["clip_id"] for r in batch]
  return np.concatenate(embeddings), ids


FLAGS = flags.FlagValues()
define = flag_parsing.definer(FLAGS)
define.string("model", None, "a training workdir, a checkpoint directory or an exported model")
define.string("data_dir", None, "a converted dataset (docs/DATA.md): embed its videos")
define.string("texts", None, "a UTF-8 text file: embed each line")
define.string("split", "val", "the dataset split (with --data_dir)")
define.string("out", None, "the .npy file to write (local or gs://)")
define.integer("batch_size", 64, "clips or texts per batch", lower_bound=1)
flags.mark_flags_as_required(["model", "out"], flag_values=FLAGS)
flags.mark_flags_as_mutual_exclusive(["data_dir", "texts"], required=True, flag_values=FLAGS)


def main(argv=None) -> None:
  flag_parsing.parse(FLAGS, argv, __doc__)
  try:
    model = pretrained.load(FLAGS.model)
    if FLAGS.data_dir:
      out, ids = embed_split(model, FLAGS.data_dir, FLAGS.split, FLAGS.batch_size)
    else:
      if not epath.Path(FLAGS.texts).is_file():
        raise DataError(f"--texts={FLAGS.texts}: no such file")
      lines = epath.Path(FLAGS.texts).read_text(encoding="utf-8").splitlines()
      out = np.concatenate([model.encode_text(lines[i:i + FLAGS.batch_size], FLAGS.batch_size)
                            for i in tqdm.trange(0, len(lines), FLAGS.batch_size, unit="batch",
                                                 desc="texts")])
  except USER_ERRORS as e:
    sys.exit(f"error: {e}")
  npy = io.BytesIO()
  np.save(npy, out)
  files.write(FLAGS.out, npy.getvalue())
  if FLAGS.data_dir:
    files.write(os.path.splitext(FLAGS.out)[0] + ".clip_ids.txt", "".join(f"{i}\n" for i in ids))
  print(f"wrote {out.shape[0]} x {out.shape[1]} embeddings to {FLAGS.out}")


if __name__ == "__main__":
  main()
