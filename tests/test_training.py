"""The distributed step and the checkpointed loop, on tiny models and real SM-MNIST data."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipelines import inputs, smmnist
from svg_tf import checkpoints, run_dir, strategies, train_loop
from svg_tf import trainer as trainer_lib
from svg_tf.config import LoopOptions
from tests.test_export import moving_squares


def _fixed_batches(frames):
  """input_fn serving the same global batch every step, split over replicas in order."""
  def input_fn(ctx, start_index):
    per_replica = ctx.get_per_replica_batch_size(frames.shape[0])
    return tf.data.Dataset.from_tensor_slices(frames).batch(per_replica).repeat()
  return input_fn


def _copy_weights(src, dst):
  for a, b in zip(src.model.variables, dst.model.variables):
    assert a.path == b.path
    b.assign(a.numpy())


def test_two_replicas_compute_the_update_of_one(short_config):
  """Global batch 4 on 2 CPU replicas == batch 4 on one: same losses and same weights.

  Adam's epsilon is raised to 1 here so that its update is proportional to the gradient: with the
  default 1e-8, elements whose gradient is float noise (conv biases before BatchNorm have zero
  gradient) take full-size steps of random sign, which hides whether the gradients agree.
  """
  config = short_config.replace(adam_epsilon=1.0, lr=0.5)
  frames = np.random.RandomState(0).rand(4, config.seq_len, 64, 64, 1).astype("float32")
  one = trainer_lib.Trainer(config)
  two = trainer_lib.Trainer(config, strategies.make_strategy(cpu_replicas=2))
  assert two.strategy.num_replicas_in_sync == 2
  _copy_weights(one, two)
  before = [v.numpy() for v in one.model.variables]
  it_one = iter(one.distribute(_fixed_batches(frames)))
  it_two = iter(two.distribute(_fixed_batches(frames)))
  for _ in range(3):
    a, b = one.train_step(it_one), two.train_step(it_two)
    for k in ("loss", "mse", "kl"):
      np.testing.assert_allclose(float(a[k]), float(b[k]), rtol=1e-5)
  assert one.step == two.step == 3
  moved = 0
  for va, vb, v0 in zip(one.model.variables, two.model.variables, before):
    # Per-replica partial sums change the float summation order of every gradient; elements with
    # much cancellation (the first conv, 4 BatchNorms deep) differ by ~0.1% of the largest step.
    update_one, update_two = va.numpy() - v0, vb.numpy() - v0
    scale = np.abs(update_one).max()
    moved += scale > 0
    np.testing.assert_allclose(update_two, update_one, atol=1e-2 * scale + 1e-7, err_msg=va.path)
  assert moved > len(before) // 2  # the comparison is not vacuous


def test_batchnorm_statistics_are_synchronised_across_replicas(short_config):
  """Without sync, each replica normalises its half batch and the update differs."""
  frames = np.random.RandomState(1).rand(4, short_config.seq_len, 64, 64, 1).astype("float32")
  frames[2:] *= 0.2  # the two halves have different statistics
  one = trainer_lib.Trainer(short_config)
  unsynced = trainer_lib.Trainer(short_config.replace(sync_batchnorm=False),
                              strategies.make_strategy(cpu_replicas=2))
  _copy_weights(one, unsynced)
  a = one.train_step(iter(one.distribute(_fixed_batches(frames))))
  b = unsynced.train_step(iter(unsynced.distribute(_fixed_batches(frames))))
  assert abs(float(a["mse"]) - float(b["mse"])) > 1e-4


def test_three_steps_then_resume_at_the_right_step(short_config, tmp_path, caplog):
  model_dir = str(tmp_path / "run")
  config = short_config.replace(train_steps=3)
  options = LoopOptions(log_every=1, summary_every=1, image_every=3, checkpoint_every=2)
  input_fn = inputs.train_input_fn(config)
  preview = inputs.preview_videos(config, 2).frames
  assert preview.shape == (2, config.n_past + 2 * config.n_future, 64, 64, 1)
  result = train_loop.train(config, model_dir, input_fn, options=options, preview_frames=preview)
  assert result["step"] == 3  # and the last window (step 3 alone) is what losses.jsonl holds:
  assert result["loss"] == pytest.approx(run_dir.read_losses(model_dir)[-1]["loss"], rel=1e-6)
  state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
  assert state.model_checkpoint_path.endswith("ckpt-3")
  with Image.open(os.path.join(model_dir, "samples", "step_0000003.gif")) as gif:
    assert gif.n_frames == preview.shape[1]  # one GIF frame per video frame
  assert json.load(open(os.path.join(model_dir, "config.json")))["z_dim"] == 3

  caplog.set_level("INFO", logger="absl")  # other modules may raise the absl logger's level
  result = train_loop.train(config.replace(train_steps=5), model_dir, input_fn, options=options)
  assert "resumed from step 3" in caplog.text
  assert result["step"] == 5
  restored = trainer_lib.Trainer(config)
  checkpoints.Checkpoints(model_dir, restored.strategy, model=restored.model,
                          optimizer=restored.optimizer, step=restored.global_step).restore()
  assert restored.step == 5

  caplog.clear()
  result = train_loop.train(config.replace(train_steps=5), model_dir, input_fn, options=options)
  assert result == {"step": 5} and "nothing to train" in caplog.text


def test_resumed_stream_continues_where_it_stopped(tiny_config):
  """Step k of a resumed run reads the same sequences as step k of an uninterrupted run."""
  input_fn = inputs.train_input_fn(tiny_config)
  ctx = tf.distribute.InputContext()
  whole = iter(input_fn(ctx, 0))
  batches = [next(whole).numpy() for _ in range(3)]
  resumed = next(iter(input_fn(ctx, 2 * tiny_config.batch_size))).numpy()
  np.testing.assert_array_equal(resumed, batches[2])
  assert not np.array_equal(batches[0], batches[1])


def test_a_different_config_is_refused_in_the_same_model_dir(tiny_config, tmp_path):
  run_dir.write_or_check_config(tiny_config, str(tmp_path))
  run_dir.write_or_check_config(tiny_config.replace(train_steps=7), str(tmp_path))  # extending is fine
  with pytest.raises(ValueError, match=r"--z_dim=4 \(saved: 3\)"):
    run_dir.write_or_check_config(tiny_config.replace(z_dim=4), str(tmp_path))


def test_non_finite_steps_are_skipped_then_stop_training_and_keep_the_checkpoint(short_config,
                                                                                 tmp_path):
  model_dir = str(tmp_path / "run")
  frames = np.random.RandomState(2).rand(4, short_config.seq_len, 64, 64, 1).astype("float32")
  config = short_config.replace(train_steps=2)
  train_loop.train(config, model_dir, _fixed_batches(frames),
                   options=LoopOptions(checkpoint_every=2))
  bad = frames.copy()
  bad[0, 1, 3, 3, 0] = np.nan
  options = LoopOptions(checkpoint_every=1, max_bad_steps=2)
  with pytest.raises(train_loop.NonFiniteError, match="training stopped at step 4: 2 steps in a row "
                     "skipped, the last for input frames not finite"):
    train_loop.train(config.replace(train_steps=6), model_dir, _fixed_batches(bad), options=options)
  state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
  assert state.model_checkpoint_path.endswith("ckpt-2")  # step 3's save waited for a good step


def test_training_overfits_one_fixed_batch(tiny_config):
  """The whole step (losses, gradients, Adam, BatchNorm) can fit four sequences it sees again and
  again: a broken gradient path or a frozen module stalls the loss near its start."""
  frames = moving_squares(4, tiny_config.seq_len, seed=41)
  trainer = trainer_lib.Trainer(tiny_config.replace(lr=2e-3))
  iterator = iter(trainer.distribute(_fixed_batches(frames)))
  losses = [float(trainer.train_step(iterator)["mse"]) for _ in range(150)]
  first, last = np.mean(losses[:5]), np.mean(losses[-5:])
  assert last < 0.2 * first, (first, last)


def test_training_batches_from_tfrecords_are_windows_of_the_records(tiny_config, tmp_path):
  data_dir = str(tmp_path / "data")
  smmnist.write_tfrecords(data_dir, "train", num_sequences=6, seq_len=8, seed=0,
                          examples_per_shard=3)
  records = np.stack([f.numpy() for f in smmnist.tfrecord_dataset(data_dir)])  # (6, 8, 64, 64, 1)
  batch = next(iter(inputs.train_input_fn(tiny_config, data_dir=data_dir)(
      tf.distribute.InputContext(), 0))).numpy()
  assert batch.shape == (4, tiny_config.seq_len, 64, 64, 1)
  for video in batch:  # each is seq_len consecutive frames of one record
    assert any(np.array_equal(video, r[s:s + tiny_config.seq_len])
               for r in records for s in range(8 - tiny_config.seq_len + 1))
  too_long = "holds sequences of 8 frames; training needs n_past \\+ n_future = 9"
  with pytest.raises(ValueError, match=too_long):
    inputs.train_input_fn(tiny_config.replace(n_future=7), data_dir=data_dir)


def test_checkpoints_hold_every_variable_and_incomplete_ones_are_refused(tiny_config, tmp_path):
  """Layers kept in lists (conv stages, LSTM cells) once went missing from checkpoints silently."""
  trainer = trainer_lib.Trainer(tiny_config)
  path = tf.train.Checkpoint(model=trainer.model, optimizer=trainer.optimizer,
                             step=trainer.global_step).save(str(tmp_path / "full"))
  model_only = tf.train.Checkpoint(model=trainer.model).save(str(tmp_path / "model"))
  saved = [n for n, _ in tf.train.list_variables(model_only) if n.startswith("model/")]
  assert len(saved) == len(trainer.model.variables)  # trainable and BatchNorm statistics
  other = trainer_lib.Trainer(tiny_config.replace(seed=5))
  checkpoints.restore_objects(path, model=other.model, optimizer=other.optimizer,
                              step=other.global_step)
  for a, b in zip(trainer.model.variables, other.model.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  # a checkpoint that knows only part of the model (as the old layout did) is refused
  partial = tf.train.Checkpoint(model=tf.train.Checkpoint(encoder=trainer.model.encoder)).save(
      str(tmp_path / "partial"))
  with pytest.raises(checkpoints.IncompleteCheckpointError, match="train again"):
    checkpoints.restore_objects(partial, model=other.model)
