"""Frame encoders and decoders of SVG: DCGAN and VGG, at 64 and 128 pixels (SPEC section 1.1-1.3).

Every network here takes time-major video tensors (time, batch, height, width, channels). The
convolutions fold time into the batch, so a whole sequence is one call; BatchNorm keeps one set of
statistics per time step, which is what the reference computes when it encodes each frame of a
batch in its own call. Skip features are returned shallow to deep and consumed deep to shallow,
concatenated as [decoder features, skip] on the channel axis, as in the reference.

Initialisation is the reference's (`utils.init_weights`): conv and dense kernels N(0, 0.02) with
zero bias, BatchNorm gamma N(1, 0.02) and beta 0.
"""

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import keras
import tensorflow as tf

BN_TRAIN = "train"  # batch statistics, moving averages updated (training)
BN_BATCH = "batch"  # batch statistics, nothing updated (the reference's generation)
BN_MOVING = "moving"  # moving averages (inference: output independent of the rest of the batch)
_BN_MODES = (BN_TRAIN, BN_BATCH, BN_MOVING)

# Which gradient kernels the layers use (svg_tf.trainer picks them by the replicas' device):
CPU_KERNELS = "cpu"  # tuned on CPUs: fused BatchNorm with a hand-written gradient across
                     # replicas; the smallest strided convolutions by matmul; bfloat16 kernel
                     # gradients of other small feature maps by im2col matmul
STOCK_KERNELS = "stock"  # TensorFlow's own gradients (autodiff BatchNorm, Conv2DBackpropFilter):
                         # what GPU and TPU compilers fuse and tune
KERNELS = (CPU_KERNELS, STOCK_KERNELS)
# CPU_KERNELS' BatchNorm on one replica runs TensorFlow's fused op per time step. Its forward
# pass rounds differently from the op-by-op one; False keeps the op-by-op forward, bit-identical
# to STOCK_KERNELS', for tests that compare the two kernels' gradients alone.
FUSED_BATCH_NORM = True


