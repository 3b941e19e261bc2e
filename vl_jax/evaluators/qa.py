"""Open-ended video QA (MSRVTT-QA, MSVD-QA): the fine-tuned answer head picks one of the answer
classes for every question of `split` (the records' `qa` field). A question whose answer is not
among the classes counts as wrong, as in the published numbers."""

import jax
import numpy as np

from input_pipeline import text_annotations
from input_pipeline.errors import ConfigError, DataError
from vl_jax import sharding
from vl_jax.evaluators import encode


class QAEvaluator(encode.Evaluator):
  """Accuracy (percent) over all questions of `split`.

  Config: `split`, `batch_size`, `num_clips`, `every_steps`; the model must have an answer head
  (`config.data.text = "question"`, `config.data.num_answers`), on the two towers' embeddings or
  through the cross-modal encoder (config.model.qa_head).
  """

  def setup(self, predict, mesh):
    if predict.answer_logits is None:
      raise ConfigError(f"config.evals.{self.name}: the QA evaluator needs a model with an answer "
                        f"head (config.data.text='question', config.data.num_answers > 0)")
    self.fused = predict.answer_fused
    if self.fused:  # the question's tokens fused with the clip's frame tokens
      def answer(params, b):
        text = predict.encode_text(params, b["tokens"])
        return predict.answer_logits(params, {"frame_tokens": b["frame_tokens"]}, text)
    else:  # the two towers' embeddings
      def answer(params, b):
        return predict.answer_logits(params, {"video_emb": b["video"]}, {"text_emb": b["text"]})
    self._predict = jax.jit(lambda params, b: {"answer": answer(params, b).argmax(-1)},
                            out_shardings=sharding.replicated(mesh))
    # The questions do not change between runs: read once, with each one's clip and answer class.
    qa = self.read_field("qa", "open-ended QA")
    self.clip = np.asarray([i for i, questions in enumerate(qa) for _ in questions])
    self.questions = [q["question"] for questions in qa for q in questions]
    if not self.questions:
      raise DataError(f"{self.data_cfg.dir}/{self.cfg.split}: no record has a question")
    answers = text_annotations.AnswerVocab(self.data_cfg.dir, self.data_cfg.num_answers)
    self.truth = np.asarray([answers(q["answer"]) for questions in qa for q in questions])

  def run(self, params, artifacts_dir: str | None = None) -> dict[str, float]:
    del artifacts_dir
    clips = self.encoder.clips(params, self.cfg.split, self.cfg.num_clips, tokens=self.fused)[0]
    if self.fused:
      inputs = {"frame_tokens": clips["frame_tokens"][self.clip],
                "tokens": self.tokenizer.encode(self.questions, self.data_cfg.max_text_len)}
    else:
      inputs = {"video": clips["video"][self.clip],
                "text": self.encoder.texts(params, self.questions)}
    predicted = self.encoder.map_rows(self._predict, params, inputs)["answer"]
    return {"accuracy": float(100.0 * np.mean(predicted == self.truth)),
            "answerable": float(100.0 * np.mean(self.truth >= 0))}
