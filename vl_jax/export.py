"""Writes a self-contained, shareable copy of a trained model (weights as safetensors, its config as
JSON, its tokenizer) that vl_jax.pretrained.load reads:

    python -m vl_jax.export --model WORKDIR --out DIR [--step N]
"""

import sys

from absl import flags

from input_pipeline import flag_parsing
from vl_jax import pretrained
from vl_jax.errors import USER_ERRORS

FLAGS = flags.FlagValues()
define = flag_parsing.definer(FLAGS)
define.string("model", None, "a training workdir, a checkpoint directory or an exported model")
define.string("out", None, "directory to write the export into")
define.integer("step", None, "a workdir's checkpoint step (default: the latest)")
flags.mark_flags_as_required(["model", "out"], flag_values=FLAGS)


def main(argv=None) -> None:
  flag_parsing.parse(FLAGS, argv, __doc__)
  try:
    model = pretrained.load(FLAGS.model, FLAGS.step)
    model.export(FLAGS.out)
  except USER_ERRORS as e:
    sys.exit(f"error: {e}")
  print(f"exported step {model.step} of {FLAGS.model} to {FLAGS.out}")


if __name__ == "__main__":
  main()
