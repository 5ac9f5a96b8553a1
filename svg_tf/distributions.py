"""The latent distributions of SVG as tensorflow_probability objects.

q(z_t | x_{1:t}) and the learned prior p(z_t | x_{1:t-1}) are diagonal Normals given by a mean and a
log-variance (SPEC 1.4); SVG-FP's prior is N(0, I). The KL term is tfp's analytic KL between them,
which equals the reference's `kl_criterion` element for element (summed over z here by the
`Independent` event dimension).
"""

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def diag_normal(mu, logvar) -> tfd.Distribution:
  """N(mu, diag(exp(logvar))) with event shape (z_dim,) and batch shape mu.shape[:-1]."""
  return tfd.Independent(tfd.Normal(loc=mu, scale=tf.exp(0.5 * logvar)),
                         reinterpreted_batch_ndims=1)


def standard_normal(shape, dtype=tf.float32) -> tfd.Distribution:
  """N(0, I) with batch shape shape[:-1] and event shape shape[-1:]."""
  return tfd.Independent(tfd.Normal(loc=tf.zeros(shape, dtype), scale=tf.ones(shape, dtype)),
                         reinterpreted_batch_ndims=1)


def reparameterized_sample(dist: tfd.Distribution, noise: tf.Tensor) -> tf.Tensor:
  """mean + noise * stddev: a sample of `dist` from given standard-normal `noise`.

  Taking the noise as an argument (rather than `dist.sample(seed=...)`) lets the trainer draw it
  for the global batch and hand each replica its slice, so N replicas reproduce one replica's
  update exactly; gradients flow through mean and stddev as in `sample()`.
  """
  return dist.mean() + tf.cast(noise, dist.dtype) * dist.stddev()

