"""The SVG model (Denton & Fergus, ICML 2018): SVG-LP, SVG-FP and the deterministic baseline.

One class composes the five networks of the paper's Fig. 2 and owns the time loop and the skip
rule, for training (teacher forcing, every frame encoded once), sampling and reconstruction:

  h_t = enc(x_t)                      every frame of the sequence, one batched call
  q_t = posterior(h_t)                LSTM_phi over h_1..h_{T-1}      (lp, fp)
  p_t = prior(h_{t-1})                LSTM_psi over h_0..h_{T-2}      (lp; N(0, I) for fp)
  g_t = predictor([h_{t-1}, z_t])     LSTM_theta, z_t ~ q_t in training, ~ p_t when sampling
                                      ([h_{t-1}, z_t, a_{t-1}] with action_dim > 0: the
                                      action-conditioned variant, beyond the paper)
  x_hat_t = dec(g_t, skips)           all steps in one batched call during training

Sampling and reconstruction share one time loop (`_rollout`, graph loops over the context and the
generated frames), so the number of context frames and of generated frames may be tensors, as in
the TF Serving export (svg_tf/export.py). The skip rule is `skip_source`, for both passes.

Drawing samples has one path, `sample` (and `sample_rows`, its unit of work): it repeats the
context per sample, makes the latent noise with `latent_noise` (sample s of any video gets the
noise of the seed pair (seed, s)) and applies the deterministic model's rule (one future,
repeated). Previews, the evaluation, the SavedModel and `svg_tf.load`'s Predictor all call it.

Tensors entering and leaving the public methods are batch-major (batch, time, H, W, C) in [0, 1];
internally everything is time-major.
"""

import contextlib
from typing import Dict, List, NamedTuple, Optional

import keras
import numpy as np
import tensorflow as tf

from svg_tf import distributions, frame_nets, losses
from svg_tf.config import SVGConfig
from svg_tf.frame_nets import BN_BATCH, BN_MOVING, BN_TRAIN
from svg_tf.recurrent import FramePredictor, GaussianLSTM

MODULE_NAMES = ("encoder", "decoder", "frame_predictor", "posterior", "prior")


def skip_source(t, n_past, rule: str):
  """Index of the frame whose encoder features feed the decoder when predicting x[t] (t >= 1).

  Python ints give an int; scalar int32 tensors (a dynamic context length) give a tensor.
  """
  if rule == "previous_frame":
    return t - 1
  last = n_past - 1 if rule == "last_context" else n_past - 2
  if isinstance(t, int) and isinstance(last, int):
    return min(t - 1, last)
  return tf.minimum(t - 1, last)


MAX_SEED = 2**31 - 1  # seeds are int32: the SavedModel's `seed` input


def latent_noise(seed, sample_index, steps, z_dim: int) -> tf.Tensor:
  """The latent noise of sampling, (steps, rows, z_dim): svg_tf's one noise scheme.

  Row r is `stateless_normal([steps, z_dim], seed=[seed, sample_index[r]], alg="philox")`: sample s
  of a video gets the same noise whatever the video, the other rows of the batch, the chunk or the
  replica it is computed in, and however many samples are drawn. Philox fills the block row by row,
  so a longer `steps` (more future frames) extends the same draws. Step t - 1 holds the noise of
  z_t, t = 1..n_past - 1 + n_future.

  Args:
    seed: int32 scalar in [0, MAX_SEED].
    sample_index: (rows,) int32 sample number of each row.
    steps: int or scalar int32 tensor.
  """
  seed = tf.cast(seed, tf.int32)
  distinct, row_of = tf.unique(tf.cast(tf.reshape(sample_index, [-1]), tf.int32))

  def one_sample(s):
    return tf.random.stateless_normal(tf.stack([steps, z_dim]), seed=tf.stack([seed, s]),
                                      alg="philox")

  noise = tf.map_fn(one_sample, distinct,
                    fn_output_signature=tf.TensorSpec([None, z_dim], tf.float32))
  return tf.gather(tf.transpose(noise, [1, 0, 2]), row_of, axis=1)  # (steps, rows, z)


