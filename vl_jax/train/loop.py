"""The one train loop: every method is a set of objectives on the same loop."""

import collections
import contextlib
import os
from typing import Callable, Optional

import jax
import ml_collections
from absl import logging
from etils import epath

from input_pipeline import files, pipeline, prepare, tokenizer as tokenizer_lib
from vl_jax import evaluators, sharding
from vl_jax.errors import NonFiniteLossError
from vl_jax.models import builder
from vl_jax.models.predict import predict_fns
from vl_jax.train import (checkpoint, config_checks, init_from, metrics as metrics_lib, run_config,
                          runtime, state as state_lib, step as step_lib)

# on_step(step, host_fields) -> True to stop after this step (checkpointing it first).
StepHook = Callable[[int, dict], bool]


def setup(config: ml_collections.ConfigDict, workdir: str | None = None):
  """(mesh, tokenizer, model); the tokenizer is `workdir`'s if it has one (init_from.py)."""
  runtime.use_compilation_cache(config.compilation_cache_dir)
  mesh = sharding.make_mesh(config.mesh)
  prepare.ensure_dataset(config.data, [e.split for e in config.evals.values() if "split" in e])
  tokenizer = tokenizer_lib.load(init_from.tokenizer_path(config, workdir))
  model = builder.build(config.model, config.data, tokenizer.vocab_size)
  return mesh, tokenizer, model


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       on_step: Optional[StepHook] = None, *, config_source: str | None = None,
                       accept_config_change: bool = False):
  """Trains, resuming from `workdir`'s newest good checkpoint if any.

  A resume must keep the data and model of the config recorded in `workdir` unless
  `accept_config_change` (run_config.py); `config_source` (the --config argument) is recorded with
  the config. Returns (final train state, {evaluator: metrics}); the metrics are empty if
  `on_step` stopped the run early.
  """
  config_checks.check(config)
  resuming = run_config.has_checkpoints(workdir)
  if resuming:
    run_config.check_resume(config, workdir, accept_config_change)
  mesh, tokenizer, model = setup(config, workdir)
  sharding.check_batch_size(config.batch_size, mesh)
  # Imported weights are read (and checked against the config) before anything compiles, but not
  # by a run that resumes: its checkpoints hold them already.
  imported = None if resuming else init_from.imports(config)
  tx, schedule = state_lib.make_optimizer(config.optimizer, config.total_steps)
  # Made (and its objectives validated) before the state is initialised: a bad objective setting
  # is one line, not an error after the initialisation compiled.
  train_step = step_lib.make_train_step(model, tx, schedule, config, mesh)
  state, state_shardings = state_lib.create(model, tx, config, mesh)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 config.checkpoint.every_steps, config.checkpoint.keep,
                                 config.checkpoint.use_async)
  restored, start = ckpt.restore_latest_good(
      state_lib.abstract_with_shardings(state, state_shardings))
  if start:
    logging.info("resuming from step %d of %s", start, workdir)
    state = restored
    ckpt.enforce_keep()
  else:
    start = 0
    if imported is None:  # no checkpoint restored: the run starts over from its source
      imported = init_from.imports(config)
    if config.init_from.workdir or imported:
      state = state_lib.with_params(state, init_from.load(
          config.init_from, state.params,
          state_lib.abstract_with_shardings(state.params, state_shardings.params), imported),
          config.ema)
  if jax.process_index() == 0:
    run_config.record(workdir, config, start, config_source)
    # The model's vocabulary: eval.py and fine-tuning runs from this workdir read this copy.
    if tokenizer_lib.find(workdir) is None:
      # Read and written, not copied: a local file's copy would not reach a gs:// workdir.
      source = epath.Path(tokenizer.model_path)
      files.write(epath.Path(workdir) / source.name, source.read_bytes())
  batches = pipeline.device_batches(
      pipeline.train_dataset(config.data, tokenizer, config.batch_size, config.seed,
                             start_step=start), sharding.batch_sharding(mesh))

  train_step = step_lib.jit_train_step(train_step, state_shardings, sharding.batch_sharding(mesh))
  probe = step_lib.make_probe(model)
  evals = evaluators.build(config.evals, predict=predict_fns(model), mesh=mesh,
                           data_cfg=config.data, tokenizer=tokenizer)
  writer = metrics_lib.MetricWriter(workdir, start, rerun_final=start == config.total_steps)
  progress = metrics_lib.Progress(config.total_steps, config.batch_size)
  in_flight = runtime.steps_in_flight(config.steps_in_flight, mesh)
  unverified = runtime.Unverified(ckpt, workdir)
  profile = runtime.Profile(workdir, start + 2, config.profile_steps)
  results, waiting = {}, collections.deque()
  # Each closed even if another's closing fails: the writer's last events, the save in flight.
  with contextlib.ExitStack() as closing:
    for close in (writer.close, ckpt.close, profile.close):
      closing.callback(close)
    for step in range(start + 1, config.total_steps + 1):
      batch, host = next(batches)
      if step == start + 1:
        train_step = runtime.compile_step(train_step, state, batch, step)
      profile.before(step)
      state, metrics = train_step(state, batch)
      unverified.add(step, metrics)
      # The host runs at most `in_flight` steps ahead of the devices: it waits for the step
      # `in_flight` - 1 before this one, while the devices have this one queued.
      waiting.append(metrics["loss"])
      while len(waiting) >= in_flight:
        jax.block_until_ready(waiting.popleft())
      if step == start + 1:
        jax.block_until_ready(metrics["loss"])
        progress.start(step)  # the clock starts after the first step: see Progress
      profile.after(step, metrics)
      stop = bool(on_step and on_step(step, host))
      if step % config.log_every_steps == 0 or step == config.total_steps:
        unverified.check()
        metrics = jax.device_get(metrics)
        del metrics["finite"]
        rates = progress.rates(step)
        writer.write(step, metrics_lib.prefixed("train", metrics | rates))
        progress.log(step, float(metrics["loss"]), rates)
      due = [name for name, ev in evals.items()
             if step % ev.every_steps == 0 and step != config.total_steps]
      save = ckpt.due(step) or stop or step == config.total_steps
      if save or due:
        unverified.check()
      if save:
        # The state is finite (checked above); a diverged one can be finite and still overflow
        # in the forward pass, so it must also give finite embeddings of its batch to be saved.
        if not bool(probe(state.params, batch)):
          raise NonFiniteLossError(
              f"the state after step {step} gives non-finite embeddings of its own batch (its "
              f"parameters diverged); stopping without saving it. "
              f"{runtime.last_good(ckpt, workdir)}")
        ckpt.save(step, state)
      for name in due:
        writer.write(step, metrics_lib.prefixed(name, evals[name].run(state.params)))
      if stop:
        logging.info("stopped after step %d at the caller's request", step)
        ckpt.confirm()
        return state, results

    ckpt.confirm()  # the final state is written before it is scored
    for name, ev in evals.items():
      results[name] = ev.run(state.params, artifacts_dir=workdir)
      writer.write(config.total_steps, metrics_lib.prefixed(name, results[name]))
    metrics_lib.write_eval_results(workdir, config.total_steps, {
        name: evaluators.entry(m, os.path.join(workdir, "checkpoints", str(config.total_steps)),
                               config.evals[name], config.data) for name, m in results.items()})
    if jax.process_index() == 0 and results:
      logging.info("final evaluation at step %d:\n%s", config.total_steps,
                   metrics_lib.format_table(results))
    return state, results
