"""A run's checkpoints: <model_dir>/checkpoints, numbered by global step; saving, restoring, repair.

tf.train.CheckpointManager writes a checkpoint under a temporary name, renames it, and only then
points the `checkpoint` state file at it (an atomic rename too), so the newest checkpoint named
there is always complete. What a kill can leave behind (a `*_temp` folder, a listed checkpoint
whose files were deleted) is cleaned up when the run restarts. Every restore refuses a checkpoint
that lacks some of the model's variables (they would keep their random initial values), and a
checkpoint that cannot be read (truncated or corrupted files, e.g. by a disk or a copy) is skipped
with a warning naming it, for the newest one that can: see `restore_newest_intact`.

Several machines: saving is collective under MultiWorkerMirroredStrategy, so every worker saves at
the same steps, but only the chief into <model_dir>/checkpoints; the others into
<model_dir>/workertemp_<i>, deleted after each save (TF's multi-worker guide).
"""

import os
import re
from typing import Callable, List, NamedTuple, Optional

import tensorflow as tf
from absl import logging
from google.protobuf.message import DecodeError as _ProtoDecodeError

from svg_tf import run_dir, strategies
from svg_tf.model import SVG

CHECKPOINT_FOLDER = "checkpoints"


class CheckpointSaveError(OSError):
  """A checkpoint could not be saved; the message names the previous one, which is intact."""


class NonFiniteError(FloatingPointError):
  """Non-finite weights (never saved), or training stopped on non-finite steps (train_loop)."""


class IncompleteCheckpointError(ValueError):
  """A checkpoint without values for some of the model's variables (refused, never half-used)."""


class CheckpointReadError(OSError):
  """No checkpoint of a run could be read; the message names each file and why."""


def restore_objects(path: str, partial: bool = False, **objects):
  """Restores `objects` (model=, optimizer=, step=) from the checkpoint `path`.

  Every variable they hold must have a value there: a restore that would leave some at their
  random initial values raises IncompleteCheckpointError instead. (Checkpoints written by svg_tf
  before 2026-11-26 lack the layers Keras kept in Python lists, see frame_nets.hold_by_name.)
  partial: the checkpoint may hold more than `objects` (e.g. the optimizer, when only the model
  is wanted).
  """
  status = tf.train.Checkpoint(**objects).restore(path)
  try:
    status.assert_existing_objects_matched()
  except AssertionError as err:
    detail = str(err).strip().splitlines()[0][:300]
    raise IncompleteCheckpointError(
        f"{path} has no value for part of the model ({detail}). Checkpoints written by svg_tf "
        "before 2026-11-26 missed the encoder/decoder stages and LSTM cells and cannot be used; "
        "train again") from None
  if partial:
    status.expect_partial()


