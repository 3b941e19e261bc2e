"""Embeddings for large jobs: a converted dataset's videos (evaluation's view, record order) or the
lines of a text file, written to .npy with progress.

    python -m vl_jax.embed --model MODEL --data_dir DATASET --split val --out videos.npy
    python -m vl_jax.embed --model MODEL --texts queries.txt --out texts.npy

Row i of the output is record i of the split (its clip ids go to OUT's name with `.clip_ids.txt`)
or line i of the text file; float32 [rows, E] unit embeddings.
"""

import argparse
import os
import sys

import numpy as np
import tqdm

from input_pipeline import pipeline, shards
from vl_jax import pretrained
from vl_jax.errors import USER_ERRORS, DataError


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


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", required=True,
                 help="a training workdir, a checkpoint directory or an exported model")
  source = p.add_mutually_exclusive_group(required=True)
  source.add_argument("--data_dir", help="a converted dataset (docs/DATA.md): embed its videos")
  source.add_argument("--texts", help="a UTF-8 text file: embed each line")
  p.add_argument("--split", default="val", help="the dataset split (with --data_dir)")
  p.add_argument("--out", required=True, help="the .npy file to write")
  p.add_argument("--batch_size", type=int, default=64)
  args = p.parse_args(argv)
  try:
    model = pretrained.load(args.model)
    if args.data_dir:
      out, ids = embed_split(model, args.data_dir, args.split, args.batch_size)
    else:
      if not os.path.isfile(args.texts):
        raise DataError(f"--texts={args.texts}: no such file")
      with open(args.texts, encoding="utf-8") as f:
        lines = f.read().splitlines()
      out = np.concatenate([model.encode_text(lines[i:i + args.batch_size], args.batch_size)
                            for i in tqdm.trange(0, len(lines), args.batch_size, unit="batch",
                                                 desc="texts")])
  except USER_ERRORS as e:
    sys.exit(f"error: {e}")
  np.save(args.out, out)
  if args.data_dir:
    with open(os.path.splitext(args.out)[0] + ".clip_ids.txt", "w") as f:
      f.write("".join(f"{i}\n" for i in ids))
  print(f"wrote {out.shape[0]} x {out.shape[1]} embeddings to {args.out}")


if __name__ == "__main__":
  main()
