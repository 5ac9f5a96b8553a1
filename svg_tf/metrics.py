"""The paper's evaluation protocol as pure functions (anchors.md section 2, SPEC 4.3).

Videos are float arrays or tensors in [0, 1] with shape [..., T, H, W, C]; any leading dims
(videos, samples) are kept, so per-frame scores come back as [..., T].

Protocol the caller (evaluate.py) assembles from these pieces:
  1. score every sample's predicted frames (never the context frames): `ssim_per_frame`,
     `psnr_per_frame`, optionally `reference_ssim_per_frame` and LPIPS -> [V, S, T];
  2. `best_of_samples` once per metric (the best-SSIM and best-PSNR samples may differ);
  3. `mean_and_ci95` over videos -> JSON-ready numbers.
FVD (`load_i3d` activations, `frechet_distance`) and LPIPS need networks the user supplies as local
SavedModels; nothing is ever downloaded. Without them, report `LPIPS_UNAVAILABLE_NOTE` /
`FVD_UNAVAILABLE_NOTE` instead of a number.
"""

import os
import warnings
from typing import Callable, Dict, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

ArrayLike = Union[np.ndarray, tf.Tensor, Sequence]

# tf.image.psnr is +inf for identical frames; capping keeps means and CIs finite. 100 dB is an
# MSE of 1e-10, far beyond anything a video model reaches, so the cap only ever hits exact copies.
PSNR_CAP_DB = 100.0

# Frames per tf.image.ssim / numpy call: bounds memory when scoring V x S x T frames at once
# (100 videos x 100 samples x 28 frames would otherwise be several GB of intermediates).
_CHUNK_FRAMES = 512

LPIPS_UNAVAILABLE_NOTE = (
    "LPIPS not computed: it needs AlexNet/LPIPS v0.1 weights, which are never downloaded; pass a "
    "local TF SavedModel (see svg_tf.metrics.load_lpips) to report it.")
FVD_UNAVAILABLE_NOTE = (
    "FVD not computed: it needs the Kinetics-400 I3D network, which is never downloaded; pass a "
    "local TF SavedModel (see svg_tf.metrics.load_i3d) to report it.")


def _paired_frames(pred: ArrayLike, target: ArrayLike) -> Tuple[np.ndarray, np.ndarray, tuple]:
  """Checks shapes and flattens leading dims: returns two [N, H, W, C] float32 arrays and [...T]."""
  pred = np.asarray(pred, dtype=np.float32)
  target = np.asarray(target, dtype=np.float32)
  if pred.shape != target.shape:
    raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}")
  if pred.ndim < 4:
    raise ValueError(f"expected videos [..., T, H, W, C], got shape {pred.shape}")
  lead = pred.shape[:-3]  # [..., T]
  frame = pred.shape[-3:]
  return pred.reshape((-1,) + frame), target.reshape((-1,) + frame), lead


def _chunked(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], a: np.ndarray, b: np.ndarray,
             chunk: int = _CHUNK_FRAMES) -> np.ndarray:
  """Applies a per-frame score fn to [N, H, W, C] pairs in chunks; returns [N] float64."""
  out = [np.asarray(fn(a[i:i + chunk], b[i:i + chunk]), np.float64)
         for i in range(0, a.shape[0], chunk)]
  return np.concatenate(out) if out else np.zeros((0,), np.float64)


def ssim_per_frame(pred: ArrayLike, target: ArrayLike) -> np.ndarray:
  """SSIM per frame as SRVP/SAVP/FitVid report it: tf.image.ssim(max_val=1).

  11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03, 'valid' filtering, mean over the SSIM map
  and channels. Frames must be at least 11x11.
  Args:
    pred, target: [..., T, H, W, C] in [0, 1].
  Returns:
    [..., T] float64.
  """
  a, b, lead = _paired_frames(pred, target)
  if min(a.shape[1:3]) < 11:
    raise ValueError(f"SSIM's 11x11 window needs frames of at least 11x11, got {a.shape[1:3]}")
  score = lambda x, y: _ssim(tf.constant(x), tf.constant(y)).numpy()
  return _chunked(score, a, b).reshape(lead)


