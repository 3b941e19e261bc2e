r"""TACo on the tiny model and the synthetic dataset: L1 + 0.5 L2 + L3 with a 2-layer fusion encoder.

    python main.py --config configs/taco_tiny.py[:VARIANT] --workdir /tmp/taco_tiny

VARIANT picks a row of TACo's ablation (its Table 3; ours in docs/RESULTS.md): "l1_l3_random"
(L1 + L3 on random negatives), "l1_l3" (+ cascade sampling), "full" (+ L2, the default).
Retrieval is reported both by the dual encoder and re-ranked with TACo's summed score
(t2v_rerank/...).
"""

from configs import tiny

CONTENT_TOKENS = dict(pos_tags=("NOUN", "VERB"),  # the tokens of L2 and of the cascade score
                      max_tokens=12)  # each caption's highest-weighted ones (docs/METHODS.md)


VARIANTS = ("l1_l3_random", "l1_l3", "full")


def get_config(arg=None):
  variant = arg or "full"
  if variant not in VARIANTS:
    raise ValueError(f"configs/taco_tiny.py:{variant}: the variant is one of {VARIANTS}")
  config = tiny.get_config().unlock()
  config.model.fusion.depth = 2
  config.data.idf = "taco"  # log(N / (1 + df)), TACo's Eq. 7
  config.objectives = dict(
      contrastive=dict(weight=1.0, chunked=False, directions="t2v"),  # L1: its Eq. 3, t2v only
      token_contrastive=dict(weight=0.5, temperature=1.0, **CONTENT_TOKENS),  # lambda_t L2, tau_2
      cascade_matching=dict(weight=1.0, num_negatives=8, sampling="cascade",  # L3, K'
                            **CONTENT_TOKENS))
  if variant != "full":  # without L2, nothing trains the token similarities: not summed
    del config.objectives["token_contrastive"]
    config.evals.retrieval.rerank_terms = ("sentence", "fusion")
  if variant == "l1_l3_random":
    config.objectives.cascade_matching.sampling = "random"
  config.evals.retrieval.rerank_top_k = 16
  return config.lock()