class Checkpoints:
  """The checkpoints of a run (see the module docstring); every worker restores from the chief's.

  objects: what a checkpoint holds, by name (train.py: model=, optimizer=, step=).
  """

  def __init__(self, model_dir: str, strategy: tf.distribute.Strategy, max_to_keep: int = 3,
               **objects):
    self.objects = objects
    self.directory = os.path.join(model_dir, CHECKPOINT_FOLDER)
    index = strategies.worker_index(strategy)
    self.chief = index == 0
    self.write_dir = self.directory if self.chief else os.path.join(model_dir,
                                                                    f"workertemp_{index}")
    if self.chief and tf.io.gfile.isdir(self.directory):
      # A save killed midway leaves a <prefix>_temp/ folder, never read: remove them.
      for leftover in tf.io.gfile.glob(os.path.join(self.directory, "*_temp")):
        tf.io.gfile.rmtree(leftover)
      drop_missing_checkpoints(self.directory)  # before the manager reads the list
    self.manager = tf.train.CheckpointManager(tf.train.Checkpoint(**objects), self.write_dir,
                                              max_to_keep=max_to_keep,
                                              step_counter=objects.get("step"))

  @property
  def latest(self) -> Optional[str]:
    return tf.train.latest_checkpoint(self.directory)

  def restore(self) -> Optional[str]:
    """Restores the newest intact checkpoint if there is one; returns its path (None: a new run).

    A newer checkpoint that cannot be read is skipped with a warning (restore_newest_intact);
    training then continues from the older one and overwrites the bad one when it saves that step
    again.
    """
    return restore_newest_intact(self.directory,
                                 lambda path: restore_objects(path, **self.objects))

  @tf.function
  def _all_finite(self):  # one graph, not ~200 eager ops (~30 ms on a tiny model)
    variables = [v for obj in self.objects.values()
                 for v in ([obj] if isinstance(obj, tf.Variable) else obj.variables)]
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables
                          if tf.as_dtype(v.dtype).is_floating])

  def save(self, step: int) -> str:
    """Saves `step`. Refuses non-finite values (NonFiniteError: the good checkpoints stay); a
    failed write raises CheckpointSaveError and leaves the older checkpoints."""
    if not self._all_finite():
      raise NonFiniteError(f"step {step}: the weights are not finite; no checkpoint is written "
                           f"over the good ones (newest: {self.latest or 'none'})")
    try:
      return self.manager.save(checkpoint_number=step)
    except (tf.errors.OpError, OSError) as err:
      for leftover in tf.io.gfile.glob(os.path.join(self.write_dir, f"ckpt-{step}_temp")):
        tf.io.gfile.rmtree(leftover)
      raise CheckpointSaveError(
          f"could not save the checkpoint of step {step} in {self.write_dir} "
          f"({type(err).__name__}: {run_dir.first_line(err)}); the previous checkpoint "
          f"({self.latest or 'none'}) is intact: make room and rerun the same command to resume "
          "from it") from err
    finally:
      if not self.chief and tf.io.gfile.exists(self.write_dir):
        tf.io.gfile.rmtree(self.write_dir)


def drop_missing_checkpoints(directory: str) -> list:
  """Removes from <directory>/checkpoint the checkpoints whose index is gone; returns them.

  CheckpointManager lists a new checkpoint, deletes the oldest, then rewrites the list: a process
  killed between the last two steps leaves a listed checkpoint without files. Nothing restores it
  (the newest is complete), but tools that walk the list would fail on it, and a newest entry
  without files would make tf.train.latest_checkpoint return None, i.e. a restart from scratch.
  The list is rewritten atomically and names the newest complete checkpoint as the one to resume.
  """
  state = tf.train.get_checkpoint_state(directory)  # paths made absolute
  if state is None:
    return []
  paths = list(state.all_model_checkpoint_paths)
  if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
    paths.append(state.model_checkpoint_path)
  present = [tf.io.gfile.exists(path + ".index") for path in paths]
  missing = [p for p, ok in zip(paths, present) if not ok]
  if not missing:
    return []
  logging.warning("checkpoints listed in %s/checkpoint without their files (a save or clean-up "
                  "cut short) are dropped from the list: %s", directory, ", ".join(missing))
  for path in missing:  # what a cut-short deletion left (a data file without its index)
    for leftover in tf.io.gfile.glob(path + ".*"):
      tf.io.gfile.remove(leftover)
  kept = [p for p, ok in zip(paths, present) if ok]
  if not kept:
    tf.io.gfile.remove(os.path.join(directory, "checkpoint"))
    return missing
  stamps = list(state.all_model_checkpoint_timestamps)
  tf.compat.v1.train.update_checkpoint_state(
      directory, kept[-1], all_model_checkpoint_paths=kept,
      all_model_checkpoint_timestamps=([t for t, ok in zip(stamps, present) if ok]
                                       if len(stamps) == len(paths) else None),
      last_preserved_timestamp=state.last_preserved_timestamp or None)
  return missing


