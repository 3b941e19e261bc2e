"""Multiple choice (MSR-VTT MC): each clip's candidate captions are scored against the clip; the
highest-scoring one is the answer. The records' `mc` field holds the candidates and the right
one."""

import numpy as np

from input_pipeline.errors import DataError
from vl_jax.evaluators import encode


def choice_accuracy(video: np.ndarray, options: np.ndarray, answers: np.ndarray) -> float:
  """Percent of clips whose right option scores highest; video [N, D], options [N, K, D]. A tie
  with the right option counts as wrong."""
  scores = np.einsum("nd,nkd->nk", video, options)
  right = np.take_along_axis(scores, answers[:, None], axis=1)
  return float(100.0 * np.mean((scores >= right).sum(axis=1) == 1))


class MultipleChoiceEvaluator(encode.Evaluator):
  """Accuracy (percent) of picking each clip's right caption among its candidates.

  Config: `split`, `batch_size`, `num_clips`, `every_steps`.
  """

  def setup(self, predict, mesh):
    # The candidates do not change between runs: read (and checked) once.
    mc = self.read_field("mc", "multiple choice")
    k = len(mc[0]["options"])
    bad = [i for i, m in enumerate(mc) if len(m["options"]) != k or not 0 <= m["answer"] < k]
    if bad:
      raise DataError(f"{self.data_cfg.dir}/{self.cfg.split}: record {bad[0]}'s 'mc' field has "
                      f"other than {k} options or an answer outside them")
    self.options = [o for m in mc for o in m["options"]]
    self.answers = np.asarray([m["answer"] for m in mc])

  def run(self, params, artifacts_dir: str | None = None) -> dict[str, float]:
    del artifacts_dir
    video = self.videos(params)
    options = self.encoder.texts(params, self.options).reshape(len(video), -1, video.shape[1])
    return {"accuracy": choice_accuracy(video, options, self.answers)}
