"""Non-finite steps: never applied, agreed on by every replica, and too many in a row stop training
with the last good checkpoint kept; non-finite weights are never saved."""

import os

import numpy as np
import pytest
import tensorflow as tf

from svg_tf import checkpoints, run_dir, strategies, train_loop
from svg_tf import trainer as trainer_lib
from svg_tf.config import LoopOptions


def _batches(*kinds, config):
  """input_fn serving one global batch per step: 'good', 'nan' (a NaN pixel in the last video) or
  'x255' (pixels in [0, 255], as if not divided by 255), split over replicas in order."""
  rng = np.random.RandomState(3)
  batches = []
  for kind in kinds:
    frames = rng.rand(config.batch_size, config.seq_len, 64, 64, 1).astype("float32")
    if kind == "nan":
      frames[-1, 1, 5, 5, 0] = np.nan
    elif kind == "x255":
      frames *= 255
    batches.append(frames)
  batches = np.stack(batches)  # (steps, B, T, 64, 64, 1)

  def input_fn(ctx, start_index):
    per_replica = ctx.get_per_replica_batch_size(config.batch_size)
    ds = tf.data.Dataset.from_tensor_slices(batches).skip(start_index // config.batch_size)
    return ds.unbatch().batch(per_replica)
  return input_fn


def _state(trainer):
  """Every replica's copy of every weight, BatchNorm statistic and optimizer variable."""
  values = []
  for v in trainer.model.variables + list(trainer.optimizer.variables):
    values += [x.numpy() for x in trainer.strategy.experimental_local_results(v.value)]
  return values


def _assert_same(before, after):
  assert len(before) == len(after)
  for a, b in zip(before, after):
    np.testing.assert_array_equal(a, b)


def test_a_non_finite_step_changes_nothing_but_the_step(short_config, tmp_path):
  config = short_config.replace(beta=1.0)
  trainer = trainer_lib.Trainer(config)
  # The loss (hence every gradient) turns NaN while `poison` is set; the input stays good, so the
  # forward pass moves BatchNorm's statistics, which a skipped step must put back.
  poison = tf.Variable(False, trainable=False)
  compute_losses = trainer.model.compute_losses

  def poisoned(frames, noise, **kwargs):
    terms = dict(compute_losses(frames, noise, **kwargs))
    terms["loss"] = terms["loss"] * tf.where(poison, np.float32(np.nan), np.float32(1.0))
    return terms

  trainer.model.compute_losses = poisoned
  iterator = iter(trainer.distribute(_batches("good", "good", "good", config=config)))
  assert bool(trainer.train_step(iterator)["applied"])
  before = _state(trainer)
  poison.assign(True)
  out = trainer.train_step(iterator)
  assert not bool(out["applied"]) and not bool(out["bad_input"]) and np.isnan(float(out["loss"]))
  _assert_same(before, _state(trainer))  # weights, BatchNorm statistics, Adam's moments and count
  assert trainer.step == 2 and int(trainer.optimizer.iterations) == 1
  poison.assign(False)
  assert bool(trainer.train_step(iterator)["applied"])
  assert trainer.step == 3 and int(trainer.optimizer.iterations) == 2

  # Checkpoints are never written with non-finite weights.
  saved = checkpoints.Checkpoints(str(tmp_path), trainer.strategy, model=trainer.model,
                                 optimizer=trainer.optimizer, step=trainer.global_step)
  saved.save(trainer.step)
  trainer.model.trainable_variables[0].assign(
      tf.fill(trainer.model.trainable_variables[0].shape, np.float32(np.inf)))
  with pytest.raises(train_loop.NonFiniteError, match="weights are not finite.*ckpt-3"):
    saved.save(4)
  assert saved.latest.endswith("ckpt-3")


def test_every_replica_skips_when_one_replica_has_bad_input(short_config):
  trainer = trainer_lib.Trainer(short_config, strategies.make_strategy(cpu_replicas=2))
  before = _state(trainer)
  assert len(before) == 2 * (len(trainer.model.variables) + len(trainer.optimizer.variables))
  iterator = iter(trainer.distribute(_batches("nan", "good", config=short_config)))
  out = trainer.train_step(iterator)  # the NaN is in replica 1's half only
  assert not bool(out["applied"]) and bool(out["bad_input"])
  _assert_same(before, _state(trainer))
  assert bool(trainer.train_step(iterator)["applied"]) and trainer.step == 2


def test_bad_steps_in_a_row_stop_training_and_keep_the_last_good_checkpoint(short_config, tmp_path,
                                                                            caplog):
  caplog.set_level("INFO", logger="absl")
  model_dir = str(tmp_path / "run")
  config = short_config.replace(train_steps=12)
  # One bad step, then two in a row, do not stop the run (the count restarts at a good step);
  # three in a row do.
  kinds = ["good", "good", "nan", "good", "x255", "nan", "good", "nan", "x255", "x255", "good",
           "good"]
  options = LoopOptions(checkpoint_every=1, log_every=1, max_bad_steps=3)
  with pytest.raises(train_loop.NonFiniteError, match=r"training stopped at step 10: 3 steps in a "
                     r"row skipped, the last for input frames not finite or outside \[0, 1\]; the "
                     r"last good checkpoint is kept \(.*ckpt-7\)"):
    train_loop.train(config, model_dir, _batches(*kinds, config=config), options=options)
  assert "step 3/12 | input frames not finite or outside [0, 1] (loss nan): update skipped, 1 in " \
         "a row (--max_bad_steps=3)" in caplog.text
  assert "checkpoint of step 5 postponed to the next applied step" in caplog.text
  state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
  assert [p.rsplit("-", 1)[1] for p in state.all_model_checkpoint_paths] == ["2", "4", "7"]
  # losses.jsonl: every step up to the newest checkpoint, the skipped ones marked.
  losses = run_dir.read_losses(model_dir)
  assert [e["step"] for e in losses] == list(range(1, 8))
  assert [e["applied"] for e in losses] == [k == "good" for k in kinds[:7]]
  assert [e["loss"] is None for e in losses] == [k == "nan" for k in kinds[:7]]
