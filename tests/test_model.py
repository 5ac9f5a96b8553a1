"""The networks: parameter counts against the reference, LSTM maths, BatchNorm semantics, skips."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from svg_tf import config as config_lib
from svg_tf import frame_nets
from svg_tf.model import SVG, skip_source
from svg_tf.recurrent import GaussianLSTM, LSTMCell

# SPEC section 0: per-module trainable parameters of the torch reference (two LSTM biases).
REFERENCE_COUNTS = {
    ("smmnist", 64): dict(encoder=3_805_376, decoder=6_558_529, frame_predictor=1_121_152,
                          posterior=564_500, prior=564_500),
    ("bair", 64): dict(encoder=8_689_600, decoder=11_822_659, frame_predictor=1_134_976,
                       posterior=592_256, prior=592_256),
    ("kth", 64): dict(encoder=8_688_448, decoder=11_821_505, frame_predictor=1_124_736,
                      posterior=571_696, prior=571_696),
    ("kth", 128): dict(encoder=15_770_944, decoder=21_263_297, frame_predictor=1_124_736,
                       posterior=571_696, prior=571_696),
    ("smmnist", 128): dict(encoder=8_001_216, decoder=14_948_673, frame_predictor=1_121_152,
                           posterior=564_500, prior=564_500),
}


@pytest.mark.parametrize("dataset,size", sorted(REFERENCE_COUNTS))
def test_parameter_counts_equal_the_reference(dataset, size):
  model = SVG(config_lib.preset(dataset, image_size=size, torch_lstm_bias=True))
  assert model.parameter_counts() == REFERENCE_COUNTS[dataset, size]


@pytest.mark.parametrize("dataset,total", [("smmnist", 12_609_961), ("bair", 22_827_651)])
def test_stock_keras_cells_have_one_bias_fewer(dataset, total):
  counts = SVG(config_lib.preset(dataset)).parameter_counts()
  assert sum(counts.values()) == total
  # 4 cells (2 predictor, 1 posterior, 1 prior), 4 * 256 parameters each
  assert sum(REFERENCE_COUNTS[dataset, 64].values()) - total == 4 * 4 * 256


def test_fp_has_no_prior_and_det_no_latent():
  fp = SVG(config_lib.preset("kth", model="fp", torch_lstm_bias=True))
  assert "prior" not in fp.modules
  assert sum(fp.parameter_counts().values()) == 22_206_385  # SPEC: KTH-64 total FP
  det = SVG(config_lib.preset("smmnist", model="det", base_filters=4, g_dim=8, rnn_size=16))
  assert set(det.modules) == {"encoder", "decoder", "frame_predictor"}
  assert det.frame_predictor.embed.kernel.shape == (8, 16)  # input h only, no z


def test_lstm_cell_matches_keras_lstmcell():
  """Same gate order (i, f, g/c, o) and maths as keras.layers.LSTMCell, so torch weights port."""
  ours = LSTMCell(6, torch_bias=True)
  ours.build((None, 5))
  ref = keras.layers.LSTMCell(6)
  ref.build((None, 5))
  ref.kernel.assign(ours.kernel)
  ref.recurrent_kernel.assign(ours.recurrent_kernel)
  ref.bias.assign(ours.bias + ours.bias_hh)  # torch's two biases sum to Keras' one
  rng = np.random.RandomState(0)
  x = rng.randn(3, 5).astype("float32")
  h, c = rng.randn(3, 6).astype("float32"), rng.randn(3, 6).astype("float32")
  out, (h1, c1) = ours(x, (h, c))
  ref_out, (ref_h, ref_c) = ref(x, [h, c])
  np.testing.assert_allclose(out, ref_out, atol=1e-6)
  np.testing.assert_allclose(c1, ref_c, atol=1e-6)
  bound = 1 / 6 ** 0.5  # torch's U(-1/sqrt(H), 1/sqrt(H)) init
  assert np.abs(ours.kernel.numpy()).max() <= bound
  assert np.abs(ours.bias_hh.numpy()).max() > 0  # drawn, not zero


def test_gaussian_lstm_sequence_equals_steps_and_returns_a_distribution():
  net = GaussianLSTM(units=6, layers=2, z_dim=3)
  net.build((None, 4))
  x = tf.random.stateless_normal([5, 2, 4], seed=[1, 2])  # (time, batch, features)
  dist, state = net.sequence(x)
  assert dist.event_shape == [3] and dist.batch_shape == [5, 2]
  step_state = net.zero_state(2)
  for t in range(5):
    step_dist, step_state = net.step(x[t], step_state)
    np.testing.assert_allclose(step_dist.mean(), dist.mean()[t], atol=1e-5)
    np.testing.assert_allclose(step_dist.stddev(), dist.stddev()[t], atol=1e-5)
  np.testing.assert_allclose(step_state[-1][1], state[-1][1], atol=1e-5)
  assert not np.allclose(state[0][0], 0)  # the state moved


def test_lstm_sequence_has_the_gradients_of_its_steps():
  """The sequence form projects every step's input in one matmul and unstacks it; its gradients
  (inputs and every weight) equal those of the step-by-step form, each step at its own time."""
  net = GaussianLSTM(units=6, layers=2, z_dim=3)
  net.build((None, 4))
  x = tf.random.stateless_normal([5, 2, 4], seed=[3, 4])
  weights = tf.random.stateless_normal([5, 2, 3], seed=[5, 6])  # a different weight per step

  def loss_of(run):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(run() * weights)
    return tape.gradient(loss, [x] + net.trainable_variables)

  def steps():
    state, means = net.zero_state(2), []
    for t in range(5):
      dist, state = net.step(x[t], state)
      means.append(dist.mean() + dist.stddev())
    return tf.stack(means)

  def sequence():
    dist = net.sequence(x)[0]
    return dist.mean() + dist.stddev()

  for got, want in zip(loss_of(sequence), loss_of(steps)):
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.abs(want).max() > 0


def test_encoder_normalises_each_time_step_like_separate_calls(tiny_config):
  """One batched call over time == the reference's one encoder call per frame (batch statistics)."""
  model = SVG(tiny_config)
  frames = tf.random.stateless_uniform([4, 3, 64, 64, 1], seed=[3, 4])  # (time, batch, ...)
  h_all, skips_all = model.encoder(frames, bn_mode=frame_nets.BN_BATCH)
  for t in range(4):
    h_t, skips_t = model.encoder(frames[t:t + 1], bn_mode=frame_nets.BN_BATCH)
    # float32 noise of different conv batch sizes, amplified by BatchNorm's 1/std: usually ~2e-6,
    # seen up to 3e-5 (random weights); whole-sequence statistics are off by ~1 (checked below)
    np.testing.assert_allclose(h_all[t], h_t[0], rtol=0, atol=1e-3)
    np.testing.assert_allclose(skips_all[1][t], skips_t[1][0], rtol=0, atol=1e-3)
  # and it is not whole-sequence statistics: mixing the time steps changes the result
  folded = tf.reshape(frames, [1, 12, 64, 64, 1])
  h_mixed, _ = model.encoder(folded, bn_mode=frame_nets.BN_BATCH)
  assert np.abs(tf.reshape(h_mixed, [4, 3, -1]) - h_all).max() > 0.1


