"""The paper's evaluation figures: files written, sample borders, wall ratio, digit tracking."""

import os

import numpy as np
from PIL import Image
import pytest

from pipelines import mnist_digits
from pipelines import smmnist
from svg_tf import figures
from svg_tf import media


def _check_png_pdf(paths, min_size=(200, 150)):
  png, pdf = paths
  assert png.endswith('.png') and pdf.endswith('.pdf')
  for path in paths:
    assert os.path.getsize(path) > 0
  with Image.open(png) as im:
    assert im.format == 'PNG'
    assert min_size[0] <= im.size[0] <= 5000 and min_size[1] <= im.size[1] <= 3000
  with open(pdf, 'rb') as f:
    assert f.read(4) == b'%PDF'
  folder = os.path.dirname(png)
  assert not [n for n in os.listdir(folder) if '.tmp' in n]  # atomic writes left nothing behind


def test_plot_metric_curves_writes_png_and_pdf(tmp_path):
  rng = np.random.default_rng(0)
  curves = {
      'SVG-LP': {'per_frame_mean': list(0.9 - 0.01 * np.arange(20)),
                 'per_frame_ci95': list(0.01 + 0.001 * rng.random(20))},
      'deterministic': {'per_frame_mean': 0.85 - 0.02 * np.arange(20),
                        'per_frame_ci95': np.full(20, 0.02)},
  }
  out = str(tmp_path / 'new' / 'ssim')  # the parent folder does not exist yet
  paths = figures.plot_metric_curves(curves, 'ssim', first_frame=6, train_horizon=15,
                                     out_prefix=out)
  assert paths == (out + '.png', out + '.pdf')
  _check_png_pdf(paths)
  _check_png_pdf(figures.plot_metric_curves(curves, 'lpips', 3, None, str(tmp_path / 'other')))


def test_plot_metric_curves_rejects_bad_curves(tmp_path):
  out = str(tmp_path / 'x')
  with pytest.raises(ValueError, match='curves'):
    figures.plot_metric_curves({}, 'ssim', 6, 15, out)
  with pytest.raises(ValueError, match='bad'):
    figures.plot_metric_curves({'bad': {'per_frame_mean': [1, 2]}}, 'ssim', 6, 15, out)
  with pytest.raises(ValueError, match='bad'):
    figures.plot_metric_curves({'bad': {'per_frame_mean': [1, 2], 'per_frame_ci95': [1]}}, 'psnr',
                               6, 15, out)


T, N_PAST, H, W = 6, 2, 16, 12


def _sample_inputs(channels=1):
  rng = np.random.default_rng(1)
  # Few grey levels, so the GIF palette holds every colour exactly; random, so no two frames match.
  video = lambda: rng.integers(0, 3, (T, H, W, channels)) / 2.0  # noqa: E731
  rows = {'posterior': video(), 'best SSIM': video(), 'random 1': video()}
  return video(), rows


def _is(pixel, color):
  return np.abs(pixel.astype(int) - np.array(color)).max() <= 8


