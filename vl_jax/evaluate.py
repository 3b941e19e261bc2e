"""Scores a checkpoint with the evaluators of a config: what eval.py runs.

Only the parameters are restored (no optimizer or data-iterator state), into the shardings of a mesh
of the devices at hand, so a checkpoint written on 8 devices is scored on 1 or 2.
"""

import os

import jax
from absl import logging
from etils import epath
from flax.traverse_util import unflatten_dict

from input_pipeline.errors import ConfigError, DataError
from vl_jax import evaluators
from vl_jax.models.predict import predict_fns
from vl_jax.train import config_checks, init_from, loop, metrics as metrics_lib, state as state_lib
from vl_jax.weights import exported


def select(evals_cfg, names: list[str] | None):
  """The config's evaluators, or those of `names` (each must be one the config declares)."""
  if not names:
    return evals_cfg
  unknown = [n for n in names if n not in evals_cfg]
  if unknown:
    raise ConfigError(f"--evals: no evaluator {', '.join(map(repr, unknown))} in config.evals "
                      f"(it has {sorted(evals_cfg)})")
  return {n: evals_cfg[n] for n in names}


def evaluate_checkpoint(config, workdir: str, step: int | None = None,
                        names: list[str] | None = None) -> tuple[int, dict[str, dict[str, float]]]:
  """(step, {evaluator: metrics}) of `workdir`'s newest good (or given) checkpoint; also logs a
  table and records the metrics, with the step, checkpoint and dataset, in
  `workdir/eval_results.json`, keeping those of other evaluators (a zero-shot config scored on a
  pre-training workdir adds to its results) and of other steps.

  A workdir without checkpoints scores those of `config.init_from` instead (its `step` unless
  `step` is given), still writing the results into `workdir`: how a zero-shot task is kept apart
  from the pre-training run. With `config.init_from.image_text` instead, it scores the imported
  image-text model as step 0 (CLIP's or SigLIP's zero-shot numbers).
  """
  config_checks.check(config, training=False)
  evals_cfg = select(config.evals, names)
  if not evals_cfg:
    raise ConfigError("config.evals declares no evaluator; nothing to run")
  source = workdir
  trained = (epath.Path(workdir) / "checkpoints").is_dir()
  if not trained and config.init_from.get("image_text"):
    # The imported model (the parameters it does not give at their initialisation) as step 0;
    # read and checked against the config before anything compiles.
    imported = init_from.imports(config)
    mesh, tokenizer, model = loop.setup(config, workdir)
    fresh = state_lib.init_params(model, config.data, jax.random.key(config.seed))
    params = init_from.load(config.init_from, fresh,
                            state_lib.abstract_params(model, config, mesh), imported)
    step = 0
    source = scored = config.init_from.image_text
  else:
    if not trained and config.init_from.workdir:
      source = config.init_from.workdir
      if step is None and config.init_from.step != -1:
        step = config.init_from.step
      logging.info("%s has no checkpoints: scoring the model of config.init_from.workdir", workdir)
    try:
      where = exported.locate(source)
    except DataError as e:
      raise DataError(f"--workdir={workdir!r} is no training workdir and config.init_from.workdir "
                      f"names no model (nor config.init_from.image_text an image-text model): "
                      f"{e}") from e
    mesh, tokenizer, model = loop.setup(config, workdir)
    try:
      params, step = init_from.stored_params(
          source, state_lib.abstract_params(model, config, mesh), step)
    except ConfigError as e:
      raise ConfigError(f"{e} (a different model size?)") from e
    params = unflatten_dict(params, sep="/")
    scored = (where.directory if where.exported else
              os.path.join(where.directory, "checkpoints", str(step)))
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  built = evaluators.build(evals_cfg, predict=predict_fns(model), mesh=mesh, data_cfg=config.data,
                           tokenizer=tokenizer)
  results = {name: ev.run(params, artifacts_dir=workdir) for name, ev in built.items()}
  metrics_lib.write_eval_results(workdir, step, {
      name: evaluators.entry(m, scored, evals_cfg[name], config.data)
      for name, m in results.items()})
  if jax.process_index() == 0:
    logging.info("evaluation of step %d of %s:\n%s", step, source,
                 metrics_lib.format_table(results))
  return step, results
