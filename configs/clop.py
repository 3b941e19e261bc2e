r"""CLOP pre-training at Frozen-in-Time sizes: ViT-B/16 video tower (divided space-time attention,
4 frames at 224^2) and BERT-base text tower with a linear knowledge head on the 256-d shared space;
the contrastive loss with knowledge-guided negatives (KCL) and structural knowledge prediction
(SKP) from the video and text embeddings.

    python main.py --config configs/clop.py[:ARG] --workdir runs/clop \
        --config.data.dir=data/webvid [--config.data.mixture.cc3m.dir=data/cc3m]

ARG: "cc3m" adds CC3M's image-text pairs as 1-frame clips at equal weight; "sample" samples the
hard negatives instead of up-weighting them; "contrastive" drops both regularizations (the
baseline); "clip" starts from CLIP ViT-B/16 (docs/PRETRAINED.md):

    python main.py --config configs/clop.py:clip --workdir runs/clop \
        --config.data.dir=data/webvid --config.init_from.image_text=/models/clip-vit-base-patch16

CLOP's abstract names neither its pre-training data nor its settings: WebVid (+ CC3M)
and the Frozen-in-Time recipe of configs/vit_b16_bert_base.py are the setting its four retrieval
tasks are usually compared in, and the knowledge vocabulary (the 1,000 most frequent entries of
all four kinds seen in 5 or more captions), the head and the KCL settings are ours, each documented
where it is defined (configs/tiny.py, vl_jax/models/heads.py,
vl_jax/objectives/knowledge.py).
The datasets need knowledge annotations, which input_pipeline.convert writes (docs/DATA.md).
CLOP's multiple-choice task, on any checkpoint of this config:

    python eval.py --config configs/downstream.py:msrvtt_mc --workdir runs/clop_mc \
        --config.data.dir=data/msrvtt_mc --config.init_from.workdir=runs/clop
"""

from configs import common, vit_b16_bert_base


def get_config(arg=None):
  args = common.parse_arg(arg, "configs/clop.py", cc3m=False, sample=False, contrastive=False,
                          clip=False)
  if args.sample and args.contrastive:
    raise ValueError(f"configs/clop.py:{arg}: 'sample' chooses KCL's negatives, which "
                     f"'contrastive' drops")
  config = common.base(vit_b16_bert_base, "b16" if args.clip else None)
  config.data.name = "webvid"
  if args.cc3m:
    config.data.mixture = dict(cc3m=common.placeholder_source("cc3m"))
  if not args.contrastive:
    common.add_knowledge(config, size=1000, min_count=5)
    common.add_kcl(config, "sample" if args.sample else "weight", num_negatives=16)
  return config.lock()
