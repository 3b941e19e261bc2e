r"""CoCo-BERT on the tiny model and the synthetic dataset: contrastive + the CoCo terms + masked
language and masked frame modeling through a 2-layer cross-modal encoder + captioning.

    python main.py --config configs/coco_tiny.py[:ARGS] --workdir /tmp/coco_tiny

ARGS, comma-separated:
- "contrastive": the ablation's baseline (docs/RESULTS.md): the contrastive loss and the caption
  decoder only, no masked views;
- "queue": the CoCo terms against a momentum encoder's keys and a queue of 1,024 past ones;
- "clip": CLIP-shaped towers (configs/common.use_clip), from random weights or a CLIP of their
  size (--config.init_from.image_text=DIR), as the tests run them.

Reported: text-video retrieval and captioning (greedy) on val. Captioning metrics need the
`captioning` extra: pip install -e '.[captioning]'.
"""

from configs import common, tiny

FUSION_DEPTH = 2
DECODER_DEPTH = 2


def get_config(arg=None):
  args = common.parse_arg(arg, "configs/coco_tiny.py", contrastive=False, queue=False, clip=False)
  config = common.base(tiny, "tiny" if args.clip else None)
  common.add_coco_bert(config, FUSION_DEPTH, DECODER_DEPTH, coco=not args.contrastive,
                       queue=(1024, 0.99) if args.queue else None)
  config.evals.captioning = common.captioning_eval(batch_size=64, every_steps=500)
  return config.lock()
