"""Orbax checkpoints of the train state.

The data position needs no state of its own: the training batches are a pure function of the step
(input_pipeline/pipeline.train_dataset), so a run restored at step s rebuilds its data from s, on
any number of processes.

What is saved is known to be good (the loop verifies the state before saving it) and what is
restored is checked again: a checkpoint that does not restore (an empty or truncated step
directory, missing metadata) or restores with a NaN or Inf is skipped with one line naming it and
why, for the newest one that is good; a resumed run moves the skipped one aside, to
`<directory>.skipped/<step>`, so that nothing is lost and its step can be written again.
"""

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax.traverse_util import flatten_dict, unflatten_dict

from input_pipeline.errors import DataError, one_line
from vl_jax.errors import CheckpointError
from vl_jax.train import state as state_lib

_is_finite = jax.jit(state_lib.is_finite)


class Checkpointer:
  """Async, keep-N checkpoints of the train state under `directory`, written by all processes
  together (each its shards)."""

  def __init__(self, directory: str, every_steps: int, keep: int, use_async: bool = True):
    self.every_steps, self.keep = every_steps, keep
    self.directory = epath.Path(directory)
    self._manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=use_async))
    self._unconfirmed: int | None = None  # a step whose (async) save is not yet known written

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def due(self, step: int) -> bool:
    return step % self.every_steps == 0

  def save(self, step: int, state) -> None:
    """Starts writing `state` as step `step`, whose goodness the caller has verified. Raises
    CheckpointError if the previous save failed."""
    self.confirm()
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                       force=True)
    self._unconfirmed = step

  def confirm(self) -> None:
    """Waits for the save in flight and checks that its step was written: orbax's background
    thread only logs a failed write (a full disk), and a run must not go on without the
    checkpoints it believes it has. CheckpointError names the step that was not written."""
    cause = "the cause is logged above"
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  # the save's failure, reported below
      cause = one_line(e)
    step, self._unconfirmed = self._unconfirmed, None
    if step is None:
      return
    self._manager.reload()
    if step not in self._manager.all_steps():
      raise CheckpointError(
          f"the checkpoint of step {step} was not written to {self.directory} ({cause}); "
          f"stopping. The checkpoints written before it are intact: steps "
          f"{sorted(self._manager.all_steps())}")

  def enforce_keep(self) -> None:
    """Deletes all but the newest `keep` checkpoints. Orbax removes old ones after a save's
    commit; a run killed between the two (during its final evaluation, say) leaves one too many,
    and a rerun that saves nothing would keep it."""
    for step in sorted(self.all_steps())[:-self.keep]:
      logging.info("removing checkpoint %d of %s (config.checkpoint.keep=%d)", step,
                   self.directory, self.keep)
      self._manager.delete(step)

  def restore(self, step: int, abstract_state):
    """The state of step `step`, in `abstract_state`'s shapes and shardings (any mesh, any number
    of processes)."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return restored["state"]

  def newest_good(self, restore, set_aside: bool):
    """(restore(step), step) of the newest checkpoint that `restore` accepts, or (None, None);
    each one it refuses with CheckpointError is logged in one line and, with `set_aside` (a run
    that will write its steps again), moved to `<directory>.skipped/<step>`."""
    for step in sorted(self.all_steps(), reverse=True):
      try:
        return restore(step), step
      except CheckpointError as e:
        logging.warning("skipped: %s", e)
        if set_aside:
          self._set_aside(step)
    return None, None

  def restore_latest_good(self, abstract_state):
    """(state, step) of the newest checkpoint that restores and is finite (`newest_good`, moving
    the others aside), or (None, None)."""
    return self.newest_good(lambda step: self._restore_finite(step, abstract_state),
                            set_aside=True)

  def _restore_finite(self, step: int, abstract_state):
    try:
      state = self.restore(step, abstract_state)
    except Exception as e:  # pylint: disable=broad-except
      # Whatever makes a checkpoint unreadable (orbax, tensorstore, the file system) skips it.
      raise CheckpointError(f"{self.directory}/{step}: does not restore ({one_line(e)})") from e
    if not bool(_is_finite(state)):
      raise CheckpointError(f"{self.directory}/{step}: its state holds NaN or Inf")
    return state

  def _set_aside(self, step: int) -> None:
    aside = epath.Path(f"{self.directory}.skipped") / str(step)
    logging.warning("moved checkpoint %d of %s to %s", step, self.directory, aside)
    if jax.process_index() == 0:
      aside.parent.mkdir(parents=True, exist_ok=True)
      if aside.exists():
        aside.rmtree()
      (self.directory / str(step)).rename(aside)
    self._manager.reload()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def pick_step(self, step: int | None) -> int:
    """`step` if a checkpoint of it exists, the latest one for None; DataError otherwise."""
    steps = self.all_steps()
    if not steps:
      raise DataError(f"{self.directory}: holds no checkpoint")
    if step is None:
      return max(steps)
    if step not in steps:
      raise DataError(f"{self.directory}: no checkpoint of step {step} (has {sorted(steps)})")
    return step

  def restore_params(self, step: int, abstract_params, missing_ok: bool = False,
                     resizable: tuple[str, ...] = ()):
    """The parameters of step `step` (no optimizer or data state), in `abstract_params`'s shapes
    and shardings: restoring works on any number of devices.

    Parameters only the checkpoint has are skipped: training-only parts (MILES's predictor head
    and mask token) or another head. Raises ValueError naming the first parameter whose shape
    differs (checked on the metadata, before reading any array), or that the model has and the
    checkpoint lacks, unless `missing_ok` (a new head): the returned tree then holds the shared
    ones only. The parameters named in `resizable` ("video/temporal_embedding") come back in their
    stored shape, for the caller to resize. CheckpointError if the checkpoint does not restore
    or holds a NaN or Inf.
    """
    try:
      stored = flatten_dict(ocp.PyTreeCheckpointHandler().metadata(
          self.directory / str(step) / "state").tree["params"], sep="/")
    except Exception as e:  # pylint: disable=broad-except  # reported in one line, with the step
      raise CheckpointError(f"{self.directory}/{step}: does not restore ({one_line(e)})") from e
    wanted = flatten_dict(abstract_params, sep="/")
    names = stored.keys() & wanted.keys() if missing_ok else wanted.keys()
    shapes = {}
    for name in sorted(names):
      have, want = (tuple(t[name].shape) if name in t else None for t in (stored, wanted))
      if have != want and not (name in resizable and have is not None):
        raise ValueError(f"parameter {name}: the checkpoint has shape {have}, the model {want}")
      shapes[name] = jax.ShapeDtypeStruct(have, wanted[name].dtype, sharding=wanted[name].sharding)
    abstract = {"params": unflatten_dict(shapes, sep="/")}
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
          item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
          partial_restore=True)))["state"]["params"]
    except Exception as e:  # pylint: disable=broad-except  # reported in one line, with the step
      raise CheckpointError(f"{self.directory}/{step}: does not restore ({one_line(e)})") from e
    if not _is_finite(restored):
      raise CheckpointError(f"{self.directory}/{step}: its parameters hold NaN or Inf")
    return restored

  def close(self) -> None:
    """Waits for the save in flight; `confirm` first to know whether it was written."""
    self._manager.wait_until_finished()
    self._manager.close()
