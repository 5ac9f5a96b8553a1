"""One distributed SVG training step: the model, its Adam optimizer, and the replica step.

Split as in the TF Model Garden's Orbit: `Trainer` knows what one step is (under `strategy.run`);
svg_tf/train_loop.py decides when to log, summarise, checkpoint and stop. Everything that holds
variables is created under `strategy.scope()`.

Equivalence across replicas and machines: the loss is divided by the global batch, gradients are
summed over replicas, BatchNorm statistics are synchronised (TimeBatchNorm), and the latent noise is
drawn for the global batch from a per-step stateless seed. Noise column i belongs to position i of
the global batch as one input pipeline would order it; with W input pipelines (one per worker),
pipeline w holds positions w, w+W, w+2W, ... (the order of tf.data's `shard`, and of the SM-MNIST
stream), its local replicas taking consecutive per-replica batches. So N replicas on any number of
machines with global batch B compute the update of one replica with batch B, up to float summation
order (tests/test_training.py checks 2 local replicas, tests/reliability/ 2 worker processes).

Non-finite steps: a step whose input is not finite or outside [0, 1], or whose loss or gradients
are not finite, on any replica, is not applied: weights, Adam's moments and Adam's iteration count
stay, BatchNorm's moving statistics are put back. It still counts as a step: the global step is
the number of batches taken, which keeps the data stream and the noise seeds aligned with it,
while Adam's `iterations` counts applied updates only. Step k draws its noise from the seed
(seed, k - 1), so a resumed run draws what the uninterrupted one would have.
"""

from typing import Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from svg_tf import strategies
from svg_tf.config import SVGConfig
from svg_tf.model import SVG

InputFn = Callable[[tf.distribute.InputContext, int], tf.data.Dataset]


def training_noise(seed, steps: int, batch_size, z_dim: int) -> tf.Tensor:
  """The posterior's standard-normal noise of one step, (steps, global batch, z_dim), from a
  stateless seed pair (seed, step)."""
  return tf.random.stateless_normal(tf.stack([steps, batch_size, z_dim]), seed=seed)


