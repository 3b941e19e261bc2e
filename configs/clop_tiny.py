r"""CLOP on the tiny model and the synthetic dataset: the contrastive loss with knowledge-guided
negatives (KCL) and structural knowledge prediction (SKP) from the video and text embeddings.

    python main.py --config configs/clop_tiny.py[:ARG] --workdir /tmp/clop_tiny

ARG, the ablation of docs/RESULTS.md: "contrastive" (the plain contrastive loss, no knowledge),
"skp" (+ SKP), none (+ SKP + KCL, hard negatives up-weighted) or "sample" (+ SKP + KCL, hard
negatives sampled). Reported: text-video retrieval and multiple-choice accuracy on val.
"""

from configs import coco_tiny, downstream, tiny

VARIANTS = ("contrastive", "skp", "sample")


def add_knowledge(config, size: int, min_count: int):
  """The knowledge classes (of the kinds configs/tiny.py sets: all four) and the knowledge head on
  both embeddings."""
  config.data.knowledge.size = size
  config.data.knowledge.min_count = min_count
  config.model.knowledge_head = dict(inputs=("video", "text"), hidden=0)


def add_skp(config):
  config.objectives.skp = dict(weight=1.0, loss="softmax")


def add_kcl(config, negatives: str, num_negatives: int):
  """KCL in place of the plain contrastive loss (defaults and reasons:
  vl_jax/objectives/knowledge.py)."""
  del config.objectives["contrastive"]
  config.objectives.kcl = dict(weight=1.0, similarity="jaccard", idf=True, negatives=negatives,
                               beta=2.0, num_negatives=num_negatives)


def get_config(arg=None):
  tokens = coco_tiny.parse(arg, "configs/clop_tiny.py", VARIANTS)
  if len(tokens) > 1:
    raise ValueError(f"configs/clop_tiny.py:{arg}: expected one of {VARIANTS} or none")
  config = tiny.get_config().unlock()
  if "contrastive" not in tokens:
    # 256 classes: all entries of the synthetic captions in 2 or more of them.
    add_knowledge(config, size=256, min_count=2)
    add_skp(config)
  if not tokens & {"contrastive", "skp"}:
    add_kcl(config, "sample" if "sample" in tokens else "weight", num_negatives=8)
  config.evals.multiple_choice = downstream.evaluator("multiple_choice", "val", batch_size=64,
                                                      every_steps=500)
  return config.lock()
