r"""TACo on the tiny model and the synthetic dataset: L1 + 0.5 L2 + L3 with a 2-layer fusion
encoder.

    python main.py --config configs/taco_tiny.py[:ARGS] --workdir /tmp/taco_tiny

ARGS, comma-separated: a row of TACo's ablation (its Table 3; ours in docs/RESULTS.md):
"l1_l3_random" (L1 + L3 on random negatives), "l1_l3" (+ cascade sampling), "full" (+ L2, the
default); "clip": CLIP-shaped towers (configs/common.use_clip), from random weights or a CLIP of
their size (--config.init_from.image_text=DIR), as the tests run them.
Retrieval is reported both by the dual encoder and re-ranked with TACo's summed score
(t2v_rerank/...).
"""

from configs import common, tiny

VARIANTS = ("l1_l3_random", "l1_l3", "full")


def get_config(arg=None):
  args = common.parse_arg(arg, "configs/taco_tiny.py", clip=False,
                          **dict.fromkeys(VARIANTS, False))
  variant = common.one_of(args, VARIANTS, f"configs/taco_tiny.py:{arg}") or "full"
  config = common.base(tiny, "tiny" if args.clip else None)
  config.model.fusion.depth = 2
  common.add_taco(config, variant)
  config.evals.retrieval.rerank_top_k = 16
  return config.lock()
