"""An unwritable run directory fails before the model is built; a save that fails midway (a full
disk) raises a clear error and leaves the previous checkpoint readable, and the run resumes; a
checkpoint list naming deleted checkpoints (a kill inside CheckpointManager's clean-up) is tidied
on restart."""

import logging
import os
import resource
import time

import numpy as np
import pytest
import tensorflow as tf

from svg_tf import checkpoints, run_dir, train_loop
from svg_tf.config import LoopOptions
from tests.reliability.helpers import TINY, run_train


def test_an_unwritable_model_dir_is_a_one_line_error_before_the_model_is_built(mnist_npz,
                                                                                tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  model_dir = blocker / "run"  # cannot be created, whoever runs the test (root included)
  out = run_train(*TINY, "--train_steps=2", f"--mnist_path={mnist_npz}", f"--model_dir={model_dir}")
  assert out.returncode == 1
  assert f"error: --model_dir={model_dir} is not writable" in out.stderr
  assert "Traceback" not in out.stderr and "training lp" not in out.stderr


def _fixed_batch_run(config, tmp_path, seed, checkpoint_every):
  """(model_dir, train): train(steps) trains, or resumes, the run <tmp_path>/run up to `steps` on
  one fixed random batch, with a checkpoint every `checkpoint_every` steps."""
  model_dir = str(tmp_path / "run")
  frames = np.random.RandomState(seed).rand(4, config.seq_len, 64, 64, 1).astype("float32")
  input_fn = lambda ctx, start_index: tf.data.Dataset.from_tensors(frames).repeat()
  options = LoopOptions(checkpoint_every=checkpoint_every)

  def train(steps):
    return train_loop.train(config.replace(train_steps=steps), model_dir, input_fn,
                          options=options)
  return model_dir, train


def test_a_failed_save_keeps_the_previous_checkpoint_and_the_run_resumes(short_config, tmp_path):
  model_dir, train = _fixed_batch_run(short_config, tmp_path, seed=4, checkpoint_every=2)
  checkpoint_dir = os.path.join(model_dir, "checkpoints")
  train(2)
  data = tf.io.gfile.glob(os.path.join(checkpoint_dir, "ckpt-2.data-*"))[0]
  assert os.path.getsize(data) > 200_000
  # No file may grow past 100 kB: the next checkpoint's data file fails midway through its write,
  # with EFBIG where a full disk gives ENOSPC (Python ignores SIGXFSZ, so the write just fails).
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
  try:
    with pytest.raises(checkpoints.CheckpointSaveError, match=r"could not save the checkpoint of step "
                       r"4 in .*; the previous checkpoint \(.*ckpt-2\) is intact"):
      train(4)
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
  assert tf.train.latest_checkpoint(checkpoint_dir).endswith("ckpt-2")
  assert sorted(os.listdir(checkpoint_dir)) == ["checkpoint", "ckpt-2.data-00000-of-00001",
                                                "ckpt-2.index"]  # the partial save is removed
  reader = tf.train.load_checkpoint(os.path.join(checkpoint_dir, "ckpt-2"))
  for name in reader.get_variable_to_shape_map():
    reader.get_tensor(name)

  result = train(4)
  assert result["step"] == 4
  assert [e["step"] for e in run_dir.read_losses(model_dir)] == [1, 2, 3, 4]


def test_a_full_disk_at_the_loss_log_stops_cleanly_before_the_checkpoint(short_config, tmp_path,
                                                                        monkeypatch):
  """losses.jsonl is rewritten just before each checkpoint: a full disk there is the same clear
  error as a failed save, and neither the loss log nor the previous checkpoint is touched."""
  model_dir, train = _fixed_batch_run(short_config, tmp_path, seed=5, checkpoint_every=2)
  train(2)
  real_write = run_dir.media.write_file_atomic

  def full_disk(path, data, *args, **kwargs):
    if path.endswith(run_dir.LOSSES_FILE):
      raise OSError(28, "No space left on device")
    return real_write(path, data, *args, **kwargs)

  monkeypatch.setattr(run_dir.media, "write_file_atomic", full_disk)
  with pytest.raises(checkpoints.CheckpointSaveError,
                     match=r"could not write .*losses.jsonl before the checkpoint of step 4 "
                           r"\(OSError: .*No space left on device\); the previous checkpoint "
                           r"\(.*ckpt-2\) and losses.jsonl are intact"):
    train(4)
  monkeypatch.undo()
  assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith("ckpt-2")
  assert [e["step"] for e in run_dir.read_losses(model_dir)] == [1, 2]


def test_a_restart_drops_listed_checkpoints_whose_files_are_gone(short_config, tmp_path,
                                                                   caplog):
  model_dir, train = _fixed_batch_run(short_config, tmp_path, seed=5, checkpoint_every=1)
  checkpoint_dir = os.path.join(model_dir, "checkpoints")
  train(3)
  listed = tf.train.get_checkpoint_state(checkpoint_dir).all_model_checkpoint_paths
  assert [p.rsplit("-", 1)[1] for p in listed] == ["1", "2", "3"]
  # The oldest lost its index but kept its data (a deletion cut short); the newest lost both
  # (never seen from CheckpointManager, which lists a checkpoint only once it is written).
  os.remove(os.path.join(checkpoint_dir, "ckpt-1.index"))
  for name in tf.io.gfile.glob(os.path.join(checkpoint_dir, "ckpt-3.*")):
    os.remove(name)

  dropped = checkpoints.drop_missing_checkpoints(checkpoint_dir)
  assert [p.rsplit("/", 1)[1] for p in dropped] == ["ckpt-1", "ckpt-3"]
  state = tf.train.get_checkpoint_state(checkpoint_dir)
  assert list(state.all_model_checkpoint_paths) == [os.path.join(checkpoint_dir, "ckpt-2")]
  assert tf.train.latest_checkpoint(checkpoint_dir).endswith("ckpt-2")
  assert sorted(os.listdir(checkpoint_dir)) == ["checkpoint", "ckpt-2.data-00000-of-00001",
                                                "ckpt-2.index"]
  assert checkpoints.drop_missing_checkpoints(checkpoint_dir) == []  # nothing more to drop

  # The same clean-up runs when a run starts. A list whose newest entry has no files makes
  # tf.train.latest_checkpoint return None; the run resumes from step 2 instead of from scratch.
  ghost = os.path.join(checkpoint_dir, "ckpt-9")
  tf.compat.v1.train.update_checkpoint_state(
      checkpoint_dir, ghost, all_model_checkpoint_paths=[*state.all_model_checkpoint_paths, ghost],
      all_model_checkpoint_timestamps=[*state.all_model_checkpoint_timestamps, time.time()],
      last_preserved_timestamp=state.last_preserved_timestamp)
  assert tf.train.latest_checkpoint(checkpoint_dir) is None
  caplog.set_level(logging.INFO, logger="absl")  # other modules may raise the absl logger's level
  result = train(3)
  assert "resumed from step 2 (" in caplog.text
  assert result["step"] == 3
  assert [e["step"] for e in run_dir.read_losses(model_dir)] == [1, 2, 3]
  state = tf.train.get_checkpoint_state(checkpoint_dir)
  assert [p.rsplit("-", 1)[1] for p in state.all_model_checkpoint_paths] == ["2", "3"]
