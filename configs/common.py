"""What the configs share: the one parser of config arguments and the builders that add a method's
parts to a dual-encoder config. Each objective's settings start from the objective's own defaults
(vl_jax/objectives/), where their reasons are written."""

import ml_collections
from ml_collections import config_dict

from vl_jax import objectives

# CLIP's towers (vl_jax/weights/clip.py): OpenAI's ViT-B/16 (openai/clip-vit-base-patch16), and
# CLIP-shaped towers at the tiny config's size (what the tests import a random CLIP into).
CLIP_SIZES = {
    "b16": dict(video=dict(patch_size=16, width=768, depth=12, num_heads=12, mlp_dim=3072),
                text=dict(width=512, depth=12, num_heads=8, mlp_dim=2048), embed_dim=512),
    "tiny": dict(video=dict(patch_size=4, width=64, depth=2, num_heads=4, mlp_dim=256),
                 text=dict(width=64, depth=2, num_heads=4, mlp_dim=256), embed_dim=64),
}
CLIP_PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_TOWERS = dict(
    video=dict(cls_token=True, frame_cls=True, pre_norm=True, activation="quick_gelu",
               norm_epsilon=1e-5, pool="cls", pixel_mean=CLIP_PIXEL_MEAN, pixel_std=CLIP_PIXEL_STD),
    text=dict(arch="clip", activation="quick_gelu", norm_epsilon=1e-5))
# SigLIP's (vl_jax/weights/siglip.py): big_vision's B/16 at 224 (webli_en_b16_224), and the tiny
# size. Its text is 64 tokens, one more here for the [CLS] its tower masks out.
SIGLIP_SIZES = {
    "b16": dict(video=dict(patch_size=16, width=768, depth=12, num_heads=12, mlp_dim=3072),
                text=dict(width=768, depth=12, num_heads=12, mlp_dim=3072), embed_dim=768,
                max_text_len=65),
    "tiny": dict(video=dict(patch_size=4, width=64, depth=2, num_heads=4, mlp_dim=256),
                 text=dict(width=64, depth=2, num_heads=4, mlp_dim=256), embed_dim=64,
                 max_text_len=17),
}
SIGLIP_TOWERS = dict(
    video=dict(cls_token=False, frame_cls=False, pre_norm=False, activation="gelu_tanh",
               norm_epsilon=1e-6, pool="map", pixel_mean=(0.5,) * 3, pixel_std=(0.5,) * 3),
    text=dict(arch="siglip", activation="gelu_tanh", norm_epsilon=1e-6))


def parse_arg(arg: str | None, config_file: str, **spec) -> ml_collections.ConfigDict:
  """The comma-separated `key=value` settings of a config argument ("configs/x.py:ARG"), typed as
  their defaults in `spec`; a bare `key` sets a boolean to True (big_vision's convention), so
  "queue,contrastive" turns two switches on. ValueError naming `config_file` for an unknown key
  or a value of the wrong type."""
  out = ml_collections.ConfigDict(spec)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if key not in spec:
      raise ValueError(f"{config_file}:{arg}: unknown setting {key!r}; known: "
                       f"{sorted(spec) or 'none'}")
    default = spec[key]
    if not sep:
      if not isinstance(default, bool):
        raise ValueError(f"{config_file}:{arg}: {key!r} needs a value ({key}=...)")
      out[key] = True
    elif isinstance(default, bool):
      if value not in ("True", "False", "true", "false"):
        raise ValueError(f"{config_file}:{arg}: {key}={value!r} is not a boolean")
      out[key] = value.lower() == "true"
    else:
      try:
        out[key] = type(default)(value)
      except ValueError as e:
        raise ValueError(f"{config_file}:{arg}: {key}={value!r} is not a "
                         f"{type(default).__name__}") from e
  return out


def one_of(args: ml_collections.ConfigDict, names: tuple[str, ...], config_file: str) -> str | None:
  """The one switch of `names` that `args` turns on (None: none); ValueError if several are."""
  on = [n for n in names if args[n]]
  if len(on) > 1:
    raise ValueError(f"{config_file}: {' and '.join(on)} exclude each other; choose one of "
                     f"{names}")
  return on[0] if on else None


def _image_text_towers(config, sizes: dict, towers: dict, size: str, temporal: bool):
  """The towers of an image-text family at `sizes`, with its `towers` settings, on `config`, and
  the import they start from: required at size "b16" ("" for random weights), none at "tiny"."""
  for tower in ("video", "text"):
    config.model[tower].update(sizes[tower] | towers[tower])
  config.model.video.temporal = temporal
  config.model.embed_dim = sizes["embed_dim"]
  config.init_from.image_text = config_dict.placeholder(str) if size == "b16" else ""


def base(config_module, clip_size: str | None = None):
  """The config of `config_module` (tiny, vit_b16_bert_base), unlocked, with CLIP's towers of
  `clip_size` (use_clip) if given."""
  config = config_module.get_config().unlock()
  if clip_size:
    use_clip(config, clip_size)
  return config


def placeholder_source(name: str) -> dict:
  """A training source of config.data.mixture at equal weight, its folder given on the command
  line (--config.data.mixture.NAME.dir)."""
  return dict(name=name, dir=config_dict.placeholder(str), train_split="train", weight=1.0)


