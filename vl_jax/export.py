"""Writes a self-contained, shareable copy of a trained model (weights as safetensors, its config as
JSON, its tokenizer) that vl_jax.pretrained.load reads:

    python -m vl_jax.export --model WORKDIR --out DIR [--step N]
"""

import argparse
import sys

from vl_jax import pretrained
from vl_jax.errors import USER_ERRORS


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", required=True,
                 help="a training workdir, a checkpoint directory or an exported model")
  p.add_argument("--out", required=True, help="directory to write the export into")
  p.add_argument("--step", type=int, help="a workdir's checkpoint step (default: the latest)")
  args = p.parse_args(argv)
  try:
    model = pretrained.load(args.model, args.step)
    model.export(args.out)
  except USER_ERRORS as e:
    sys.exit(f"error: {e}")
  print(f"exported step {model.step} of {args.model} to {args.out}")


if __name__ == "__main__":
  main()
