r"""Frozen-in-Time sizes: ViT-B/16 video tower (divided space-time attention) and BERT-base text
tower, 4 frames at 224^2, 256-d shared space, temperature 0.05, AdamW at 3e-5 (the recipe MILES
builds on).

    python main.py --config configs/vit_b16_bert_base.py --workdir DIR --config.data.dir=CONVERTED

`config.data.dir` must hold a converted dataset (e.g. WebVid, see docs/DATA.md).
"""

from ml_collections import config_dict

from configs import common, tiny


def get_config(arg=None):
  common.parse_arg(arg, "configs/vit_b16_bert_base.py")
  config = tiny.get_config().unlock()
  config.data = tiny.data_config(
      name="converted", dir=config_dict.placeholder(str), num_frames=4, image_size=224,
      max_text_len=32, crop_scale=(0.5, 1.0), hflip="off", num_threads=16, prefetch=4)
  del config.data["synthetic"]
  # ViT-B/16 as the image checkpoints that config.init_from.video imports (docs/PRETRAINED.md):
  # a class token, [-1, 1] pixels.
  config.model.video.update(dict(patch_size=16, width=768, depth=12, num_heads=12, mlp_dim=3072,
                                 zero_init_temporal=True, temporal_embedding_init_std=0.02,
                                 mask_token=False, cls_token=True, pixel_mean=(0.5, 0.5, 0.5),
                                 pixel_std=(0.5, 0.5, 0.5)))
  config.model.text.update(dict(width=768, depth=12, num_heads=12, mlp_dim=3072))
  config.model.fusion = dict(depth=0, width=768, num_heads=12, mlp_dim=3072, masked_heads=False)
  config.model.decoder = dict(depth=0, width=768, num_heads=12, mlp_dim=3072)
  config.model.embed_dim = 256
  config.model.temperature = dict(init=0.05, learn=False)
  # For accelerators (docs/SCALING.md): bfloat16 compute on float32 master weights, one scanned
  # block per tower (compiled once; with remat it frees memory block by block, where the AOT
  # check says a batch needs it), cuDNN's flash attention on GPUs. benchmarks/train_step.py's CPU
  # rows, compared with Frozen-in-Time's float32 PyTorch step, override them.
  config.model.dtype = "bfloat16"
  config.model.scan_layers = True
  config.model.attention = "auto"
  config.batch_size = 96
  config.total_steps = 100_000
  config.optimizer = dict(lr=3e-5, warmup_steps=1000, end_lr_ratio=0.0, weight_decay=0.01,
                          b1=0.9, b2=0.999, grad_clip_norm=1.0)
  config.log_every_steps = 100
  config.checkpoint = dict(every_steps=2000, keep=3, use_async=True)
  config.evals = dict(retrieval=tiny.retrieval_eval(batch_size=96, every_steps=5000))
  return config.lock()
