"""`svg_tf.load(path)`: a trained SVG model, from a run directory or an export, as a `Predictor`.

  import svg_tf
  predictor = svg_tf.load("runs/smmnist_lp")      # or "exports/svg/3", or "exports/svg"
  futures = predictor.sample(context, num_future=20, num_samples=10, seed=1)
  # context [batch, n_context, H, W, C], uint8 or float in [0, 1]
  # -> float32 [batch, 10, 20, H, W, C] in [0, 1]

A run directory is restored at its newest checkpoint and run in this process; an export runs its
SavedModel signatures, exactly what TF Serving runs. Both go through the same computation
(`svg_tf.export.ServingFunctions`, which calls `SVG.sample`), with the same request checks, so for
the same weights, context and seed, sample s of a video is the same frames from either, from TF
Serving, and from evaluate.py: the noise of sample s depends only on (seed, s)
(`svg_tf.model.latent_noise`) and BatchNorm uses its moving statistics.
"""

import os
from typing import Callable, Dict, Iterator, Optional

import numpy as np
import tensorflow as tf

from svg_tf import checkpoints, export, run_dir
from svg_tf.config import SVGConfig
from svg_tf.model import MAX_SEED, SVG

# In this process nothing is served to others: the caps only guard against typos, and the work is
# cut into calls of at most FRAMES_PER_CALL frames, counted as the export's max_frames counts them
# (context frames once per sample), to bound memory.
IN_PROCESS_LIMITS = export.Limits(max_num_samples=100_000, max_num_future=100_000,
                                  max_frames=2**31 - 1, max_num_context=100_000)
FRAMES_PER_CALL = 10_000


