r"""MILES pre-training on WebVid-2M + CC3M: a Frozen-in-Time dual encoder (ViT-B/16 with divided
space-time attention, a DistilBERT-size text tower: 6 layers of width 768, 256-d shared space,
fixed temperature 0.05, AdamW at 3e-5) with masked visual modeling against an EMA snapshot of the
video tower, trained 1 frame first and then 4 frames at 224^2.

    python main.py --config configs/miles_webvid_cc3m.py:frames1 --workdir runs/miles1 \
        --config.data.dir=data/webvid --config.data.mixture.cc3m.dir=data/cc3m
    python main.py --config configs/miles_webvid_cc3m.py:frames4 --workdir runs/miles4 \
        --config.data.dir=data/webvid --config.data.mixture.cc3m.dir=data/cc3m \
        --config.init_from.workdir=runs/miles1

From CLIP ViT-B/16 (docs/PRETRAINED.md): the frames1 stage starts from it, frames4 from frames1:

    python main.py --config configs/miles_webvid_cc3m.py:frames1,clip --workdir runs/miles1 \
        --config.data.dir=data/webvid --config.data.mixture.cc3m.dir=data/cc3m \
        --config.init_from.image_text=/models/clip-vit-base-patch16
    python main.py --config configs/miles_webvid_cc3m.py:frames4,clip --workdir runs/miles4 \
        --config.data.dir=data/webvid --config.data.mixture.cc3m.dir=data/cc3m \
        --config.init_from.workdir=runs/miles1

Both datasets are converted with input_pipeline.convert (docs/DATA.md: `webvid` and `cc3m`); CC3M
images are 1-frame clips, mixed example by example with the videos at equal weight. The stage
defaults to frames4; ",contrastive" after it drops masked modeling (the plain dual encoder of the
same size, the benchmark's baseline). MILES's text gives neither batch size, schedule nor the
masked-modeling settings: the batch, steps and warm-up here are ours (Frozen-in-Time's batch of 96
clips), and the masked-modeling defaults are documented in vl_jax/objectives/masked_video.py.
Zero-shot action recognition, the paper's second claim, runs on a checkpoint of either stage:

    python eval.py --config configs/downstream.py:ucf101_zeroshot --workdir runs/miles4 \
        --config.data.dir=data/ucf101 --config.model.text.depth=6
"""

from ml_collections import config_dict

from configs import common, miles_tiny, tiny, vit_b16_bert_base


def get_config(arg=None):
  stage, masked, clip = miles_tiny.parse(arg, "configs/miles_webvid_cc3m.py",
                                         ("frames4", "frames1"))
  config = vit_b16_bert_base.get_config().unlock()
  config.data.name = "webvid"
  config.data.mixture = dict(cc3m=common.placeholder_source("cc3m"))
  config.model.text.update(dict(width=768, depth=6, num_heads=12, mlp_dim=3072))  # DistilBERT
  if clip:
    common.use_clip(config, "b16")
  if masked:
    common.add_masked_modeling(config, predictor_hidden=1536, momentum=0.999,
                               final_momentum=1.0)
  if stage == "frames1":
    config.data.num_frames = 1
  else:
    config.init_from = tiny.init_from_config(config_dict.placeholder(str))
  return config.lock()