def _gaussian_band(size: tf.Tensor, window: int = 11, sigma: float = 1.5) -> tf.Tensor:
  """(size - window + 1, size): row i holds tf.image.ssim's 1-D Gaussian at columns i..i+10, so
  band @ v is the 'valid' filtering of v along one axis."""
  coords = tf.range(window, dtype=tf.float32) - (window - 1) / 2.0
  gauss = tf.nn.softmax(-tf.square(coords) / (2.0 * sigma ** 2))  # tf.image.ssim's normalisation
  rows = size - window + 1
  columns = tf.range(rows)[:, None] + tf.range(window)[None, :]
  index = tf.stack([tf.repeat(tf.range(rows), window), tf.reshape(columns, [-1])], axis=1)
  return tf.scatter_nd(index, tf.tile(gauss, [rows]), tf.stack([rows, size]))


@tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)] * 2)
def _ssim(x, y):
  """tf.image.ssim(x, y, max_val=1) for [N, H, W, C] frames, to ~1e-6, about 3x faster.

  The 11x11 Gaussian window is the outer product of a 1-D one, so each of the four filtered maps
  (x, y, x*y, x^2 + y^2) is band_h @ map @ band_w^T: two matrix products, where tf.image.ssim
  runs a 121-tap depthwise convolution (eagerly here, it took 10% of evaluate.py's time next to
  float32 sampling). The second is one broadcast batched matmul (an einsum over h transposed the
  maps there and back: 1.4x slower, the same values). The rest is tf.image.ssim's formula:
  luminance x contrast-structure, mean over the map and the channels.
  """
  maps = tf.stack([x, y, x * y, tf.square(x) + tf.square(y)], axis=1)  # (N, 4, H, W, C)
  maps = tf.transpose(maps, [0, 1, 4, 2, 3])  # (N, 4, C, H, W)
  shape = tf.shape(maps)
  flat = tf.reshape(maps, [-1, shape[3], shape[4]])  # (N 4 C, H, W)
  filtered = tf.linalg.matmul(flat, _gaussian_band(shape[4]), transpose_b=True)  # (., H, W')
  filtered = tf.linalg.matmul(_gaussian_band(shape[3]), filtered)  # (., H', W')
  filtered = tf.reshape(filtered, tf.concat([shape[:3], tf.shape(filtered)[1:]], 0))
  mean_x, mean_y, mean_xy, mean_squares = tf.unstack(filtered, axis=1)
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  num0 = mean_x * mean_y * 2.0
  den0 = tf.square(mean_x) + tf.square(mean_y)
  luminance = (num0 + c1) / (den0 + c1)
  contrast_structure = (mean_xy * 2.0 - num0 + c2) / (mean_squares - den0 + c2)
  return tf.reduce_mean(luminance * contrast_structure, axis=[1, 2, 3])


def psnr_per_frame(pred: ArrayLike, target: ArrayLike) -> np.ndarray:
  """PSNR per frame, tf.image.psnr(max_val=1) = 10 log10(1 / MSE over H, W, C), in dB.

  Identical frames (MSE 0) give +inf in tf; values are clipped to PSNR_CAP_DB (100 dB) so means
  stay finite. For C=3 this is the PSNR of the frame MSE, whereas the reference averaged
  per-channel PSNRs (SPEC 4.3); the two agree for grayscale.
  Args:
    pred, target: [..., T, H, W, C] in [0, 1].
  Returns:
    [..., T] float64, at most PSNR_CAP_DB.
  """
  a, b, lead = _paired_frames(pred, target)
  score = lambda x, y: tf.image.psnr(tf.constant(x), tf.constant(y), max_val=1.0).numpy()
  return np.minimum(_chunked(score, a, b), PSNR_CAP_DB).reshape(lead)


def psnr_srvp_per_frame(pred: ArrayLike, target: ArrayLike) -> np.ndarray:
  """PSNR per frame as SRVP's test.py computes it: 10 log10(1 / MSE) of each channel (MSE over
  H, W), averaged over the channels, in dB.

  For grey frames it equals `psnr_per_frame`; for RGB it is never lower (the mean of the logs is
  at least the log of the mean: about 0.06 dB more for typical channel errors, more when the
  channels' errors differ strongly). Each channel's value is clipped at PSNR_CAP_DB.
  Args:
    pred, target: [..., T, H, W, C] in [0, 1].
  Returns:
    [..., T] float64.
  """
  a, b, lead = _paired_frames(pred, target)
  mse = np.mean(np.square(a.astype(np.float64) - b.astype(np.float64)), axis=(1, 2))  # [N, C]
  with np.errstate(divide="ignore"):
    per_channel = np.minimum(10.0 * np.log10(1.0 / mse), PSNR_CAP_DB)
  return per_channel.mean(axis=-1).reshape(lead)