def test_moving_average_batchnorm_makes_outputs_independent_of_the_batch(tiny_config):
  model = SVG(tiny_config)
  frames = tf.random.stateless_uniform([1, 3, 64, 64, 1], seed=[5, 6])
  for _ in range(3):  # move the averages away from their initial values
    model.encoder(frames, bn_mode=frame_nets.BN_TRAIN)
  alone, _ = model.encoder(frames[:, :1], bn_mode=frame_nets.BN_MOVING)
  together, _ = model.encoder(frames, bn_mode=frame_nets.BN_MOVING)
  np.testing.assert_allclose(alone[0, 0], together[0, 0], atol=1e-6)
  batch_alone, _ = model.encoder(frames[:, :2], bn_mode=frame_nets.BN_BATCH)
  batch_together, _ = model.encoder(frames, bn_mode=frame_nets.BN_BATCH)
  assert not np.allclose(batch_alone[0, 0], batch_together[0, 0], atol=1e-4)


def test_skip_rules():
  # SM-MNIST: n_past = 5, T = 15, predicting x[1]..x[14]
  last = [skip_source(t, 5, "last_context") for t in range(1, 15)]
  ref = [skip_source(t, 5, "reference") for t in range(1, 15)]
  prev = [skip_source(t, 5, "previous_frame") for t in range(1, 15)]
  assert last == [0, 1, 2, 3] + [4] * 10  # the last ground-truth frame x[n_past-1]
  assert ref == [0, 1, 2, 3] + [3] * 10  # the reference's x[n_past-2] (edenton/svg issue #1)
  assert prev == list(range(14))
  assert [skip_source(t, 2, "reference") for t in range(1, 5)] == [0, 0, 0, 0]  # BAIR: frame 0


