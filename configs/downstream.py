r"""Downstream tasks: fine-tuning and zero-shot configs for each benchmark, and synthetic ones.

    configs/downstream.py:TASK[,clip]    TASK is one of the names below

",clip" builds CLIP's towers (configs/common.use_clip): for a model pre-trained from CLIP (a
method's ":clip" variant), or, given --config.init_from.image_text instead of a workdir, CLIP
itself (eval.py scores it zero-shot; main.py fine-tunes it):

    python main.py --config configs/downstream.py:msrvtt_retrieval,clip --workdir runs/msrvtt \
        --config.init_from.workdir=runs/taco_clip --config.data.dir=data/msrvtt
    python eval.py --config configs/downstream.py:ucf101_zeroshot,clip --workdir runs/clip_ucf \
        --config.init_from.image_text=/models/clip-vit-base-patch16 --config.data.dir=data/ucf101

Fine-tuning (main.py) starts from a pre-trained workdir's parameters and tokenizer:

    python main.py --config configs/downstream.py:msrvtt_retrieval --workdir runs/msrvtt \
        --config.init_from.workdir=runs/pretrain --config.data.dir=data/msrvtt

Zero-shot tasks train nothing: eval.py scores the pre-trained workdir, adding to its
eval_results.json, or, given a new workdir, the checkpoint of `config.init_from.workdir` (multiple
choice is also scored on a retrieval-fine-tuned workdir):

    python eval.py --config configs/downstream.py:ucf101_zeroshot --workdir runs/pretrain \
        --config.data.dir=data/ucf101
    python eval.py --config configs/downstream.py:ucf101_zeroshot --workdir runs/ucf101 \
        --config.init_from.workdir=runs/pretrain --config.data.dir=data/ucf101

UCF101 as TensorFlow Datasets prepared it (`tfds build ucf101 --file_format=array_record`), read in
place (input_pipeline/tfds_source.py; data.dir keeps the index vl-jax builds on first use):

    python eval.py --config configs/downstream.py:ucf101_zeroshot_tfds --workdir runs/ucf101 \
        --config.init_from.workdir=runs/pretrain --config.data.dir=data/ucf101_tfds_index \
        --config.data.tfds.dir=~/tensorflow_datasets/ucf101/ucf101_1_256/2.0.0

Real benchmarks use the Frozen-in-Time sizes of configs/vit_b16_bert_base.py; the synthetic ones the
tiny model of configs/tiny.py, on the synthetic dataset (its clips carry labels, questions and
multiple-choice candidates). docs/EVAL.md lists every task with its data and protocol.
"""

import ml_collections
from ml_collections import config_dict

from configs import coco_bert, coco_tiny, common, tiny, vit_b16_bert_base
from input_pipeline import synthetic
from vl_jax import objectives

# Prompt templates for action names (our selection, in the style of CLIP's Kinetics prompts).
ACTION_TEMPLATES = ("a video of a person {}.", "a person is {}.", "a video of {}.",
                    "someone doing {}.", "a clip of a person doing {}.")
# The synthetic captions name a shape; ensembling over every colour and shape names the motion
# alone.
SYNTHETIC_TEMPLATES = tuple(f"a {c} {s} {{}}" for c in synthetic.COLOURS for s in synthetic.SHAPES)