def _box_sum_valid(x: np.ndarray, k: int) -> np.ndarray:
  """Sum over every k x k window fully inside the image, via 2-D cumulative sums.

  x: [N, H, W, C] -> [N, H-k+1, W-k+1, C].
  """
  c = np.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0))).cumsum(axis=1).cumsum(axis=2)
  return c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]


def _reference_ssim_frames(x: np.ndarray, y: np.ndarray, win: int = 7, data_range: float = 2.0,
                           k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
  """Old-skimage compare_ssim on [N, H, W, C] frames, per channel then channel mean -> [N]."""
  x = x.astype(np.float64)
  y = y.astype(np.float64)
  n = win * win
  mean = lambda v: _box_sum_valid(v, win) / n
  mx, my = mean(x), mean(y)
  cov_norm = n / (n - 1.0)  # sample covariance over the window
  vx = cov_norm * (mean(x * x) - mx * mx)
  vy = cov_norm * (mean(y * y) - my * my)
  vxy = cov_norm * (mean(x * y) - mx * my)
  c1 = (k1 * data_range) ** 2
  c2 = (k2 * data_range) ** 2
  ssim_map = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
  return ssim_map.mean(axis=(1, 2, 3))  # [N]: mean over valid windows, then channels


def reference_ssim_per_frame(pred: ArrayLike, target: ArrayLike) -> np.ndarray:
  """SSIM as the reference computed it (skimage <= 0.15 compare_ssim defaults, SPEC 4.3).

  7x7 uniform window, K1=0.01, K2=0.03, sample covariance (N-1 = 48), data_range 2.0 (inferred
  from the float dtype, so C1=(0.02)^2, C2=(0.06)^2: inflated relative to data_range 1), mean of
  the SSIM map over the valid windows (skimage crops a 3-pixel border), per channel then averaged
  over channels. Only for parity with numbers computed by the reference's script; report it
  separately from `ssim_per_frame`.
  Args:
    pred, target: [..., T, H, W, C] in [0, 1].
  Returns:
    [..., T] float64.
  """
  a, b, lead = _paired_frames(pred, target)
  if min(a.shape[1:3]) < 7:
    raise ValueError(f"reference SSIM needs frames of at least 7x7, got {a.shape[1:3]}")
  return _chunked(_reference_ssim_frames, a, b, chunk=128).reshape(lead)


def best_of_samples(scores: ArrayLike, higher_is_better: bool = True
                    ) -> Tuple[np.ndarray, np.ndarray]:
  """Best-of-N: per video, the sample with the best time-averaged score (SRVP/SAVP/T2T).

  Call once per metric: each metric picks its own sample.
  Args:
    scores: [V, S, T] (videos, samples, predicted frames).
    higher_is_better: True for SSIM/PSNR, False for LPIPS.
  Returns:
    best: [V, T] per-frame scores of the chosen sample; index: [V] int64 sample indices.
  """
  scores = np.asarray(scores, dtype=np.float64)
  if scores.ndim != 3:
    raise ValueError(f"expected scores [videos, samples, frames], got shape {scores.shape}")
  time_mean = scores.mean(axis=2)  # [V, S]
  index = (time_mean.argmax(axis=1) if higher_is_better else time_mean.argmin(axis=1))
  best = np.take_along_axis(scores, index[:, None, None], axis=1)[:, 0]  # [V, T]
  return best, index.astype(np.int64)


def mean_and_ci95(values: ArrayLike) -> Dict[str, object]:
  """Mean and 95% confidence half-width over test videos, as SRVP reports: 1.96 std / sqrt(V).

  std is numpy's default population std (ddof=0), as in SRVP's evaluation.
  Args:
    values: [V, T] per-video, per-frame scores (e.g. `best_of_samples(...)[0]`).
  Returns:
    JSON-ready dict: `per_frame_mean` [T], `per_frame_ci95` [T] (over videos, per frame), `mean`
    (mean over videos of each video's time mean), `ci95` (of the per-video time means),
    `num_videos` V.
  """
  values = np.asarray(values, dtype=np.float64)
  if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
    raise ValueError(f"expected values [videos, frames] with both > 0, got shape {values.shape}")
  num = values.shape[0]
  scale = 1.96 / np.sqrt(num)
  per_video = values.mean(axis=1)  # [V]
  return {
      "per_frame_mean": [float(v) for v in values.mean(axis=0)],
      "per_frame_ci95": [float(v) for v in scale * values.std(axis=0)],
      "mean": float(per_video.mean()),
      "ci95": float(scale * per_video.std()),
      "num_videos": int(num),
  }


def _sqrtm_checked(m: np.ndarray) -> Tuple[np.ndarray, bool]:
  """scipy sqrtm; the flag says the result is usable (finite, no singularity warning)."""
  import scipy.linalg  # pylint: disable=g-import-not-at-top  (only FVD needs scipy; slow import)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    root = scipy.linalg.sqrtm(m)
  singular = any("singular" in str(w.message).lower() for w in caught)
  return root, bool(np.all(np.isfinite(root))) and not singular


def frechet_distance(acts1: ArrayLike, acts2: ArrayLike, eps: float = 1e-6) -> float:
  """Frechet distance between Gaussians fitted to two activation sets (FID/FVD).

  d = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)), sample covariances (ddof=1), in float64.
  If sqrtm(S1 S2) fails (singular product, e.g. fewer samples than dims), it is retried with
  eps*I added to both covariances, as the FID reference does. The real part of sqrtm is used
  (rounding can leave a tiny imaginary part).
  Args:
    acts1: [N, D]; acts2: [M, D]; N, M >= 2.
  Returns:
    float distance (>= 0 up to rounding).
  """
  a = np.asarray(acts1, dtype=np.float64)
  b = np.asarray(acts2, dtype=np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ValueError(f"expected activations [N, D] and [M, D] with the same D, got {a.shape} "
                     f"and {b.shape}")
  if a.shape[0] < 2 or b.shape[0] < 2:
    raise ValueError(f"need at least 2 activations per set for a covariance, got {a.shape} and "
                     f"{b.shape}")
  if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
    raise ValueError(f"activations contain non-finite values (shapes {a.shape}, {b.shape})")
  mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
  s1 = np.atleast_2d(np.cov(a, rowvar=False))  # [D, D]
  s2 = np.atleast_2d(np.cov(b, rowvar=False))
  root, ok = _sqrtm_checked(s1 @ s2)
  if not ok:
    offset = eps * np.eye(s1.shape[0])
    root, _ = _sqrtm_checked((s1 + offset) @ (s2 + offset))
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(np.real(root)))


# ----------------------------------------------------------------------------------------------
# Learned metrics from user-supplied SavedModels.


def _load_signature(path: str, what: str, names: Sequence[str] = ("serving_default", "default")):
  """Loads a SavedModel and returns (module, concrete signature); errors name the path."""
  if not path or not os.path.isdir(path):
    raise FileNotFoundError(f"{what} SavedModel directory not found: {path!r}")
  try:
    module = tf.saved_model.load(path)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"could not load {what} SavedModel at {path!r}: {e}") from e
  signatures = getattr(module, "signatures", {}) or {}
  for name in names:
    if name in signatures:
      return module, signatures[name]
  raise ValueError(f"{what} SavedModel at {path!r} has no signature among {list(names)}; it has "
                   f"{sorted(signatures.keys())}")


