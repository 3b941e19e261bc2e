"""The layers of docs/ARCHITECTURE.md: each package imports only the layers below it, and the pure
losses load none of the data stack's libraries."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Bottom to top; a unit may import its own modules and the units of lower layers only.
LAYERS = (
    ("input_pipeline",),
    ("vl_jax.errors", "vl_jax.sharding"),
    ("vl_jax.losses", "vl_jax.models", "vl_jax.weights"),
    ("vl_jax.objectives", "vl_jax.evaluators"),
    ("vl_jax.train",),
    ("vl_jax.evaluate", "vl_jax.pretrained", "vl_jax.cli"),
    ("vl_jax.embed", "vl_jax.export"),
    ("configs",),
)
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
HEAVY = ("sentencepiece", "tokenizers", "msgpack", "array_record", "spacy", "av", "grain", "cv2")


def unit(module: str) -> str | None:
  """The layer unit of a module of this project (None: a library)."""
  parts = module.split(".")
  if parts[0] in ("input_pipeline", "configs"):
    return parts[0]
  if parts[0] == "vl_jax" and len(parts) > 1:
    return "vl_jax." + parts[1]
  return None


def project_imports(path: pathlib.Path):
  """(line, imported module) of every import of this project's modules in `path`."""
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      yield from ((node.lineno, a.name) for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      # `from vl_jax import sharding` imports the module vl_jax.sharding
      yield from ((node.lineno, f"{node.module}.{a.name}") for a in node.names)


def sources():
  for package in ("input_pipeline", "vl_jax", "configs"):
    yield from sorted((ROOT / package).rglob("*.py"))


def test_every_module_belongs_to_a_layer():
  modules = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in sources()}
  units = {unit(m) for m in modules if m != "vl_jax.__init__"}
  assert units <= set(RANK), f"modules outside the layers: {sorted(units - set(RANK))}"


def test_imports_go_only_downward():
  wrong = []
  for path in sources():
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    here = unit(module)
    if here is None:  # vl_jax/__init__.py
      continue
    for line, imported in project_imports(path):
      there = unit(imported)
      if there is not None and there != here and RANK[there] >= RANK[here]:
        wrong.append(f"{path.relative_to(ROOT)}:{line} ({here}, layer {RANK[here]}) imports "
                     f"{imported} ({there}, layer {RANK[there]})")
  assert not wrong, "\n".join(wrong)


def test_the_checker_sees_an_upward_import(tmp_path):
  """The walk above finds both import forms (a check that cannot fail checks nothing)."""
  bad = tmp_path / "bad.py"
  bad.write_text("from vl_jax import train\nimport vl_jax.evaluators.ranking\n")
  found = [unit(m) for _, m in project_imports(bad)]
  assert found == ["vl_jax.train", "vl_jax.evaluators"]
  assert RANK["vl_jax.train"] > RANK["vl_jax.losses"]


@pytest.mark.parametrize("module", sorted(
    f"vl_jax.losses.{p.stem}" for p in (ROOT / "vl_jax" / "losses").glob("*.py")
    if p.stem != "__init__"))
def test_a_loss_loads_no_data_library(module):
  """In a fresh interpreter: importing a loss loads jax and NumPy, not the data stack."""
  code = (f"import sys, importlib; importlib.import_module({module!r}); "
          f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
  loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
  assert loaded == "", f"importing {module} loads {loaded}"


def test_a_new_objective_with_a_head_needs_no_shared_file(monkeypatch):
  """What docs/ARCHITECTURE.md says a method adds: an objective (its loss, defaults and checks), a
  head class and a builder clause, its config. Here all of them live in this test; the train step,
  the DualEncoder and configs/tiny.py are used as they are."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from configs import tiny
  from input_pipeline.errors import ConfigError
  from vl_jax import objectives
  from vl_jax.models import builder
  from vl_jax.objectives.objective import Objective
  from vl_jax.train import state as state_lib, step as step_lib

  class Norm(nn.Module):  # the head: predicts each clip's embedding norm before normalisation
    @nn.compact
    def __call__(self, emb):
      return nn.Dense(1, name="fc")(emb)[:, 0]

    def initialize(self, model, frames, tokens, out):
      del model, frames, tokens
      self(out["video_emb"])

  def loss(ctx, outputs, batch, cfg, rng):
    del batch, rng
    pred = ctx.apply(outputs["video_emb"], method=lambda m, e: m.head("norm")(e))
    return cfg.scale * jnp.mean((pred - 1.0) ** 2), {"pred": pred.mean()}

  def validate(cfg, config, model):
    del config, model
    if cfg.scale <= 0:
      raise ConfigError(f"config.objectives.norm.scale={cfg.scale}: must be > 0")

  monkeypatch.setitem(objectives.REGISTRY, "norm", Objective(
      loss, dict(weight=0.5, scale=2.0), validate, head=("norm", "the norm head")))
  config = tiny.get_config().unlock()  # the method's config
  config.objectives.norm = objectives.block("norm")
  plain = builder.build(config.model, config.data, vocab_size=50)
  with pytest.raises(ConfigError, match="needs the norm head"):
    step_lib.make_loss_fn(plain, config)
  model = plain.clone(heads=plain.heads + (Norm(name="norm"),))  # the builder clause
  params = state_lib.init_params(model, config.data, jax.random.key(0))
  assert set(params["norm"]) == {"fc"}
  frames, tokens = state_lib.dummy_inputs(config.data)
  batch = {"frames": frames, "tokens": tokens}
  (total, (metrics, _)), grads = jax.value_and_grad(step_lib.make_loss_fn(model, config),
                                                    has_aux=True)(params, batch,
                                                                  jax.random.key(1), {}, {})
  assert float(total) == pytest.approx(float(metrics["contrastive/loss"])
                                       + 0.5 * float(metrics["norm/loss"]), rel=1e-6)
  assert float(jnp.abs(grads["norm"]["fc"]["kernel"]).max()) > 0
