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

mixed_float16: the loss is multiplied by a dynamic loss scale before differentiation (Keras'
LossScaleOptimizer, which the checkpoint holds), so small gradients survive float16. A step whose
scaled gradients overflow is an expected event, not a bad step: the optimizer halves the scale and
skips the update (`overflow` in the step's result); weights, Adam and BatchNorm stay as before.

Gradient accumulation (config.grad_accum_steps = K): each replica splits its batch into K
micro-batches (consecutive examples) and sums their gradients in float32 before the one update;
the loss is still divided by the global batch, the noise of an example is the one it has in the
unsplit batch, and BatchNorm's moving averages take one update per step with the mean of the
micro-batches' statistics. The only difference from one big batch: the batch statistics that
normalise are each micro-batch's (with synchronised BatchNorm, micro-batch k of every replica
together).
"""

from typing import Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from absl import logging

from svg_tf import frame_nets, strategies
from svg_tf.config import SVGConfig
from svg_tf.model import SVG

InputFn = Callable[[tf.distribute.InputContext, int], tf.data.Dataset]


def training_noise(seed, steps: int, batch_size, z_dim: int) -> tf.Tensor:
  """The posterior's standard-normal noise of one step, (steps, global batch, z_dim), from a
  stateless seed pair (seed, step)."""
  return tf.random.stateless_normal(tf.stack([steps, batch_size, z_dim]), seed=seed)


def replica_device_type(strategy: tf.distribute.Strategy) -> str:
  """"CPU", "GPU" or "TPU": the device type the strategy's replicas run on (the default strategy:
  a GPU if TensorFlow sees one, as its placement would pick)."""
  try:
    devices = strategy.extended.worker_devices
  except (RuntimeError, NotImplementedError, AttributeError):  # the default strategy
    devices = ()
  types = {tf.DeviceSpec.from_string(d).device_type or "CPU" for d in devices}
  if not types:
    types = {"GPU"} if tf.config.list_logical_devices("GPU") else {"CPU"}
  return "CPU" if types == {"CPU"} else sorted(types - {"CPU"})[0]


def check_batch_split(config: SVGConfig, replicas: int):
  """ValueError naming the flag unless the global batch splits evenly over `replicas` and each
  replica's share into config.grad_accum_steps micro-batches."""
  if config.batch_size % replicas:
    raise ValueError(f"--batch_size={config.batch_size}: must be divisible by the {replicas} "
                     "replicas (--cpu_replicas, GPUs, workers) that share each batch")
  if config.batch_size // replicas % config.grad_accum_steps:
    raise ValueError(f"--grad_accum_steps={config.grad_accum_steps}: must divide each replica's "
                     f"batch of {config.batch_size // replicas} (--batch_size={config.batch_size} "
                     f"over {replicas} replicas)")


