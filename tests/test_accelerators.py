"""Every accelerator and every size: float16 with a dynamic loss scale, gradient accumulation,
the device-dependent gradient kernels and XLA, on tiny models (issue 17)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import svg_tf
from pipelines import inputs
from svg_tf import checkpoints, export, frame_nets, run_dir, strategies, train_loop
from svg_tf import trainer as trainer_lib
from svg_tf.config import LoopOptions
from tests.test_training import _copy_weights, _fixed_batches


def _frames(config, seed=0, batch=None):
  return np.random.RandomState(seed).rand(batch or config.batch_size, config.seq_len, 64, 64,
                                          1).astype("float32")


def _updates_agree(got, want, before, what, tolerance):
  """Each variable's update agrees with the expected one to `tolerance` of its largest element
  (float summation order differs); returns how many variables moved, so the check is not
  vacuous."""
  moved = 0
  for g, w, b, v in zip(got, want, before, what):
    scale = np.abs(w - b).max()
    moved += scale > 0
    np.testing.assert_allclose(g - b, w - b, atol=tolerance * scale + 1e-8, err_msg=v.path)
  return moved


def _micro_batch_update(reference, frames, groups):
  """Applies with `reference`'s optimizer the sum over `groups` (lists of global batch positions)
  of each group's gradient of (its examples' loss summed / global batch), computed separately:
  what K micro-batches must amount to."""
  c = reference.config
  noise = trainer_lib.training_noise(tf.constant([c.seed, 0], tf.int64), c.seq_len - 1,
                                     c.batch_size, c.latent_dim)
  variables = reference.model.trainable_variables
  total = [tf.zeros_like(v) for v in variables]
  for group in groups:
    with tf.GradientTape() as tape:
      terms = reference.model.compute_losses(tf.gather(frames, group),
                                             tf.gather(noise, group, axis=1))
      loss = tf.reduce_sum(terms["loss"]) / c.batch_size
    total = [t + g for t, g in zip(total, tape.gradient(loss, variables))]
  reference.optimizer.apply_gradients(zip(total, variables))


@pytest.fixture(scope="module")
def unsplit_step(short_config):
  """(each variable's initial (path, value), logged mse, first encoder BatchNorm's moving mean)
  of one step on the whole batch (one replica, no accumulation): the same for both cases of the
  accumulation test, so traced once for the module."""
  config = short_config.replace(adam_epsilon=1.0, lr=0.5)
  one_batch = trainer_lib.Trainer(config)
  initial = [(v.path, v.numpy()) for v in one_batch.model.variables]
  whole = one_batch.train_step(iter(one_batch.distribute(_fixed_batches(_frames(config)))))
  first = frame_nets.batch_norms(one_batch.model.encoder)[0]
  return initial, float(whole["mse"]), first.moving_mean.numpy()


# Two replicas sum per-replica partial gradients: a different float summation order, which in
# the first conv (four BatchNorms deep, much cancellation) moves ~0.5% of its largest update.
@pytest.mark.parametrize("replicas,kernels,tolerance", [
    (1, frame_nets.CPU_KERNELS, 1e-4), (2, frame_nets.STOCK_KERNELS, 1e-2)])
def test_accumulated_micro_batches_make_the_update_of_their_summed_gradients(
    short_config, unsplit_step, replicas, kernels, tolerance):
  """K=2 micro-batches == the sum of the 2 separately computed micro-batch gradients, on one
  replica and on two (where micro-batch k is the k-th slice of every replica, normalised together
  by the synchronised BatchNorm). The two-replica case runs the stock kernels, whose autodiff
  goes through the BatchNorm's all-reduce (the GPU path), against hand-written gradients on one
  replica. Adam's epsilon is 1 so the update follows the gradient (see
  test_training.test_two_replicas_compute_the_update_of_one).

  Also: BatchNorm's moving averages take one update per step with the mean of the micro-batches'
  statistics. The first encoder BatchNorm sees the frames through one conv, so the mean of its
  micro-batches' means is the batch mean, and its moving mean equals the unsplit batch's (two
  updates with momentum 0.9 would not)."""
  config = short_config.replace(adam_epsilon=1.0, lr=0.5)
  frames = _frames(config)
  strategy = strategies.make_strategy(cpu_replicas=replicas) if replicas > 1 else None
  accumulating = trainer_lib.Trainer(config.replace(grad_accum_steps=2), strategy,
                                     kernels=kernels)
  reference = trainer_lib.Trainer(config)
  initial, whole_mse, whole_moving_mean = unsplit_step  # the whole batch's step, from `initial`
  for trainer in (accumulating, reference):
    for v, (path, value) in zip(trainer.model.variables, initial):
      assert v.path == path
      v.assign(value)
  before = [v.numpy() for v in reference.model.trainable_variables]
  out = accumulating.train_step(iter(accumulating.distribute(_fixed_batches(frames))))
  assert bool(out["applied"]) and accumulating.step == 1
  assert int(accumulating.optimizer.iterations.numpy()) == 1  # one update, not two
  local, micro = 4 // replicas, 4 // replicas // 2
  groups = [[r * local + k * micro + i for r in range(replicas) for i in range(micro)]
            for k in range(2)]
  _micro_batch_update(reference, frames, groups)
  moved = _updates_agree([v.numpy() for v in accumulating.model.trainable_variables],
                         [v.numpy() for v in reference.model.trainable_variables], before,
                         reference.model.trainable_variables, tolerance)
  assert moved > len(before) // 2
  # The logged loss is the global batch mean, as without accumulation: per-micro-batch BatchNorm
  # makes the values differ a little, not by a factor.
  assert float(out["mse"]) == pytest.approx(whole_mse, rel=0.2)
  first = frame_nets.batch_norms(accumulating.model.encoder)[0]
  assert "encoder" in first.path
  np.testing.assert_allclose(first.moving_mean.numpy(), whole_moving_mean, rtol=1e-5, atol=1e-7)
  assert not np.allclose(whole_moving_mean, 0.0)


def test_batch_that_micro_batches_cannot_split_is_refused(tiny_config):
  with pytest.raises(ValueError, match="grad_accum_steps=3: must divide --batch_size=4"):
    tiny_config.replace(grad_accum_steps=3)
  with pytest.raises(ValueError, match="grad_accum_steps=4: must divide each replica's batch of 2"):
    trainer_lib.Trainer(tiny_config.replace(grad_accum_steps=4),
                        strategies.make_strategy(cpu_replicas=2))


def test_float16_run_with_accumulation_checkpoints_its_loss_scale_and_serves_float32(
    short_config, tmp_path, monkeypatch):
  """mixed_float16 + grad_accum_steps=2 through the training loop: a loss scale far too high at
  the start overflows for several steps, each skipped by the optimizer without being a bad step
  (--max_bad_steps=1 would stop training otherwise); losses.jsonl and the checkpoint count
  updates; the loss scale is in the checkpoint, and resuming continues the uninterrupted run's
  losses; svg_tf.load and the SavedModel take and give float32."""
  start_scale = 2.0**24
  real = keras.optimizers.LossScaleOptimizer
  monkeypatch.setattr(keras.optimizers, "LossScaleOptimizer",
                      lambda inner: real(inner, initial_scale=start_scale))
  config = short_config.replace(precision="mixed_float16", grad_accum_steps=2, train_steps=6)
  options = LoopOptions(log_every=1, summary_every=1, checkpoint_every=3, max_bad_steps=1)
  input_fn = inputs.train_input_fn(config)
  whole_dir, resumed_dir = str(tmp_path / "whole"), str(tmp_path / "resumed")
  whole = train_loop.train(config, whole_dir, input_fn, options=options)
  assert whole["step"] == 6 and whole["skipped_steps"] == 0
  assert whole["loss_scale_overflows"] >= 2  # 2**24 is past float16's range for these gradients
  losses = run_dir.read_losses(whole_dir)
  assert [e["step"] for e in losses] == list(range(1, 7))  # updates, not micro-batches
  assert sum(not e["applied"] for e in losses) == whole["loss_scale_overflows"]
  assert all(e["loss"] is not None for e in losses)  # an overflow's forward pass was fine

  restored = trainer_lib.Trainer(config)
  checkpoints.Checkpoints(whole_dir, restored.strategy, model=restored.model,
                          optimizer=restored.optimizer, step=restored.global_step).restore()
  assert restored.step == 6
  scale = restored.loss_scale
  assert scale == start_scale / 2**whole["loss_scale_overflows"]  # no growth in 6 steps
  assert int(restored.optimizer.iterations.numpy()) == 6 - whole["loss_scale_overflows"]

  train_loop.train(config.replace(train_steps=3), resumed_dir, input_fn, options=options)
  train_loop.train(config, resumed_dir, input_fn, options=options)
  again = run_dir.read_losses(resumed_dir)
  assert [e["applied"] for e in again] == [e["applied"] for e in losses]
  np.testing.assert_allclose([e["loss"] for e in again], [e["loss"] for e in losses], rtol=1e-5)

  context = (_frames(config, batch=2)[:, :config.n_past] * 255).astype(np.uint8)
  predictor = svg_tf.load(whole_dir)
  assert predictor.config.precision == "mixed_float16"
  loaded = predictor.sample(context, num_future=3, num_samples=2, seed=5)
  version = export.export_run(whole_dir, str(tmp_path / "export"))
  served = svg_tf.load(version).sample(context, num_future=3, num_samples=2, seed=5)
  for frames in (loaded, served):
    assert frames.dtype == np.float32 and frames.shape == (2, 2, 3, 64, 64, 1)
    assert np.isfinite(frames).all()
  np.testing.assert_allclose(served, loaded, atol=1e-3)  # float16 convolutions either way


def test_an_overflowing_float16_step_changes_nothing_but_the_loss_scale(short_config):
  config = short_config.replace(precision="mixed_float16")
  t = trainer_lib.Trainer(config, strategies.make_strategy(cpu_replicas=2))
  iterator = iter(t.distribute(_fixed_batches(_frames(config))))
  out = t.train_step(iterator)
  assert bool(out["applied"]) or bool(out["overflow"])
  t.optimizer.dynamic_scale.assign(2.0**60)  # every gradient overflows float16
  before = [v.numpy() for v in t.model.variables]
  iterations = int(t.optimizer.iterations.numpy())
  out = t.train_step(iterator)
  assert bool(out["overflow"]) and not bool(out["applied"]) and not bool(out["bad_input"])
  assert np.isfinite(float(out["loss"]))
  assert t.loss_scale == 2.0**59 and t.step == 2
  assert int(t.optimizer.iterations.numpy()) == iterations
  for v, b in zip(t.model.variables, before):  # weights and BatchNorm statistics
    np.testing.assert_array_equal(v.numpy(), b, err_msg=v.path)


def _gradients(t, frames):
  seed = tf.constant([t.config.seed, 0], tf.int64)
  grads, stats = t._replica_grads(tf.constant(frames), seed, tf.constant(False))  # pylint: disable=protected-access
  return [g.numpy() for g in grads], stats.numpy()


@pytest.mark.parametrize("precision,tolerance", [("float32", 1e-4), ("mixed_bfloat16", 3e-2)])
def test_cpu_and_stock_kernels_give_the_same_gradients(tiny_config, precision, tolerance, caplog,
                                                      monkeypatch):
  """The CPU-tuned gradients (hand-written BatchNorm gradient; the smallest stride-2
  convolutions by matmul; under bfloat16, im2col kernel gradients of other small maps) against
  TensorFlow's own, on this CPU: equal to the precision's tolerance, relative to each variable's
  largest gradient element.

  Both run the same forward pass (the op-by-op BatchNorm): with the fused one, which rounds
  differently, a single activation that lands on the other side of a LeakyReLU kink changes this
  untrained model's BatchNorm-cancelled gradients by percents. The fused BatchNorm's gradients are
  tested layer by layer (test_model.py)."""
  monkeypatch.setattr(frame_nets, "FUSED_BATCH_NORM", False)
  caplog.set_level("INFO", logger="absl")
  config = tiny_config.replace(precision=precision)
  cpu = trainer_lib.Trainer(config)
  assert cpu.kernels == frame_nets.CPU_KERNELS
  assert caplog.text.count("kernels | cpu on CPU replicas (picked by device") == 1
  stock = trainer_lib.Trainer(config, kernels=frame_nets.STOCK_KERNELS)
  _copy_weights(cpu, stock)
  frames = _frames(config, seed=4)
  (g_cpu, s_cpu), (g_stock, s_stock) = _gradients(cpu, frames), _gradients(stock, frames)
  np.testing.assert_allclose(s_cpu, s_stock, rtol=1e-5 if precision == "float32" else 1e-2)
  largest = max(np.abs(b).max() for b in g_stock)
  compared = 0
  for a, b, v in zip(g_cpu, g_stock, cpu.model.trainable_variables):
    if v.path.endswith("/conv/bias"):  # a bias before BatchNorm: its gradient is 0 up to float noise
      assert max(np.abs(a).max(), np.abs(b).max()) < tolerance * largest, v.path
      continue
    scale = np.abs(b).max()
    np.testing.assert_allclose(a, b, atol=tolerance * scale + 1e-8, err_msg=v.path)
    compared += 1
  assert compared > len(g_cpu) // 2


def test_jit_compiled_step_gives_the_default_steps_losses(short_config):
  frames = _frames(short_config, seed=6)
  default = trainer_lib.Trainer(short_config)
  jitted = trainer_lib.Trainer(short_config, jit_compile=True)
  _copy_weights(default, jitted)
  it_default = iter(default.distribute(_fixed_batches(frames)))
  it_jitted = iter(jitted.distribute(_fixed_batches(frames)))
  for _ in range(2):  # the second step starts from weights each path updated itself
    a, b = default.train_step(it_default), jitted.train_step(it_jitted)
    for k in ("loss", "mse"):
      assert float(b[k]) == pytest.approx(float(a[k]), rel=1e-4), k
    # The KL of an untrained model is ~3e-5, all cancellation: compared against the loss.
    assert abs(float(b["kl"]) - float(a["kl"])) < 1e-4 * float(a["loss"])


def test_grad_accum_steps_may_change_when_resuming(tiny_config, tmp_path):
  run_dir.write_or_check_config(tiny_config.replace(grad_accum_steps=2), str(tmp_path))
  run_dir.write_or_check_config(tiny_config, str(tmp_path))  # more memory now: fine
  with pytest.raises(ValueError, match="precision"):
    run_dir.write_or_check_config(tiny_config.replace(precision="mixed_float16"), str(tmp_path))
  saved = json.load(open(os.path.join(str(tmp_path), "config.json")))
  assert saved["grad_accum_steps"] == 1