def test_skip_rule_changes_the_decoder_input(tiny_config):
  """Frames after the context depend on the skip source (last context frame vs the one before)."""
  frames = tf.random.stateless_uniform([2, 5, 64, 64, 1], seed=[7, 8])
  noise = tf.zeros([4, 2, 3])
  a = SVG(tiny_config)
  b = SVG(tiny_config.replace(skip_rule="reference"))
  b.set_weights(a.get_weights())
  pa = a.compute_losses(frames, noise)["prediction"]
  pb = b.compute_losses(frames, noise)["prediction"]
  np.testing.assert_allclose(pa[:, 0], pb[:, 0], atol=1e-6)  # x[1]: skip from x[0] for both
  assert not np.allclose(pa[:, 2], pb[:, 2], atol=1e-5)  # x[3]: x[1] vs x[0]


def test_generate_and_reconstruct_shapes_and_noise_dependence(tiny_config):
  keras.utils.set_random_seed(3)  # fresh weights make z's effect small; some draws hide it
  model = SVG(tiny_config)
  context = tf.random.stateless_uniform([2, 2, 64, 64, 1], seed=[9, 9])
  noise_a = tf.random.stateless_normal([1 + 4, 2, 3], seed=[1, 1])
  noise_b = tf.random.stateless_normal([1 + 4, 2, 3], seed=[2, 2])
  out_a = model.predict_future(context, 4, noise_a).frames
  assert out_a.shape == (2, 4, 64, 64, 1)
  assert float(tf.reduce_min(out_a)) >= 0 and float(tf.reduce_max(out_a)) <= 1
  np.testing.assert_allclose(out_a, model.predict_future(context, 4, noise_a).frames, atol=1e-6)
  # Fresh N(0, 0.02) weights with untrained moving statistics make z's effect vanish; batch
  # statistics rescale every layer, so a different z shows.
  batch_a = model.predict_future(context, 4, noise_a, bn_mode="batch").frames
  batch_b = model.predict_future(context, 4, noise_b, bn_mode="batch").frames
  assert not np.allclose(batch_a, batch_b, atol=1e-4)
  frames = tf.random.stateless_uniform([2, 6, 64, 64, 1], seed=[3, 3])
  assert model.reconstruct(frames, 2).shape == (2, 4, 64, 64, 1)


def test_config_rejects_bad_values_naming_the_field():
  with pytest.raises(ValueError, match="--model='gan'"):
    config_lib.preset("smmnist", model="gan")
  with pytest.raises(ValueError, match="--skip_rule"):
    config_lib.preset("smmnist", skip_rule="reference", n_past=1)
  with pytest.raises(ValueError, match="--dataset='ucf'"):
    config_lib.preset("ucf")
  with pytest.raises(ValueError, match="--batch_size=0"):
    config_lib.preset("smmnist", batch_size=0)


