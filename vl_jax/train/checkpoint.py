"""Orbax checkpoints of the train state.

The data position needs no state of its own: the training batches are a pure function of the step
(input_pipeline/pipeline.train_dataset), so a run restored at step s rebuilds its data from s, on
any number of processes.
"""

import jax
import orbax.checkpoint as ocp
from etils import epath
from flax.traverse_util import flatten_dict, unflatten_dict

from vl_jax.errors import DataError


class Checkpointer:
  """Async, keep-N checkpoints of the train state under `directory`, written by all processes
  together (each its shards)."""

  def __init__(self, directory: str, every_steps: int, keep: int, use_async: bool = True):
    self.every_steps = every_steps
    self._manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=use_async))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, force: bool = False) -> bool:
    """Saves if `step` is a multiple of `every_steps` (or `force`); returns whether it saved."""
    if not force and step % self.every_steps:
      return False
    return self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                              force=True)

  def restore(self, step: int, abstract_state):
    """The state of step `step`, in `abstract_state`'s shapes and shardings (any mesh, any number
    of processes)."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return restored["state"]

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def pick_step(self, step: int | None) -> int:
    """`step` if a checkpoint of it exists, the latest one for None; DataError otherwise."""
    steps = self.all_steps()
    if not steps:
      raise DataError(f"{self._manager.directory}: holds no checkpoint")
    if step is None:
      return max(steps)
    if step not in steps:
      raise DataError(f"{self._manager.directory}: no checkpoint of step {step} "
                      f"(has {sorted(steps)})")
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
    stored shape, for the caller to resize.
    """
    stored = flatten_dict(ocp.PyTreeCheckpointHandler().metadata(
        epath.Path(self._manager.directory) / str(step) / "state").tree["params"], sep="/")
    wanted = flatten_dict(abstract_params, sep="/")
    names = stored.keys() & wanted.keys() if missing_ok else wanted.keys()
    shapes = {}
    for name in sorted(names):
      have, want = (tuple(t[name].shape) if name in t else None for t in (stored, wanted))
      if have != want and not (name in resizable and have is not None):
        raise ValueError(f"parameter {name}: the checkpoint has shape {have}, the model {want}")
      shapes[name] = jax.ShapeDtypeStruct(have, wanted[name].dtype, sharding=wanted[name].sharding)
    abstract = {"params": unflatten_dict(shapes, sep="/")}
    restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=True)))
    return restored["state"]["params"]

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
