"""Hugging Face BERT-family weights (BERT, MiniLM and other BertModel checkpoints; DistilBERT)
into the text tower (models/text_transformer.py): a directory with `config.json`,
`model.safetensors` and `tokenizer.json`, as the Hugging Face hub stores a model.

Exact up to float rounding: both are post-norm transformers with GELU (erf) and LayerNorm epsilon
1e-12. Two adaptations, neither changing what the model computes on one-segment text:
- BERT's token-type embedding of segment 0, which it adds to every token, is added into the
  position embeddings (the tower has no token types);
- the word-embedding rows are permuted like the tokenizer's ids (input_pipeline/
  tokenizer.HuggingFace gives the special tokens this codebase's fixed ids).
Position embeddings beyond `config.data.max_text_len` are dropped.
"""

import os
import re

import numpy as np

from etils import epath

from input_pipeline import files as io_files, tokenizer as tokenizer_lib
from input_pipeline.errors import ConfigError, DataError
from vl_jax.weights import files

TOKENIZER = "tokenizer.json"
WEIGHTS = "model.safetensors"

# Per model_type: the config.json key of each text-tower size, the activation and epsilon keys,
# and the tensor names of the embeddings and of layer i's parts.
FLAVOURS = {
    "bert": dict(
        sizes=dict(width="hidden_size", depth="num_hidden_layers", num_heads="num_attention_heads",
                   mlp_dim="intermediate_size"),
        activation="hidden_act", epsilon="layer_norm_eps", token_type=True,
        layer="encoder.layer.{i}.",
        parts=dict(query="attention.self.query", key="attention.self.key",
                   value="attention.self.value", out="attention.output.dense",
                   attention_norm="attention.output.LayerNorm", fc1="intermediate.dense",
                   fc2="output.dense", output_norm="output.LayerNorm")),
    "distilbert": dict(
        sizes=dict(width="dim", depth="n_layers", num_heads="n_heads", mlp_dim="hidden_dim"),
        activation="activation", epsilon=None, token_type=False,
        layer="transformer.layer.{i}.",
        parts=dict(query="attention.q_lin", key="attention.k_lin", value="attention.v_lin",
                   out="attention.out_lin", attention_norm="sa_layer_norm", fc1="ffn.lin1",
                   fc2="ffn.lin2", output_norm="output_layer_norm")),
}
# A layer's Linear and LayerNorm parts: (the flavour's name, ours, whether it is a norm).
PARTS = (("fc1", "mlp/fc1", False), ("fc2", "mlp/fc2", False),
         ("attention_norm", "attention_norm", True), ("output_norm", "output_norm", True))
# Tensors of the source model that the tower has no use for: the pooler, pre-training heads,
# buffers.
IGNORED = re.compile(r"^(pooler\.|cls\.|vocab_|embeddings\.position_ids$)")


def read_config(directory: str) -> dict:
  path = os.path.join(directory, "config.json")
  if not epath.Path(path).is_file():
    raise DataError(f"config.init_from.text={directory!r}: no config.json; expected a Hugging "
                    f"Face model directory (config.json, {WEIGHTS}, {TOKENIZER})")
  hf = io_files.read_json(path)
  if hf.get("model_type") not in FLAVOURS:
    raise DataError(f"{path}: model_type {hf.get('model_type')!r}; the text importer reads "
                    f"{sorted(FLAVOURS)}")
  return hf


def check_sizes(hf: dict, text_cfg, max_len: int, path: str) -> None:
  """The text tower of config.model.text must be the checkpoint's size."""
  flavour = FLAVOURS[hf["model_type"]]
  if text_cfg.get("arch", "bert") != "bert":
    raise ConfigError(f"config.model.text.arch={text_cfg.arch!r} but {path} is a BERT-family "
                      f"model: set it to 'bert'")
  for field, key in flavour["sizes"].items():
    if text_cfg[field] != hf[key]:
      raise ConfigError(f"config.model.text.{field}={text_cfg[field]} but {path} has {key}="
                        f"{hf[key]}: set the text tower to the checkpoint's size")
  if hf[flavour["activation"]] != "gelu":
    raise DataError(f"{path}: activation {hf[flavour['activation']]!r}; the tower uses 'gelu'")
  eps = hf.get(flavour["epsilon"], 1e-12) if flavour["epsilon"] else 1e-12
  if eps != 1e-12:
    raise DataError(f"{path}: layer_norm_eps {eps}; the tower uses 1e-12")
  if hf.get("position_embedding_type", "absolute") != "absolute":
    raise DataError(f"{path}: position_embedding_type {hf['position_embedding_type']!r}; the "
                    f"tower has absolute positions")
  if hf["max_position_embeddings"] < max_len:
    raise ConfigError(f"config.data.max_text_len={max_len} but {path} has only "
                      f"max_position_embeddings={hf['max_position_embeddings']}")


def load(directory: str, text_cfg, max_len: int) -> dict[str, np.ndarray]:
  """{"text/...": array} of the checkpoint in `directory`, unrolled (files.to_model_layout), for a
  tower of `text_cfg` reading `max_len` tokens."""
  hf = read_config(directory)
  check_sizes(hf, text_cfg, max_len, os.path.join(directory, "config.json"))
  flavour = FLAVOURS[hf["model_type"]]
  tokenizer = tokenizer_lib.HuggingFace(os.path.join(directory, TOKENIZER))
  path = os.path.join(directory, WEIGHTS)
  tensors = files.read_tensors(path)
  # Task models (BertForMaskedLM, ...) nest the encoder.
  tensors = files.Tensors(files.under(tensors, hf["model_type"] + ".") or tensors, path)
  positions = tensors["embeddings.position_embeddings.weight"][:max_len]
  if flavour["token_type"]:
    positions = positions + tensors["embeddings.token_type_embeddings.weight"][0]
  out = {"text/word_embeddings/embedding": files.word_embeddings(
             tensors["embeddings.word_embeddings.weight"], tokenizer, path),
         "text/position_embeddings": positions,
         "text/embeddings_norm/scale": tensors["embeddings.LayerNorm.weight"],
         "text/embeddings_norm/bias": tensors["embeddings.LayerNorm.bias"]}
  for i in range(text_cfg.depth):
    get = lambda part: tensors.module(flavour["layer"].format(i=i) + flavour["parts"][part])
    out |= files.torch_attention({p: get(p) for p in ("query", "key", "value", "out")},
                                 text_cfg.num_heads, f"text/layer_{i}/attention/")
    out |= files.torch_parts(get, PARTS, f"text/layer_{i}/")
  tensors.check_all_read(IGNORED)
  return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}
