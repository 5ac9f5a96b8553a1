"""Evaluation metrics against independent numpy implementations and hand-built cases."""

import json
import math

import numpy as np
import pytest
import scipy.signal
import tensorflow as tf

from svg_tf import metrics


# ----------------------------------------------------------------------------------------------
# Independent references, written from the formulas.


def _np_psnr(a, b):
  """10 log10(1 / MSE) over one frame [H, W, C]."""
  return 10.0 * math.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2))


def _np_gaussian_ssim(a, b, size=11, sigma=1.5, k1=0.01, k2=0.03):
  """SSIM with an 11x11 Gaussian window, 'valid' filtering, L=1, mean over map and channels."""
  x = np.arange(size) - (size - 1) / 2.0
  g = np.exp(-x ** 2 / (2 * sigma ** 2))
  w = np.outer(g, g)
  w /= w.sum()
  c1, c2 = k1 ** 2, k2 ** 2
  maps = []
  for ch in range(a.shape[-1]):
    p = a[..., ch].astype(np.float64)
    q = b[..., ch].astype(np.float64)
    f = lambda v: scipy.signal.convolve2d(v, w, mode="valid")
    mp, mq = f(p), f(q)
    vp, vq, vpq = f(p * p) - mp ** 2, f(q * q) - mq ** 2, f(p * q) - mp * mq
    maps.append(((2 * mp * mq + c1) * (2 * vpq + c2)) / ((mp ** 2 + mq ** 2 + c1) * (vp + vq + c2)))
  return float(np.mean(maps))


def _loop_reference_ssim(a, b, win=7, data_range=2.0):
  """Old skimage compare_ssim, one window at a time: uniform 7x7, sample covariance."""
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  h, w, chans = a.shape
  per_channel = []
  for ch in range(chans):
    vals = []
    for i in range(h - win + 1):
      for j in range(w - win + 1):
        p = a[i:i + win, j:j + win, ch].astype(np.float64).ravel()
        q = b[i:i + win, j:j + win, ch].astype(np.float64).ravel()
        cov = np.cov(np.stack([p, q]), ddof=1)
        mp, mq = p.mean(), q.mean()
        vals.append(((2 * mp * mq + c1) * (2 * cov[0, 1] + c2))
                    / ((mp ** 2 + mq ** 2 + c1) * (cov[0, 0] + cov[1, 1] + c2)))
    per_channel.append(np.mean(vals))
  return float(np.mean(per_channel))


def _noisy_pair(rng, shape, noise=0.1):
  """A smooth-ish target and a noisy copy, so SSIM is far from 0 and from 1."""
  target = rng.uniform(size=shape).astype(np.float32)
  target = 0.5 * target + 0.5 * np.roll(target, 1, axis=-2)  # some spatial correlation
  pred = np.clip(target + noise * rng.normal(size=shape), 0.0, 1.0).astype(np.float32)
  return pred, target


# ----------------------------------------------------------------------------------------------
# SSIM / PSNR.


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_and_psnr_match_numpy_on_64px_frames(channels):
  rng = np.random.default_rng(channels)
  pred_n, target_n = _noisy_pair(rng, (2, 64, 64, channels))
  pred_r = rng.uniform(size=(2, 64, 64, channels)).astype(np.float32)  # unrelated: SSIM ~ 0
  pred = np.concatenate([pred_n, pred_r])  # [T=4, 64, 64, C]
  target = np.concatenate([target_n, target_n])
  ssim = metrics.ssim_per_frame(pred, target)
  psnr = metrics.psnr_per_frame(pred, target)
  assert ssim.shape == (4,) and psnr.shape == (4,)
  want_ssim = [_np_gaussian_ssim(p, t) for p, t in zip(pred, target)]
  want_psnr = [_np_psnr(p, t) for p, t in zip(pred, target)]
  np.testing.assert_allclose(ssim, want_ssim, atol=1e-4)
  np.testing.assert_allclose(psnr, want_psnr, atol=1e-3)
  assert 0.3 < ssim[0] < 0.95 and abs(ssim[2]) < 0.1  # the pairs are not trivial


def test_leading_dims_are_kept_and_identical_frames_are_capped():
  rng = np.random.default_rng(0)
  pred, target = _noisy_pair(rng, (2, 3, 4, 16, 16, 1))  # [V, S, T, H, W, C]
  pred[1, 2, 3] = target[1, 2, 3]
  ssim = metrics.ssim_per_frame(pred, target)
  psnr = metrics.psnr_per_frame(pred, target)
  ref = metrics.reference_ssim_per_frame(pred, target)
  assert ssim.shape == psnr.shape == ref.shape == (2, 3, 4)
  assert psnr[1, 2, 3] == metrics.PSNR_CAP_DB and np.all(np.isfinite(psnr))
  assert ssim[1, 2, 3] == pytest.approx(1.0, abs=1e-5)
  # Each entry is the score of its own frame: the flattening did not mix frames.
  assert ssim[0, 1, 2] == pytest.approx(_np_gaussian_ssim(pred[0, 1, 2], target[0, 1, 2]),
                                        abs=1e-4)
  assert psnr[1, 0, 3] == pytest.approx(_np_psnr(pred[1, 0, 3], target[1, 0, 3]), abs=1e-3)


