"""Open-ended video QA (MSRVTT-QA, MSVD-QA): the fine-tuned answer head picks one of the answer
classes for every question of `split` (the records' `qa` field). A question whose answer is not
among the classes counts as wrong, as in the published numbers."""

import jax
import numpy as np

from input_pipeline import pipeline, text_annotations
from vl_jax.errors import ConfigError, DataError
from vl_jax.evaluators import encode

LOGIT_CHUNK = 4096  # questions per call of the answer head


class QAEvaluator:
  """Accuracy (percent) over all questions of `split`.

  Config: `split`, `batch_size`, `num_clips`, `every_steps`; the model must have an answer head
  (`config.data.text = "question"`, `config.data.num_answers`).
  """

  def __init__(self, name, cfg, *, model, mesh, data_cfg, tokenizer):
    if not model.num_answers:
      raise ConfigError(f"config.evals.{name}: the QA evaluator needs a model with an answer head "
                        f"(config.data.text='question', config.data.num_answers > 0)")
    self.name, self.cfg, self.model, self.data_dir = name, cfg, model, data_cfg.dir
    self.every_steps = cfg.every_steps
    self.answers = text_annotations.AnswerVocab(data_cfg.dir, data_cfg.num_answers)
    self.encoder = encode.Encoder(model, mesh, data_cfg, tokenizer, cfg.batch_size,
                                  f"config.evals.{name}.batch_size")
    self._logits = jax.jit(lambda params, v, t: model.apply({"params": params}, v, t,
                                                            method="answer_logits"))

  def run(self, params, artifacts_dir: str | None = None) -> dict[str, float]:
    del artifacts_dir
    qa = pipeline.read_field(self.data_dir, self.cfg.split, "qa",
                             f"evaluator {self.name!r} (open-ended QA)")
    clip = np.asarray([i for i, questions in enumerate(qa) for _ in questions])
    questions = [q for questions in qa for q in questions]
    if not questions:
      raise DataError(f"{self.data_dir}/{self.cfg.split}: no record has a question")
    video = self.encoder.clips(params, self.cfg.split, self.cfg.num_clips)[0]["video"]
    text = self.encoder.texts(params, [q["question"] for q in questions])
    predicted = np.concatenate([
        np.asarray(self._logits(params, video[clip[s:s + LOGIT_CHUNK]],
                                text[s:s + LOGIT_CHUNK])).argmax(-1)
        for s in range(0, len(questions), LOGIT_CHUNK)])
    truth = np.asarray([self.answers(q["answer"]) for q in questions])
    return {"accuracy": float(100.0 * np.mean(predicted == truth)),
            "answerable": float(100.0 * np.mean(truth >= 0))}