def _single_output(outputs: Dict[str, tf.Tensor], preferred: Sequence[str], path: str,
                   what: str) -> tf.Tensor:
  """Picks the signature output: the only one, else the first preferred key present."""
  if len(outputs) == 1:
    return next(iter(outputs.values()))
  for key in preferred:
    if key in outputs:
      return outputs[key]
  raise ValueError(f"{what} SavedModel at {path!r} returns {sorted(outputs)}; expected a single "
                   f"output or one named {list(preferred)}")


def _to_rgb(frames: tf.Tensor) -> tf.Tensor:
  """Grayscale [..., 1] -> [..., 3] by repetition, as SRVP/MCVD do for LPIPS and FVD."""
  channels = frames.shape[-1]
  if channels == 1:
    return tf.repeat(frames, 3, axis=-1)
  if channels != 3:
    raise ValueError(f"expected 1 or 3 channels, got shape {frames.shape}")
  return frames


def load_lpips(path: str, batch_size: int = 64) -> Callable[[ArrayLike, ArrayLike], np.ndarray]:
  """Loads a user-supplied LPIPS network (e.g. AlexNet, v0.1 linear heads, as SRVP reports).

  SavedModel contract: signature `serving_default` taking two float32 image batches
  [N, H, W, 3] in [-1, 1], named `image_a` and `image_b` (any other two names are accepted and
  fed in sorted name order: LPIPS is symmetric), returning per-pair distances [N] (or
  [N, 1, 1, 1]) as its single output, or as output `distance` if there are several.
  Args:
    path: SavedModel directory.
    batch_size: frame pairs per call.
  Returns:
    fn(pred, target) with frames [..., H, W, C] in [0, 1] (C = 1 or 3) -> distances [...]
    float64 (lower is better, so use `best_of_samples(..., higher_is_better=False)`).
  """
  module, sig = _load_signature(path, "LPIPS", names=("serving_default",))
  inputs = sorted(sig.structured_input_signature[1].keys())
  if len(inputs) != 2:
    raise ValueError(f"LPIPS SavedModel at {path!r} must take two images, its signature takes "
                     f"{inputs}")
  name_a, name_b = inputs  # sorted, so `image_a`, `image_b` in that order

  def distance(pred: ArrayLike, target: ArrayLike) -> np.ndarray:
    a = np.asarray(pred, dtype=np.float32)
    b = np.asarray(target, dtype=np.float32)
    if a.shape != b.shape or a.ndim < 3:
      raise ValueError(f"expected two frame batches [..., H, W, C] of one shape, got {a.shape} "
                       f"and {b.shape}")
    lead = a.shape[:-3]
    a = a.reshape((-1,) + a.shape[-3:])
    b = b.reshape((-1,) + b.shape[-3:])
    out = []
    for i in range(0, a.shape[0], batch_size):
      xa = _to_rgb(tf.constant(a[i:i + batch_size])) * 2.0 - 1.0
      xb = _to_rgb(tf.constant(b[i:i + batch_size])) * 2.0 - 1.0
      d = _single_output(sig(**{name_a: xa, name_b: xb}), ("distance",), path, "LPIPS")
      out.append(np.asarray(d, np.float64).reshape(xa.shape[0]))
    return (np.concatenate(out) if out else np.zeros((0,))).reshape(lead)

  distance.module = module  # the signature needs its SavedModel's variables kept alive
  return distance


