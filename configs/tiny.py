r"""The embedded default: a small dual encoder on the synthetic dataset, on CPU, in minutes.

    python main.py --config configs/tiny.py --workdir /tmp/vl_jax_tiny

The dataset is generated into `config.data.dir` on first use. Point it at any converted dataset
with `--config.data.dir=PATH`; any field can be overridden the same way.
"""

import os

import ml_collections

from configs import common
from vl_jax import objectives

DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".cache", "vl_jax", "synthetic_v3")


def data_config(**overrides) -> ml_collections.ConfigDict:
  """The `config.data` block; configs of other sizes share it."""
  data = ml_collections.ConfigDict(dict(
      name="synthetic",  # anything else: `dir` must already hold a converted dataset
      dir=DEFAULT_DATA_DIR,
      # "shards" (the project's format in `dir`) or "tfds": a TFDS dataset read in place, `dir`
      # keeping its index (input_pipeline/tfds_source.py, docs/DATA.md). The tfds fields name
      # its features: the frames (a Video or Sequence(Image)), the caption(s) (Text or
      # Sequence(Text)), the class label (a ClassLabel or Text: its name in words is the
      # caption where there is none), the clip id; vocab_size: the tokenizer trained on the
      # training split's captions.
      source="shards",
      tfds=dict(dir="", video="video", caption="", label="", clip_id="", vocab_size=16000),
      train_split="train",
      num_frames=4,
      image_size=24,
      max_text_len=32,
      # Word idf over the training captions (input_pipeline/text_annotations.py): "smooth"
      # (scikit-learn's) or "taco" (TACo's Eq. 7, its configs' choice)
      idf="smooth",
      # "caption", or "question" for open-ended QA fine-tuning: the text of each example is one of
      # the clip's questions and the batch holds its answer's class (input_pipeline/pipeline.py).
      text="caption",
      num_answers=0,  # QA: the most frequent training answers that are the classes (0: no QA head)
      # CLOP's knowledge classes (input_pipeline/text_annotations.KnowledgeVocab): the `size` most
      # frequent entries of these kinds in `min_count` or more training captions; size 0: none.
      knowledge=dict(size=0, min_count=2, kinds=("obj", "act", "attr", "rel")),
      crop_scale=(0.6, 1.0),
      crop_ratio=(3 / 4, 4 / 3),
      # Flips mirror "left"/"right" in the caption, so they never contradict it.
      hflip="caption_aware",
      num_threads=2,  # grain read threads per process
      prefetch=8,  # batches buffered ahead
      worker_count=0,  # grain worker processes (0: threads only)
      synthetic=dict(num_train=6000, num_val=256, seed=0, num_frames=8, size=40,
                     captions_per_clip=3, still=False),
      weight=1.0,  # this source's share of the training examples when there is a mixture
      # More training sources, mixed example by example: name -> dict(name, dir, train_split,
      # weight[, synthetic]) (configs/miles_tiny.py mixes image-text pairs with videos)
      mixture={},
  ))
  data.update(overrides)
  return data


def retrieval_eval(batch_size: int, every_steps: int, **overrides) -> dict:
  """A `config.evals` entry of the retrieval evaluator; configs of other sizes and the downstream
  tasks share it."""
  return dict(type="retrieval", split="val", every_steps=every_steps, batch_size=batch_size,
              captions="first",
              num_clips=1,  # clips per video, embeddings averaged
              block=1024,  # queries per similarity block
              dual_softmax_scale=0.0,  # > 0: also t2v_dsl/... metrics
              # > 0: TACo's re-ranking of each query's top k candidates, also as t2v_rerank/...
              # (needs config.model.fusion)
              rerank_top_k=0,
              # the re-ranking score: the sum of these (evaluators/rerank.py)
              rerank_terms=("sentence", "token", "fusion")) | overrides


def init_from_config(workdir="") -> dict:
  """The `config.init_from` block (vl_jax/train/init_from.py)."""
  return dict(
      # Fine-tuning: the parameters of this model (a training workdir, step -1: its latest
      # checkpoint; a checkpoint directory; an exported model) that the model shares initialise
      # it, and its tokenizer is used; the rest start random.
      workdir=workdir, step=-1,
      # Or imported towers (docs/PRETRAINED.md): a Hugging Face BERT-family directory (config.json,
      # model.safetensors, tokenizer.json; its tokenizer is used), and ViT image weights (a
      # big_vision .npz or a timm .safetensors); or both towers of an image-text model: a CLIP
      # directory (Hugging Face's CLIPModel or open_clip's; its tokenizer is used).
      text="", video="", image_text="")


