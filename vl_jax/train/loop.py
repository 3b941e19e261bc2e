"""The one train loop: every method is a set of objectives on the same loop."""

import os
import shutil
from typing import Callable, Optional

import jax
import ml_collections
from absl import logging

from input_pipeline import pipeline, prepare
from input_pipeline import tokenizer as tokenizer_lib
from vl_jax import evaluators
from vl_jax.errors import NonFiniteLossError
from vl_jax.models import dual_encoder
from vl_jax.train import checkpoint, init_from, mesh as mesh_lib, metrics as metrics_lib
from vl_jax.train import state as state_lib, step as step_lib

# on_step(step, host_fields) -> True to stop after this step (checkpointing it first).
StepHook = Callable[[int, dict], bool]


def setup(config: ml_collections.ConfigDict, workdir: str | None = None):
  """(mesh, tokenizer, model); the tokenizer is `workdir`'s if it has one (init_from.py)."""
  mesh = mesh_lib.make_mesh(config.mesh)
  prepare.ensure_dataset(config.data)
  tokenizer = tokenizer_lib.load(init_from.tokenizer_path(config, workdir))
  model = dual_encoder.build(config.model, config.data, tokenizer.vocab_size)
  return mesh, tokenizer, model


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       on_step: Optional[StepHook] = None):
  """Trains, resuming from `workdir`'s latest checkpoint if any.

  Returns (final train state, {evaluator: metrics}); the metrics are empty if `on_step` stopped
  the run early.
  """
  mesh, tokenizer, model = setup(config, workdir)
  mesh_lib.check_batch_size(config.batch_size, mesh)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    # The model's vocabulary: eval.py and fine-tuning runs from this workdir read this copy.
    if tokenizer_lib.find(workdir) is None:
      shutil.copyfile(tokenizer.model_path,
                      os.path.join(workdir, os.path.basename(tokenizer.model_path)))

  tx, schedule = state_lib.make_optimizer(config.optimizer, config.total_steps)
  state, state_shardings = state_lib.create(model, tx, config, mesh)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint.every_steps,
                                 config.checkpoint.keep, config.checkpoint.use_async)
  start = ckpt.latest_step() or 0
  train_iter = iter(pipeline.train_dataset(config.data, tokenizer, config.batch_size, config.seed,
                                           start_step=start))
  if start:
    logging.info("resuming from step %d of %s", start, workdir)
    state = ckpt.restore(start, state_lib.abstract_with_shardings(state, state_shardings))
  elif config.init_from.workdir or config.init_from.text or config.init_from.video:
    state = state_lib.with_params(state, init_from.load(
        config.init_from, state.params,
        state_lib.abstract_with_shardings(state.params, state_shardings.params), config.model,
        config.data), config.ema)

  train_step = step_lib.jit_train_step(
      step_lib.make_train_step(model, tx, schedule, config, mesh),
      state_shardings, mesh_lib.batch_sharding(mesh))
  evals = evaluators.build(config.evals, model=model, mesh=mesh, data_cfg=config.data,
                           tokenizer=tokenizer)
  writer = metrics_lib.MetricWriter(workdir)
  progress = metrics_lib.Progress(config.total_steps, config.batch_size, start)
  results = {}
  try:
    for step in range(start + 1, config.total_steps + 1):
      device_batch, host = pipeline.split_host_fields(next(train_iter))
      state, metrics = train_step(state, mesh_lib.global_batch(device_batch, mesh))
      # Blocking on every step's metrics bounds the work in flight (collectives on many fake CPU
      # devices can deadlock otherwise) and lets nothing non-finite reach a checkpoint.
      metrics = jax.device_get(metrics)
      if not metrics_lib.all_finite(metrics):
        raise NonFiniteLossError(
            f"non-finite loss or gradient at step {step} (loss={metrics['loss']}); stopping. "
            f"The last good checkpoint is step {ckpt.latest_step()} in {workdir}")
      stop = bool(on_step and on_step(step, host))
      if step % config.log_every_steps == 0 or step == config.total_steps:
        rates = progress.rates(step)
        writer.write(step, {f"train/{k}": v for k, v in metrics.items()} | rates)
        progress.log(step, float(metrics["loss"]), rates)
      ckpt.save(step, state, force=stop or step == config.total_steps)
      for ev in evals.values():
        if step % ev.every_steps == 0 and step != config.total_steps:
          writer.write(step, ev.run(state.params))
      if stop:
        logging.info("stopped after step %d at the caller's request", step)
        return state, results

    for name, ev in evals.items():
      results[name] = ev.run(state.params, artifacts_dir=workdir)
      writer.write(config.total_steps, results[name])
    metrics_lib.write_eval_results(workdir, results)
    if jax.process_index() == 0 and results:
      logging.info("final evaluation at step %d:\n%s", config.total_steps,
                   metrics_lib.format_table(results))
    return state, results
  finally:
    ckpt.close()
    writer.close()
