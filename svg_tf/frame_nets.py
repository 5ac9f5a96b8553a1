"""Frame encoders and decoders of SVG: DCGAN and VGG, at 64 and 128 pixels (SPEC section 1.1-1.3).

Every network here takes time-major video tensors (time, batch, height, width, channels). The
convolutions fold time into the batch, so a whole sequence is one call; BatchNorm keeps one set of
statistics per time step, which is what the reference computes when it encodes each frame of a
batch in its own call. Skip features are returned shallow to deep and consumed deep to shallow,
concatenated as [decoder features, skip] on the channel axis, as in the reference.

Initialisation is the reference's (`utils.init_weights`): conv and dense kernels N(0, 0.02) with
zero bias, BatchNorm gamma N(1, 0.02) and beta 0.
"""

from typing import List, Sequence, Tuple

import keras
import tensorflow as tf

BN_TRAIN = "train"  # batch statistics, moving averages updated (training)
BN_BATCH = "batch"  # batch statistics, nothing updated (the reference's generation)
BN_MOVING = "moving"  # moving averages (inference: output independent of the rest of the batch)
_BN_MODES = (BN_TRAIN, BN_BATCH, BN_MOVING)


def conv_init():
  return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def fold_time(x: tf.Tensor) -> tf.Tensor:
  """(time, batch, h, w, c) -> (time*batch, h, w, c)."""
  return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], axis=0))


def unfold_time(x: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
  """(time*batch, h, w, c) -> (time, batch, h, w, c) with time and batch taken from `like`."""
  return tf.reshape(x, tf.concat([tf.shape(like)[:2], tf.shape(x)[1:]], axis=0))


class TimeBatchNorm(keras.layers.Layer):
  """BatchNorm over (time, batch, h, w, c) with separate statistics for every time step.

  Under a distribution strategy with several replicas and `synchronized=True`, the statistics are
  summed over all replicas, so N replicas with global batch B normalise exactly as one replica with
  batch B. Moving averages (used in BN_MOVING mode) are updated with the mean over time steps of
  the per-step moments. Statistics are computed in float32 whatever the compute dtype.
  """

  def __init__(self, momentum=0.9, epsilon=1e-5, synchronized=True, **kwargs):
    super().__init__(**kwargs)
    self.momentum = momentum
    self.epsilon = epsilon
    self.synchronized = synchronized

  def build(self, input_shape):
    channels = input_shape[-1]
    self.gamma = self.add_weight(shape=(channels,), name="gamma", autocast=False,
                                 initializer=keras.initializers.RandomNormal(1.0, 0.02))
    self.beta = self.add_weight(shape=(channels,), name="beta", autocast=False,
                                initializer="zeros")
    self.moving_mean = self.add_weight(shape=(channels,), name="moving_mean", trainable=False,
                                       initializer="zeros", autocast=False, aggregation="mean")
    self.moving_variance = self.add_weight(shape=(channels,), name="moving_variance",
                                           trainable=False, initializer="ones", autocast=False,
                                           aggregation="mean")

  def _moments(self, x):
    """Per-time-step mean and (biased) variance of x (time, batch, h, w, c) -> 2 x (time, c)."""
    ctx = tf.distribute.get_replica_context()
    if not self.synchronized or ctx is None or ctx.num_replicas_in_sync == 1:
      mean, variance = tf.nn.moments(x, axes=[1, 2, 3])
      return mean, variance
    count = tf.cast(tf.reduce_prod(tf.shape(x)[1:4]), tf.float32)
    local = tf.concat([tf.reduce_sum(x, axis=[1, 2, 3]), tf.reduce_sum(tf.square(x), axis=[1, 2, 3]),
                       tf.fill([tf.shape(x)[0], 1], count)], axis=-1)
    total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local)
    channels = x.shape[-1]
    n = total[:, -1:]
    mean = total[:, :channels] / n
    variance = tf.maximum(total[:, channels:2 * channels] / n - tf.square(mean), 0.0)
    return mean, variance

  def call(self, x, bn_mode=BN_TRAIN):
    if bn_mode not in _BN_MODES:
      raise ValueError(f"bn_mode={bn_mode!r}: must be one of {_BN_MODES}")
    out_dtype = x.dtype
    x = tf.cast(x, tf.float32)
    if bn_mode == BN_MOVING:
      mean, variance = self.moving_mean, self.moving_variance
    else:
      mean, variance = self._moments(x)
      if bn_mode == BN_TRAIN:
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + tf.reduce_mean(mean, 0) * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m +
                                    tf.reduce_mean(variance, 0) * (1.0 - m))
      mean = mean[:, None, None, None, :]  # (time, 1, 1, 1, c)
      variance = variance[:, None, None, None, :]
    y = tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, self.epsilon)
    return tf.cast(y, out_dtype)