@pytest.mark.parametrize("index", [[0, 1, 1, 1, 1, 1], [0, 0, 0], [2, 0, 1, 1, 2], [1, 1, 1, 1],
                                   [0, 1, 2]])
def test_per_step_skip_addition_equals_the_gather_with_its_gradients(index):
  """`_add_per_step` (one broadcast add per run of steps sharing a source) against y +
  tf.gather(term, index): values and gradients, with sources repeated, unused, out of order."""
  y = tf.random.stateless_normal([len(index), 2, 3, 3, 4], seed=[1, 1])
  sources = 1 if index == [0, 0, 0] else 3
  term = tf.random.stateless_normal([sources, 2, 3, 3, 4], seed=[2, 2])
  weights = tf.random.stateless_normal(y.shape, seed=[3, 3])
  results = []
  for fn in (lambda y, t: y + tf.gather(t, index),
             lambda y, t: frame_nets._add_per_step(y, t, index)):  # pylint: disable=protected-access
    with tf.GradientTape() as tape:
      tape.watch([y, term])
      out = fn(y, term)
      loss = tf.reduce_sum(out * weights)
    results.append([out] + [tf.convert_to_tensor(g) for g in tape.gradient(loss, [y, term])])
  for a, b in zip(*results):
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("transpose", [False, True])
def test_skip_conv_equals_the_conv_of_the_concatenation(transpose):
  """The split convolution used by the decoder computes exactly conv([x_t, skip_s(t)])."""
  layer = (keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D)(5, 4, 2, "same")
  x = tf.random.stateless_normal([6, 2, 8, 8, 3], seed=[1, 1])  # (time, batch, h, w, c)
  skip = tf.random.stateless_normal([2, 2, 8, 8, 4], seed=[2, 2])  # two distinct skip frames
  index = [0, 1, 1, 1, 1, 1]
  frame_nets.skip_conv(layer, x, skip, index)  # builds the layer for 7 input channels
  layer.bias.assign(tf.random.stateless_normal([5], seed=[3, 3]))
  out = frame_nets.skip_conv(layer, x, skip, index)
  concat = tf.concat([x, tf.gather(skip, index)], axis=-1)
  expected = frame_nets.unfold_time(layer(frame_nets.fold_time(concat)), concat)
  np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("dtype,shape,tolerance", [
    ("float32", [3, 4, 5, 5, 6], 1e-4), ("float32", [2, 1, 1, 1, 3], 1e-4),
    ("float32", [1, 3, 2, 7, 4], 1e-4), ("bfloat16", [3, 4, 5, 5, 6], 2e-2)])
def test_batchnorm_gradient_equals_autodiff_of_the_formula(fused, dtype, shape, tolerance):
  """per_step_batch_norm's gradients (the fused op per step on one replica's batch, or the
  written-out form used when statistics are summed over replicas) against autodiff of
  tf.nn.moments BatchNorm in float32; so are y and the per-step statistics. Shapes include 1x1
  maps of one example per step (the statistics of a single value) and a single time step."""
  x = tf.random.stateless_normal(shape, seed=[1, 2]) * 2 + 1  # (time, batch, h, w, c)
  x = tf.cast(tf.cast(x, dtype), tf.float32)  # representable in dtype: both sides see the same x
  c = shape[-1]
  gamma = tf.random.stateless_normal([c], seed=[3, 4]) + 1
  beta = tf.random.stateless_normal([c], seed=[5, 6])
  weights = tf.random.stateless_normal(x.shape, seed=[7, 8])  # a loss that is not symmetric

  def reference(x, gamma, beta):
    mean, var = tf.nn.moments(x, axes=[1, 2, 3], keepdims=True)
    return tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-5), mean, var

  def ours(x, gamma, beta):
    y, mean, var, count = frame_nets.per_step_batch_norm(
        tf.cast(x, dtype), gamma, beta, 1e-5, None if fused else lambda t: t)
    assert y.dtype == dtype and mean.dtype == var.dtype == tf.float32
    assert float(count) == np.prod(shape[1:4])
    return tf.cast(y, tf.float32), mean[:, None, None, None, :], var[:, None, None, None, :]

  results = []
  for fn in (reference, ours):
    with tf.GradientTape() as tape:
      tape.watch([x, gamma, beta])
      y, mean, var = fn(x, gamma, beta)
      loss = tf.reduce_sum(tf.square(y) * weights)
    results.append([y, mean, var] + tape.gradient(loss, [x, gamma, beta]))
  for name, a, b in zip(["y", "mean", "variance", "dx", "dgamma", "dbeta"], *results):
    scale = np.abs(a).max()
    np.testing.assert_allclose(b, a, rtol=tolerance, atol=tolerance * max(scale, 1.0),
                               err_msg=name)


