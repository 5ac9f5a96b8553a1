"""Tests that pin what makes the model SVG, each able to fail on a plausible mistake.

Who sees which frame (the posterior x_t, the prior x_{t-1}, the predictor h_{t-1} and z_t), the
reference's settings (Adam, N(0, 0.02) weights, BatchNorm), BatchNorm's statistics against numpy,
the Fig. 6 measurement's alignment with wall hits, and what stays float32 under mixed_bfloat16.
"""

import numpy as np
import pytest
import tensorflow as tf

from svg_tf import config as config_lib
from svg_tf import evaluation, frame_nets
from svg_tf.frame_nets import BN_MOVING, BN_TRAIN, TimeBatchNorm
from svg_tf.model import SVG
from svg_tf.recurrent import LSTMCell
from svg_tf.trainer import Trainer
from tests.test_export import TINY, moving_squares, sensitised_model


def _distributions(model, frames, noise):
  """compute_losses on `frames`, returning the posterior's and the prior's (mean, std) per step
  (T-1, batch, z) as the model's own code builds them."""
  seen = {}
  for name in ("posterior", "prior"):
    net = getattr(model, name)
    real = net.sequence

    def spy(x, state=None, real=real, name=name):
      dist, state = real(x, state)
      seen[name] = (dist.mean().numpy(), dist.stddev().numpy())
      return dist, state

    net.sequence = spy
  try:
    model.compute_losses(frames, noise, bn_mode=BN_MOVING)
  finally:
    for name in ("posterior", "prior"):
      del getattr(model, name).sequence
  return seen


def test_posterior_sees_frame_t_and_the_prior_frame_t_minus_1_only():
  model = sensitised_model(config_lib.preset("smmnist", **dict(TINY, n_future=4)))
  frames = moving_squares(2, 6, seed=31)
  noise = np.zeros((5, 2, 3), np.float32)
  base = _distributions(model, frames, noise)
  k = 3  # perturb frame x_3; step index t - 1 holds q_t and p_t
  changed = frames.copy()
  changed[:, k] = 1.0 - changed[:, k]
  moved = _distributions(model, changed, noise)
  for name, first_moved in (("posterior", k), ("prior", k + 1)):
    for stat in range(2):
      before, after = base[name][stat], moved[name][stat]
      steps = np.abs(after - before).max(axis=(1, 2))  # per step t = 1..5
      np.testing.assert_array_equal(steps[:first_moved - 1], 0.0, err_msg=name)
      assert steps[first_moved - 1] > 1e-4, (name, steps)  # q_3 sees x_3; p_4 is the first prior


def test_predictor_sees_h_t_minus_1_and_z_t():
  """Predicting x_t uses the frames before t and the noise of z_t, nothing later."""
  det = sensitised_model(config_lib.preset("smmnist", **dict(TINY, n_future=4), model="det"))
  frames = moving_squares(2, 6, seed=32)
  base = det.compute_losses(frames, bn_mode=BN_MOVING)["prediction"].numpy()  # x_1..x_5
  changed = frames.copy()
  changed[:, 3] = 1.0 - changed[:, 3]
  moved = det.compute_losses(changed, bn_mode=BN_MOVING)["prediction"].numpy()
  np.testing.assert_allclose(moved[:, :3], base[:, :3], atol=1e-6)  # x_1..x_3 use x_0..x_2
  assert np.abs(moved[:, 3] - base[:, 3]).max() > 1e-3  # x_4 uses h_3

  lp = sensitised_model(config_lib.preset("smmnist", **dict(TINY, n_future=4)))
  noise = np.zeros((5, 2, 3), np.float32)
  base = lp.compute_losses(frames, noise, bn_mode=BN_MOVING)["prediction"].numpy()
  pushed = noise.copy()
  pushed[2] = 3.0  # the noise of z_3
  moved = lp.compute_losses(frames, pushed, bn_mode=BN_MOVING)["prediction"].numpy()
  np.testing.assert_allclose(moved[:, :2], base[:, :2], atol=1e-6)  # x_1, x_2 before z_3
  assert np.abs(moved[:, 2] - base[:, 2]).max() > 1e-3  # x_3 uses z_3


def test_the_model_is_built_with_the_reference_settings():
  config = config_lib.preset("smmnist")
  trainer = Trainer(config.replace(batch_size=4))
  adam = trainer.optimizer
  assert (adam.beta_1, adam.beta_2, adam.epsilon) == (0.9, 0.999, 1e-8)  # torch's Adam defaults
  assert float(adam.learning_rate) == pytest.approx(2e-3)
  model = trainer.model
  kernel = model.encoder.stages[2][0].conv.kernel.numpy()  # 4x4x128x256: 524,288 draws
  assert abs(kernel.mean()) < 1e-3 and kernel.std() == pytest.approx(0.02, rel=0.01)
  assert np.all(model.encoder.stages[2][0].conv.bias.numpy() == 0.0)
  norms = [layer for layer in model._flatten_layers() if isinstance(layer, TimeBatchNorm)]
  assert len(norms) == 9  # 4 encoder stages + its last block, the decoder's head and 3 stages
  gammas = np.concatenate([n.gamma.numpy() for n in norms])
  assert gammas.mean() == pytest.approx(1.0, abs=2e-3) and gammas.std() == pytest.approx(0.02, rel=0.1)
  assert all(np.all(n.beta.numpy() == 0.0) for n in norms)
  assert {(n.momentum, n.epsilon) for n in norms} == {(0.9, 1e-5)}  # torch: momentum 0.1
  cell = model.frame_predictor.cells[0]
  assert isinstance(cell, LSTMCell)
  bound = 1 / np.sqrt(config.rnn_size)  # torch's nn.LSTMCell: U(-1/sqrt(units), 1/sqrt(units))
  weights = cell.recurrent_kernel.numpy()
  assert weights.min() >= -bound and weights.max() <= bound and weights.std() == pytest.approx(
      bound / np.sqrt(3), rel=0.02)


