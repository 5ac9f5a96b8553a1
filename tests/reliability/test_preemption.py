"""Preemption and crashes: train.py killed (SIGKILL) at random moments, then preempted (SIGTERM),
restarted each time with the same command.

Every restart must resume from a complete checkpoint, never from an older one than the last
complete save, and the run stitched together from five processes must repeat the losses of an
uninterrupted run bit for bit (--deterministic, SM-MNIST generated on the fly).
"""

import os
import random
import re
import signal
import time

import tensorflow as tf

from svg_tf import checkpoints
from svg_tf.run_dir import read_losses
from tests.reliability.helpers import REFERENCE_STEPS, TrainProcess, progress_lines, run_train


def _read_step(path):
  """The step of the checkpoint at `path`, after reading back its index and every tensor."""
  reader = tf.train.load_checkpoint(path)
  for name in reader.get_variable_to_shape_map():
    reader.get_tensor(name)
  step = int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
  assert path.endswith(f"ckpt-{step}"), (path, step)
  return step


def _checkpoints(model_dir):
  """(the step a restart resumes from, steps of all listed checkpoints, steps listed without
  files), after checking that every listed checkpoint with files is complete: its index and every
  tensor of its data read back.

  A restart takes the newest complete checkpoint (checkpoints.checkpoint_paths): the state file's
  newest, or a newer ckpt-N whose files were all written when the kill came before the state file
  was updated. An older listed checkpoint may lack its index where CheckpointManager's clean-up
  was cut short (it deletes the oldest between two writes of the list); never the newest.
  """
  directory = os.path.join(str(model_dir), "checkpoints")
  state = tf.train.get_checkpoint_state(directory)
  if state is None:
    return 0, [], []
  steps, swept = [], []
  for path in state.all_model_checkpoint_paths:
    if path != state.model_checkpoint_path and not tf.io.gfile.exists(path + ".index"):
      swept.append(int(path.rsplit("-", 1)[1]))
      continue
    steps.append(_read_step(path))
  newest = int(state.model_checkpoint_path.rsplit("-", 1)[1])
  unlisted = checkpoints.checkpoint_paths(directory)[0]  # newest first
  if int(unlisted.rsplit("-", 1)[1]) > newest:
    newest = _read_step(unlisted)  # complete, or the restart's restore would fail
  return newest, steps, swept


def test_killed_and_preempted_runs_resume_where_they_saved_and_repeat_the_losses(
    run_flags, reference, tmp_path):
  rng = random.Random(2018)
  model_dir = tmp_path / "run"
  # A checkpoint every step: most of a step's time is its save, so kills often land inside one.
  args = [*run_flags, f"--train_steps={REFERENCE_STEPS}", "--checkpoint_every=1",
          f"--model_dir={model_dir}"]
  saved, history = 0, []
  for attempt, signum in enumerate([signal.SIGKILL] * 3 + [signal.SIGTERM]):
    run = TrainProcess(args, tmp_path / f"attempt{attempt}.log")
    try:
      if saved:
        run.wait_for(rf"resumed from step {saved} \(")
      # Two steps past the resumed one (start-up, tracing and the first save are over), then at
      # most one step's time: a checkpoint is saved right after each progress line, so the signal
      # usually lands inside that save.
      run.wait_for(rf"train \| step {saved + 2}/")
      time.sleep(rng.uniform(0.0, 0.12))
      run.signal(signum)
      code = run.finish(timeout=120)
    finally:
      run.kill()
    log = run.stderr()
    assert saved or "resumed from" not in log
    newest, listed, swept = _checkpoints(model_dir)
    reported = [int(s) for s in re.findall(r"saved checkpoint \S*ckpt-(\d+)", log)]
    trained = max(progress_lines(log))
    assert saved <= newest <= trained, (saved, newest, trained, run.tail())
    assert newest >= max(reported, default=0)  # a save that was reported is never lost
    assert newest in listed or newest > max(listed, default=0)  # or complete, not yet listed
    if signum == signal.SIGTERM:
      assert code == 42, run.tail()
      assert f"preempted: checkpoint of step {newest} saved" in run.stdout
      assert newest == trained  # it stopped after the step it saved
    else:
      assert code == -signal.SIGKILL, run.tail()
    kept = {f"ckpt-{s}" for s in listed + [newest]}  # others: left by a save or sweep cut short
    unfinished = sorted(p for p in os.listdir(model_dir / "checkpoints")
                        if p != "checkpoint" and p.split(".")[0] not in kept)
    history.append((trained, newest, unfinished, swept))
    saved = newest
  print("per interrupted run: (last step trained, step resumable from, leftover files, steps "
        "listed without files):",
        history)

  final = run_train(*args)
  assert final.returncode == 0, final.stderr[-4000:]
  assert f"resumed from step {saved} (" in final.stderr
  newest, listed, swept = _checkpoints(model_dir)
  assert newest == REFERENCE_STEPS and len(listed) == 3 and not swept  # restarts tidy the list
  assert not [p for p in os.listdir(model_dir / "checkpoints") if p.endswith("_temp")]
  # One line per step, none repeated or lost, equal to the uninterrupted run's.
  assert read_losses(model_dir) == reference