_STEP = re.compile(r"-(\d+)$")


def checkpoint_paths(directory: str) -> List[str]:
  """The checkpoint prefixes in `directory`, newest (highest step) first.

  Those the `checkpoint` state file lists and whose index exists, and any other ckpt-N whose index
  is there (a state file that is missing or cannot be parsed must not turn a run into a new one).
  """
  found = []
  if tf.io.gfile.isdir(directory):
    found = [os.path.join(directory, name[:-len(".index")])
             for name in tf.io.gfile.listdir(directory) if name.endswith(".index")]
  state = tf.train.get_checkpoint_state(directory)  # None when missing or unparsable
  if state is not None:  # listed last: its spelling of a path wins
    listed = list(state.all_model_checkpoint_paths) + [state.model_checkpoint_path]
    found += [p for p in listed if p and tf.io.gfile.exists(p + ".index")]
  by_step = {int(m.group(1)): p for p in found if (m := _STEP.search(p))}
  return [by_step[step] for step in sorted(by_step, reverse=True)]


def restore_newest_intact(directory: str, restore: Callable[[str], None]) -> Optional[str]:
  """Calls `restore(path)` on the newest checkpoint in `directory` that it can read; its path.

  A checkpoint whose files are truncated or corrupted (DataLossError, a short read, a bad proto)
  is skipped with a warning that names it, and the next older one is tried. None when the
  directory holds no checkpoint; CheckpointReadError naming every file when none can be read.
  IncompleteCheckpointError (a readable checkpoint of another model layout) is not skipped: the
  older ones were written by the same code.
  """
  paths = checkpoint_paths(directory)
  failures = []
  for path in paths:
    try:
      restore(path)
    except IncompleteCheckpointError:
      raise
    except (tf.errors.OpError, IndexError, ValueError, TypeError, OSError,
            _ProtoDecodeError) as err:
      why = f"{type(err).__name__}: {run_dir.first_line(err)}"
      failures.append(f"{path} ({why})")
      logging.warning("checkpoint %s cannot be read (%s): it is skipped for the next older one",
                      path, why)
      continue
    if failures:
      logging.warning("restored %s, the newest intact checkpoint; unreadable and skipped: %s",
                      path, "; ".join(failures))
    return path
  if failures:
    raise CheckpointReadError(
        f"no checkpoint in {directory} can be read: {'; '.join(failures)}. Restore the folder "
        "from a copy, or move it away to train from scratch")
  return None


class RestoredRun(NamedTuple):
  """A trained model and where its weights came from."""
  model: SVG
  step: int  # the checkpoint's global step
  checkpoint: str  # its path prefix


def restore_run(model_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
                precision: Optional[str] = None) -> RestoredRun:
  """The model of a train.py run directory at its newest checkpoint (evaluation, export, load).

  The model is built under `strategy` (default: the current one) from config.json, in its
  precision or `precision` (one of config.PRECISIONS: the variables are float32 in all, so any
  checkpoint restores into any). Raises FileNotFoundError naming model_dir when it has no
  config.json or no checkpoint, IncompleteCheckpointError when the checkpoint lacks some of the
  model's variables, and CheckpointReadError when no checkpoint can be read (a newer unreadable
  one is skipped with a warning for the newest intact one).
  """
  config = run_dir.read_config(model_dir)
  if precision is not None:
    config = config.replace(precision=precision)
  with (strategy or tf.distribute.get_strategy()).scope():
    model = SVG(config)
  # partial: the optimizer is not wanted here.
  path = restore_newest_intact(os.path.join(model_dir, CHECKPOINT_FOLDER),
                               lambda p: restore_objects(p, partial=True, model=model))
  if path is None:
    raise FileNotFoundError(f"{model_dir}: no checkpoint in {model_dir}/{CHECKPOINT_FOLDER}")
  return RestoredRun(model, int(path.rsplit("-", 1)[-1]), path)