# task: (kind, dataset, evaluation split, evaluator settings)
REAL = {
    # The retrieval test sets are converted as split "val" (docs/DATA.md).
    "msrvtt_retrieval": ("retrieval", "msrvtt", "val", dict(captions="first")),  # 1k-A
    "msvd_retrieval": ("retrieval", "msvd", "val", dict(captions="all")),
    "didemo_retrieval": ("retrieval", "didemo", "val", dict(captions="first")),  # paragraphs
    "lsmdc_retrieval": ("retrieval", "lsmdc", "val", dict(captions="first")),
    "msrvtt_mc": ("multiple_choice", "msrvtt_mc", "test", {}),
    "msrvtt_qa": ("qa", "msrvtt_qa", "test", {}),
    # Through the cross-modal encoder of a configs/coco_bert.py run
    "msrvtt_qa_fusion": ("qa", "msrvtt_qa", "test", {}),
    # The standard split (6,513 / 497 / 2,990 clips, converted with --subset: docs/DATA.md), with
    # the decoder of a configs/coco_bert.py run
    "msrvtt_captioning": ("captioning", "msrvtt_captioning", "test", dict(beam=3)),
    "ucf101_zeroshot": ("zeroshot", "ucf101", "test",
                        dict(labels="ucf101", templates=ACTION_TEMPLATES)),
    # TFDS's ucf101 (features "video" and "label", whose class names are the shipped list's)
    "ucf101_zeroshot_tfds": ("zeroshot", "ucf101", "test",
                             dict(labels="ucf101", templates=ACTION_TEMPLATES)),
    "hmdb51_zeroshot": ("zeroshot", "hmdb51", "test",
                        dict(labels="hmdb51", templates=ACTION_TEMPLATES)),
    "kinetics400_zeroshot": ("zeroshot", "kinetics400", "val",
                             dict(labels="kinetics400", templates=ACTION_TEMPLATES)),
}
SYNTHETIC = {
    "synthetic_retrieval": ("retrieval", dict(captions="all")),
    "synthetic_mc": ("multiple_choice", {}),
    "synthetic_qa": ("qa", {}),
    "synthetic_qa_fusion": ("qa", {}),  # from a configs/coco_tiny.py run
    "synthetic_captioning": ("captioning", {}),  # from a configs/coco_tiny.py run
    "synthetic_zeroshot": ("zeroshot", dict(labels="synthetic_motions",
                                            templates=SYNTHETIC_TEMPLATES)),
}
MSRVTT_QA_ANSWERS = 1000  # the answer vocabulary of published MSRVTT-QA numbers
SYNTHETIC_ANSWERS = len(synthetic.SHAPES) + len(synthetic.COLOURS) + len(synthetic.MOTIONS)


def evaluator(kind: str, split: str, batch_size: int, every_steps: int, **settings):
  if kind == "retrieval":
    return tiny.retrieval_eval(batch_size, every_steps, split=split, **settings)
  if kind == "captioning":
    return common.captioning_eval(batch_size, every_steps, split=split) | settings
  return dict(type=kind, split=split, every_steps=every_steps, batch_size=batch_size,
              num_clips=1) | settings


def fine_tune(config, kind: str, num_answers: int, total_steps: int, lr: float):
  """A pre-trained config turned into a fine-tuning one for `kind` from `config.init_from`: a
  workdir, which must be given, or (a ",clip" config) an image-text model instead."""
  config.init_from.workdir = config_dict.placeholder(str)
  config.total_steps = total_steps
  config.optimizer.lr = lr
  config.optimizer.warmup_steps = total_steps // 10
  if kind == "qa":
    config.data.text = "question"
    config.data.num_answers = num_answers
    config.objectives = dict(qa=objectives.block("qa"))
  if kind == "captioning":
    config.objectives = dict(caption=objectives.block("caption"))


def get_config(arg: str):
  task, _, rest = arg.partition(",")
  clip = common.parse_arg(rest, "configs/downstream.py", clip=False).clip
  kinds = sorted(REAL) + sorted(SYNTHETIC)
  if task in REAL:
    kind, dataset, split, settings = REAL[task]
    config = common.base(vit_b16_bert_base, "b16" if clip else None)
    config.data.name = dataset
    if task.endswith("_tfds"):
      config.data.source = "tfds"
      config.data.tfds.update(video="video", label="label")
      config.data.tfds.dir = config_dict.placeholder(str)
    steps, lr, batch = 5000, 3e-5, config.batch_size
  elif task in SYNTHETIC:
    kind, settings = SYNTHETIC[task]
    split = "val"
    config = common.base(tiny, "tiny" if clip else None)
    steps, lr, batch = 300, 3e-4, 64
  else:
    raise ValueError(f"configs/downstream.py:{task}: unknown task; one of {kinds}")
  # CoCo-BERT's parts, at the sizes of the pre-training config they come from
  coco = coco_bert if task in REAL else coco_tiny
  if task.endswith("_qa_fusion"):
    config.model.fusion.depth = coco.FUSION_DEPTH
    config.model.qa_head = "fusion"
  if kind == "captioning":
    config.model.decoder.depth = coco.DECODER_DEPTH
  if kind in ("retrieval", "qa", "captioning"):
    fine_tune(config, kind, MSRVTT_QA_ANSWERS if task in REAL else SYNTHETIC_ANSWERS, steps, lr)
    config.checkpoint.every_steps = steps
  config.evals = ml_collections.ConfigDict(
      {kind: evaluator(kind, split, batch, every_steps=config.total_steps, **settings)})
  return config.lock()
