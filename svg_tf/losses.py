"""The SVG objective (SPEC 2.3), as per-example terms that a distributed step reduces.

L = sum_{t=1}^{T-1} mean_{b,c,h,w} (x_hat_t - x_t)^2 + beta * sum_{t=1}^{T-1} (1/B) sum_{b,d} KL_{t,b,d}

Written per example b: l_b = sum_t mean_{c,h,w}(x_hat - x)^2 + beta * sum_t sum_d KL, and
L = (1/B) sum_b l_b. Dividing the per-replica sum by the global batch
(`tf.nn.compute_average_loss`) and summing gradients over replicas gives the same L on any number
of replicas.
"""

from typing import Dict, Optional

import tensorflow as tf


def per_example_losses(predicted: tf.Tensor, target: tf.Tensor, kl: Optional[tf.Tensor],
                       beta: float) -> Dict[str, tf.Tensor]:
  """Per-example SVG loss terms.

  Args:
    predicted, target: (time, batch, H, W, C) frames for steps 1..T-1.
    kl: (time, batch) KL(q || p) summed over z, or None for the deterministic model.
    beta: weight of the KL term.
  Returns:
    dict of (batch,) tensors: `mse` (per-step pixel means summed over steps), `kl` (summed over
    steps), `loss` = mse + beta * kl.
  """
  err = tf.cast(predicted, tf.float32) - tf.cast(target, tf.float32)
  mse = tf.reduce_sum(tf.reduce_mean(tf.square(err), axis=[2, 3, 4]), axis=0)  # (batch,)
  kl = tf.zeros_like(mse) if kl is None else tf.reduce_sum(tf.cast(kl, tf.float32), axis=0)
  return {"loss": mse + beta * kl, "mse": mse, "kl": kl}
