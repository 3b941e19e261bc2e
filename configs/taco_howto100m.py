r"""TACo pre-training on HowTo100M: L1 + 0.5 L2 + L3, BERT-base text tower, 2-layer fusion encoder.

    python main.py --config configs/taco_howto100m.py --workdir DIR --config.data.dir=CONVERTED

From CLIP ViT-B/16 (docs/PRETRAINED.md) instead of ImageNet ViT + BERT:

    python main.py --config configs/taco_howto100m.py:clip --workdir DIR \
        --config.data.dir=CONVERTED --config.init_from.image_text=/models/clip-vit-base-patch16

`config.data.dir` must hold HowTo100M converted with POS tags and idf (docs/DATA.md).

From the paper (TACo, ICCV 2021): the three losses and their weights (lambda_t = 0.5,
tau_1 = tau_2 = 1), nouns and verbs from spaCy weighted by idf, K' = 8 cascade negatives each way,
2 fusion layers scoring the fused [CLS], inference by the sum of the three scores.

Our choices, each a field to override:
- The video tower is the ViT-B/16 of configs/vit_b16_bert_base.py over 4 frames at 224: TACo
  encodes pre-extracted per-second CNN features, which this codebase does not ingest; the text
  tower is BERT-base, as in the paper.
- Batch 128, AdamW at 5e-5 with 10% linear warm-up and cosine decay, 200k steps: the optimizer
  settings of BERT-initialised video-text pre-training of TACo's time, not checked against the
  paper's implementation section, which was not reachable from where this config was written.
- L1 is this codebase's InfoNCE on unit embeddings with a learned temperature (tau_1 = 1 on
  unit-norm cosines would cap the logits' range at 2; TACo's embeddings are not normalised).
"""

from configs import common, vit_b16_bert_base


def get_config(arg=None):
  args = common.parse_arg(arg, "configs/taco_howto100m.py", clip=False)
  config = common.base(vit_b16_bert_base, "b16" if args.clip else None)
  config.model.fusion.depth = 2
  config.model.temperature = dict(init=0.07, learn=True)
  common.add_taco(config)
  config.batch_size = 128
  config.total_steps = 200_000
  config.optimizer = dict(lr=5e-5, warmup_steps=20_000, end_lr_ratio=0.0, weight_decay=0.01,
                          b1=0.9, b2=0.999, grad_clip_norm=1.0)
  config.evals.retrieval.batch_size = 128
  config.evals.retrieval.rerank_top_k = 32
  return config.lock()
