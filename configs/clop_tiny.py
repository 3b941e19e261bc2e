r"""CLOP on the tiny model and the synthetic dataset: the contrastive loss with knowledge-guided
negatives (KCL) and structural knowledge prediction (SKP) from the video and text embeddings.

    python main.py --config configs/clop_tiny.py[:ARGS] --workdir /tmp/clop_tiny

ARGS, comma-separated: the ablation of docs/RESULTS.md: "contrastive" (the plain contrastive
loss, no knowledge), "skp" (+ SKP), none (+ SKP + KCL, hard negatives up-weighted) or "sample"
(+ SKP + KCL, hard negatives sampled); "clip": CLIP-shaped towers (configs/common.use_clip), from
random weights or a CLIP of their size (--config.init_from.image_text=DIR), as the tests run
them. Reported: text-video retrieval and multiple-choice accuracy on val.
"""

from configs import common, downstream, tiny

VARIANTS = ("contrastive", "skp", "sample")


def get_config(arg=None):
  args = common.parse_arg(arg, "configs/clop_tiny.py", clip=False,
                          **dict.fromkeys(VARIANTS, False))
  variant = common.one_of(args, VARIANTS, f"configs/clop_tiny.py:{arg}")
  config = common.base(tiny, "tiny" if args.clip else None)
  if variant != "contrastive":
    # 256 classes: all entries of the synthetic captions in 2 or more of them.
    common.add_knowledge(config, size=256, min_count=2)
  if variant in (None, "sample"):
    common.add_kcl(config, "sample" if variant else "weight", num_negatives=8)
  config.evals.multiple_choice = downstream.evaluator("multiple_choice", "val", batch_size=64,
                                                      every_steps=500)
  return config.lock()