def set_kernels(root: keras.layers.Layer, kernels: str):
  """Makes every conv block, BatchNorm and decoder under `root` use `kernels` (KERNELS).

  The forward pass is the same function either way; CPU_KERNELS' fused BatchNorm and matmul
  forms of the smallest strided convolutions round differently (FUSED_BATCH_NORM,
  SMALL_STRIDED_CONVS_BY_MATMUL).
  """
  if kernels not in KERNELS:
    raise ValueError(f"kernels={kernels!r}: must be one of {', '.join(KERNELS)}")
  for layer in root._flatten_layers(include_self=True):  # pylint: disable=protected-access
    if isinstance(layer, (ConvBlock, TimeBatchNorm, FrameDecoder)):
      layer.kernels = kernels


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

  `momentum` may be overridden for a call (`moving_average_momentum`); `kernels` picks the
  gradient (see `per_step_batch_norm`).
  """

  kernels = CPU_KERNELS

  def __init__(self, momentum=0.9, epsilon=1e-5, synchronized=True, **kwargs):
    super().__init__(**kwargs)
    self.momentum = momentum
    self.momentum_override = None
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

  def _sum_over_replicas(self):
    """Sums per-replica statistics; None unless synchronised over several replicas."""
    ctx = tf.distribute.get_replica_context()
    if not self.synchronized or ctx is None or ctx.num_replicas_in_sync == 1:
      return None
    return lambda t: ctx.all_reduce(tf.distribute.ReduceOp.SUM, t)

  def call(self, x, bn_mode=BN_TRAIN):
    if bn_mode not in _BN_MODES:
      raise ValueError(f"bn_mode={bn_mode!r}: must be one of {_BN_MODES}")
    gamma, beta = tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta)
    if bn_mode == BN_MOVING:
      scale = gamma * tf.math.rsqrt(self.moving_variance + self.epsilon)
      shift = beta - self.moving_mean * scale
      return tf.cast(tf.cast(x, tf.float32) * scale + shift, x.dtype)
    y, mean, variance, count = per_step_batch_norm(
        x, gamma, beta, self.epsilon, self._sum_over_replicas(),
        written_gradient=self.kernels == CPU_KERNELS)
    if bn_mode == BN_TRAIN:
      # torch's running variance takes the unbiased estimate of the batch's variance.
      unbiased = variance * (count / tf.maximum(count - 1.0, 1.0))
      m = self.momentum if self.momentum_override is None else self.momentum_override
      self.moving_mean.assign(self.moving_mean * m + tf.reduce_mean(mean, 0) * (1.0 - m))
      self.moving_variance.assign(self.moving_variance * m + tf.reduce_mean(unbiased, 0) * (1.0 - m))
    return y


def batch_norms(root: keras.layers.Layer) -> List["TimeBatchNorm"]:
  return [l for l in root._flatten_layers(include_self=True)  # pylint: disable=protected-access
          if isinstance(l, TimeBatchNorm)]


class moving_average_momentum:  # pylint: disable=invalid-name
  """Within the `with`, the BatchNorm layers under `root` update their moving averages with
  `momentum` (a float or a scalar tensor) instead of their own: gradient accumulation makes the
  moving averages a running mean over its micro-batches this way (svg_tf/trainer.py)."""

  def __init__(self, root: keras.layers.Layer, momentum):
    self.layers, self.momentum = batch_norms(root), momentum

  def __enter__(self):
    for layer in self.layers:
      layer.momentum_override = self.momentum

  def __exit__(self, *exc):
    for layer in self.layers:
      layer.momentum_override = None


def per_step_batch_norm(x, gamma, beta, epsilon, sum_over_replicas=None, written_gradient=True):
  """Batch normalisation of x (time, batch, h, w, c) with statistics per time step.

  y = gamma (x - mean_t) / sqrt(var_t + eps) + beta, mean_t and var_t over (batch, h, w) and, via
  `sum_over_replicas` (None: this replica's batch only), over every replica's batch.

  With `written_gradient` (CPU_KERNELS) the gradient is not left to autodiff, which takes about
  eight passes over the activations where BatchNorm is memory-bound (a CPU): on one replica's
  batch, each time step runs TensorFlow's fused BatchNorm and its fused gradient (oneDNN's on
  CPUs; 5x faster than the op-by-op form in bfloat16, 2x in float32); with statistics summed over
  replicas, the gradient is written out (dx = a dy + b x + c with per-(t, c) coefficients).
  Without it (STOCK_KERNELS) autodiff differentiates the op-by-op forward pass, for compilers that
  fuse it (XLA on GPUs and TPUs). Statistics are float32; y has x's dtype.

  The variance is computed in two passes, the mean first and then the mean squared deviation
  from it: the one-pass E[x^2] - E[x]^2 loses digits when the mean is large against the spread.
  The fused op does the same.

  Returns:
    y; the per-step mean and biased variance, each (time, c); the number of values per channel
    and step that they are taken over (all replicas).
  """
  if (sum_over_replicas is None and written_gradient and FUSED_BATCH_NORM
      and x.shape[0] is not None):
    return _fused_per_step_batch_norm(x, gamma, beta, epsilon)
  sum_over_replicas = sum_over_replicas or (lambda t: t)

  def forward(x, gamma, beta):
    xf = tf.cast(x, tf.float32)
    axes = [1, 2, 3]
    per_step = lambda v: v[:, None, None, None, :]  # (time, 1, 1, 1, c)
    local_count = tf.cast(tf.reduce_prod(tf.shape(x)[1:4]), tf.float32)
    sums = tf.reduce_sum(xf, axes)  # (time, c)
    # One all-reduce for the sums and the count: the count rides in an extra channel.
    totals = sum_over_replicas(tf.concat([sums, tf.fill(tf.stack([tf.shape(sums)[0], 1]),
                                                        local_count)], axis=1))
    count = totals[0, -1]
    mean = totals[:, :-1] / count  # (time, c)
    deviations = tf.reduce_sum(tf.math.squared_difference(xf, per_step(mean)), axes)
    variance = sum_over_replicas(deviations) / count
    inv = tf.math.rsqrt(variance + epsilon)
    scale = gamma * inv
    shift = beta - mean * scale
    y = tf.cast(xf * per_step(scale) + per_step(shift), x.dtype)
    return (y, mean, variance, count), (xf, mean, inv, scale, count)

  if not written_gradient:
    return forward(x, gamma, beta)[0]

  @tf.custom_gradient
  def normalize(x, gamma, beta):
    outputs, (xf, mean, inv, scale, count) = forward(x, gamma, beta)
    axes = [1, 2, 3]
    per_step = lambda v: v[:, None, None, None, :]  # (time, 1, 1, 1, c)

    def grad(dy, *unused_stat_grads):  # the statistics only feed the moving averages
      dyf = tf.cast(dy, tf.float32)
      local = tf.stack([tf.reduce_sum(dyf, axes), tf.reduce_sum(dyf * xf, axes)])  # (2, time, c)
      total = sum_over_replicas(local)
      dy_xhat = (total[1] - mean * total[0]) * inv  # sum of dy * x_hat over the global batch
      b = -scale * inv * dy_xhat / count
      c = -scale * total[0] / count - b * mean
      dx = dyf * per_step(scale) + xf * per_step(b) + per_step(c)
      # This replica's share of the parameter gradients; the optimizer sums over replicas.
      dgamma = tf.reduce_sum((local[1] - mean * local[0]) * inv, axis=0)
      dbeta = tf.reduce_sum(local[0], axis=0)
      return tf.cast(dx, x.dtype), dgamma, dbeta

    return outputs, grad

  return normalize(x, gamma, beta)


def _fused_per_step_batch_norm(x, gamma, beta, epsilon):
  """`per_step_batch_norm` on one replica's batch by TensorFlow's fused BatchNorm, one call per
  time step (slices along time share x's buffer; only the outputs are stacked)."""
  count = tf.cast(tf.reduce_prod(tf.shape(x)[1:4]), tf.float32)
  empty = tf.zeros([0], tf.float32)

  @tf.custom_gradient
  def normalize(x, gamma, beta):
    steps = tf.unstack(x, num=x.shape[0])
    outs = [tf.raw_ops.FusedBatchNormV3(x=step, scale=gamma, offset=beta, mean=empty,
                                        variance=empty, epsilon=epsilon, data_format="NHWC",
                                        is_training=True) for step in steps]
    # reserve_space_1 and _2 are the batch mean and biased variance (batch_variance is unbiased).
    mean = tf.stack([o.reserve_space_1 for o in outs])
    variance = tf.stack([o.reserve_space_2 for o in outs])

    def grad(dy, *unused_stat_grads):  # the statistics only feed the moving averages
      grads = [tf.raw_ops.FusedBatchNormGradV3(
          y_backprop=d, x=step, scale=gamma, reserve_space_1=o.reserve_space_1,
          reserve_space_2=o.reserve_space_2, reserve_space_3=o.reserve_space_3, epsilon=epsilon,
          data_format="NHWC", is_training=True)
               for d, step, o in zip(tf.unstack(dy, num=x.shape[0]), steps, outs)]
      return (tf.stack([g.x_backprop for g in grads]), tf.add_n([g.scale_backprop for g in grads]),
              tf.add_n([g.offset_backprop for g in grads]))

    return (tf.stack([o.y for o in outs]), mean, variance, count), grad

  return normalize(x, gamma, beta)


def _filter_grad_by_matmul(inputs, out_grad, kernel_size, strides, padding):
  """Kernel gradient of conv2d(inputs, W) as patches(inputs)^T @ out_grad, shape (k, k, in, out).

  oneDNN's bfloat16 kernel-gradient op is slower than float32 on small feature maps (8x8 and
  less, hundreds of channels) on this class of CPU; one bfloat16 matmul over im2col patches is
  about 2x faster there (bench/train_step.py), and for the stride-2 4x4 convolutions, with
  `_s2d_patches`, 1.4-1.7x faster at 16x16 too.
  """
  k, c, o = kernel_size, inputs.shape[-1], out_grad.shape[-1]
  d_out = tf.reshape(out_grad, [-1, o])
  if _s2d_applies(inputs, k, strides, padding):  # cheaper patches than extract_patches'
    return _kernel_of_patch_matrix(
        tf.linalg.matmul(_s2d_patches(inputs), d_out, transpose_a=True), c, o)
  patches = tf.image.extract_patches(inputs, [1, k, k, 1], [1, strides, strides, 1], [1, 1, 1, 1],
                                     padding)  # (n, oh, ow, k*k*in)
  grad = tf.linalg.matmul(tf.reshape(patches, [-1, patches.shape[-1]]), d_out, transpose_a=True)
  return tf.reshape(grad, [k, k, c, o])


def _s2d_applies(y, kernel_size: int, stride: int, padding: str) -> bool:
  """Whether `_s2d_patches` gives the patches of a convolution of y: 4x4, stride 2, SAME, even
  static sizes."""
  return (kernel_size == 4 and stride == 2 and padding == "SAME" and None not in y.shape[1:3]
          and y.shape[1] % 2 == y.shape[2] % 2 == 0)


def _whole_input_matrix(kernel, transpose: bool):
  """The matrix `_whole_input_matmul` multiplies by: (in, k k out) for a transposed kernel
  (k, k, out, in), (k k in, out), x's (i, j, in) order, for a kernel (k, k, in, out)."""
  if transpose:
    return tf.reshape(tf.transpose(kernel, [3, 0, 1, 2]), [kernel.shape[3], -1])
  return tf.reshape(kernel, [-1, kernel.shape[3]])


def _whole_input_matmul(x, kernel, transpose: bool, matrix=None):
  """The convolution of `_conv_only` when its kernel spans the whole input (valid padding, k x k
  input -> 1 x 1), or the transposed one when the input is one pixel (1 x 1 -> k x k): one matrix
  product. oneDNN runs these shapes (the encoder's last conv, the decoder's first) as
  convolutions at about a tenth of its matmul speed, forward and backward."""
  n, k = tf.shape(x)[0], kernel.shape[0]
  flat = _whole_input_matrix(kernel, transpose) if matrix is None else matrix
  if transpose:  # y[n, i, j, c] = sum over in of x[n, in] kernel[i, j, c, in]
    return tf.reshape(tf.linalg.matmul(tf.reshape(x, [n, kernel.shape[3]]), flat),
                      [n, k, k, kernel.shape[2]])
  return tf.reshape(tf.linalg.matmul(tf.reshape(x, [n, flat.shape[0]]), flat),
                    [n, 1, 1, kernel.shape[3]])


# Stride-2 4x4 convolutions with SAME padding at the smallest feature maps (input 8x8 or less;
# transposed: output 8x8 or less) as matrix products: oneDNN runs them as convolutions at a
# fraction of its matmul speed (bfloat16 on this CPU: 1.8-2.6x slower at batch 16 to 240).
# False keeps oneDNN's convolutions (see FUSED_BATCH_NORM).
SMALL_STRIDED_CONVS_BY_MATMUL = True
_PARITY_TAPS = {0: ((-1, 3), (0, 1)), 1: ((0, 2), (1, 0))}  # (input offset, kernel tap) per parity


def _s2d_patches(y):
  """The 4x4 patches at stride 2 of y (n, 2h, 2w, c) under SAME padding (one pixel each side),
  flattened to (n h w, 16 c) in `_patch_matrix`'s row order: after the padding, space-to-depth
  makes each patch 2x2 blocks of 4c channels, so the patches are 4 shifted slices."""
  h, w, c = y.shape[1] // 2, y.shape[2] // 2, y.shape[3]
  blocks = tf.nn.space_to_depth(tf.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]]), 2)
  patches = tf.concat([blocks[:, py:py + h, px:px + w] for py in (0, 1) for px in (0, 1)], -1)
  return tf.reshape(patches, [-1, 16 * c])