class ConvBlock(keras.layers.Layer):
  """Conv (or transposed conv) -> per-time-step BatchNorm -> activation, on (time, batch, ...)."""

  def __init__(self, filters, kernel, stride, padding, activation="leaky_relu", transpose=False,
               bn=None, **kwargs):
    super().__init__(**kwargs)
    conv_cls = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
    self.conv = conv_cls(filters, kernel, stride, padding, kernel_initializer=conv_init(),
                         dtype=self.dtype_policy, name="conv")
    self.norm = TimeBatchNorm(**(bn or {}), dtype=self.dtype_policy, name="bn")
    self.activation = activation

  def call(self, x, bn_mode=BN_TRAIN):
    y = unfold_time(self.conv(fold_time(x)), x)
    y = self.norm(y, bn_mode=bn_mode)
    if self.activation == "leaky_relu":
      return tf.nn.leaky_relu(y, alpha=0.2)
    return tf.tanh(y)


def _map_frames(fn, x):
  """Applies a per-image op (pooling, upsampling) to a (time, batch, h, w, c) tensor."""
  return unfold_time(fn(fold_time(x)), x)


def _max_pool(x):
  return _map_frames(lambda y: tf.nn.max_pool2d(y, 2, 2, "VALID"), x)


def _upsample(x):
  """Nearest-neighbour x2 (torch UpsamplingNearest2d)."""
  return _map_frames(lambda y: tf.repeat(tf.repeat(y, 2, axis=1), 2, axis=2), x)


class FrameEncoder(keras.Model):
  """Frames (time, batch, H, W, C) in [0, 1] -> (h (time, batch, g_dim) in [-1, 1], skips).

  dcgan: strided 4x4 conv stages (64 px: 4 stages, 128 px: 5) then a 4x4 valid conv to g_dim.
  vgg: stages of 3x3 convs separated by 2x2 max pooling (VGG16 up to the last pool), skips taken
  before pooling, then a 4x4 valid conv to g_dim. The last conv block ends in tanh.
  """

  def __init__(self, arch, image_size, channels, g_dim, base_filters=64, bn=None, **kwargs):
    super().__init__(**kwargs)
    self.arch = arch
    nf = base_filters
    blocks = []
    if arch == "dcgan":
      widths = [nf, 2 * nf, 4 * nf, 8 * nf] + ([8 * nf] if image_size == 128 else [])
      for i, w in enumerate(widths):
        blocks.append([ConvBlock(w, 4, 2, "same", bn=bn, dtype=self.dtype_policy, name=f"c{i + 1}")])
    elif arch == "vgg":
      plan = [[nf, nf], [2 * nf] * 2, [4 * nf] * 3, [8 * nf] * 3]
      if image_size == 128:
        plan.append([8 * nf] * 3)
      for i, stage in enumerate(plan):
        blocks.append([ConvBlock(w, 3, 1, "same", bn=bn, dtype=self.dtype_policy,
                                 name=f"c{i + 1}_{j}") for j, w in enumerate(stage)])
    else:
      raise ValueError(f"arch={arch!r}: must be dcgan or vgg")
    self.stages = blocks
    self.to_vector = ConvBlock(g_dim, 4, 1, "valid", activation="tanh", bn=bn,
                               dtype=self.dtype_policy, name=f"c{len(blocks) + 1}")

  def call(self, frames, bn_mode=BN_TRAIN) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    skips = []
    h = frames
    for i, stage in enumerate(self.stages):
      if self.arch == "vgg" and i > 0:
        h = _max_pool(h)
      for block in stage:
        h = block(h, bn_mode=bn_mode)
      skips.append(h)
    if self.arch == "vgg":
      h = _max_pool(h)
    h = self.to_vector(h, bn_mode=bn_mode)  # (time, batch, 1, 1, g)
    return tf.cast(h[:, :, 0, 0, :], tf.float32), skips