def test_batchnorm_statistics_and_moving_update_against_numpy():
  rng = np.random.default_rng(33)
  x = (2.0 + 0.5 * rng.standard_normal((3, 4, 5, 5, 2))).astype(np.float32)  # (time, batch, ...)
  norm = TimeBatchNorm(momentum=0.9, epsilon=1e-5)
  norm.build(x.shape)
  gamma, beta = norm.gamma.numpy(), norm.beta.numpy()
  y = norm(tf.constant(x), bn_mode=BN_TRAIN).numpy()
  x64 = x.astype(np.float64)
  mean = x64.mean(axis=(1, 2, 3))  # per time step and channel
  var = x64.var(axis=(1, 2, 3))  # biased: it normalises the batch, as in torch
  per_step = lambda v: v[:, None, None, None]
  np.testing.assert_allclose(y, gamma * (x64 - per_step(mean)) / np.sqrt(per_step(var) + 1e-5)
                             + beta, atol=1e-5)
  count = 4 * 5 * 5
  unbiased = var * count / (count - 1)  # torch's running variance takes the unbiased estimate
  np.testing.assert_allclose(norm.moving_mean.numpy(), 0.9 * 0.0 + 0.1 * mean.mean(0), rtol=1e-6)
  np.testing.assert_allclose(norm.moving_variance.numpy(), 0.9 * 1.0 + 0.1 * unbiased.mean(0),
                             rtol=1e-6)
  norm(tf.constant(x), bn_mode=BN_TRAIN)  # a second update compounds at the same momentum
  np.testing.assert_allclose(norm.moving_mean.numpy(), 0.19 * mean.mean(0), rtol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_batchnorm_variance_is_exact_where_the_one_pass_formula_is_not(fused):
  """A large mean against a small spread: E[x^2] - E[x]^2 loses most of its digits there. Both
  forms (the fused op on one replica, the op-by-op one summed over replicas) take two passes."""
  rng = np.random.default_rng(34)
  x = (1000.0 + 0.01 * rng.standard_normal((3, 4, 5, 5, 2))).astype(np.float32)
  x64 = x.astype(np.float64)
  var = x64.var(axis=(1, 2, 3))
  ones = np.ones(2, np.float32)
  _, _, variance, count = frame_nets.per_step_batch_norm(tf.constant(x), ones, 0 * ones, 1e-5,
                                                         None if fused else lambda t: t)
  assert float(count) == 4 * 5 * 5
  np.testing.assert_allclose(variance.numpy(), var, rtol=1e-3)
  xf = x.astype(np.float32)
  one_pass = (xf * xf).mean(axis=(1, 2, 3)) - xf.mean(axis=(1, 2, 3)) ** 2
  assert np.abs(one_pass - var).max() > 10 * np.abs(variance.numpy() - var).max()


def test_wall_hit_ratio_aligns_the_prior_std_with_the_hits():
  """Step k of the prior's std is z_{k+1}'s: a hit at frame k shows there (after_wall_hit)."""
  rng = np.random.default_rng(34)
  hits = rng.random((6, 9, 2)) < 0.15  # (videos, frames, digits)
  hits[0, 2, 0] = True
  hit_frame = hits.any(axis=2)  # (6, 9)
  std = np.where(hit_frame[:, :-1], 3.0, 1.0)  # wide exactly at the latent after each hit
  ratios = evaluation.wall_hit_ratios(std, hits)
  assert ratios["after_wall_hit"]["ratio"] == pytest.approx(3.0)
  assert ratios["after_wall_hit"]["num_hit_steps"] == int(hit_frame[:, :-1].sum())
  at_hit = ratios["at_wall_hit"]["ratio"]  # the step before: a different, smaller ratio
  assert at_hit is not None and at_hit < 2.0


def test_mixed_bfloat16_keeps_variables_loss_and_kl_in_float32():
  config = config_lib.preset("smmnist", **TINY, precision="mixed_bfloat16")
  trainer = Trainer(config)
  model = trainer.model
  assert model.encoder.stages[0][0].conv.compute_dtype == "bfloat16"  # the convs do run in bf16
  assert {v.dtype for v in model.variables} == {"float32"}
  frames = moving_squares(4, 5, seed=35)
  terms = model.compute_losses(frames, np.zeros((4, 4, 3), np.float32))
  assert {k: terms[k].dtype for k in ("loss", "mse", "kl")} == {
      "loss": tf.float32, "mse": tf.float32, "kl": tf.float32}
  h, _ = model.encoder(tf.transpose(frames, [1, 0, 2, 3, 4]))
  assert h.dtype == tf.float32  # the LSTMs' input and state stay float32
  iterator = iter(trainer.distribute(lambda ctx, start: tf.data.Dataset.from_tensors(
      frames).repeat()))
  out = trainer.train_step(iterator)
  assert out["loss"].dtype == tf.float32 and out["kl"].dtype == tf.float32
  assert bool(out["applied"]) and {v.dtype for v in trainer.optimizer.variables} <= {
      "float32", "int64"}