def test_fused_batchnorm_serves_one_replica_and_the_written_form_several(monkeypatch):
  """Which form runs: the fused op on one replica's batch (not under STOCK_KERNELS, nor with
  statistics summed over replicas, nor when FUSED_BATCH_NORM is off)."""
  x = tf.random.stateless_normal([2, 3, 4, 4, 5], seed=[1, 2])
  ones = tf.ones([5])

  def ops(*args, **kwargs):
    graph = tf.function(lambda x: frame_nets.per_step_batch_norm(x, ones, 0 * ones, 1e-5, *args,
                                                                 **kwargs)[0])
    return {op.type for op in graph.get_concrete_function(x).graph.get_operations()}

  assert "FusedBatchNormV3" in ops(None)
  assert "FusedBatchNormV3" not in ops(lambda t: t)
  assert "FusedBatchNormV3" not in ops(None, written_gradient=False)
  monkeypatch.setattr(frame_nets, "FUSED_BATCH_NORM", False)
  assert "FusedBatchNormV3" not in ops(None)


@pytest.mark.parametrize("transpose,size,padding", [(False, 8, "same"), (True, 4, "same"),
                                                    (False, 16, "same"), (True, 8, "same"),
                                                    (False, 4, "valid"), (True, 1, "valid")])
def test_bfloat16_small_map_convolutions_have_the_right_gradients(transpose, size, padding):
  """The matmul kernel gradient used for bfloat16 on small maps equals TF's own (in float32);
  for the stride-2 convolutions, by space-to-depth patches, not extract_patches."""
  cls = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
  layer = cls(6, 4, 2 if padding == "same" else 1, padding, dtype="mixed_bfloat16")
  x = tf.random.stateless_normal([1, 3, size, size, 5], seed=[1, 2])
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = frame_nets.apply_conv(layer, x)
    loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.random.stateless_normal(y.shape, seed=[3, 4]))
  ours = tape.gradient(loss, [x, layer.kernel])
  if padding == "same":
    graph = tf.function(lambda x: tf.gradients(frame_nets.apply_conv(layer, x), layer.kernel)
                        ).get_concrete_function(x).graph
    assert "ExtractImagePatches" not in {op.type for op in graph.get_operations()}
  x32, k32 = tf.cast(tf.cast(x, tf.bfloat16), tf.float32), tf.cast(tf.cast(layer.kernel, tf.bfloat16), tf.float32)
  with tf.GradientTape() as tape:
    tape.watch([x32, k32])
    y32 = frame_nets._conv_only(layer, frame_nets.fold_time(x32), k32, frame_nets.STOCK_KERNELS)
    loss = tf.reduce_sum(y32 * tf.reshape(tf.random.stateless_normal(y.shape, seed=[3, 4]), y32.shape))
  ref = tape.gradient(loss, [x32, k32])
  assert y.dtype == tf.bfloat16
  np.testing.assert_allclose(tf.cast(ours[0], tf.float32), ref[0], rtol=0.05, atol=0.05)
  np.testing.assert_allclose(tf.cast(ours[1], tf.float32), ref[1], rtol=0.05, atol=0.05)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("size", [8, 6, 4, 2])  # the convolution's input; transposed: its output
