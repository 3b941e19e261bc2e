r"""MILES on the tiny model and the synthetic dataset: contrastive + masked visual modeling against
an EMA snapshot of the video tower, with Frozen-in-Time's 1-frame -> 4-frame curriculum.

    python main.py --config configs/miles_tiny.py[:ARGS] --workdir /tmp/miles_tiny

ARGS, comma-separated:
- the stage: "video" (default: 4-frame videos from scratch, the ablation of docs/RESULTS.md);
  "frames1" (synthetic still images as 1-frame clips mixed with 1-frame samples of the videos);
  "frames4" (4-frame clips of the same mixture, initialised from a "frames1" run, whose temporal
  position embeddings are interpolated: --config.init_from.workdir=FRAMES1_WORKDIR);
- "contrastive": the plain dual encoder (no masked modeling, no snapshot), the ablation's baseline;
- "clip": CLIP-shaped towers (configs/common.use_clip), from random weights or a CLIP of their
  size (--config.init_from.image_text=DIR), as the tests run them.

Reported: zero-shot text->video retrieval and zero-shot motion classification on val.
"""

import os

from ml_collections import config_dict

from configs import common, downstream, tiny

STAGES = ("video", "frames1", "frames4")
IMAGES_DIR = os.path.join(os.path.dirname(tiny.DEFAULT_DATA_DIR), "synthetic_images_v1")


def parse(arg: str | None, config_file: str, stages=STAGES) -> tuple[str, bool, bool]:
  """(stage, whether masked modeling is on, whether the towers are CLIP's) from
  "[STAGE][,contrastive][,clip]"; the default stage is the first of `stages`."""
  args = common.parse_arg(arg, config_file, contrastive=False, clip=False,
                          **dict.fromkeys(stages, False))
  stage = common.one_of(args, stages, f"{config_file}:{arg}") or stages[0]
  return stage, not args.contrastive, args.clip


def get_config(arg=None):
  stage, masked, clip = parse(arg, "configs/miles_tiny.py")
  config = common.base(tiny, "tiny" if clip else None)
  if masked:
    # Over a 1,000-step run the snapshot trails the tower by ~1/(1 - 0.99) = 100 steps at first.
    common.add_masked_modeling(config, predictor_hidden=256, momentum=0.99, final_momentum=1.0)
  if stage != "video":
    config.data.mixture = dict(images=dict(
        name="synthetic", dir=IMAGES_DIR, train_split="train", weight=1.0,
        synthetic=dict(num_train=6000, num_val=64, seed=1, num_frames=1, size=40,
                       captions_per_clip=3, still=True)))
  if stage == "frames1":
    config.data.num_frames = 1
  if stage == "frames4":
    config.init_from = tiny.init_from_config(config_dict.placeholder(str))  # the "frames1" run
  config.evals.zeroshot = downstream.evaluator(
      "zeroshot", "val", batch_size=64, every_steps=500,
      **downstream.SYNTHETIC["synthetic_zeroshot"][1])
  return config.lock()
