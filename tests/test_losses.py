"""The objective: tfp's KL against the reference's closed form, and the loss against NumPy."""

import numpy as np
import tensorflow as tf

from svg_tf import distributions, losses
from svg_tf.model import SVG


def reference_kl(mu1, logvar1, mu2, logvar2):
  """edenton/svg `kl_criterion` element-wise (before its sum / batch_size)."""
  sigma1, sigma2 = np.exp(0.5 * logvar1), np.exp(0.5 * logvar2)
  return np.log(sigma2 / sigma1) + (np.exp(logvar1) + (mu1 - mu2) ** 2) / (2 * np.exp(logvar2)) - 0.5


def test_kl_equals_the_closed_form():
  rng = np.random.RandomState(0)
  mu_q, lv_q, mu_p, lv_p = (rng.randn(4, 3, 5).astype("float32") for _ in range(4))
  q, p = distributions.diag_normal(mu_q, lv_q), distributions.diag_normal(mu_p, lv_p)
  kl = distributions.tfd.kl_divergence(q, p)
  assert kl.shape == (4, 3)  # summed over the z (event) dimension
  np.testing.assert_allclose(kl, reference_kl(mu_q, lv_q, mu_p, lv_p).sum(-1), rtol=1e-5)
  np.testing.assert_allclose(distributions.tfd.kl_divergence(q, q), 0, atol=1e-6)
  # SVG-FP: KL to N(0, I) = -0.5 sum(1 + logvar - mu^2 - exp(logvar))  (train_svg_fp.py)
  fp = distributions.tfd.kl_divergence(q, distributions.standard_normal(mu_q.shape))
  np.testing.assert_allclose(fp, -0.5 * (1 + lv_q - mu_q ** 2 - np.exp(lv_q)).sum(-1), rtol=1e-5)


def test_loss_of_a_hand_built_batch_equals_the_formula():
  """L = sum_t mean_{b,c,h,w}(x_hat - x)^2 + beta * sum_t (1/B) sum_{b,d} KL  (SPEC 2.3)."""
  rng = np.random.RandomState(1)
  steps, batch, z = 4, 3, 5
  pred = rng.rand(steps, batch, 6, 7, 2).astype("float32")
  target = rng.rand(steps, batch, 6, 7, 2).astype("float32")
  mu_q, lv_q, mu_p, lv_p = (rng.randn(steps, batch, z).astype("float32") for _ in range(4))
  beta = 0.37
  kl = distributions.tfd.kl_divergence(distributions.diag_normal(mu_q, lv_q),
                                       distributions.diag_normal(mu_p, lv_p))
  terms = losses.per_example_losses(pred, target, kl, beta)
  total = float(tf.nn.compute_average_loss(terms["loss"], global_batch_size=batch))

  mse = sum(np.mean((pred[t] - target[t]) ** 2) for t in range(steps))
  kld = sum(reference_kl(mu_q[t], lv_q[t], mu_p[t], lv_p[t]).sum() / batch for t in range(steps))
  np.testing.assert_allclose(total, mse + beta * kld, rtol=1e-5)
  np.testing.assert_allclose(terms["mse"], ((pred - target) ** 2).mean(axis=(2, 3, 4)).sum(0),
                             rtol=1e-5)


def test_model_loss_uses_teacher_forcing_and_all_predicted_frames(tiny_config):
  """The model's mse is the formula applied to its own predictions of frames 1..T-1."""
  model = SVG(tiny_config)
  frames = tf.random.stateless_uniform([4, 5, 64, 64, 1], seed=[1, 2])
  noise = tf.random.stateless_normal([4, 4, 3], seed=[3, 4])
  terms = model.compute_losses(frames, noise)
  pred = terms["prediction"].numpy()
  assert pred.shape == (4, 4, 64, 64, 1)
  expected = ((pred - frames.numpy()[:, 1:]) ** 2).mean(axis=(2, 3, 4)).sum(axis=1)
  np.testing.assert_allclose(terms["mse"], expected, rtol=1e-5)
  assert np.all(terms["kl"].numpy() > 0)
  np.testing.assert_allclose(terms["loss"], terms["mse"] + tiny_config.beta * terms["kl"], rtol=1e-6)
