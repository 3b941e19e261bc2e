"""Orbax checkpoints of the train state together with the data iterator's state."""

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath


class Checkpointer:
  """Async, keep-N checkpoints under `directory`; each holds the state and the iterator state."""

  def __init__(self, directory: str, every_steps: int, keep: int, use_async: bool = True):
    self.every_steps = every_steps
    self._manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=use_async))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, data_iterator, force: bool = False) -> bool:
    """Saves if `step` is a multiple of `every_steps` (or `force`); returns whether it saved."""
    if not force and step % self.every_steps:
      return False
    return self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator)), force=True)

  def restore(self, step: int, abstract_state, data_iterator):
    """Restores the state into `abstract_state`'s shardings and `data_iterator` in place."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=grain.checkpoint.CheckpointRestore(data_iterator)))
    return restored["state"]

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def restore_params(self, step: int, abstract_params):
    """Only the parameters of step `step` (no optimizer or data state), in `abstract_params`'s
    shapes and shardings: restoring works on any number of devices. Raises ValueError naming the
    first parameter whose shape differs (checked on the metadata, before reading any array)."""
    stored = ocp.PyTreeCheckpointHandler().metadata(
        epath.Path(self._manager.directory) / str(step) / "state").tree["params"]
    shapes = lambda tree: {jax.tree_util.keystr(k): tuple(v.shape)
                           for k, v in jax.tree_util.tree_leaves_with_path(tree)}
    have, want = shapes(stored), shapes(abstract_params)
    for name in sorted(have.keys() | want.keys()):
      if have.get(name) != want.get(name):
        raise ValueError(f"parameter {name}: the checkpoint has shape {have.get(name)}, the model "
                         f"{want.get(name)}")
    abstract = {"params": abstract_params}
    restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=True)))
    return restored["state"]["params"]

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