def get_config(arg=None):
  common.parse_arg(arg, "configs/tiny.py")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.init_from = init_from_config()
  config.data = data_config()
  config.model = dict(
      # 4x4 patches of 24x24 frames: with 8x8 patches of 32x32 frames even a supervised classifier
      # failed to learn direction in 400 steps (62% on 7 motions vs 100% here).
      video=dict(patch_size=4, width=64, depth=2, num_heads=4, mlp_dim=256,
                 zero_init_temporal=True,
                 # From scratch, frame order needs a strong start: see models/video_vit.py.
                 temporal_embedding_init_std=1.0,
                 mask_token=False,  # a learned embedding for masked patches (MILES, CoCo-BERT)
                 # A class token in the spatial attention, and the pixel statistics: as the ViT
                 # checkpoint imported through config.init_from.video has them (big_vision:
                 # mean and std 0.5; timm: ImageNet's or 0.5, as its model card says).
                 cls_token=False, pixel_mean=(0.485, 0.456, 0.406),
                 pixel_std=(0.229, 0.224, 0.225),
                 # As imported image-text towers have them (vl_jax/models/video_vit.py): each
                 # frame its own class token; the temporal attention and embeddings (False:
                 # frames encoded independently); CLIP's norm before the blocks; the MLP
                 # activation ("gelu", "gelu_tanh", "quick_gelu") and norm epsilon; what the
                 # embedding is made of ("mean" of the patch tokens, "cls": each frame's class
                 # token, "map": SigLIP's attention pooling).
                 frame_cls=False, temporal=True, pre_norm=False, activation="gelu",
                 norm_epsilon=1e-6, pool="mean"),
      # arch: "bert", "clip" or "siglip" (vl_jax/models/text_transformer.py); activation and
      # norm_epsilon: the pre-norm archs' (BERT's are GELU and 1e-12)
      text=dict(width=64, depth=2, num_heads=4, mlp_dim=256, arch="bert", activation="gelu",
                norm_epsilon=1e-5),
      # The cross-modal encoder (TACo, CoCo-BERT); depth 0: none. masked_heads: CoCo-BERT's masked
      # word and frame heads on it.
      fusion=dict(depth=0, width=64, num_heads=4, mlp_dim=256, masked_heads=False),
      decoder=dict(depth=0, width=64, num_heads=4, mlp_dim=256),  # caption decoder; 0: none
      qa_head="dual",  # QA's answer head reads "dual" (the two embeddings) or "fusion"
      masked_video=dict(predictor_hidden=0),  # MILES's predictor head; 0: none
      # CLOP's knowledge head on the unit embeddings of these inputs ("video", "text"); hidden 0:
      # linear (vl_jax/models/heads.py)
      knowledge_head=dict(inputs=(), hidden=0),
      embed_dim=128,
      temperature=dict(init=0.07, learn=True),
      # SigLIP's learned bias of the sigmoid loss (config.objectives.sigmoid_contrastive)
      sigmoid_bias=False,
      # The transformer blocks of every tower (vl_jax/models/layers.py): compute dtype ("bfloat16":
      # mixed precision on float32 master weights), what the backward pass recomputes ("none",
      # "full", "dots"), and one scanned block per tower instead of `depth` unrolled ones.
      dtype="float32",
      remat="none",
      scan_layers=False,
      # How attention is computed (vl_jax/models/layers.ATTENTION): "flax", "xla", "cudnn", "auto"
      attention="flax",
  )
  # chunked: the contrastive loss device by device in shard_map (vl_jax/objectives/contrastive.py);
  # directions: "both" (CLIP's symmetric InfoNCE) or "t2v" (TACo's L1)
  config.objectives = dict(contrastive=objectives.block("contrastive"))
  # Exponential moving averages of parameter groups (MILES's snapshot encoder; vl_jax/train/ema.py)
  config.ema = dict(modules=(), momentum=0.996, final_momentum=1.0)
  # CoCo-BERT's masked views, drawn once per step for the objectives that read them; rate 0: none
  # (vl_jax/objectives/views.py)
  config.masking = dict(words=dict(rate=0.0, mask=0.8, random=0.1),
                        frames=dict(rate=0.0, unit="frame"))
  # A FIFO queue of the momentum encoder's embeddings of past batches, extra negatives for the
  # CoCo terms (MoCo); 0: none. Needs config.ema.modules to average both towers and projections.
  config.queue = dict(size=0)
  config.batch_size = 64
  config.total_steps = 1000
  config.optimizer = dict(lr=1e-3, warmup_steps=100, end_lr_ratio=0.01, weight_decay=0.05,
                          b1=0.9, b2=0.98, grad_clip_norm=1.0)
  # Devices on the data and fsdp axes (data -1: all that fsdp divides); the batch is split over
  # both, the parameters over fsdp as config.sharding.rules say (vl_jax/sharding.py).
  config.mesh = dict(data=-1, fsdp=1)
  # (regex on the parameter's path, spec): the first match wins; spec "fsdp" splits the largest
  # dimension the fsdp axis divides, "replicated", or one mesh axis (or None) per dimension.
  # No match: replicated. Inert while config.mesh.fsdp is 1.
  config.sharding = dict(rules=((r"(kernel|embedding)$", "fsdp"),))
  config.log_every_steps = 50
  # How the loop runs (vl_jax/train/runtime.py): the host dispatches up to `steps_in_flight` steps
  # ahead of the devices (1 on a mesh of several CPU devices); `profile_steps` > 0 traces that
  # many steps after the first into WORKDIR/profile; the persistent compilation cache's directory
  # ("": JAX_COMPILATION_CACHE_DIR or ~/.cache/vl_jax/jax_compilation; "off": none).
  config.steps_in_flight = 2
  config.profile_steps = 0
  config.compilation_cache_dir = ""
  config.checkpoint = dict(every_steps=500, keep=3, use_async=True)
  config.evals = dict(retrieval=retrieval_eval(batch_size=64, every_steps=500))
  return config.lock()