I3D_RESOLUTION = 224  # frames are resized to 224x224, as in the FVD reference
I3D_BATCH = 16  # the FVD reference's fixed batch; the last batch is padded to it


def load_i3d(path: str, batch_size: int = I3D_BATCH) -> Callable[[ArrayLike], np.ndarray]:
  """Loads a user-supplied I3D (Kinetics-400) network for FVD; nothing is downloaded.

  SavedModel contract: signature `serving_default` (or `default`) with one input, float32
  videos [B, T, 224, 224, 3] in [-1, 1], returning the 400 Kinetics logits [B, 400] (the FVD
  reference's `RGB/inception_i3d/Mean:0`) as its single output, or as output `logits` /
  `default` if there are several. Batches are padded to `batch_size` (16, the reference's fixed
  batch), so a model exported with a static batch of 16 also works.
  Preprocessing follows google-research's FVD: bilinear resize of every frame to 224x224 with
  TF1 `resize_bilinear` semantics (no half-pixel centres), then scaling [0, 1] -> [-1, 1];
  grayscale is repeated to 3 channels.
  Args:
    path: SavedModel directory.
    batch_size: videos per call.
  Returns:
    fn(videos [N, T, H, W, C] in [0, 1], C = 1 or 3) -> activations [N, D] float64.
  """
  module, sig = _load_signature(path, "I3D")
  inputs = list(sig.structured_input_signature[1].keys())
  if len(inputs) != 1:
    raise ValueError(f"I3D SavedModel at {path!r} must take one video input, its signature takes "
                     f"{sorted(inputs)}")
  name = inputs[0]

  def activations(videos: ArrayLike) -> np.ndarray:
    v = np.asarray(videos, dtype=np.float32)
    if v.ndim != 5:
      raise ValueError(f"expected videos [N, T, H, W, C], got shape {v.shape}")
    n, t, h, w, c = v.shape
    out = []
    for i in range(0, n, batch_size):
      chunk = v[i:i + batch_size]
      real = chunk.shape[0]
      if real < batch_size:  # pad with copies of the last video; their outputs are dropped
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - real, axis=0)])
      frames = tf.reshape(tf.constant(chunk), [-1, h, w, c])  # [B*T, H, W, C]
      frames = tf.raw_ops.ResizeBilinear(images=frames, size=[I3D_RESOLUTION, I3D_RESOLUTION],
                                         align_corners=False, half_pixel_centers=False)
      frames = _to_rgb(frames) * 2.0 - 1.0
      x = tf.reshape(frames, [-1, t, I3D_RESOLUTION, I3D_RESOLUTION, 3])
      y = _single_output(sig(**{name: x}), ("logits", "default"), path, "I3D")
      out.append(np.asarray(y, np.float64).reshape(batch_size, -1)[:real])
    return np.concatenate(out) if out else np.zeros((0, 0))

  activations.module = module  # the signature needs its SavedModel's variables kept alive
  return activations
