"""Orbax checkpoints of the train state together with the data iterator's state."""

import grain
import orbax.checkpoint as ocp


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

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