class Predictor:
  """Futures of context videos from one trained SVG model (make it with `svg_tf.load`).

  Attributes:
    config: the model's SVGConfig: `n_past` (context frames it was trained with), `image_size`,
      `channels`, `model` (its kind: "lp", "fp" or "det"), `action_dim` (> 0: it needs actions).
    source: what was loaded (a checkpoint path, or an export's version folder).
  """

  def __init__(self, config: SVGConfig, signatures: Dict[str, Callable[..., Dict]], source: str,
               max_frames_per_call: int, sample_part: Optional[Callable[..., Dict]] = None):
    self.config = config
    self.source = source
    self._signatures = signatures
    self._max_frames = max_frames_per_call
    # In process, sampling can be cut into parts of samples (first_sample..): progress and memory.
    self._sample_part = sample_part

  @classmethod
  def from_model(cls, model: SVG, source: str = "in-process model") -> "Predictor":
    """A Predictor over an SVG model of this process (e.g. one being trained)."""
    functions = export.ServingFunctions(model, IN_PROCESS_LIMITS)
    endpoints = functions.endpoints()
    signatures = {name: tf.function(fn, input_signature=specs)
                  for name, (fn, specs) in endpoints.items()}
    spec = lambda name, dtype=tf.float32: tf.TensorSpec(None, dtype, name=name)
    ints = [spec(n, tf.int32) for n in ("num_future", "num_samples", "seed", "first_sample")]
    if model.config.action_dim:
      def part(context, num_future, num_samples, seed, first_sample, actions):
        return functions.sample(context, num_future, num_samples, seed, actions, first_sample)
      specs = [spec("context")] + ints + [spec("actions")]
    else:
      def part(context, num_future, num_samples, seed, first_sample):
        return functions.sample(context, num_future, num_samples, seed, None, first_sample)
      specs = [spec("context")] + ints
    return cls(model.config, signatures, source, FRAMES_PER_CALL,
               tf.function(part, input_signature=specs))

  def __repr__(self):
    c = self.config
    return (f"Predictor(svg-{c.model} {c.dataset} {c.image_size}x{c.image_size}x{c.channels}, "
            f"n_past={c.n_past}, from {self.source})")

  # ---------------------------------------------------------------------------------- requests
  def sample(self, context, num_future: int, num_samples: int = 1, seed: Optional[int] = None,
             actions=None, progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """`num_samples` futures of every context video.

    Args:
      context: [batch, n_context, H, W, C], uint8 (0..255) or float in [0, 1]; every frame is
        used as context (n_context >= 1, usually config.n_past).
      num_future: frames to generate per sample.
      num_samples: futures per video. Sample s of a video is the same frames whatever
        num_samples, the other videos or the batch size.
      seed: an int in [0, 2**31 - 1]; None draws a random one.
      actions: action-conditioned models only: [batch, >= n_context + num_future - 1, action_dim].
      progress: called as progress(frames generated, frames asked for) after each part of the
        work (in process: parts of about a tenth of the samples; an export: groups of videos).
    Returns:
      float32 [batch, num_samples, num_future, H, W, C] in [0, 1]; the deterministic model
      returns num_samples copies of its one prediction.
    """
    num_future = _count(num_future, "num_future")
    num_samples = _count(num_samples, "num_samples")
    seed = int(np.random.default_rng().integers(0, MAX_SEED + 1)) if seed is None else _seed(seed)
    context, actions = self._inputs(context, actions)
    batch, done = context.shape[0], 0
    total = batch * num_samples * num_future
    rollout = context.shape[1] + num_future  # frames per sample, as the cap counts them
    out = []
    for videos in _groups(batch, max(1, self._max_frames // (num_samples * rollout))):
      group = len(range(batch)[videos])
      inputs = dict(context=context[videos], num_future=np.int32(num_future),
                    seed=np.int32(seed))
      if actions is not None:
        inputs["actions"] = actions[videos]
      if self._sample_part is None:  # an export: its signature draws every sample at once
        parts = [(0, num_samples)]
      else:
        size = min(num_samples, max(1, self._max_frames // (group * rollout)))
        if progress is not None:
          size = min(size, -(-num_samples // 10))
        parts = [(first, min(size, num_samples - first)) for first in range(0, num_samples, size)]
      frames = []
      for first, count in parts:
        if self._sample_part is None:
          result = self._call(self._signatures["serving_default"], inputs,
                              num_samples=np.int32(count))
        else:
          result = self._call(self._sample_part, inputs, num_samples=np.int32(count),
                              first_sample=np.int32(first))
        frames.append(result["frames"])
        done += group * count * num_future
        if progress is not None:
          progress(done, total)
      out.append(np.concatenate(frames, axis=1))
    return np.concatenate(out)

  def mean_future(self, context, num_future: int, actions=None) -> np.ndarray:
    """The future with every latent at its distribution's mean: [batch, num_future, H, W, C]."""
    return self._run("mean_future", context, actions, num_future)["frames"]

  def prior_std(self, context, num_future: int, actions=None, per_dim: bool = False) -> np.ndarray:
    """The learned prior's std at each generated step along the mean future (the paper's Fig. 6):
    [batch, num_future] averaged over z, or [batch, num_future, z_dim] with per_dim. 1 for an
    SVG-FP model (its prior is N(0, I)), 0 for the deterministic model."""
    out = self._run("prior_std", context, actions, num_future)
    return out["prior_std_per_dim" if per_dim else "prior_std"]

  def _inputs(self, context, actions):
    """(context float32 [batch, n, H, W, C], actions float32 or None), checked."""
    context = _frames(context)
    if self.config.action_dim and actions is None:
      raise ValueError(f"this model is action-conditioned (action_dim={self.config.action_dim}): "
                       "pass actions [batch, n_context + num_future - 1, action_dim]")
    if actions is not None:
      if not self.config.action_dim:
        raise ValueError("this model takes no actions (it was trained without them)")
      actions = np.asarray(actions.numpy() if tf.is_tensor(actions) else actions, np.float32)
      if actions.ndim < 1 or actions.shape[0] != context.shape[0]:
        raise ValueError(f"actions must be [batch, time, {self.config.action_dim}] with the "
                         f"context's batch {context.shape[0]}; got shape {actions.shape}")
    return context, actions

  @staticmethod
  def _call(function, inputs, **more) -> Dict[str, np.ndarray]:
    try:
      return {k: v.numpy() for k, v in function(**inputs, **more).items()}
    except tf.errors.InvalidArgumentError as err:
      raise ValueError(_request_error(err)) from None

  def _run(self, signature: str, context, actions, num_future) -> Dict[str, np.ndarray]:
    """Calls `signature` (mean_future, prior_std) on groups of whole videos; concatenates the
    outputs over videos."""
    num_future = _count(num_future, "num_future")
    context, actions = self._inputs(context, actions)
    rollout = context.shape[1] + num_future  # frames per video, as the cap counts them
    outputs = []
    for videos in _groups(context.shape[0], max(1, self._max_frames // rollout)):
      inputs = dict(context=context[videos], num_future=np.int32(num_future))
      if actions is not None:
        inputs["actions"] = actions[videos]
      outputs.append(self._call(self._signatures[signature], inputs))
    return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}


# --------------------------------------------------------------------------------------- loading
def load(path, precision: Optional[str] = None) -> Predictor:
  """A Predictor for a train.py run directory (its newest checkpoint), an export's version folder
  (EXPORT_DIR/NAME/3) or an export's model folder (EXPORT_DIR/NAME: its newest version).

  precision: run directories only: "float32", "mixed_bfloat16" (faster on CPUs with bfloat16
  units) or "mixed_float16" instead of the precision the run was trained in (the weights are
  float32 in all three; inputs and outputs are float32 whatever it is). An export
  runs in the precision it was exported in.
  Raises FileNotFoundError or ValueError naming `path` when it is none of these.
  """
  path = os.fspath(path)
  if not tf.io.gfile.isdir(path):
    raise FileNotFoundError(f"{path}: no such folder (expected a train.py run directory or an "
                            "export)")
  if tf.io.gfile.exists(os.path.join(path, run_dir.CONFIG_FILE)):
    run = checkpoints.restore_run(path, precision=precision)
    return Predictor.from_model(run.model, source=run.checkpoint)
  if precision is not None:
    raise ValueError(f"precision={precision!r}: {path} is not a run directory; an export runs in "
                     "the precision it was exported in")
  version_dir = export.find_version(path)
  if version_dir is None:
    raise ValueError(f"{path} is neither a train.py run directory (config.json, checkpoints/) "
                     "nor an export (a version folder with saved_model.pb, or a model folder "
                     "of integer version folders)")
  info = export.read_info(version_dir)
  loaded = tf.saved_model.load(version_dir)
  signatures = {name: loaded.signatures[name] for name in export.SIGNATURES}
  limits = export.Limits(**info["limits"])
  predictor = Predictor(SVGConfig.from_dict(info["config"]), signatures, version_dir,
                        limits.max_frames)
  predictor._loaded = loaded  # keeps the SavedModel's variables alive with its signatures
  return predictor


# --------------------------------------------------------------------------------------- helpers
def _frames(value) -> np.ndarray:
  """Context frames as float32 [batch, n_context, H, W, C] in [0, 1] (uint8 divided by 255)."""
  array = value.numpy() if tf.is_tensor(value) else np.asarray(value)
  if array.dtype == np.uint8:
    array = array.astype(np.float32) / 255.0
  elif np.issubdtype(array.dtype, np.floating):
    array = array.astype(np.float32)
  else:
    raise ValueError(f"context must be uint8 (0..255) or float in [0, 1]; got dtype {array.dtype}")
  if array.ndim != 5:
    raise ValueError(f"context must be [batch, n_context, H, W, C] (one video: add a batch axis, "
                     f"video[None]); got shape {array.shape}")
  return array


def _count(value, name: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be a positive integer; got {value!r}")
  return int(value)


def _seed(value) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
      0 <= value <= MAX_SEED):
    raise ValueError(f"seed must be an integer in [0, {MAX_SEED}] (or None for a random one); "
                     f"got {value!r}")
  return int(value)


def _groups(count: int, size: int) -> Iterator[slice]:
  for start in range(0, count, size):
    yield slice(start, start + size)


def _request_error(err: tf.errors.InvalidArgumentError) -> str:
  """The request check's own words ("[message] [values]"), without TensorFlow's graph location."""
  lines = [line for line in err.message.splitlines() if "assertion failed: " in line]
  text = lines[0] if lines else err.message.strip().splitlines()[-1]
  return text.split("assertion failed: ", 1)[-1].strip()
