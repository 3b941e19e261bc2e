"""TACo's token-level loss L2: each noun and verb of a caption against every clip of the batch.

`weight` is TACo's lambda_t and `temperature` its tau_2 (both defaults are the paper's). Token
embeddings are the towers' tokens through the projections of the sentence-level embeddings, not
normalised, as the paper's dot products are not. Each caption's `max_tokens` highest-weighted
content tokens take part (`content_tokens`: exact up to that many nouns and verbs, word pieces
counted).
"""

from input_pipeline.contract import POS_ID
from input_pipeline.errors import ConfigError
from vl_jax.losses.token_contrastive import content_token_weights, content_tokens, token_infonce
from vl_jax.objectives.objective import Objective

# The tokens of L2 and of the cascade score; each caption's highest-weighted ones.
CONTENT_TOKENS = dict(pos_tags=("NOUN", "VERB"), max_tokens=12)


def loss(ctx, outputs, batch, cfg, rng):
  del ctx, rng
  weights = content_token_weights(batch["token_pos"], batch["token_idf"], tuple(cfg.pos_tags))
  tokens, weights = content_tokens(outputs["text_token_emb"], weights, cfg.max_tokens)
  value = token_infonce(outputs["video_token_emb"], tokens, weights, 1.0 / cfg.temperature)
  return value, {"tokens_per_caption": (weights > 0).sum(axis=1).mean()}


def validate_content_tokens(objective: str, cfg) -> None:
  unknown = sorted(set(cfg.pos_tags) - set(POS_ID))
  if not cfg.pos_tags or unknown:
    raise ConfigError(f"config.objectives.{objective}.pos_tags={tuple(cfg.pos_tags)}: Universal "
                      f"POS tags, at least one (unknown: {unknown}; known: {sorted(POS_ID)})")
  if cfg.max_tokens < 1:
    raise ConfigError(f"config.objectives.{objective}.max_tokens={cfg.max_tokens}: must be >= 1")


def validate(cfg, config, model):
  del config, model
  validate_content_tokens("token_contrastive", cfg)
  if not cfg.temperature > 0:
    raise ConfigError(f"config.objectives.token_contrastive.temperature={cfg.temperature}: must "
                      "be > 0")


OBJECTIVE = Objective(loss, dict(weight=0.5, temperature=1.0, **CONTENT_TOKENS), validate)
