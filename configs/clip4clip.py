r"""CLIP4Clip's meanP baseline: CLIP ViT-B/16 encodes each frame on its own, a clip's embedding is
the mean of its frames' unit embeddings (no temporal module, no new parameter), symmetric InfoNCE
with CLIP's learned temperature; fine-tuned on MSR-VTT's 9k training videos and tested on 1k-A.

    python main.py --config configs/clip4clip.py --workdir runs/clip4clip \
        --config.data.dir=data/msrvtt --config.init_from.image_text=/models/clip-vit-base-patch16
    python eval.py --config configs/clip4clip.py --workdir runs/clip4clip \
        --config.data.dir=data/msrvtt

`data/msrvtt` is MSR-VTT converted with 12 frames per clip (docs/DATA.md: `--num_frames 12`,
train from MSRVTT_train.9k.csv, val from MSRVTT_JSFUSION_test.csv); the CLIP directory is
docs/PRETRAINED.md's. From CLIP4Clip (Luo et al., 2022, its MSR-VTT setting): 12 frames at 224,
32 tokens, batch 128, 5 epochs of the 180k training captions (7,000 steps), learning rate 1e-7 for
CLIP's parameters (its 1e-4 times coef_lr 1e-3; meanP has no others), 10% linear warm-up and
cosine decay, Adam with b2 = 0.98 and weight decay 0.2, gradients clipped at 1.0.

    configs/clip4clip.py:siglip

starts from SigLIP B/16 instead (a big_vision checkpoint: docs/PRETRAINED.md): frames still
encoded independently, the clip's embedding SigLIP's attention pooling over all their patch
tokens, SigLIP's sigmoid loss with its learned temperature and bias, 64-token captions. And

    configs/clip4clip.py:size=tiny[,siglip]

is the same model at the tiny config's size on the synthetic dataset (CPU, minutes), from random
weights or a CLIP of that size (--config.init_from.image_text=DIR), as the tests run it.
"""

from configs import common, tiny, vit_b16_bert_base

SIZES = ("b16", "tiny")


def get_config(arg=None):
  args = common.parse_arg(arg, "configs/clip4clip.py", size="b16", siglip=False)
  if args.size not in SIZES:
    raise ValueError(f"configs/clip4clip.py:{arg}: size={args.size!r}; one of {SIZES}")
  if args.size == "b16":
    config = vit_b16_bert_base.get_config().unlock()
    config.data.name = "msrvtt"
    config.data.update(num_frames=12, max_text_len=32)
    config.batch_size = 128
    config.total_steps = 7000
    config.optimizer = dict(lr=1e-7, warmup_steps=700, end_lr_ratio=0.0, weight_decay=0.2,
                            b1=0.9, b2=0.98, grad_clip_norm=1.0)
    config.checkpoint.every_steps = 1000
    config.evals = dict(retrieval=tiny.retrieval_eval(batch_size=128, every_steps=1000))
  else:
    config = tiny.get_config().unlock()
    config.total_steps = 300
    config.optimizer.lr = 3e-4
    config.optimizer.warmup_steps = 30
    config.evals.retrieval.every_steps = 300
  if args.siglip:
    common.use_siglip(config, args.size, temporal=False)
  else:
    common.use_clip(config, args.size, temporal=False)
  return config.lock()
