r"""CoCo-BERT on the tiny model and the synthetic dataset: contrastive + the CoCo terms + masked
language and masked frame modeling through a 2-layer cross-modal encoder + captioning.

    python main.py --config configs/coco_tiny.py[:ARGS] --workdir /tmp/coco_tiny

ARGS, comma-separated:
- "contrastive": the ablation's baseline (docs/RESULTS.md): the contrastive loss and the caption
  decoder only, no masked views;
- "queue": the CoCo terms against a momentum encoder's keys and a queue of 1,024 past ones.

Reported: text-video retrieval and captioning (greedy) on val. Captioning metrics need the
`captioning` extra: pip install -e '.[captioning]'.
"""

from configs import tiny

VARIANTS = ("contrastive", "queue")
FUSION_DEPTH = 2
DECODER_DEPTH = 2


def add_cross_modal(config, depth: int, decoder_depth: int):
  """CoCo-BERT's model parts on a dual-encoder config: the cross-modal encoder with its masked word
  and frame heads, the caption decoder and the video tower's mask token (their widths stay the
  config's)."""
  config.model.fusion.depth = depth
  config.model.fusion.masked_heads = True
  config.model.decoder.depth = decoder_depth
  config.model.video.mask_token = True


def add_coco(config):
  """CoCo-BERT's objectives and masked views (defaults and reasons: vl_jax/objectives/coco.py,
  masked_language.py, masked_frames.py and vl_jax/losses/masked_views.py)."""
  config.masking = dict(words=dict(rate=0.15, mask=0.8, random=0.1),  # BERT's
                        frames=dict(rate=0.25, unit="frame"))  # 1 frame of 4
  config.objectives.coco = dict(weight=1.0, inter=1.0, intra=1.0)
  config.objectives.masked_language = dict(weight=1.0)
  config.objectives.masked_frames = dict(weight=1.0, loss="l2", temperature=0.07)


def add_queue(config, size: int, momentum: float):
  """MoCo's momentum encoder (both towers and projections averaged) and queue for the CoCo
  terms."""
  config.ema = dict(modules=("video", "text", "video_proj", "text_proj"), momentum=momentum,
                    final_momentum=1.0)
  config.queue = dict(size=size)


def captioning_eval(batch_size: int, every_steps: int, split: str = "val") -> dict:
  return dict(type="captioning", split=split, every_steps=every_steps, batch_size=batch_size,
              beam=1, length_penalty=0.0)


def parse(arg: str | None, config_file: str, variants) -> set[str]:
  """The comma-separated variants of `arg`, each one of `variants`."""
  tokens = {t for t in (arg or "").split(",") if t}
  if not tokens <= set(variants):
    raise ValueError(f"{config_file}:{arg}: expected a comma-separated subset of {variants}")
  return tokens


def get_config(arg=None):
  tokens = parse(arg, "configs/coco_tiny.py", VARIANTS)
  config = tiny.get_config().unlock()
  add_cross_modal(config, depth=FUSION_DEPTH, decoder_depth=DECODER_DEPTH)
  config.objectives.caption = dict(weight=1.0)
  if "contrastive" not in tokens:
    add_coco(config)
  if "queue" in tokens:
    add_queue(config, size=1024, momentum=0.99)
  config.evals.captioning = captioning_eval(batch_size=64, every_steps=500)
  return config.lock()