def use_clip(config, size: str, temporal: bool = True):
  """CLIP's towers of `size` (CLIP_SIZES) on a dual-encoder config, as config.init_from.image_text
  imports them: each frame the image model (its own class token; the embedding the mean of the
  frames' unit embeddings, CLIP4Clip's meanP), the temporal attention of the divided space-time
  blocks starting at zero (`temporal` False: none, frames encoded independently), CLIP's causal
  text tower, quick_gelu, CLIP's pixel statistics. The ViT-B/16 size requires
  config.init_from.image_text ("" for random weights); the tiny one starts random."""
  _image_text_towers(config, CLIP_SIZES[size], CLIP_TOWERS, size, temporal)
  # CLIP's learned logit scale replaces the initial temperature when it is imported.
  config.model.temperature = dict(init=0.07, learn=True)


def use_siglip(config, size: str, temporal: bool = True):
  """SigLIP's towers of `size` (SIGLIP_SIZES) and its sigmoid loss on a dual-encoder config, as
  config.init_from.image_text imports them: the attention-pooling head over every frame's patch
  tokens, the temporal attention starting at zero (`temporal` False: none), SigLIP's text tower
  (no mask, pooled at the last position), tanh GELU, [-1, 1] pixels; the learned temperature
  and bias of the sigmoid loss (replacing the contrastive loss). The B/16 size requires
  config.init_from.image_text ("" for random weights); the tiny one starts random."""
  _image_text_towers(config, SIGLIP_SIZES[size], SIGLIP_TOWERS, size, temporal)
  config.data.max_text_len = SIGLIP_SIZES[size]["max_text_len"]
  # SigLIP's starting temperature and bias (10 and -10), replaced by the checkpoint's.
  config.model.temperature = dict(init=0.1, learn=True)
  config.model.sigmoid_bias = True
  del config.objectives["contrastive"]
  config.objectives.sigmoid_contrastive = objectives.block("sigmoid_contrastive")


def add_coco_bert(config, depth: int, decoder_depth: int, coco: bool = True,
                  queue: tuple[int, float] | None = None):
  """CoCo-BERT on a dual-encoder config: the cross-modal encoder with its masked word and frame
  heads, the video tower's mask token and the caption decoder, trained by captioning (their
  widths stay the config's); with `coco`, the masked views (config.masking:
  vl_jax/objectives/views.py), the CoCo terms and the masked proxies; with `queue` = (size,
  momentum), MoCo's momentum encoder (both towers and projections averaged) and queue of keys."""
  config.model.fusion.depth = depth
  config.model.fusion.masked_heads = True
  config.model.decoder.depth = decoder_depth
  config.model.video.mask_token = True
  config.objectives.caption = objectives.block("caption")
  if coco:
    config.masking = dict(words=dict(rate=0.15, mask=0.8, random=0.1),  # BERT's
                          frames=dict(rate=0.25, unit="frame"))  # 1 frame of 4
    for name in ("coco", "masked_language", "masked_frames"):
      config.objectives[name] = objectives.block(name)
  if queue:
    size, momentum = queue
    config.ema = dict(modules=("video", "text", "video_proj", "text_proj"), momentum=momentum,
                      final_momentum=1.0)
    config.queue = dict(size=size)


def captioning_eval(batch_size: int, every_steps: int, split: str = "val") -> dict:
  return dict(type="captioning", split=split, every_steps=every_steps, batch_size=batch_size,
              beam=1, length_penalty=0.0)


def add_masked_modeling(config, predictor_hidden: int, momentum: float, final_momentum: float):
  """MILES's parts: the predictor head, the mask token, the snapshot (an average of the video
  tower) and masked visual modeling."""
  config.model.masked_video.predictor_hidden = predictor_hidden
  config.model.video.mask_token = True
  config.ema = dict(modules=("video",), momentum=momentum, final_momentum=final_momentum)
  config.objectives.masked_video = objectives.block("masked_video")


def add_knowledge(config, size: int, min_count: int):
  """CLOP's knowledge classes (of the kinds configs/tiny.py sets: all four), the knowledge head
  on both embeddings and its prediction, SKP."""
  config.data.knowledge.size = size
  config.data.knowledge.min_count = min_count
  config.model.knowledge_head = dict(inputs=("video", "text"), hidden=0)
  config.objectives.skp = objectives.block("skp")


def add_kcl(config, negatives: str, num_negatives: int):
  """CLOP's KCL in place of the plain contrastive loss."""
  del config.objectives["contrastive"]
  config.objectives.kcl = objectives.block("kcl", negatives=negatives,
                                           num_negatives=num_negatives)


def add_taco(config, variant: str = "full"):
  """TACo's losses on a config with a fusion encoder: L1 (text to video only, its Eq. 3),
  lambda_t L2 and L3 with cascade sampling, and the idf of its Eq. 7. `variant` is a row of its
  ablation (Table 3): "l1_l3_random" (L3 on random negatives), "l1_l3" (cascade sampling, no L2)
  or "full"."""
  config.data.idf = "taco"  # log(N / (1 + df))
  config.objectives = dict(contrastive=objectives.block("contrastive", directions="t2v"),
                           token_contrastive=objectives.block("token_contrastive"),
                           cascade_matching=objectives.block("cascade_matching"))
  if variant != "full":  # without L2, nothing trains the token similarities: not summed
    del config.objectives["token_contrastive"]
    config.evals.retrieval.rerank_terms = ("sentence", "fusion")
  if variant == "l1_l3_random":
    config.objectives.cascade_matching.sampling = "random"
