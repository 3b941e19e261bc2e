r"""CoCo-BERT pre-training at Frozen-in-Time sizes: ViT-B/16 video tower (divided space-time
attention, 4 frames at 224^2) and BERT-base text tower, a 4-layer cross-modal encoder with masked
word and frame heads, a 3-layer caption decoder; contrastive + CoCo terms + masked language and
masked frame modeling + captioning.

    python main.py --config configs/coco_bert.py[:ARGS] --workdir runs/coco \
        --config.data.dir=data/tv [--config.data.mixture.action.dir=data/action]

ARGS, comma-separated: "action" adds a second training source at equal weight, the GIF dataset
(CoCo-BERT pre-trains on the TV dataset and on ACTION, a GIF collection of its authors; both are
converted with input_pipeline.convert, docs/DATA.md); "queue" matches the CoCo terms against a
momentum encoder and a queue of 4,096 past keys; "contrastive" drops the CoCo terms and proxies
(the baseline); "clip" starts from CLIP ViT-B/16 (docs/PRETRAINED.md):

    python main.py --config configs/coco_bert.py:clip --workdir runs/coco \
        --config.data.dir=data/tv --config.init_from.image_text=/models/clip-vit-base-patch16

Only the paper's abstract is public: the layer counts of the cross-modal encoder
and decoder (UniVL-like sizes), the masking rates, the term weights, batch, schedule and learning
rate are ours, each documented where it is defined (configs/common.py, vl_jax/objectives/).
Fine-tune for captioning and QA with configs/downstream.py:msrvtt_captioning and
:msrvtt_qa_fusion, which build these parts' sizes.
"""

from configs import common, vit_b16_bert_base

FUSION_DEPTH = 4
DECODER_DEPTH = 3


def get_config(arg=None):
  args = common.parse_arg(arg, "configs/coco_bert.py", action=False, queue=False,
                          contrastive=False, clip=False)
  config = common.base(vit_b16_bert_base, "b16" if args.clip else None)
  config.data.name = "tv"
  if args.action:
    config.data.mixture = dict(action=common.placeholder_source("action"))
  common.add_coco_bert(config, FUSION_DEPTH, DECODER_DEPTH, coco=not args.contrastive,
                       queue=(4096, 0.999) if args.queue else None)
  config.evals.captioning = common.captioning_eval(batch_size=96, every_steps=5000)
  return config.lock()