class FrameDecoder(keras.Model):
  """(g (time, batch, g_dim), skips from FrameEncoder) -> frames (time, batch, H, W, C) in [0, 1]."""

  def __init__(self, arch, image_size, channels, g_dim, base_filters=64, bn=None, **kwargs):
    super().__init__(**kwargs)
    self.arch = arch
    nf = base_filters
    d = self.dtype_policy
    self.head = ConvBlock(8 * nf, 4, 1, "valid", transpose=True, bn=bn, dtype=d, name="upc1")
    stages = []
    if arch == "dcgan":
      # outputs of the upconv stages, deepest first; each takes [features, skip] concatenated
      widths = ([8 * nf] if image_size == 128 else []) + [4 * nf, 2 * nf, nf]
      for i, w in enumerate(widths):
        stages.append([ConvBlock(w, 4, 2, "same", transpose=True, bn=bn, dtype=d,
                                 name=f"upc{i + 2}")])
      self.last = keras.layers.Conv2DTranspose(channels, 4, 2, "same", kernel_initializer=conv_init(),
                                               dtype=d, name=f"upc{len(widths) + 2}")
    elif arch == "vgg":
      plan = [[8 * nf, 8 * nf, 4 * nf], [4 * nf, 4 * nf, 2 * nf], [2 * nf, nf], [nf]]
      if image_size == 128:
        plan = [[8 * nf] * 3, [8 * nf, 8 * nf, 4 * nf], [4 * nf, 4 * nf, 2 * nf], [2 * nf, nf], [nf]]
      for i, stage in enumerate(plan):
        stages.append([ConvBlock(w, 3, 1, "same", bn=bn, dtype=d, name=f"upc{i + 2}_{j}")
                       for j, w in enumerate(stage)])
      self.last = keras.layers.Conv2DTranspose(channels, 3, 1, "same", kernel_initializer=conv_init(),
                                               dtype=d, name=f"upc{len(plan) + 1}_out")
    else:
      raise ValueError(f"arch={arch!r}: must be dcgan or vgg")
    self.stages = stages

  def call(self, g, skips: Sequence[tf.Tensor], bn_mode=BN_TRAIN):
    h = self.head(g[:, :, None, None, :], bn_mode=bn_mode)  # (time, batch, 4, 4, 8nf)
    deep_first = list(skips)[::-1]
    if self.arch == "dcgan":
      for stage, skip in zip(self.stages, deep_first):
        h = tf.concat([h, tf.cast(skip, h.dtype)], axis=-1)
        for block in stage:
          h = block(h, bn_mode=bn_mode)
      h = tf.concat([h, tf.cast(deep_first[-1], h.dtype)], axis=-1)
    else:
      for stage, skip in zip(self.stages, deep_first):
        h = tf.concat([_upsample(h), tf.cast(skip, h.dtype)], axis=-1)
        for block in stage:
          h = block(h, bn_mode=bn_mode)
    out = unfold_time(self.last(fold_time(h)), h)
    return tf.sigmoid(tf.cast(out, tf.float32))


def build_frame_nets(config) -> Tuple[FrameEncoder, FrameDecoder]:
  """The encoder/decoder pair that `config` names (arch, image_size, channels, g_dim, widths)."""
  bn = dict(momentum=config.bn_momentum, epsilon=config.bn_epsilon,
            synchronized=config.sync_batchnorm)
  args = (config.arch, config.image_size, config.channels, config.g_dim, config.base_filters)
  return (FrameEncoder(*args, bn=bn, name="encoder"), FrameDecoder(*args, bn=bn, name="decoder"))