def _time_major(x):
  return tf.transpose(x, [1, 0, 2, 3, 4])


_batch_major = _time_major  # the same permutation swaps back


class SVG(keras.Model):
  """SVG-LP / SVG-FP / deterministic video predictor built from an `SVGConfig`."""

  def __init__(self, config: SVGConfig, **kwargs):
    super().__init__(name=kwargs.pop("name", f"svg_{config.model}"), **kwargs)
    self.config = config
    conv_dtype = config.precision  # "float32" or "mixed_bfloat16"
    bn = dict(momentum=config.bn_momentum, epsilon=config.bn_epsilon,
              synchronized=config.sync_batchnorm)
    args = (config.arch, config.image_size, config.channels, config.g_dim, config.base_filters)
    self.encoder = frame_nets.FrameEncoder(*args, bn=bn, dtype=conv_dtype, name="encoder")
    self.decoder = frame_nets.FrameDecoder(*args, bn=bn, dtype=conv_dtype, name="decoder")
    # The recurrent nets are small; they stay in float32 under mixed precision.
    rnn = dict(units=config.rnn_size, torch_bias=config.torch_lstm_bias, dtype="float32")
    self.frame_predictor = FramePredictor(layers=config.predictor_rnn_layers,
                                          output_dim=config.g_dim, name="frame_predictor", **rnn)
    self.posterior = None
    self.prior = None
    if config.model != "det":
      self.posterior = GaussianLSTM(layers=config.posterior_rnn_layers, z_dim=config.z_dim,
                                    name="posterior", **rnn)
    if config.model == "lp":
      self.prior = GaussianLSTM(layers=config.prior_rnn_layers, z_dim=config.z_dim, name="prior",
                                **rnn)
    self._build_weights()

  # ------------------------------------------------------------------------------------ structure
  @property
  def modules(self) -> Dict[str, keras.layers.Layer]:
    """The paper's networks by the reference's names; absent ones (fp: prior; det: both) left out."""
    return {name: getattr(self, name) for name in MODULE_NAMES if getattr(self, name) is not None}

  def parameter_counts(self) -> Dict[str, int]:
    """Trainable parameters per module (BatchNorm moving statistics excluded, as in torch)."""
    return {name: int(sum(v.numpy().size for v in module.trainable_weights))
            for name, module in self.modules.items()}

  def _build_weights(self):
    """Creates every variable now (one tiny forward pass), so strategy scopes and checkpoints see them."""
    c = self.config
    self.frame_predictor.build((None, c.g_dim + c.latent_dim + c.action_dim))
    for net in (self.posterior, self.prior):
      if net is not None:
        net.build((None, c.g_dim))
    frames = tf.zeros([1, 2, c.image_size, c.image_size, c.channels])
    noise = tf.zeros([1, 1, c.latent_dim])
    actions = tf.zeros([1, 2, c.action_dim]) if c.action_dim else None
    self.compute_losses(frames, noise, bn_mode=BN_MOVING, actions=actions)
    self.built = True

  def skip_sources(self, num_frames: int) -> List[int]:
    """Skip-feature frame index for each predicted step t = 1..num_frames-1 (training)."""
    return [skip_source(t, self.config.n_past, self.config.skip_rule) for t in range(1, num_frames)]

  # ------------------------------------------------------------------------------------- training
  def _actions(self, actions, steps: int):
    """Checks and time-majors the actions of an action-conditioned model: (steps, batch, A) or None."""
    c = self.config
    if not c.action_dim:
      if actions is not None:
        raise ValueError("actions given to a model trained without them (action_dim=0)")
      return None
    if actions is None:
      raise ValueError(f"this model is action-conditioned (action_dim={c.action_dim}): pass "
                       "actions (batch, time, action_dim)")
    a = tf.convert_to_tensor(actions, tf.float32)
    if a.shape.rank != 3 or a.shape[-1] != c.action_dim:
      raise ValueError(f"actions must be (batch, time, {c.action_dim}), got {a.shape}")
    if a.shape[1] is not None and a.shape[1] < steps:
      raise ValueError(f"actions cover {a.shape[1]} steps; {steps} are needed")
    return tf.transpose(a, [1, 0, 2])[:steps]  # (steps, batch, A)

  def compute_losses(self, frames, noise=None, bn_mode=BN_TRAIN,
                     actions=None) -> Dict[str, tf.Tensor]:
    """Teacher-forced pass over a batch of sequences (the reference's `train(x)`).

    Args:
      frames: (batch, T, H, W, C) in [0, 1].
      noise: (T-1, batch, z_dim) standard-normal noise for the posterior samples (ignored by det).
      bn_mode: BN_TRAIN while training.
      actions: (batch, T, action_dim) for an action-conditioned model (a_t is the action taken at
        frame t; predicting x_t uses a_{t-1}); None otherwise.
    Returns:
      per-example (batch,) `loss`, `mse`, `kl` (see losses.per_example_losses) and `prediction`,
      the reconstructions of frames 1..T-1, (batch, T-1, H, W, C).
    """
    c = self.config
    x = _time_major(tf.convert_to_tensor(frames, tf.float32))  # (T, batch, H, W, C)
    num_frames = x.shape[0]
    a_prev = self._actions(actions, num_frames - 1)  # (T-1, batch, A) or None
    h, skips = self.encoder(x, bn_mode=bn_mode)  # h (T, batch, g); each frame encoded once
    h_prev, h_next = h[:-1], h[1:]
    kl = None
    if c.model == "det":
      predictor_in = h_prev
    else:
      q, _ = self.posterior.sequence(h_next)  # batch shape (T-1, batch)
      z = distributions.reparameterized_sample(q, noise)
      if c.model == "lp":
        p, _ = self.prior.sequence(h_prev)
      else:
        p = distributions.standard_normal(tf.shape(z))
      kl = distributions.tfd.kl_divergence(q, p)  # (T-1, batch), summed over z
      predictor_in = tf.concat([h_prev, z], axis=-1)
    if a_prev is not None:
      predictor_in = tf.concat([predictor_in, a_prev], axis=-1)
    g, _ = self.frame_predictor.sequence(predictor_in)  # (T-1, batch, g)
    sources = self.skip_sources(num_frames)
    used = sorted(set(sources))  # frames whose features feed some step's skips
    if used == list(range(len(used))):  # the first frames (every skip rule but previous_frame)
      used_skips = [tf.split(s, [len(used), num_frames - len(used)])[0] if len(used) < num_frames
                    else s for s in skips]  # a split's gradient is a concatenation, no scatter
    else:
      used_skips = [tf.gather(s, used) for s in skips]  # (len(used), batch, h, w, c) each
    skip_index = [used.index(i) for i in sources]
    predicted = self.decoder(g, used_skips, skip_index=skip_index, bn_mode=bn_mode)  # (T-1, batch, H, W, C)
    terms = losses.per_example_losses(predicted, x[1:], kl, c.beta)
    terms["prediction"] = _batch_major(predicted)
    return terms

  # ------------------------------------------------------------------------------------- sampling
  def sample(self, context, n_future, num_samples=1, seed=0, actions=None,
             bn_mode: Optional[str] = None, first_sample=0) -> "Generation":
    """`num_samples` futures of every video: the one sampling path of svg_tf.

    Previews, the evaluation, the SavedModel and `svg_tf.load`'s Predictor all come here (the
    evaluation through `sample_rows`, which this calls). Sample s of a video uses the noise of
    `latent_noise(seed, s)`, so with BatchNorm on its moving statistics (the default) it does
    not depend on the other videos, on num_samples or on how the work is split. The
    deterministic model has one future per video: it is computed once and repeated.

    Args:
      context: (batch, n_past, H, W, C) in [0, 1]; n_past >= 1 (may be dynamic).
      n_future, num_samples: ints or scalar int32 tensors, >= 1.
      seed: int32 scalar in [0, MAX_SEED].
      actions: action-conditioned models: (batch, >= n_past + n_future - 1, action_dim).
      first_sample: draw samples first_sample .. first_sample + num_samples - 1 (the same frames
        as in one call for all of them: long requests can report progress between parts).
    Returns:
      Generation(frames (batch, num_samples, n_future, H, W, C),
                 prior_std (batch, num_samples, n_future, z_dim)).
    """
    context = tf.convert_to_tensor(context, tf.float32)
    batch = tf.shape(context)[0]
    if not self.config.latent_dim:  # no latent: one future per video, repeated
      out = self.predict_future(context, n_future, None, bn_mode, actions)
      return Generation(*[tf.repeat(x[:, None], num_samples, axis=1) for x in out])
    rows = tf.repeat(context, num_samples, axis=0)  # video-major: row v * num_samples + s
    sample_index = tf.tile(tf.range(first_sample, first_sample + num_samples), [batch])
    row_actions = None if actions is None else tf.repeat(
        tf.convert_to_tensor(actions, tf.float32), num_samples, axis=0)
    out = self.sample_rows(rows, n_future, sample_index, seed, row_actions, bn_mode)
    per_video = lambda x: tf.reshape(x, tf.concat([tf.stack([batch, num_samples]),
                                                   tf.shape(x)[1:]], 0))
    return Generation(self._frames_shape(per_video(out.frames), 3),
                      tf.ensure_shape(per_video(out.prior_std), [None] * 3 + [self.config.latent_dim]))

  def sample_rows(self, context, n_future, sample_index, seed, actions=None,
                  bn_mode: Optional[str] = None) -> "Generation":
    """Futures of (video, sample) rows: row r continues context[r] as sample sample_index[r].

    The unit of work that the evaluation splits into chunks and over replicas; `sample` is this
    with the context repeated per sample.

    Args:
      context: (rows, n_past, H, W, C); sample_index: (rows,) int32; seed: int32 scalar.
      actions: (rows, >= n_past + n_future - 1, action_dim) for action-conditioned models.
    Returns:
      Generation(frames (rows, n_future, H, W, C), prior_std (rows, n_future, z_dim)).
    """
    noise = None
    if self.config.latent_dim:
      context = tf.convert_to_tensor(context, tf.float32)
      steps = tf.shape(context)[1] - 1 + n_future
      noise = latent_noise(seed, sample_index, steps, self.config.latent_dim)
    return self.predict_future(context, n_future, noise, bn_mode, actions)

  def _frames_shape(self, frames, leading: int):
    """`frames` with the static shape (None x leading, H, W, C) of this model's frames."""
    c = self.config
    return tf.ensure_shape(frames, [None] * leading + [c.image_size, c.image_size, c.channels])

  def predict_future(self, context, n_future, noise=None, bn_mode: Optional[str] = None,
                     actions=None) -> "Generation":
    """Futures of context frames for given latent noise (the reference's `make_gifs` (b)).

    During the context, z comes from the posterior (sampled) as in the reference; after it from
    the learned prior (lp) or N(0, I) (fp); each generated frame is re-encoded as the next input.
    The number of context frames and `n_future` may be dynamic (graph loops, see `_rollout`).
    To draw samples for a seed, use `sample`, which makes the noise.

    Args:
      context: (batch, n_past, H, W, C) in [0, 1], n_past >= 1.
      n_future: frames to generate (>= 1), a Python int or a scalar int32 tensor.
      noise: (n_past - 1 + n_future, batch, z_dim) standard normal; None: every latent at the
        mean of its distribution (ignored by det).
      bn_mode: "moving" or "batch" BatchNorm statistics; defaults to config.generation_bn.
      actions: action-conditioned models only: (batch, >= n_past + n_future - 1, action_dim), the
        actions a_0.. taken at the context and generated frames.
    Returns:
      Generation(frames (batch, n_future, H, W, C), prior_std (batch, n_future, z_dim)): the
      learned prior's std at each generated step (lp; the paper's Fig. 6), ones (fp), or
      (batch, n_future, 0) (det).
    """
    x = _time_major(tf.convert_to_tensor(context, tf.float32))  # (n_past, batch, H, W, C)
    n_past = _length(x)
    n_future = _positive(n_future, "n_future")
    a = self._generation_actions(actions, n_past + n_future - 1)
    with self._folded_if_moving(bn_mode):
      h, skips = self.encoder(x, bn_mode=self._gen_bn(bn_mode))
      return self._rollout(h, skips, n_future, noise, bn_mode, actions=a)

  def reconstruct(self, frames, n_past, bn_mode: Optional[str] = None, actions=None):
    """Approximate-posterior reconstruction (the reference's `plot_rec`): z_t is the posterior mean
    for the true frame x_t at every step, generated frames are fed back after n_past.

    Args:
      frames: (batch, T, H, W, C); actions (batch, T, action_dim) for action-conditioned models.
      Returns (batch, T - n_past, H, W, C).
    """
    x = _time_major(tf.convert_to_tensor(frames, tf.float32))  # (T, batch, H, W, C)
    num_frames = _length(x)
    a = self._generation_actions(actions, num_frames - 1)
    with self._folded_if_moving(bn_mode):
      h_all, skips_all = self.encoder(x, bn_mode=self._gen_bn(bn_mode))
      h, skips = h_all[:n_past], [s[:n_past] for s in skips_all]
      n_future = _positive(num_frames - n_past, "T - n_past")
      return self._rollout(h, skips, n_future, None, bn_mode, actions=a, observed=h_all).frames

  def prior_std_given(self, frames, bn_mode: Optional[str] = None):
    """The learned prior's sigma_psi(x_1..t-1), fed the true frames (the paper's Fig. 6).

    Step k of the result is the std of z_{k+1}, the latent that explains frame k+1, given frames
    0..k, averaged over z. In SM-MNIST a digit that hits a wall at frame t moves with a new random
    velocity from frame t+1, so a prior that recognises the hit is wide at step t.

    Args:
      frames: (batch, T, H, W, C) in [0, 1].
    Returns:
      (batch, T-1): the learned prior's std (lp); ones (fp: N(0, I)); zeros (det: no latent).
    """
    x = _time_major(tf.convert_to_tensor(frames, tf.float32))  # (T, batch, H, W, C)
    if self.prior is None:
      shape = tf.stack([tf.shape(x)[1], tf.shape(x)[0] - 1])
      return tf.fill(shape, 1.0 if self.config.model == "fp" else 0.0)
    h, _ = self.encoder(x, bn_mode=self._gen_bn(bn_mode))
    p, _ = self.prior.sequence(h[:-1])  # batch shape (T-1, batch)
    return tf.transpose(tf.reduce_mean(p.stddev(), axis=-1))  # (batch, T-1)

  def _folded_if_moving(self, bn_mode):
    """On moving statistics, the frame networks run with BatchNorm folded into their convolutions
    (`frame_nets.folded_batch_norm`): the same outputs up to rounding, with less work per step."""
    if self._gen_bn(bn_mode) == BN_MOVING:
      return frame_nets.folded_batch_norm(self.encoder, self.decoder)
    return contextlib.nullcontext()

  def _gen_bn(self, bn_mode):
    mode = bn_mode or self.config.generation_bn
    return {"moving": BN_MOVING, "batch": BN_BATCH}.get(mode, mode)

  def _generation_actions(self, actions, steps):
    """`_actions` for a step count that may be a tensor (then checked when the graph runs)."""
    if isinstance(steps, int):
      return self._actions(actions, steps)
    if self._actions(actions, 0) is None:  # presence, rank and action_dim checks
      return None
    a = tf.transpose(tf.convert_to_tensor(actions, tf.float32), [1, 0, 2])  # (time, batch, A)
    check = tf.debugging.assert_greater_equal(
        tf.shape(a)[0], steps, message="actions must cover n_context + num_future - 1 steps")
    with tf.control_dependencies([check]):
      return tf.identity(a[:steps])

  def _rollout(self, h, skips, n_future, noise, bn_mode, actions=None,
               observed=None) -> "Generation":
    """The time loop of sampling and reconstruction: through the context, then frame by frame.

    Context steps t = 1..n_past-1 run the recurrences on the true frames (z_t from the posterior
    q(z_t | x_1..t)); generated steps t = n_past..n_past+n_future-1 decode x_t, re-encode it as the
    next input, and take z_t from the learned prior (lp) or N(0, I) (fp), or, when `observed` is
    given, from the posterior of the observed frames (reconstruction). Both loops are graph loops
    (tf.while_loop), so n_past and n_future may be dynamic. The skip rule is `skip_source`.

    Args:
      h: (n_past, batch, g) encodings of the context frames; skips: their encoder features, each
        (n_past, batch, h, w, c).
      n_future: int or scalar int32 tensor >= 1.
      noise: (n_past - 1 + n_future, batch, z) standard normal indexed by step t - 1, z_t = mean +
        noise * std of its distribution; None: the means.
      actions: (n_past + n_future - 1, batch, A) or None.
      observed: (n_past + n_future, batch, g) encodings of the true frames, or None.
    Returns:
      Generation(frames (batch, n_future, H, W, C), prior std (batch, n_future, z)).
    """
    c = self.config
    bn = self._gen_bn(bn_mode)
    n_past = _length(h)
    batch = tf.shape(h)[1]
    latent = c.model != "det"
    if noise is not None:
      noise = tf.convert_to_tensor(noise, tf.float32)

    def latent_sample(dist, t):
      return dist.mean() if noise is None else distributions.reparameterized_sample(
          dist, noise[t - 1])

    def predictor_input(h_prev, z, t):
      """[h_{t-1}, z_t, a_{t-1}], each part only when the model has it."""
      parts = [h_prev] + ([z] if latent else [])
      if actions is not None:
        parts.append(actions[t - 1])
      return tf.concat(parts, axis=-1) if len(parts) > 1 else h_prev

    state = {"predictor": self.frame_predictor.zero_state(batch)}
    if latent:
      state["posterior"] = self.posterior.zero_state(batch)
    if self.prior is not None:
      state["prior"] = self.prior.zero_state(batch)

    def context_step(t, state_in):
      """Step t < n_past: teacher-forced on the true frames x_{t-1} and x_t."""
      state = dict(state_in)
      z = None
      if latent:
        q, state["posterior"] = self.posterior.step(h[t], state["posterior"])
        z = latent_sample(q, t)
      if self.prior is not None:
        _, state["prior"] = self.prior.step(h[t - 1], state["prior"])
      _, state["predictor"] = self.frame_predictor.step(predictor_input(h[t - 1], z, t),
                                                        state["predictor"])
      return t + 1, _keep_shapes(state, state_in)

    _, state = tf.while_loop(lambda t, _: t < n_past, context_step, (tf.constant(1), state))

    skip_index = skip_source(n_past, n_past, c.skip_rule)
    if c.skip_rule == "reference":
      skip_index = _check_reference_skip(skip_index)
    skip = [tf.gather(s, skip_index)[None] for s in skips]  # (1, batch, h, w, c) each
    # The skip frame stays for the whole rollout unless the rule takes the previous frame: then
    # the skip features' part of the decoder's convolutions is computed once, not per step.
    terms = None if c.skip_rule == "previous_frame" else self.decoder.skip_terms(skip, bn)
    z_dim = c.latent_dim
    fixed_std = tf.fill(tf.stack([batch, z_dim]), 1.0)  # fp, or z not from the prior

    def predict(t, h_prev, skip, state):
      """Decodes x_t from the encoding of x_{t-1} (true or generated): (x_t, prior std, state)."""
      state = dict(state)
      z, std = None, fixed_std
      if latent:
        if observed is not None:
          q, state["posterior"] = self.posterior.step(observed[t], state["posterior"])
          z = latent_sample(q, t)
        elif self.prior is not None:
          p, state["prior"] = self.prior.step(h_prev, state["prior"])
          z, std = latent_sample(p, t), p.stddev()
        else:
          z = tf.zeros_like(fixed_std) if noise is None else noise[t - 1]
      g, state["predictor"] = self.frame_predictor.step(predictor_input(h_prev, z, t),
                                                        state["predictor"])
      x_hat = self.decoder(g[None], skip, skip_index=[0], bn_mode=bn,
                           skip_terms=terms)  # (1, batch, H, W, C)
      return x_hat, std, state

    frames = tf.TensorArray(tf.float32, size=n_future)
    stds = tf.TensorArray(tf.float32, size=n_future)

    def generation_step(k, h_prev, skip, state, frames, stds):
      """Generated step t = n_past + k, followed by the re-encoding of x_t."""
      x_hat, std, new_state = predict(n_past + k, h_prev, skip, state)
      h_next, features = self.encoder(x_hat, bn_mode=bn)
      new_skip = features if c.skip_rule == "previous_frame" else skip
      loop_vars = (h_next[0], new_skip, new_state)
      h_next, new_skip, new_state = _keep_shapes(loop_vars, (h_prev, skip, state))
      return (k + 1, h_next, new_skip, new_state, frames.write(k, x_hat[0]), stds.write(k, std))

    k, h_last, skip, state, frames, stds = tf.while_loop(
        lambda k, *_: k < n_future - 1, generation_step,
        (tf.constant(0), h[-1], skip, state, frames, stds))
    x_hat, std, _ = predict(n_past + k, h_last, skip, state)  # the last frame needs no encoding
    frames, stds = frames.write(k, x_hat[0]), stds.write(k, std)
    frames = self._frames_shape(_batch_major(frames.stack()), 2)  # (batch, n_future, H, W, C)
    return Generation(frames, tf.transpose(stds.stack(), [1, 0, 2]))  # (batch, n_future, z)