def test_mismatched_shapes_raise():
  with pytest.raises(ValueError, match="differ"):
    metrics.ssim_per_frame(np.zeros((2, 16, 16, 1)), np.zeros((3, 16, 16, 1)))


@pytest.mark.parametrize("shape", [(5, 64, 64, 1), (3, 64, 64, 3), (2, 128, 96, 3), (4, 11, 11, 1),
                                   (2, 20, 33, 2)])
def test_ssim_equals_tf_image_ssim(shape):
  """ssim_per_frame's separable-filter SSIM against tf.image.ssim itself, on related pairs."""
  rng = np.random.default_rng(sum(shape))
  pred = rng.random(shape, dtype=np.float32)
  target = np.clip(pred + rng.normal(0, 0.2, shape), 0, 1).astype(np.float32)
  target[0] = pred[0]  # identical frames: exactly 1
  want = tf.image.ssim(tf.constant(pred), tf.constant(target), max_val=1.0).numpy()
  np.testing.assert_allclose(metrics.ssim_per_frame(pred[:, None], target[:, None])[:, 0], want,
                             atol=2e-6)
  assert want.min() < 0.9  # the pairs are not trivial
  with pytest.raises(ValueError, match="at least 11x11"):
    metrics.ssim_per_frame(pred[:, None, :10], target[:, None, :10])


def test_reference_ssim_matches_window_loop():
  rng = np.random.default_rng(3)
  pred, target = _noisy_pair(rng, (2, 12, 13, 2), noise=0.2)  # [T, H, W, C=2]
  got = metrics.reference_ssim_per_frame(pred, target)
  want = [_loop_reference_ssim(p, t) for p, t in zip(pred, target)]
  np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_allclose(metrics.reference_ssim_per_frame(target, target), [1.0, 1.0],
                             atol=1e-9)


def test_reference_ssim_is_inflated_relative_to_tf_ssim():
  rng = np.random.default_rng(4)
  pred, target = _noisy_pair(rng, (3, 64, 64, 1), noise=0.2)
  assert np.all(metrics.reference_ssim_per_frame(pred, target)
                > metrics.ssim_per_frame(pred, target))
  # Low contrast, where the constants dominate: data_range 2 quadruples C1, C2 and inflates more.
  target = (0.4 + 0.1 * rng.uniform(size=(3, 64, 64, 1))).astype(np.float32)
  pred = (target + 0.03 * rng.normal(size=target.shape)).astype(np.float32)
  ref = metrics.reference_ssim_per_frame(pred, target)
  tf_ssim = metrics.ssim_per_frame(pred, target)
  assert np.all(ref > tf_ssim + 0.05), (ref, tf_ssim)


# ----------------------------------------------------------------------------------------------
# Best of samples and aggregation.


def test_best_of_samples_selects_on_time_mean():
  # Video 0: best time mean is sample 0, best first frame sample 2, best last frame sample 1.
  # Video 1: the same samples in the order (1, 2, 0).
  s0, s1, s2 = [0.9, 0.9, 0.2], [0.3, 0.3, 0.95], [0.95, 0.6, 0.3]
  scores = np.array([[s0, s1, s2], [s1, s2, s0]])  # [V=2, S=3, T=3]
  best, index = metrics.best_of_samples(scores)
  np.testing.assert_array_equal(index, [0, 2])
  np.testing.assert_allclose(best, [s0, s0])
  best, index = metrics.best_of_samples(scores, higher_is_better=False)  # e.g. LPIPS
  np.testing.assert_array_equal(index, [1, 0])
  np.testing.assert_allclose(best, [s1, s1])
  with pytest.raises(ValueError):
    metrics.best_of_samples(scores[0])


def test_best_of_samples_is_separate_per_metric():
  ssim = np.array([[[0.8, 0.8], [0.7, 0.7]]])  # [V=1, S=2, T=2]: sample 0 best
  psnr = np.array([[[20.0, 21.0], [25.0, 24.0]]])  # sample 1 best
  best_ssim, i_ssim = metrics.best_of_samples(ssim)
  best_psnr, i_psnr = metrics.best_of_samples(psnr)
  assert i_ssim[0] == 0 and i_psnr[0] == 1
  np.testing.assert_allclose(best_ssim, [[0.8, 0.8]])
  np.testing.assert_allclose(best_psnr, [[25.0, 24.0]])