class Trainer:
  """The SVG model, its Adam optimiser and one distributed training step."""

  LOGGED = ("loss", "mse", "kl")

  def __init__(self, config: SVGConfig, strategy: Optional[tf.distribute.Strategy] = None,
               jit_compile: bool = False):
    self.config = config
    self.strategy = strategy or tf.distribute.get_strategy()
    if config.batch_size % self.strategy.num_replicas_in_sync:
      raise ValueError(f"--batch_size={config.batch_size}: must be divisible by the "
                       f"{self.strategy.num_replicas_in_sync} replicas")
    self.local_replicas = strategies.local_replicas(self.strategy)
    self.num_workers = self.strategy.num_replicas_in_sync // self.local_replicas
    # Global Keras state: the dtype policy of new layers, and the seed of weight initialisers.
    keras.mixed_precision.set_global_policy(config.precision)
    keras.utils.set_random_seed(config.seed)
    with self.strategy.scope():
      self.model = SVG(config)
      self.optimizer = keras.optimizers.Adam(learning_rate=config.lr, beta_1=config.beta1,
                                             beta_2=config.beta2, epsilon=config.adam_epsilon)
      # A Keras 3 optimizer first built inside a replicated step fails under MirroredStrategy
      # ("You must feed a value for placeholder tensor"): build it here, inside the scope.
      self.optimizer.build(self.model.trainable_variables)
      # Batches taken, skipped steps included: the stream position and the noise seed of a step.
      self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    # What the forward pass updates (BatchNorm moving statistics): put back on a skipped step.
    self._forward_state = list(self.model.non_trainable_variables)
    self._grads_fn = tf.function(self._replica_grads, jit_compile=True) if jit_compile else (
        self._replica_grads)

  @property
  def step(self) -> int:
    """The global step: batches taken so far, skipped ones included."""
    return int(self.global_step.numpy())

  def _global_positions(self, local_batch):
    """Positions in the global batch of this replica's examples (see the module doc)."""
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    pipeline, local = replica // self.local_replicas, replica % self.local_replicas
    return pipeline + self.num_workers * (local * local_batch + tf.range(local_batch))

  def _replica_grads(self, batch, seed, stop):
    """One replica's gradients and its vote on the step.

    batch: frames (local batch, T, H, W, C), or for an action-conditioned model the pair (frames,
    actions (local batch, T, action_dim)). Returns (gradients, [loss, mse, kl] summed over this
    replica's examples / global batch, followed by 1.0 flags for: bad input, non-finite loss or
    gradients, stop requested).
    """
    c = self.config
    frames, actions = batch if isinstance(batch, (tuple, list)) else (batch, None)
    local_batch = tf.shape(frames)[0]
    noise = None
    if c.latent_dim:
      noise = training_noise(seed, c.seq_len - 1, c.batch_size, c.latent_dim)  # (T-1, B, z)
      noise = tf.gather(noise, self._global_positions(local_batch), axis=1)
    # Garbage in (NaN, or pixels outside [0, 1]: frames not divided by 255?) is never trained on.
    good_input = tf.reduce_all(tf.math.is_finite(frames)) & (tf.reduce_min(frames) >= 0.0) & (
        tf.reduce_max(frames) <= 1.0)
    if actions is not None:
      good_input &= tf.reduce_all(tf.math.is_finite(actions))
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      terms = self.model.compute_losses(frames, noise, actions=actions)
      loss = tf.nn.compute_average_loss(terms["loss"], global_batch_size=c.batch_size)
    grads = tape.gradient(loss, variables)
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
                           + [tf.reduce_all(tf.math.is_finite(terms["loss"]))])
    flags = [tf.logical_not(good_input), tf.logical_not(finite), stop]
    stats = tf.stack([tf.reduce_sum(terms[k]) / c.batch_size for k in self.LOGGED]
                     + [tf.cast(f, tf.float32) for f in flags])
    return grads, stats

  def _apply(self, grads):
    self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))

  @tf.function
  def train_step(self, iterator, stop_requested=False) -> Dict[str, tf.Tensor]:
    """Takes one global batch from a distributed iterator and applies one update if it is good.

    Args:
      iterator: over `distribute(input_fn)`.
      stop_requested: this worker's wish to stop after this step (a bool tensor, to avoid
        retracing); the result says whether any worker asked.
    Returns:
      loss, mse (summed over steps) and kl (summed over steps and z): global batch means;
      applied: whether the update was applied; bad_input: whether some replica's batch was not
      finite or outside [0, 1] (the step is then skipped); stop: whether any worker asked to stop.
    """
    batch = next(iterator)
    seed = tf.stack([tf.constant(self.config.seed, tf.int64), self.global_step.read_value()])
    before = [tf.identity(v.value) for v in self._forward_state]
    grads, stats = self.strategy.run(self._grads_fn, args=(batch, seed,
                                                           tf.convert_to_tensor(stop_requested)))
    # One all-reduce gives every replica of every worker the same losses and the same decision.
    totals = self.strategy.reduce(tf.distribute.ReduceOp.SUM, stats, axis=None)
    good = tf.reduce_all(totals[3:5] == 0.0)

    def apply():
      self.strategy.run(self._apply, args=(grads,))
      return tf.constant(True)

    def skip():
      for variable, value in zip(self._forward_state, before):
        variable.assign(value)
      return tf.constant(False)

    # The cond sits in cross-replica context: a replica-context cond may not hold the optimizer's
    # merge_call (as in Keras' LossScaleOptimizer).
    applied = tf.cond(good, apply, skip)
    with tf.control_dependencies([applied]):
      self.global_step.assign_add(1)
    result = {k: totals[i] for i, k in enumerate(self.LOGGED)}
    result.update(applied=applied, bad_input=totals[3] > 0, stop=totals[5] > 0)
    return result

  def distribute(self, input_fn: InputFn) -> tf.distribute.DistributedDataset:
    """Per-replica batches from `input_fn(input_context, start_index)`; the stream resumes at the
    sequence after the last one taken (start_index = global step * global batch)."""
    start = self.step * self.config.batch_size
    return self.strategy.distribute_datasets_from_function(lambda ctx: input_fn(ctx, start))

  def steps_of_all_workers(self) -> np.ndarray:
    """The global step of every replica of every worker (one all-gather)."""
    @tf.function
    def gather():
      per_replica = self.strategy.run(lambda: tf.reshape(self.global_step.read_value(), [1]))
      return self.strategy.gather(per_replica, axis=0)
    return gather().numpy()