def _patch_matrix(kernel):
  """A (4, 4, c, o) kernel as the (16 c, o) matrix that multiplies `_s2d_patches`."""
  c, o = kernel.shape[2], kernel.shape[3]
  blocks = tf.reshape(kernel, [2, 2, 2, 2, c, o])  # (py, qy, px, qx): tap (2 py + qy, 2 px + qx)
  return tf.reshape(tf.transpose(blocks, [0, 2, 1, 3, 4, 5]), [16 * c, o])


def _kernel_of_patch_matrix(matrix, c: int, o: int):
  """The inverse of `_patch_matrix`."""
  blocks = tf.reshape(matrix, [2, 2, 2, 2, c, o])  # (py, px, qy, qx)
  return tf.reshape(tf.transpose(blocks, [0, 2, 1, 3, 4, 5]), [4, 4, c, o])


def _parity_taps(a: int, b: int):
  """[(input row offset, kernel row, input column offset, kernel column)] of output parity (a, b)
  of a stride-2 4x4 SAME transposed convolution."""
  return [(dy, u, dx, v) for dy, u in _PARITY_TAPS[a] for dx, v in _PARITY_TAPS[b]]


def _parity_matrices(kernel):
  """The (4 cx, c) matrix of each output parity (a, b), in (0, 0), (0, 1), (1, 0), (1, 1) order,
  that `_subpixel_conv_transpose` multiplies its 2x2 input patches by."""
  return [tf.concat([tf.transpose(kernel[u, v]) for _, u, _, v in _parity_taps(a, b)], 0)
          for a in (0, 1) for b in (0, 1)]