def test_mean_and_ci95_hand_computed():
  values = [[1.0, 2.0], [3.0, 6.0], [2.0, 1.0]]  # [V=3, T=2]
  out = metrics.mean_and_ci95(values)
  json.dumps(out)  # JSON-ready
  # Frame 0: 1, 3, 2 -> mean 2, population variance 2/3. Frame 1: 2, 6, 1 -> mean 3, var 14/3.
  # Per-video means 1.5, 4.5, 1.5 -> mean 2.5, population variance 2.
  k = 1.96 / math.sqrt(3)
  assert out["per_frame_mean"] == pytest.approx([2.0, 3.0])
  assert out["per_frame_ci95"] == pytest.approx([k * math.sqrt(2 / 3), k * math.sqrt(14 / 3)])
  assert out["mean"] == pytest.approx(2.5)
  assert out["ci95"] == pytest.approx(k * math.sqrt(2.0))
  assert out["num_videos"] == 3
  assert isinstance(out["mean"], float) and isinstance(out["per_frame_mean"], list)


# ----------------------------------------------------------------------------------------------
# Frechet distance.


def _exact_gaussian_sample(rng, n, mean, cov):
  """n points whose sample mean is exactly `mean` and sample covariance (ddof=1) exactly `cov`."""
  d = len(mean)
  z = rng.normal(size=(n, d))
  z -= z.mean(axis=0)
  z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample cov = I
  return np.asarray(mean) + z @ np.linalg.cholesky(cov).T


def test_frechet_distance_exact_closed_forms():
  rng = np.random.default_rng(5)
  mu1, mu2 = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, 0.0])
  var1, var2 = np.array([1.0, 4.0, 0.25, 2.0]), np.array([9.0, 1.0, 1.0, 2.0])
  a = _exact_gaussian_sample(rng, 50, mu1, np.diag(var1))
  b = _exact_gaussian_sample(rng, 70, mu2, np.diag(var2))
  want = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
  assert metrics.frechet_distance(a, b) == pytest.approx(want, rel=1e-8)
  assert metrics.frechet_distance(b, a) == pytest.approx(want, rel=1e-8)
  # Full covariance against the identity: Tr(C) + D - 2 sum(sqrt(eig(C))).
  m = rng.normal(size=(4, 4))
  c = m @ m.T + 0.5 * np.eye(4)
  x = _exact_gaussian_sample(rng, 60, mu1, c)
  y = _exact_gaussian_sample(rng, 60, mu1, np.eye(4))
  want = np.trace(c) + 4 - 2 * np.sum(np.sqrt(np.linalg.eigvalsh(c)))
  assert metrics.frechet_distance(x, y) == pytest.approx(want, rel=1e-8)


def test_frechet_distance_identical_sets_and_errors():
  rng = np.random.default_rng(6)
  a = rng.normal(size=(40, 6)) * 3.0
  scale = np.trace(np.cov(a, rowvar=False))
  assert abs(metrics.frechet_distance(a, a)) <= 1e-6 * scale
  few = rng.normal(size=(3, 8))  # singular covariance: the eps retry keeps it finite and ~0
  assert abs(metrics.frechet_distance(few, few)) < 1e-4
  with pytest.raises(ValueError, match=r"\(40, 6\).*\(5, 7\)"):
    metrics.frechet_distance(a, rng.normal(size=(5, 7)))
  with pytest.raises(ValueError):
    metrics.frechet_distance(a[:1], a)


# ----------------------------------------------------------------------------------------------
# User-supplied SavedModels.


def test_missing_savedmodels_name_the_path(tmp_path):
  missing = str(tmp_path / "no_such_model")
  with pytest.raises(FileNotFoundError, match="no_such_model"):
    metrics.load_lpips(missing)
  with pytest.raises(FileNotFoundError, match="no_such_model"):
    metrics.load_i3d(missing)
  not_a_model = tmp_path / "empty_dir"
  not_a_model.mkdir()
  with pytest.raises(ValueError, match="empty_dir"):
    metrics.load_i3d(str(not_a_model))
  assert "LPIPS" in metrics.LPIPS_UNAVAILABLE_NOTE and "FVD" in metrics.FVD_UNAVAILABLE_NOTE


def test_savedmodel_without_signature_is_rejected(tmp_path):
  module = tf.Module()
  module.v = tf.Variable(1.0)
  path = str(tmp_path / "no_signature")
  tf.saved_model.save(module, path)
  with pytest.raises(ValueError, match="no_signature.*signature"):
    metrics.load_lpips(path)