class Trainer:
  """The SVG model, its Adam optimiser and one distributed training step.

  kernels: frame_nets.CPU_KERNELS or STOCK_KERNELS; None picks by the replicas' device (CPUs get
  the CPU-tuned gradients, GPUs and TPUs the stock ones) and logs the choice.
  """

  LOGGED = ("loss", "mse", "kl")
  # The step's flags after the logged terms: bad input, non-finite loss, non-finite gradients,
  # stop requested (each 1.0 on the replicas that saw it, summed over replicas).
  _BAD_INPUT, _BAD_LOSS, _BAD_GRADS, _STOP = range(len(LOGGED), len(LOGGED) + 4)

  def __init__(self, config: SVGConfig, strategy: Optional[tf.distribute.Strategy] = None,
               jit_compile: bool = False, kernels: Optional[str] = None):
    self.config = config
    self.strategy = strategy or tf.distribute.get_strategy()
    replicas = self.strategy.num_replicas_in_sync
    check_batch_split(config, replicas)
    self.local_replicas = strategies.local_replicas(self.strategy)
    self.num_workers = replicas // self.local_replicas
    self.loss_scaled = config.precision == "mixed_float16"
    # Global Keras state: the dtype policy of new layers, and the seed of weight initialisers.
    keras.mixed_precision.set_global_policy(config.precision)
    keras.utils.set_random_seed(config.seed)
    with self.strategy.scope():
      self.model = SVG(config)
      optimizer = keras.optimizers.Adam(learning_rate=config.lr, beta_1=config.beta1,
                                        beta_2=config.beta2, epsilon=config.adam_epsilon)
      if self.loss_scaled:  # dynamic scale: from 2**15, halved on overflow, doubled every 2000
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
      self.optimizer = optimizer
      # A Keras 3 optimizer first built inside a replicated step fails under MirroredStrategy
      # ("You must feed a value for placeholder tensor"): build it here, inside the scope.
      self.optimizer.build(self.model.trainable_variables)
      # Batches taken, skipped steps included: the stream position and the noise seed of a step.
      self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    device = replica_device_type(self.strategy)
    self.kernels = kernels or (frame_nets.CPU_KERNELS if device == "CPU"
                               else frame_nets.STOCK_KERNELS)
    frame_nets.set_kernels(self.model, self.kernels)
    logging.info("kernels | %s on %s replicas%s", self.kernels, device,
                 "" if kernels else " (picked by device; train.py --kernels overrides)")
    # What the forward pass updates (BatchNorm moving statistics): put back on a skipped step.
    self._forward_state = list(self.model.non_trainable_variables)
    self._grads_fn = tf.function(self._replica_grads, jit_compile=True) if jit_compile else (
        self._replica_grads)

  @property
  def step(self) -> int:
    """The global step: batches taken so far, skipped ones included."""
    return int(self.global_step.numpy())

  @property
  def loss_scale(self) -> Optional[float]:
    """mixed_float16: the current dynamic loss scale; None otherwise."""
    return float(self.optimizer.dynamic_scale.numpy()) if self.loss_scaled else None

  def _global_positions(self, local_batch):
    """Positions in the global batch of this replica's examples (see the module doc)."""
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    pipeline, local = replica // self.local_replicas, replica % self.local_replicas
    return pipeline + self.num_workers * (local * local_batch + tf.range(local_batch))

  def _micro_batch_grads(self, frames, noise, actions):
    """Gradients of (examples' loss summed / global batch) for one (micro-)batch, float32, scaled
    by the loss scale under mixed_float16; and [loss, mse, kl] summed / global batch, followed by
    the number of non-finite per-example losses."""
    c = self.config
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      terms = self.model.compute_losses(frames, noise, actions=actions)
      loss = tf.nn.compute_average_loss(terms["loss"], global_batch_size=c.batch_size)
      if self.loss_scaled:
        loss = self.optimizer.scale_loss(loss)
    grads = tape.gradient(loss, variables)
    sums = tf.stack([tf.reduce_sum(terms[k]) / c.batch_size for k in self.LOGGED] + [
        tf.reduce_sum(tf.cast(~tf.math.is_finite(terms["loss"]), tf.float32))])
    return grads, sums

  def _accumulated_grads(self, frames, noise, actions):
    """`_micro_batch_grads` summed over config.grad_accum_steps micro-batches, one after the other:
    micro-batch k + 1 starts once k's gradients exist, so one micro-batch's activations live at a
    time. (An unrolled Python loop: a graph loop may not hold the synchronised BatchNorm's
    all-reduce under MirroredStrategy.) BatchNorm's moving averages end as one update with the
    mean of the micro-batches' statistics."""
    k_steps = self.config.grad_accum_steps
    micro = tf.shape(frames)[0] // k_steps
    norms = frame_nets.batch_norms(self.model)
    start = [(tf.identity(n.moving_mean.value), tf.identity(n.moving_variance.value))
             for n in norms]
    grads, sums, previous = None, 0.0, []
    for k in range(k_steps):
      with tf.control_dependencies(previous):
        part = lambda x, axis=0: tf.gather(x, k * micro + tf.range(micro), axis=axis)  # pylint: disable=cell-var-from-loop
        inputs = (part(frames), None if noise is None else part(noise, 1),
                  None if actions is None else part(actions))
      # Momentum k / (k + 1): the moving averages become the running mean of the micro-batches'.
      with frame_nets.moving_average_momentum(self.model, k / (k + 1)):
        g, t = self._micro_batch_grads(*inputs)
      grads = g if grads is None else [a if b is None else b if a is None else a + b
                                       for a, b in zip(grads, g)]
      sums += t
      previous = [x for x in grads if x is not None]
    for n, (mean, variance) in zip(norms, start):  # one update: m * before + (1 - m) * mean
      n.moving_mean.assign(n.momentum * mean + (1.0 - n.momentum) * n.moving_mean)
      n.moving_variance.assign(n.momentum * variance + (1.0 - n.momentum) * n.moving_variance)
    return grads, sums

  def _replica_grads(self, batch, seed, stop):
    """One replica's gradients and its vote on the step.

    batch: frames (local batch, T, H, W, C), or for an action-conditioned model the pair (frames,
    actions (local batch, T, action_dim)). Returns (gradients, [loss, mse, kl] summed over this
    replica's examples / global batch, followed by 1.0 flags for: bad input, non-finite loss,
    non-finite gradients, stop requested).
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
    if c.grad_accum_steps == 1:
      grads, sums = self._micro_batch_grads(frames, noise, actions)
    else:
      grads, sums = self._accumulated_grads(frames, noise, actions)
    finite_grads = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads
                                  if g is not None])
    flags = [tf.logical_not(good_input), sums[-1] > 0, tf.logical_not(finite_grads), stop]
    stats = tf.concat([sums[:-1], tf.stack([tf.cast(f, tf.float32) for f in flags])], 0)
    return grads, stats

  def _apply(self, grads, overflow):
    if self.loss_scaled:
      # Every replica hands the optimizer the same verdict: on an overflow anywhere, non-finite
      # gradients everywhere, so LossScaleOptimizer skips the update and halves the scale.
      grads = [g if g is None else tf.where(overflow, tf.constant(np.nan, g.dtype), g)
               for g in grads]
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
      finite or outside [0, 1] (the step is then skipped); overflow: mixed_float16 only, the
      scaled gradients overflowed (the update is skipped and the loss scale halved: not a bad
      step); stop: whether any worker asked to stop.
    """
    batch = next(iterator)
    seed = tf.stack([tf.constant(self.config.seed, tf.int64), self.global_step.read_value()])
    before = [tf.identity(v.value) for v in self._forward_state]
    grads, stats = self.strategy.run(self._grads_fn, args=(batch, seed,
                                                           tf.convert_to_tensor(stop_requested)))
    # One all-reduce gives every replica of every worker the same losses and the same decision.
    totals = self.strategy.reduce(tf.distribute.ReduceOp.SUM, stats, axis=None)
    good_forward = (totals[self._BAD_INPUT] == 0.0) & (totals[self._BAD_LOSS] == 0.0)
    finite_grads = totals[self._BAD_GRADS] == 0.0
    if self.loss_scaled:
      overflow = good_forward & ~finite_grads
      take_to_optimizer = good_forward  # it skips overflowing updates itself
    else:
      overflow = tf.constant(False)
      take_to_optimizer = good_forward & finite_grads

    def apply():
      self.strategy.run(self._apply, args=(grads, overflow))
      return tf.constant(True)

    def skip():
      return tf.constant(False)

    # The cond sits in cross-replica context: a replica-context cond may not hold the optimizer's
    # merge_call (as in Keras' LossScaleOptimizer).
    handed = tf.cond(take_to_optimizer, apply, skip)
    applied = handed & ~overflow

    def restore_forward_state():
      for variable, value in zip(self._forward_state, before):
        variable.assign(value)
      return tf.constant(True)

    with tf.control_dependencies([handed]):
      restored = tf.cond(applied, lambda: tf.constant(False), restore_forward_state)
    with tf.control_dependencies([restored]):
      self.global_step.assign_add(1)
    result = {k: totals[i] for i, k in enumerate(self.LOGGED)}
    result.update(applied=applied, bad_input=totals[self._BAD_INPUT] > 0, overflow=overflow,
                  stop=totals[self._STOP] > 0)
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
