"""The recurrent parts of SVG (SPEC section 1.4): the frame predictor and the Gaussian LSTMs.

Each network is a linear embedding (no nonlinearity), a stack of LSTM cells of `rnn_size` units and
an output head. State is explicit: `zero_state(batch)` builds it, `step` takes and returns it, so
the same weights serve a teacher-forced sequence during training, step-by-step sampling and export.
`sequence` runs a whole (time, batch, features) input: the input projections of every layer are
one matmul over all time steps; only the recurrent matmuls run step by step.
"""

from typing import List, Tuple

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from svg_tf import distributions

tfd = tfp.distributions

State = List[Tuple[tf.Tensor, tf.Tensor]]  # one (h, c) per layer, each (batch, units)


class LSTMCell(keras.layers.Layer):
  """A torch-equivalent LSTM cell: gates (i, f, g, o), c' = f c + i tanh(g), h' = o tanh(c').

  All weights start U(-1/sqrt(units), 1/sqrt(units)) like torch's `nn.LSTMCell` (the reference does
  not re-initialise its cells). `torch_bias=True` adds torch's second bias vector (bias_hh): it
  changes nothing mathematically (only the sum of the two biases matters) but makes the trainable
  parameter count equal the reference's, 4 * units more per cell.
  """

  def __init__(self, units, torch_bias=False, **kwargs):
    super().__init__(**kwargs)
    self.units = units
    self.torch_bias = torch_bias

  def build(self, input_shape):
    bound = 1.0 / self.units ** 0.5
    init = lambda: keras.initializers.RandomUniform(-bound, bound)
    self.kernel = self.add_weight(shape=(input_shape[-1], 4 * self.units), initializer=init(),
                                  name="kernel")
    self.recurrent_kernel = self.add_weight(shape=(self.units, 4 * self.units), initializer=init(),
                                            name="recurrent_kernel")
    self.bias = self.add_weight(shape=(4 * self.units,), initializer=init(), name="bias")
    if self.torch_bias:
      self.bias_hh = self.add_weight(shape=(4 * self.units,), initializer=init(), name="bias_hh")

  def input_projection(self, x):
    """x (..., features) -> x W + b (..., 4 units): the part of the gates that needs no state."""
    bias = self.bias + self.bias_hh if self.torch_bias else self.bias
    if x.shape.rank == 2:
      return tf.linalg.matmul(x, self.kernel) + bias
    return tf.tensordot(x, self.kernel, axes=1) + bias

  def recurrent_step(self, projected_x, state):
    """One step from the precomputed input projection (batch, 4 units) and state (h, c)."""
    h, c = state
    gates = projected_x + tf.linalg.matmul(h, self.recurrent_kernel)
    i, f, g, o = tf.split(gates, 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    h = tf.sigmoid(o) * tf.tanh(c)
    return h, (h, c)

  def call(self, x, state):
    return self.recurrent_step(self.input_projection(x), state)


class LSTMStack(keras.layers.Layer):
  """Linear embedding to `units`, then `layers` LSTM cells; the output is the top cell's h."""

  def __init__(self, units, layers, torch_bias=False, **kwargs):
    super().__init__(**kwargs)
    self.units = units
    self.embed = keras.layers.Dense(units, kernel_initializer=keras.initializers.RandomNormal(0, 0.02),
                                    dtype=self.dtype_policy, name="embed")
    # Attributes, not a list: tf.train.Checkpoint sees only attribute-held layers (see
    # frame_nets.hold_by_name).
    self._num_cells = layers
    for i in range(layers):
      setattr(self, f"lstm_{i}", LSTMCell(units, torch_bias, dtype=self.dtype_policy,
                                          name=f"lstm_{i}"))

  @property
  def cells(self) -> List[LSTMCell]:
    return [getattr(self, f"lstm_{i}") for i in range(self._num_cells)]

  def build(self, input_shape):
    self.embed.build(input_shape)
    for cell in self.cells:
      cell.build((None, self.units))

  def zero_state(self, batch_size) -> State:
    zeros = tf.zeros(tf.stack([batch_size, self.units]), self.compute_dtype)
    return [(zeros, zeros) for _ in self.cells]

  def run_step(self, x, state: State):
    """x (batch, features) -> (top h (batch, units), new state)."""
    h = self.embed(x)
    new_state = []
    for cell, cell_state in zip(self.cells, state):
      h, cell_state = cell.recurrent_step(cell.input_projection(h), cell_state)
      new_state.append(cell_state)
    return h, new_state

  def run_sequence(self, x, state: State = None):
    """x (time, batch, features) -> (top h (time, batch, units), final state). Time must be static."""
    if state is None:
      state = self.zero_state(tf.shape(x)[1])
    h_seq = self.embed(x)
    new_state = []
    for cell, cell_state in zip(self.cells, state):
      projected = cell.input_projection(h_seq)  # (time, batch, 4 units) in one matmul
      outputs = []
      # Unstacked, not indexed: the gradient of an unstack is one stack, that of each index a
      # zero-filled (time, batch, 4 units) tensor, summed over the steps.
      for projected_t in tf.unstack(projected, num=x.shape[0]):
        h, cell_state = cell.recurrent_step(projected_t, cell_state)
        outputs.append(h)
      h_seq = tf.stack(outputs)
      new_state.append(cell_state)
    return h_seq, new_state


class FramePredictor(LSTMStack):
  """LSTM_theta: [h_{t-1}, z_t] -> g_t = tanh(W h_top + b), the decoder's input (SPEC 1.4)."""

  def __init__(self, units, layers, output_dim, torch_bias=False, **kwargs):
    super().__init__(units, layers, torch_bias, **kwargs)
    self.out = keras.layers.Dense(output_dim, kernel_initializer=keras.initializers.RandomNormal(0, 0.02),
                                  dtype=self.dtype_policy, name="output")

  def build(self, input_shape):
    super().build(input_shape)
    self.out.build((None, self.units))

  def step(self, x, state):
    h, state = self.run_step(x, state)
    return tf.tanh(self.out(h)), state

  def sequence(self, x, state=None):
    h, state = self.run_sequence(x, state)
    return tf.tanh(self.out(h)), state


class GaussianLSTM(LSTMStack):
  """LSTM_phi (posterior) or LSTM_psi (learned prior): features -> diagonal Normal over z.

  Heads give the mean and the log-variance (the reference's parameterisation); the result is
  `tfd.Independent(tfd.Normal(mu, exp(logvar / 2)), 1)` with event shape (z_dim,).
  """

  def __init__(self, units, layers, z_dim, torch_bias=False, **kwargs):
    super().__init__(units, layers, torch_bias, **kwargs)
    init = keras.initializers.RandomNormal(0, 0.02)
    self.mu_net = keras.layers.Dense(z_dim, kernel_initializer=init, dtype=self.dtype_policy,
                                     name="mu")
    self.logvar_net = keras.layers.Dense(z_dim, kernel_initializer=init, dtype=self.dtype_policy,
                                         name="logvar")

  def build(self, input_shape):
    super().build(input_shape)
    self.mu_net.build((None, self.units))
    self.logvar_net.build((None, self.units))

  def _head(self, h) -> tfd.Distribution:
    return distributions.diag_normal(self.mu_net(h), self.logvar_net(h))

  def step(self, x, state):
    """x (batch, features) -> (distribution, batch shape (batch,), new state)."""
    h, state = self.run_step(x, state)
    return self._head(h), state

  def sequence(self, x, state=None):
    """x (time, batch, features) -> (distribution, batch shape (time, batch), final state)."""
    h, state = self.run_sequence(x, state)
    return self._head(h), state