def test_smallest_strided_convolutions_by_matmul_equal_tensorflows(transpose, size):
  """The matmul forms of the stride-2 4x4 convolutions at the smallest maps (conv input, or
  transposed-conv output, 8x8 or less) give TensorFlow's convolution and its gradients, for any
  batch; CPU_KERNELS use them, STOCK_KERNELS not."""
  cls = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
  layer = cls(6, 4, 2, "same")
  layer.build((None, None, None, 5))
  shape = [3, size // 2, size // 2, 5] if transpose else [3, size, size, 5]
  x = tf.random.stateless_normal(shape, seed=[1, 2])
  weights = tf.random.stateless_normal([3, size, size, 6] if transpose else
                                       [3, size // 2, size // 2, 6], seed=[3, 4])

  def run(kernels):
    @tf.function(input_signature=[tf.TensorSpec([None] + shape[1:])])
    def values_and_gradients(x):
      with tf.GradientTape() as tape:
        tape.watch(x)
        y = frame_nets._conv_only(layer, x, layer.kernel, kernels)  # pylint: disable=protected-access
        loss = tf.reduce_sum(y * weights)
      return [y] + tape.gradient(loss, [x, layer.kernel])
    ops = {op.type for op in values_and_gradients.get_concrete_function().graph.get_operations()}
    return values_and_gradients(x), ops

  ours, our_ops = run(frame_nets.CPU_KERNELS)
  theirs, their_ops = run(frame_nets.STOCK_KERNELS)
  assert not our_ops & {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"}
  assert ("Conv2DBackpropInput" if transpose else "Conv2D") in their_ops
  for got, want in zip(ours, theirs):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def _loop_body_op_types(concrete) -> set:
  """The op types in the bodies of a traced function's while loops (and the functions they call)."""
  types, seen = set(), set()

  def walk(graph, in_body):
    for name, function in getattr(graph, "_functions", {}).items():
      if name not in seen and getattr(function, "graph", None) is not None:
        seen.add(name)
        body = in_body or "body" in name
        if body:
          types.update(op.type for op in function.graph.get_operations())
        walk(function.graph, body)

  walk(concrete.graph, False)
  return types


def test_sampling_makes_the_kernels_matrices_once_per_call(tiny_config, monkeypatch):
  """On moving statistics the sampler's blocks run with folded weights whose matrix forms
  (`kernel_matrices`) are made before the time loop: its body holds no transposes (each step had
  rebuilt them), and the samples are those of matrices made inside the loop, exactly."""
  from svg_tf.evaluation import Sampler
  model = SVG(tiny_config)
  context = np.random.default_rng(0).random((2, 2, 64, 64, 1), np.float32)
  sampler = Sampler(model, 2, 3, chunk_size=4)
  frames, _ = sampler.sample(context, 2, seed=3)
  body = _loop_body_op_types(sampler._generate.get_concrete_function())  # pylint: disable=protected-access
  assert "MatMul" in body and "Transpose" not in body
  monkeypatch.setattr(frame_nets, "kernel_matrices", lambda layer, kernel: {})
  inside = Sampler(model, 2, 3, chunk_size=4)
  in_loop, _ = inside.sample(context, 2, seed=3)
  assert "Transpose" in _loop_body_op_types(inside._generate.get_concrete_function())  # pylint: disable=protected-access
  np.testing.assert_array_equal(frames, in_loop)


def test_action_conditioning_adds_the_action_to_the_predictor_input():
  plain = SVG(config_lib.preset("bair"))
  acting = SVG(config_lib.preset("bair", action_dim=4))
  extra = {k: acting.parameter_counts()[k] - v for k, v in plain.parameter_counts().items()}
  assert extra == dict(encoder=0, decoder=0, frame_predictor=4 * 256, posterior=0, prior=0)


def test_predicting_x_t_uses_the_action_at_t_minus_1_only(tiny_config):
  """Causality: a_t (taken at frame t) reaches predictions of x_{t+1} and later, never earlier."""
  config = tiny_config.replace(action_dim=2)
  model = SVG(config)
  frames = tf.random.stateless_uniform([2, 5, 64, 64, 1], seed=[4, 4])
  noise = tf.random.stateless_normal([4, 2, 3], seed=[5, 5])
  actions = np.random.default_rng(0).normal(size=(2, 5, 2)).astype(np.float32)
  base = model.compute_losses(frames, noise, actions=actions)["prediction"].numpy()
  changed = actions.copy()
  changed[:, 2] += 30.0  # a_2: first used to predict x_3, i.e. prediction index 2
  moved = model.compute_losses(frames, noise, actions=changed)["prediction"].numpy()
  np.testing.assert_allclose(moved[:, :2], base[:, :2], atol=1e-6)
  assert np.abs(moved[:, 2:] - base[:, 2:]).max() > 1e-5  # fresh N(0, 0.02) weights: a small effect
  last = actions.copy()
  last[:, 4] += 3.0  # a_4 is taken at the last frame: nothing in the sequence depends on it
  np.testing.assert_allclose(model.compute_losses(frames, noise, actions=last)["prediction"],
                             base, atol=1e-6)
  with pytest.raises(ValueError, match="action-conditioned"):
    model.compute_losses(frames, noise)
  with pytest.raises(ValueError, match="trained without"):
    SVG(tiny_config).compute_losses(frames, noise, actions=actions)


def test_generation_follows_the_given_future_actions(tiny_config):
  model = SVG(tiny_config.replace(action_dim=2))
  context = tf.random.stateless_uniform([2, 2, 64, 64, 1], seed=[6, 6])
  noise = tf.random.stateless_normal([1 + 3, 2, 3], seed=[7, 7])
  actions = np.zeros((2, 4, 2), np.float32)
  pushed = actions.copy()
  pushed[:, 2] = 5.0  # a_2 drives x_3, the second generated frame; x_2 stays
  a = model.predict_future(context, 3, noise, bn_mode="batch", actions=actions).frames.numpy()
  b = model.predict_future(context, 3, noise, bn_mode="batch", actions=pushed).frames.numpy()
  np.testing.assert_allclose(a[:, 0], b[:, 0], atol=1e-6)
  assert np.abs(a[:, 1:] - b[:, 1:]).max() > 1e-5
  with pytest.raises(ValueError, match="steps"):
    model.predict_future(context, 3, noise, actions=actions[:, :3])


def test_prior_std_given_true_frames_is_causal(tiny_config):
  """Step k is the std of z_{k+1} given frames 0..k: later frames cannot change it."""
  model = SVG(tiny_config)
  frames = np.random.default_rng(0).random((2, 5, 64, 64, 1)).astype(np.float32)
  # batch statistics: fresh weights with untrained moving statistics make every input look alike
  std = model.prior_std_given(frames, bn_mode="batch").numpy()
  assert std.shape == (2, 4)
  changed = frames.copy()
  changed[:, 3] = 1.0 - changed[:, 3]
  moved = model.prior_std_given(changed, bn_mode="batch").numpy()
  np.testing.assert_allclose(moved[:, :3], std[:, :3], atol=1e-6)
  assert np.abs(moved[:, 3] - std[:, 3]).max() > 0
  fp = SVG(tiny_config.replace(model="fp")).prior_std_given(frames).numpy()
  det = SVG(tiny_config.replace(model="det")).prior_std_given(frames).numpy()
  assert np.all(fp == 1.0) and np.all(det == 0.0) and fp.shape == det.shape == (2, 4)