class _FakeLpips(tf.Module):
  """Mean absolute difference, plus an extra output so the `distance` key must be chosen."""

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                tf.TensorSpec([None, None, None, 3], tf.float32)])
  def __call__(self, image_a, image_b):
    return {"distance": tf.reduce_mean(tf.abs(image_a - image_b), axis=[1, 2, 3]),
            "min_a": tf.reduce_min(image_a, axis=[1, 2, 3])}


class _FakeI3d(tf.Module):
  """Features that expose the preprocessing: channel means, min, max, height, time."""

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.float32)])
  def __call__(self, rgb):
    n = tf.shape(rgb)[0]
    ones = tf.ones([n, 1])
    return tf.concat([
        tf.reduce_mean(rgb, axis=[1, 2, 3]),
        tf.reduce_min(rgb, axis=[1, 2, 3, 4])[:, None],
        tf.reduce_max(rgb, axis=[1, 2, 3, 4])[:, None],
        ones * tf.cast(tf.shape(rgb)[2], tf.float32),
        ones * tf.cast(tf.shape(rgb)[1], tf.float32),
    ], axis=1)


def test_fake_lpips_savedmodel(tmp_path):
  module = _FakeLpips()
  path = str(tmp_path / "lpips")
  tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
  lpips = metrics.load_lpips(path, batch_size=4)
  rng = np.random.default_rng(7)
  pred, target = _noisy_pair(rng, (2, 3, 16, 16, 1))  # [S, T, H, W, C=1]: grayscale, leading dims
  got = lpips(pred, target)
  assert got.shape == (2, 3)
  want = 2.0 * np.abs(pred.astype(np.float64) - target).mean(axis=(2, 3, 4))  # [-1, 1] scale
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_fake_i3d_savedmodel_and_fvd(tmp_path):
  module = _FakeI3d()
  path = str(tmp_path / "i3d")
  tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
  i3d = metrics.load_i3d(path)
  rng = np.random.default_rng(8)
  videos = rng.uniform(size=(5, 4, 16, 16, 3)).astype(np.float32)  # [N, T, H, W, C]
  videos[0] = 0.0
  videos[1] = 1.0
  acts = i3d(videos)  # 5 videos, padded to one batch of 16
  assert acts.shape == (5, 7)
  np.testing.assert_allclose(acts[:, 5], 224.0)  # resized to 224x224
  np.testing.assert_allclose(acts[:, 6], 4.0)  # time kept
  np.testing.assert_allclose(acts[0, :5], -1.0)  # [0, 1] -> [-1, 1]
  np.testing.assert_allclose(acts[1, :5], 1.0)
  assert np.all(acts[2:, 3] >= -1.0) and np.all(acts[2:, 4] <= 1.0)
  # Bilinear resize preserves the mean of a random image only approximately.
  np.testing.assert_allclose(acts[2:, :3], 2.0 * videos[2:].mean(axis=(1, 2, 3)) - 1.0, atol=0.02)
  np.testing.assert_allclose(metrics.load_i3d(path, batch_size=2)(videos), acts, atol=1e-6)
  gray = i3d(videos[..., :1])
  np.testing.assert_allclose(gray[:, 0], gray[:, 2])  # grayscale repeated to 3 channels
  real = np.concatenate([videos, rng.uniform(size=(3, 4, 16, 16, 3)).astype(np.float32)])
  assert abs(metrics.frechet_distance(i3d(real), i3d(real))) < 1e-4
  assert metrics.frechet_distance(i3d(real), i3d(0.5 * real)) > 0.1


def test_srvp_psnr_averages_the_channels_psnr_against_the_closed_form():
  truth = np.full((2, 3, 16, 16, 3), 0.5, np.float32)  # [videos, frames, H, W, RGB]
  offsets = np.array([0.1, 0.01, 0.001], np.float32)  # unequal channel errors
  pred = truth + offsets
  srvp = metrics.psnr_srvp_per_frame(pred, truth)
  whole = metrics.psnr_per_frame(pred, truth)
  mse = offsets.astype(np.float64) ** 2
  np.testing.assert_allclose(srvp, np.mean(10 * np.log10(1 / mse)), rtol=1e-5)  # 20, 40, 60 -> 40
  np.testing.assert_allclose(whole, 10 * np.log10(1 / mse.mean()), rtol=1e-5)  # 24.73 dB
  assert srvp.shape == (2, 3) and np.all(srvp > whole + 15)
  grey = pred[..., :1]
  np.testing.assert_allclose(metrics.psnr_srvp_per_frame(grey, truth[..., :1]),
                             metrics.psnr_per_frame(grey, truth[..., :1]), rtol=1e-5)
  assert np.all(metrics.psnr_srvp_per_frame(truth, truth) == metrics.PSNR_CAP_DB)