class Generation(NamedTuple):
  """Output of `SVG.predict_future`."""
  frames: tf.Tensor  # (batch, n_future, H, W, C) in [0, 1]
  prior_std: tf.Tensor  # (batch, n_future, z_dim): learned prior's std; ones for fp; z_dim 0 for det


def mean_prior_std(prior_std: tf.Tensor) -> tf.Tensor:
  """(batch, n_future, z) -> (batch, n_future) mean over z; zeros when there is no latent (det)."""
  if prior_std.shape[-1] == 0:
    return tf.zeros(tf.shape(prior_std)[:2])
  return tf.reduce_mean(prior_std, axis=-1)


def _length(x):
  """x.shape[0] as a Python int when static, else a scalar int32 tensor."""
  return x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]


def _positive(n, what: str):
  """n (int or scalar int tensor) checked to be >= 1: ValueError now, or InvalidArgument later."""
  if isinstance(n, (int, np.integer)):
    if n < 1:
      raise ValueError(f"{what} must be at least 1, got {n}")
    return int(n)
  n = tf.convert_to_tensor(n, tf.int32)
  check = tf.debugging.assert_positive(n, message=f"{what} must be at least 1")
  with tf.control_dependencies([check]):
    return tf.identity(n)


def _check_reference_skip(skip_index):
  """The reference skip rule reads x[n_past-2]: a clear error when there is one context frame."""
  message = ("skip_rule=reference takes the decoder's skip features from x[n_context-2], so it "
             "needs at least 2 context frames")
  if isinstance(skip_index, int):
    if skip_index < 0:
      raise ValueError(message + "; got 1")
    return skip_index
  check = tf.debugging.assert_non_negative(skip_index, message=message)
  with tf.control_dependencies([check]):
    return tf.identity(skip_index)


def _keep_shapes(new, old):
  """Gives loop outputs the static shapes of the loop inputs (tf.while_loop needs them equal)."""
  return tf.nest.map_structure(lambda n, o: tf.ensure_shape(n, o.shape), new, old)
