"""Zero-shot classification (action recognition): class names through prompt templates.

Each class's text embedding is the normalised mean of the embeddings of its name written into every
template (CLIP's prompt ensembling); a clip's class is the one whose embedding is most similar to
the clip's. The clips' classes are their records' `label` field; the class lists ship in
`labels/<name>.txt` as "<label as in the dataset>\\t<name written into the templates>" lines.
"""

import os

import numpy as np

from input_pipeline.errors import ConfigError, DataError
from vl_jax.evaluators import encode
from vl_jax.models import layers

LABELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "labels")


def load_labels(name: str) -> list[tuple[str, str]]:
  """(label, name) pairs of a shipped list (`ucf101`, `hmdb51`, `kinetics400`, ...) or a file."""
  path = name if os.sep in name else os.path.join(LABELS_DIR, f"{name}.txt")
  if not os.path.isfile(path):
    shipped = sorted(f[:-4] for f in os.listdir(LABELS_DIR))
    raise ConfigError(f"labels={name!r}: no such file; shipped lists are {shipped}")
  with open(path, encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
  bad = [n for n, r in enumerate(rows, 1) if len(r) != 2]
  if bad:
    raise DataError(f"{path}:{bad[0]}: expected '<label>\\t<class name>'")
  return [tuple(r) for r in rows]


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
  """Percent of rows whose label is among the k highest scores. Ties count against the label: it
  ranks below every other class of an equal score."""
  true = np.take_along_axis(scores, labels[:, None], axis=1)
  return float(100.0 * np.mean((scores > true).sum(axis=1) + (scores == true).sum(axis=1) - 1 < k))


class ZeroShotEvaluator(encode.Evaluator):
  """Top-1 and top-5 accuracy (percent) of zero-shot classification of `split`'s clips.

  Config: `labels` (a shipped list name or a file), `templates` (strings with one `{}`),
  `num_clips` (clips per video, embeddings averaged), `batch_size`, `split`, `every_steps`.
  """

  def setup(self, predict, mesh):
    cfg = self.cfg
    self.classes = load_labels(cfg.labels)
    bad = [t for t in cfg.templates if t.count("{}") != 1]
    if not cfg.templates or bad:
      raise ConfigError(f"config.evals.{self.name}.templates: each must hold one '{{}}' "
                        f"(got {list(cfg.templates)!r})")
    # The clips' classes do not change between runs: read (and checked) once.
    index = {label: i for i, (label, _) in enumerate(self.classes)}
    labels = self.read_field("label", "zero-shot classification")
    unknown = sorted(set(labels) - index.keys())
    if unknown:
      raise DataError(f"{self.data_cfg.dir}/{cfg.split}: labels {unknown[:3]} are not in the "
                      f"class list {cfg.labels!r} of evaluator {self.name!r}")
    self.labels = np.asarray([index[l] for l in labels])

  def class_embeddings(self, params) -> np.ndarray:
    texts = [t.format(c) for _, c in self.classes for t in self.cfg.templates]
    emb = self.encoder.texts(params, texts).reshape(len(self.classes), len(self.cfg.templates), -1)
    return np.asarray(layers.l2_normalize(emb.mean(axis=1)))

  def run(self, params, artifacts_dir: str | None = None) -> dict[str, float]:
    del artifacts_dir
    scores = self.videos(params) @ self.class_embeddings(params).T
    return {"top1": topk_accuracy(scores, self.labels, 1),
            "top5": topk_accuracy(scores, self.labels, min(5, len(self.classes)))}