def _subpixel_conv_transpose(x, kernel, matrices=None):
  """conv2d_transpose(x, kernel (4, 4, c, cx), stride 2, SAME): output pixel (2m + a, 2n + b)
  takes 2x2 input pixels through 2x2 of the kernel's taps, so each of the 4 output parities is
  one matmul of 2x2 input patches, and depth-to-space interleaves them. Every output is one
  dot product (one rounding, as in the convolution). `matrices`: `_parity_matrices(kernel)`,
  when computed beforehand."""
  n, h, w, cx = tf.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
  padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
  shifted = {(dy, dx): padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
             for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
  matrices = _parity_matrices(kernel) if matrices is None else matrices
  parities = []
  for parity, matrix in zip(((0, 0), (0, 1), (1, 0), (1, 1)), matrices):
    patches = tf.concat([shifted[(dy, dx)] for dy, _, dx, _ in _parity_taps(*parity)], -1)
    parities.append(tf.linalg.matmul(tf.reshape(patches, [-1, 4 * cx]), matrix))
  out = tf.reshape(tf.stack(parities, axis=1), [n, h, w, 4 * kernel.shape[2]])
  return tf.nn.depth_to_space(out, 2)


def _strided_conv_by_matmul(y, kernel, matrix=None):
  """conv2d(y, kernel (4, 4, c, o), 2, SAME) as one matmul over `_s2d_patches`; its input
  gradient is `_subpixel_conv_transpose`, its kernel gradient one matmul. `matrix`:
  `_patch_matrix(kernel)`, when computed beforehand."""

  @tf.custom_gradient
  def conv(y, kernel):
    n, h, w = tf.shape(y)[0], y.shape[1] // 2, y.shape[2] // 2
    c, o = kernel.shape[2], kernel.shape[3]
    patches = _s2d_patches(y)
    product = _patch_matrix(kernel) if matrix is None else matrix

    def grad(d_out):
      d_flat = tf.reshape(d_out, [-1, o])
      d_kernel = tf.linalg.matmul(patches, d_flat, transpose_a=True)
      return _subpixel_conv_transpose(d_out, kernel), _kernel_of_patch_matrix(d_kernel, c, o)

    return tf.reshape(tf.linalg.matmul(patches, product), [n, h, w, o]), grad

  return conv(y, kernel)


def _strided_conv_transpose_by_matmul(x, kernel, matrices=None):
  """conv2d_transpose(x, kernel (4, 4, c, cx), 2, SAME) by `_subpixel_conv_transpose`; its input
  gradient is the convolution as one matmul over `_s2d_patches`, its kernel gradient another.
  `matrices`: `_parity_matrices(kernel)`, when computed beforehand."""

  @tf.custom_gradient
  def conv_transpose(x, kernel):
    n, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    c, cx = kernel.shape[2], kernel.shape[3]

    def grad(d_out):
      patches = _s2d_patches(d_out)
      d_x = tf.reshape(tf.linalg.matmul(patches, _patch_matrix(kernel)), [n, h, w, cx])
      d_kernel = tf.linalg.matmul(patches, tf.reshape(x, [-1, cx]), transpose_a=True)
      return d_x, _kernel_of_patch_matrix(d_kernel, c, cx)

    return _subpixel_conv_transpose(x, kernel, matrices), grad

  return conv_transpose(x, kernel)


def kernel_matrices(layer, kernel) -> Dict[str, object]:
  """`kernel` (of `layer`) as the matrices that `_conv_only`'s matrix-product forms multiply by.
  Sampling computes them with its folded weights, once before its time loop: inside the loop
  they would be rebuilt at every step (their transposes were 15% of float32 SM-MNIST sampling).
  A form the inputs do not take is never computed (the graph prunes it)."""
  transpose = isinstance(layer, keras.layers.Conv2DTranspose)
  if layer.padding.upper() == "VALID":
    return {"whole_input": _whole_input_matrix(kernel, transpose)}
  if layer.strides[0] == 2 and layer.kernel_size[0] == 4:
    return {"parities": _parity_matrices(kernel)} if transpose else {
        "patch": _patch_matrix(kernel)}
  return {}


def _conv_only(layer, x, kernel, kernels=CPU_KERNELS, matrices=None):
  """`layer`'s convolution (no bias) of 4-D x with `kernel` (layer.kernel or a slice of it); with
  CPU_KERNELS, the smallest stride-2 4x4 ones by matmul (`_strided_conv_by_matmul`) and bfloat16
  kernel gradients of other small feature maps by im2col matmul. `matrices`: `kernel_matrices`
  of the kernel, computed beforehand."""
  padding = layer.padding.upper()
  stride = layer.strides[0]
  k = layer.kernel_size[0]
  transpose = isinstance(layer, keras.layers.Conv2DTranspose)
  matrices = matrices or {}
  if padding == "VALID" and x.shape[1] == x.shape[2] == (1 if transpose else k):
    return _whole_input_matmul(x, kernel, transpose, matrices.get("whole_input"))
  if (kernels == CPU_KERNELS and SMALL_STRIDED_CONVS_BY_MATMUL and padding == "SAME"
      and stride == 2 and k == 4 and None not in x.shape[1:3]
      and max(x.shape[1:3]) <= (4 if transpose else 8)
      and (transpose or _s2d_applies(x, k, stride, padding))):
    if transpose:
      return _strided_conv_transpose_by_matmul(x, kernel, matrices.get("parities"))
    return _strided_conv_by_matmul(x, kernel, matrices.get("patch"))
  if transpose:
    h, w = x.shape[1], x.shape[2]
    out_h, out_w = (h * stride, w * stride) if padding == "SAME" else (
        (h - 1) * stride + k, (w - 1) * stride + k)
    out_shape = tf.stack([tf.shape(x)[0], out_h, out_w, kernel.shape[2]])
    conv = lambda x, kernel: tf.nn.conv2d_transpose(x, kernel, out_shape, stride, padding)
  else:
    conv = lambda x, kernel: tf.nn.conv2d(x, kernel, stride, padding)
  # The spatial size of the feature map that the kernel gradient convolves over.
  size = out_h if transpose else x.shape[1]
  small = size is not None and size <= (16 if k == 4 and stride == 2 and padding == "SAME" else 8)
  if x.dtype != tf.bfloat16 or not small or kernels != CPU_KERNELS:
    return conv(x, kernel)

  @tf.custom_gradient
  def conv_with_matmul_filter_grad(x, kernel):
    def grad(dy):
      if transpose:  # y = conv2d_transpose(x, K) is the input gradient of conv2d(y, K)
        return (tf.nn.conv2d(dy, kernel, stride, padding),
                _filter_grad_by_matmul(dy, x, k, stride, padding))
      dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=kernel, out_backprop=dy,
                                          strides=[1, stride, stride, 1], padding=padding)
      return dx, _filter_grad_by_matmul(x, dy, k, stride, padding)
    return conv(x, kernel), grad

  return conv_with_matmul_filter_grad(x, kernel)