def test_save_sample_figure_gif_borders_and_still(tmp_path):
  gt, rows = _sample_inputs()
  out = str(tmp_path / 'fig' / 'sample')
  paths = figures.save_sample_figure(out, gt, rows, N_PAST, fps=5)
  assert paths == {'gif': out + '.gif', 'png': out + '.png', 'pdf': out + '.pdf'}
  _check_png_pdf((paths['png'], paths['pdf']), min_size=(T * W, 4 * H))

  pad = 2
  with Image.open(paths['gif']) as gif:
    assert gif.n_frames == T
    assert gif.size[0] == 4 * W + 5 * pad and gif.size[1] > H + 2 * pad  # captions underneath
    frames = []
    for t in range(T):
      gif.seek(t)
      frames.append(np.asarray(gif.convert('RGB')))
  for t, frame in enumerate(frames):
    for col in range(4):  # ground truth, then the rows in order
      y0, x0 = pad, pad + col * (W + pad)
      tile = frame[y0:y0 + H, x0:x0 + W]
      want = media.GREEN if col == 0 or t < N_PAST else media.RED
      for pixel in (tile[0, 0], tile[H - 1, W // 2], tile[H // 2, 1]):
        assert _is(pixel, want), (t, col, pixel)
      # inside the border the frame itself
      inner = rows['best SSIM'][t] if col == 2 else None
      if inner is not None:
        np.testing.assert_allclose(tile[4:-4, 4:-4, 0], media.to_uint8(inner[4:-4, 4:-4, 0]),
                                   atol=2)


def test_save_sample_figure_rejects_bad_shapes(tmp_path):
  gt, rows = _sample_inputs()
  out = str(tmp_path / 's')
  with pytest.raises(ValueError, match='ground_truth'):
    figures.save_sample_figure(out, gt[0], rows, N_PAST)
  with pytest.raises(ValueError, match='posterior'):
    figures.save_sample_figure(out, gt, dict(rows, posterior=gt[:-1]), N_PAST)
  with pytest.raises(ValueError, match='n_past'):
    figures.save_sample_figure(out, gt, rows, T + 1)


def test_save_sample_figures_writes_numbered_files(tmp_path):
  gt, rows = _sample_inputs(channels=3)
  written = figures.save_sample_figures(str(tmp_path / 'samples'), [(gt, rows)] * 3, N_PAST,
                                        max_videos=2)
  assert len(written) == 2
  names = sorted(os.listdir(tmp_path / 'samples'))
  assert names == [f'samples_{i:03d}.{ext}' for i in range(2) for ext in ('gif', 'pdf', 'png')]


def test_plot_prior_std_with_wall_hits(tmp_path):
  rng = np.random.default_rng(2)
  t = 30
  hits = np.zeros((t, 2), bool)
  hits[[4, 17], 0] = True
  hits[[9, 17, 25], 1] = True
  std = 0.2 + 0.05 * rng.random((50, t)) + 0.5 * hits.any(axis=1)
  _check_png_pdf(figures.plot_prior_std(std, str(tmp_path / 'std'), wall_hits=hits, first_frame=2))
  _check_png_pdf(figures.plot_prior_std(std[0], str(tmp_path / 'std1')))  # one curve, no hits
  with pytest.raises(ValueError, match='wall_hits'):
    figures.plot_prior_std(std, str(tmp_path / 'bad'), wall_hits=hits[:-1])
  with pytest.raises(ValueError, match='std'):
    figures.plot_prior_std(np.zeros((2, 3, 4)), str(tmp_path / 'bad'))


def test_prior_std_wall_ratio():
  t = 10
  hits = np.zeros((t, 2), bool)
  hits[2, 0] = hits[6, 1] = hits[6, 0] = True  # two hit steps (6 counts once)
  std = np.ones((4, t))
  std[:, [2, 6]] = 3.0
  result = figures.prior_std_wall_ratio(std, hits)
  assert result['ratio'] == pytest.approx(3.0)
  assert result['mean_at_hits'] == pytest.approx(3.0)
  assert result['mean_elsewhere'] == pytest.approx(1.0)
  assert (result['num_hit_steps'], result['num_other_steps']) == (4 * 2, 4 * 8)
  # lag 1 compares the step after each hit: all ones there, a 3 lands among the others.
  lagged = figures.prior_std_wall_ratio(std, hits, lag=1)
  assert lagged['mean_at_hits'] == pytest.approx(1.0) and lagged['ratio'] < 1
  # Per-sequence hits [N, T, D] and a single curve [T].
  per_seq = np.broadcast_to(hits, (4, t, 2))
  assert figures.prior_std_wall_ratio(std, per_seq)['ratio'] == pytest.approx(3.0)
  assert figures.prior_std_wall_ratio(std[0], hits)['ratio'] == pytest.approx(3.0)
  none = figures.prior_std_wall_ratio(std, np.zeros((t, 2), bool))
  assert none['ratio'] is None and none['mean_at_hits'] is None and none['num_hit_steps'] == 0
  assert none['mean_elsewhere'] == pytest.approx(std.mean())
  with pytest.raises(ValueError, match='wall_hits'):
    figures.prior_std_wall_ratio(std, hits[:-1])


@pytest.fixture(scope='module')
def mnist_sequences():
  digits = mnist_digits.load_digits('test')
  seqs = [smmnist.generate_sequence(smmnist.sequence_rng(0, i), digits.images, 10)
          for i in range(12)]
  return digits, seqs


def _blur(frames, sigma=1.0):
  """Separable gaussian blur of [T, H, W, 1] (zero padding)."""
  r = np.arange(-3, 4)
  kernel = np.exp(-r**2 / (2 * sigma**2))
  kernel /= kernel.sum()
  f = np.pad(frames[..., 0], ((0, 0), (3, 3), (3, 3)))
  h, w = frames.shape[1:3]
  f = sum(k * f[:, 3 + i:3 + i + h, :] for i, k in zip(r, kernel))
  f = sum(k * f[:, :, 3 + i:3 + i + w] for i, k in zip(r, kernel))
  return f[..., None]


def test_estimate_digit_positions_recovers_smmnist_trajectories(mnist_sequences):
  digits, seqs = mnist_sequences
  exact, near_blurred, count = 0, 0, 0
  for seq in seqs:
    templates = digits.images[seq.digit_indices]
    est = figures.estimate_digit_positions(seq.frames, templates)
    assert est.shape == seq.positions.shape and est.dtype == np.int32
    blurred = figures.estimate_digit_positions(_blur(seq.frames), templates)
    apart = np.abs(seq.positions[:, 0] - seq.positions[:, 1]).max(axis=-1) >= 16  # [T]
    err = np.abs(est - seq.positions).max(axis=-1)[apart]  # [T', D]
    err_blurred = np.abs(blurred - seq.positions).max(axis=-1)[apart]
    exact += (err == 0).sum()
    near_blurred += (err_blurred <= 1).sum()
    count += err.size
  assert count >= 100
  assert exact / count >= 0.9
  assert near_blurred / count >= 0.9


def test_estimate_digit_positions_on_blobs_and_bad_shapes():
  rng = np.random.default_rng(3)
  blobs = rng.random((2, 32, 32)) * (rng.random((2, 32, 32)) > 0.6)
  true = np.array([[[0, 0], [32, 32]], [[5, 30], [27, 2]], [[32, 0], [0, 31]]])  # [T, D, 2]
  frames = np.zeros((3, 64, 64, 1))
  for t in range(3):
    for d in range(2):
      y, x = true[t, d]
      frames[t, y:y + 32, x:x + 32, 0] = np.maximum(frames[t, y:y + 32, x:x + 32, 0], blobs[d])
  np.testing.assert_array_equal(figures.estimate_digit_positions(frames, blobs), true)
  np.testing.assert_array_equal(figures.estimate_digit_positions(frames[..., 0], blobs), true)
  with pytest.raises(ValueError, match='frames'):
    figures.estimate_digit_positions(frames[0], blobs)
  with pytest.raises(ValueError, match='digits'):
    figures.estimate_digit_positions(frames, blobs[0])
  with pytest.raises(ValueError, match='digits'):
    figures.estimate_digit_positions(frames, np.ones((1, 32, 32)))  # constant template


def test_displacements_hand_built():
  positions = np.array([
      [[[0, 0], [10, 10]], [[1, 3], [8, 10]], [[4, 3], [8, 14]]],  # sequence 0: [T=3, D=2, 2]
      [[[5, 5], [0, 0]], [[5, 4], [1, 1]], [[5, 3], [2, 2]]],
  ])  # [N=2, T=3, D=2, 2]
  want = [[1, 3], [-2, 0], [3, 0], [0, 4],  # n=0: step 0 digits 0, 1; step 1 digits 0, 1
          [0, -1], [1, 1], [0, -1], [1, 1]]
  np.testing.assert_array_equal(figures.displacements(positions), want)
  np.testing.assert_array_equal(figures.displacements(positions[0]), want[:4])
  with pytest.raises(ValueError, match='positions'):
    figures.displacements(positions[:, :1])
  with pytest.raises(ValueError, match='positions'):
    figures.displacements(positions[..., :1])


def test_plot_displacement_distribution(tmp_path, mnist_sequences):
  _, seqs = mnist_sequences
  true = figures.displacements(np.stack([s.positions for s in seqs]))
  rng = np.random.default_rng(4)
  model = true + rng.integers(-1, 2, true.shape)
  model[:3] = [[20, 0], [0, -15], [9, 9]]  # a few jumps beyond the plotted range
  _check_png_pdf(figures.plot_displacement_distribution(model, true, str(tmp_path / 'disp')))
  hist = figures.displacement_histogram(true)
  assert hist.shape == (17, 17) and hist.sum() == pytest.approx(1.0)
  with pytest.raises(ValueError, match='model_disp'):
    figures.plot_displacement_distribution(model[:, :1], true, str(tmp_path / 'bad'))
  with pytest.raises(ValueError, match='true_disp'):
    figures.plot_displacement_distribution(model, true[:0], str(tmp_path / 'bad'))