class ConvWeights(NamedTuple):
  """A convolution's kernel and bias in its compute dtype; for a convolution that also takes skip
  features, `parts` is the kernel split into its part on x and its part on the skip. `matrices`:
  `kernel_matrices` of the kernel's part on x, when computed beforehand."""
  kernel: tf.Tensor
  bias: tf.Tensor
  parts: Optional[Tuple[tf.Tensor, tf.Tensor]] = None
  matrices: Optional[Dict[str, object]] = None


def _split(layer, kernel, cx: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """The kernel's part on x and its part on the skip. A split, not two slices: the gradient of a
  split is one concatenation, that of each slice a zero-filled kernel-sized tensor, then summed."""
  axis = 3 if isinstance(layer, keras.layers.Conv2DTranspose) else 2  # the input-channel axis
  part_x, part_skip = tf.split(kernel, [cx, kernel.shape[axis] - cx], axis=axis)
  return part_x, part_skip


def conv_weights(layer, in_channels: int, x_channels: Optional[int] = None,
                 kernel=None, bias=None) -> ConvWeights:
  """`layer`'s weights (or `kernel` and `bias` given in its layout) as ConvWeights, split at
  x_channels when the other inputs are skip features; builds the layer for in_channels inputs."""
  if not layer.built:
    layer.build((None, None, None, in_channels))
  dtype = layer.compute_dtype  # bfloat16 under mixed precision
  kernel = tf.cast(layer.kernel if kernel is None else kernel, dtype)
  bias = tf.cast(layer.bias if bias is None else bias, dtype)
  parts = None if x_channels is None else _split(layer, kernel, x_channels)
  return ConvWeights(kernel, bias, parts)


def apply_conv(layer, x, kernels=CPU_KERNELS):
  """layer(x) for (time, batch, h, w, c) x, through `_conv_only` (builds the layer if needed)."""
  weights = conv_weights(layer, x.shape[-1])
  x = tf.cast(x, weights.kernel.dtype)
  y = _conv_only(layer, fold_time(x), weights.kernel, kernels)
  return unfold_time(y + weights.bias, x)


def skip_term(layer, skip, cx: int, kernels=CPU_KERNELS, weights: Optional[ConvWeights] = None):
  """The part of `skip_conv`'s output that comes from the skip features: (sources, batch, h', w',
  filters), no bias. Sampling computes it once per video, before its time loop: unless the skip
  rule is previous_frame, the skip frame is the same at every generated step, so only the part on
  x is computed per step."""
  weights = weights or conv_weights(layer, cx + skip.shape[-1], cx)
  _, k_skip = weights.parts
  skip = tf.cast(skip, k_skip.dtype)
  return unfold_time(_conv_only(layer, fold_time(skip), k_skip, kernels), skip)


def skip_conv(layer, x, skip, skip_index, kernels=CPU_KERNELS, term=None):
  """layer(concat([x_t, skip[skip_index[t]]], channels)) for every time step t, computed once per
  distinct skip.

  A convolution is linear in its input channels, so the concatenated input splits into a part on
  x and a part on the skip features. After the context every step reuses the same skip frame: its
  part (and, through the gather, its gradient) is computed once instead of once per step.

  Args:
    layer: a Conv2D or Conv2DTranspose whose kernel spans x's and skip's channels (built here).
    x: (time, batch, h, w, cx); skip: (sources, batch, h, w, cs); skip_index: `time` ints.
    term: `skip_term(layer, skip, cx)` computed beforehand (then `skip` is not used).
  Returns:
    (time, batch, h', w', filters), bias included, before any normalisation or activation.
  """
  cx = x.shape[-1]
  weights = conv_weights(layer, cx + skip.shape[-1], cx)
  x = tf.cast(x, weights.kernel.dtype)
  if term is None:
    term = skip_term(layer, skip, cx, kernels, weights)
  y = unfold_time(_conv_only(layer, fold_time(x), weights.parts[0], kernels), x)
  # The bias joins the skip part (sources, not time steps): one pass over y fewer.
  return _add_per_step(y, term + weights.bias, skip_index)


def _add_per_step(y, term, skip_index):
  """y + tf.gather(term, skip_index), y and term time-major. With skip_index a Python list (as
  in training), each run of steps that share a source is one broadcast addition: its gradient
  is a sum over the run, where the gather's is a scatter (UnsortedSegmentSum, slow on CPUs)."""
  if not isinstance(skip_index, (list, tuple)) or term.shape[0] is None:
    return y + tf.gather(term, skip_index)
  runs = []  # [source, number of consecutive steps]
  for source in skip_index:
    if runs and runs[-1][0] == source:
      runs[-1][1] += 1
    else:
      runs.append([source, 1])
  if term.shape[0] == 1:
    return y + term  # broadcast over time
  sources = tf.unstack(term, num=term.shape[0])
  if len(runs) == 1:
    return y + tf.expand_dims(sources[runs[0][0]], 0)
  parts = tf.split(y, [length for _, length in runs], axis=0)
  # expand_dims, not [None]: a strided slice's gradient is a full StridedSliceGrad.
  return tf.concat([part + tf.expand_dims(sources[source], 0)
                    for part, (source, _) in zip(parts, runs)], 0)


class ConvBlock(keras.layers.Layer):
  """Conv (or transposed conv) -> per-time-step BatchNorm -> activation, on (time, batch, ...).

  With `skip`, the conv's input is [x, skip] concatenated per step (see `skip_conv`), x having
  `x_channels` channels. Within `folded_batch_norm`, a call on moving statistics runs the conv
  with the BatchNorm folded into its weights (`fold`).
  """

  kernels = CPU_KERNELS
  folded = None  # ConvWeights, set by folded_batch_norm

  def __init__(self, filters, kernel, stride, padding, activation="leaky_relu", transpose=False,
               bn=None, x_channels=None, **kwargs):
    super().__init__(**kwargs)
    conv_cls = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
    self.conv = conv_cls(filters, kernel, stride, padding, kernel_initializer=conv_init(),
                         dtype=self.dtype_policy, name="conv")
    self.norm = TimeBatchNorm(**(bn or {}), dtype=self.dtype_policy, name="bn")
    self.activation = activation
    self.x_channels = x_channels

  def fold(self) -> ConvWeights:
    """The conv's weights with the BatchNorm on its moving statistics folded in: gamma (conv(x) +
    b - mean) / sqrt(var + eps) + beta is conv(x) with the kernel's output channels scaled by
    gamma / sqrt(var + eps) and the bias mapped the same way. Computed in float32, then cast to
    the compute dtype; equal to the unfolded block up to rounding."""
    norm = self.norm
    scale = norm.gamma * tf.math.rsqrt(norm.moving_variance + norm.epsilon)
    transpose = isinstance(self.conv, keras.layers.Conv2DTranspose)
    kernel = self.conv.kernel * (scale[:, None] if transpose else scale)  # output-channel axis
    bias = self.conv.bias * scale + (norm.beta - norm.moving_mean * scale)
    weights = conv_weights(self.conv, None, self.x_channels, kernel, bias)
    on_x = weights.kernel if weights.parts is None else weights.parts[0]
    return weights._replace(matrices=kernel_matrices(self.conv, on_x))

  def call(self, x, bn_mode=BN_TRAIN, skip=None, skip_index=None, term=None):
    """x (time, batch, h, w, c); skip, skip_index, term: as `skip_conv`'s."""
    if bn_mode == BN_MOVING and self.folded is not None:
      return self._folded_call(x, skip, skip_index, term)
    if skip is None:
      y = apply_conv(self.conv, x, self.kernels)
    else:
      y = skip_conv(self.conv, x, skip, skip_index, self.kernels, term)
    return self._activate(self.norm(y, bn_mode=bn_mode))

  def _activate(self, y):
    return tf.nn.leaky_relu(y, alpha=0.2) if self.activation == "leaky_relu" else tf.tanh(y)

  def _folded_call(self, x, skip, skip_index, term):
    """The block with its folded weights: conv, bias (and skip part), activation, all on the
    frames folded into the batch, the pattern TensorFlow's graph optimizer fuses into one oneDNN
    convolution (in bfloat16, 1.3-1.9x faster per block than with the activation after the
    reshape back to time-major)."""
    weights = self.folded
    frames = fold_time(tf.cast(x, weights.kernel.dtype))
    if skip is None:
      y = tf.nn.bias_add(_conv_only(self.conv, frames, weights.kernel, self.kernels,
                                    weights.matrices), weights.bias)
    else:
      if term is None:
        term = skip_term(self.conv, skip, x.shape[-1], self.kernels, weights)
      y = tf.nn.bias_add(_conv_only(self.conv, frames, weights.parts[0], self.kernels,
                                    weights.matrices),
                         weights.bias) + fold_time(tf.gather(term, skip_index))
    return unfold_time(self._activate(y), x)


class folded_batch_norm:  # pylint: disable=invalid-name
  """Within the `with`, the conv blocks under `roots` run with their BatchNorm on moving
  statistics folded into their weights (`ConvBlock.fold`), computed once on entering.

  Sampling enters it before its time loop: each generated step then runs one convolution and bias
  per block, with no normalisation, casts or kernel slicing (which a loop repeats every step).
  Calls with batch statistics are unaffected.
  """

  def __init__(self, *roots: keras.layers.Layer):
    self.blocks = [layer for root in roots
                   for layer in root._flatten_layers(include_self=True)  # pylint: disable=protected-access
                   if isinstance(layer, ConvBlock)]

  def __enter__(self):
    for block in self.blocks:
      block.folded = block.fold()
    return self

  def __exit__(self, *exc):
    for block in self.blocks:
      block.folded = None


def _map_frames(fn, x):
  """Applies a per-image op (pooling, upsampling) to a (time, batch, h, w, c) tensor."""
  return unfold_time(fn(fold_time(x)), x)


def _max_pool(x):
  return _map_frames(lambda y: tf.nn.max_pool2d(y, 2, 2, "VALID"), x)


def _upsample(x):
  """Nearest-neighbour x2 (torch UpsamplingNearest2d)."""
  return _map_frames(lambda y: tf.repeat(tf.repeat(y, 2, axis=1), 2, axis=2), x)


def hold_by_name(owner: keras.layers.Layer, stages: Sequence[Sequence[keras.layers.Layer]]):
  """Attaches each layer of `stages` to `owner` as an attribute named like the layer.

  Why: Keras 3.15 tracks layers kept in Python lists for its own weights, but
  `tf.train.Checkpoint` sees only layers held in attributes, so list-held layers (and their
  BatchNorm statistics) were silently missing from checkpoints. Returns the names per stage.
  """
  names = []
  for stage in stages:
    names.append([])
    for layer in stage:
      setattr(owner, layer.name, layer)
      names[-1].append(layer.name)
  return names


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
    self._stage_names = hold_by_name(self, blocks)
    self.to_vector = ConvBlock(g_dim, 4, 1, "valid", activation="tanh", bn=bn,
                               dtype=self.dtype_policy, name=f"c{len(blocks) + 1}")

  @property
  def stages(self) -> List[List["ConvBlock"]]:
    """The conv blocks, stage by stage (each stage's output is a skip)."""
    return [[getattr(self, n) for n in names] for names in self._stage_names]

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

  kernels = CPU_KERNELS  # of its last conv (the blocks have their own)

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
                                 x_channels=([8 * nf] + widths)[i], name=f"upc{i + 2}")])
      self.last = keras.layers.Conv2DTranspose(channels, 4, 2, "same", kernel_initializer=conv_init(),
                                               dtype=d, name=f"upc{len(widths) + 2}")
    elif arch == "vgg":
      plan = [[8 * nf, 8 * nf, 4 * nf], [4 * nf, 4 * nf, 2 * nf], [2 * nf, nf], [nf]]
      if image_size == 128:
        plan = [[8 * nf] * 3, [8 * nf, 8 * nf, 4 * nf], [4 * nf, 4 * nf, 2 * nf], [2 * nf, nf], [nf]]
      inputs = [8 * nf] + [stage[-1] for stage in plan]  # each stage's first conv: x's channels
      for i, stage in enumerate(plan):
        stages.append([ConvBlock(w, 3, 1, "same", bn=bn, dtype=d, name=f"upc{i + 2}_{j}",
                                 x_channels=None if j else inputs[i])
                       for j, w in enumerate(stage)])
      self.last = keras.layers.Conv2DTranspose(channels, 3, 1, "same", kernel_initializer=conv_init(),
                                               dtype=d, name=f"upc{len(plan) + 1}_out")
    else:
      raise ValueError(f"arch={arch!r}: must be dcgan or vgg")
    self._stage_names = hold_by_name(self, stages)

  @property
  def stages(self) -> List[List["ConvBlock"]]:
    """The blocks after the head, stage by stage, deepest first."""
    return [[getattr(self, n) for n in names] for names in self._stage_names]

  def _skip_convs(self, bn_mode):
    """The convolutions that take skip features, deepest first: (conv, its input channels from
    the decoder's own path (the rest are the skip's), its kernels, its weights or None for the
    layer's own)."""
    convs = [(stage[0].conv, stage[0].x_channels, stage[0].kernels,
              stage[0].folded if bn_mode == BN_MOVING else None) for stage in self.stages]
    if self.arch == "dcgan":
      convs.append((self.last, self.stages[-1][-1].conv.filters, self.kernels, None))
    return convs

  def skip_terms(self, skips: Sequence[tf.Tensor], bn_mode=BN_TRAIN) -> List[tf.Tensor]:
    """The skip features' part of every skip convolution (`frame_nets.skip_term`), deepest first:
    computed once, they serve every step that uses the same skip features (`call`'s skip_terms
    with the same bn_mode, since a folded BatchNorm scales them)."""
    return [skip_term(conv, skip, cx, kernels, weights)
            for (conv, cx, kernels, weights), skip in zip(self._skip_convs(bn_mode),
                                                          list(skips)[::-1])]

  def call(self, g, skips: Sequence[tf.Tensor], skip_index: Sequence[int], bn_mode=BN_TRAIN,
           skip_terms=None):
    """g (time, batch, g_dim); skips: encoder features of the skip source frames, each
    (sources, batch, h, w, c); skip_index[t]: the source used at step t; skip_terms: `skip_terms
    (skips)` when computed beforehand. -> (time, batch, H, W, C)."""
    h = self.head(g[:, :, None, None, :], bn_mode=bn_mode)  # (time, batch, 4, 4, 8nf)
    deep_first = list(skips)[::-1]
    terms = list(skip_terms) if skip_terms is not None else [None] * len(deep_first)
    for stage, skip, term in zip(self.stages, deep_first, terms):
      if self.arch == "vgg":
        h = _upsample(h)
      h = stage[0](h, bn_mode=bn_mode, skip=skip, skip_index=skip_index, term=term)
      for block in stage[1:]:
        h = block(h, bn_mode=bn_mode)
    if self.arch == "dcgan":  # the last upconv also takes the shallowest skip
      out = skip_conv(self.last, h, deep_first[-1], skip_index, self.kernels, terms[-1])
    else:
      out = apply_conv(self.last, h, self.kernels)
    return tf.sigmoid(tf.cast(out, tf.float32))
