"""The paper's evaluation figures: metric curves, sample strips, prior std and SM-MNIST motion.

  * `plot_metric_curves`: Fig. 7/8, per-frame SSIM/PSNR with a shaded 95% band per model.
  * `save_sample_figure(s)`: Fig. 3/4/9, ground truth, posterior and prior samples (GIF + still).
  * `plot_prior_std`, `prior_std_wall_ratio`: Fig. 6, the learned prior's std peaks at wall hits.
  * `estimate_digit_positions`, `displacements`, `plot_displacement_distribution`: Fig. 5, how
    digits move in generated videos compared with the ground truth.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot: no
display is needed and no global backend or figure registry is touched (importing this module does
not switch a notebook's backend; safe inside training processes and threads). Every
file is rendered to memory and written atomically (temporary name in the same folder, then rename)
by `media.write_file_atomic`, which also creates the parent folders; PDFs carry no creation date, so
the same data gives the same bytes.
"""

import io
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from svg_tf import media

METRIC_LABELS = {'ssim': 'SSIM', 'psnr': 'PSNR (dB)'}
DIGIT_COLORS = ('tab:red', 'tab:blue', 'tab:green', 'tab:purple', 'tab:orange', 'tab:brown')
DIGIT_LINESTYLES = ('--', ':', '-.', (0, (5, 1, 1, 1)))
DISPLACEMENT_RANGE = 8  # displacement histograms cover -8..8 pixels per step on each axis
_DPI = 100


# --------------------------------------------------------------------------------------------------
# Writing figures.


def _save_figure(fig: Figure, out_prefix: str) -> Tuple[str, str]:
  """Writes out_prefix.png and out_prefix.pdf atomically; returns the two paths."""
  FigureCanvasAgg(fig)  # attaches the Agg canvas that savefig renders with
  paths = []
  for ext, metadata in (('png', None), ('pdf', {'CreationDate': None})):
    buffer = io.BytesIO()
    fig.savefig(buffer, format=ext, dpi=_DPI, metadata=metadata, bbox_inches='tight')
    path = f'{out_prefix}.{ext}'
    media.write_file_atomic(path, buffer.getvalue())
    paths.append(path)
  return paths[0], paths[1]


def _check_prefix(out_prefix) -> str:
  if not isinstance(out_prefix, (str, os.PathLike)) or not os.fspath(out_prefix):
    raise ValueError(f'out_prefix must be a non-empty path, got {out_prefix!r}')
  return os.fspath(out_prefix)


def _frame_axis(first_frame, length: int) -> np.ndarray:
  if int(first_frame) != first_frame:
    raise ValueError(f'first_frame must be an integer, got {first_frame!r}')
  return int(first_frame) + np.arange(length)


# --------------------------------------------------------------------------------------------------
# Fig. 7/8: per-frame metric curves.


def plot_metric_curves(curves: Mapping[str, Mapping[str, Sequence[float]]],
                       metric: str,
                       first_frame: int,
                       train_horizon: Optional[float],
                       out_prefix: str,
                       title: Optional[str] = None) -> Tuple[str, str]:
  """Per-frame mean with a shaded 95% band, one line per model (the paper's Fig. 7/8).

  Args:
    curves: label -> {'per_frame_mean': [T], 'per_frame_ci95': [T]} (half-widths of the 95%
      confidence interval); models may cover different numbers of frames.
    metric: 'ssim' or 'psnr' (y label 'SSIM' / 'PSNR (dB)'); any other string is the y label.
    first_frame: 1-based index of the first predicted frame (n_past + 1): the x of element 0.
    train_horizon: last frame index seen in training (n_past + n_future_train), drawn as a dashed
      vertical line; None draws none.
    out_prefix: writes out_prefix + '.png' and '.pdf'.
    title: optional axes title.

  Returns:
    (png path, pdf path).
  """
  out_prefix = _check_prefix(out_prefix)
  if not isinstance(curves, Mapping) or not curves:
    raise ValueError('curves must be a non-empty dict label -> {per_frame_mean, per_frame_ci95}')
  if not isinstance(metric, str) or not metric:
    raise ValueError(f'metric must be a non-empty string, got {metric!r}')
  lines = []
  for label, curve in curves.items():
    if not isinstance(curve, Mapping) or not {'per_frame_mean', 'per_frame_ci95'} <= set(curve):
      raise ValueError(f'curves[{label!r}] must hold per_frame_mean and per_frame_ci95')
    mean = np.asarray(curve['per_frame_mean'], np.float64)
    ci95 = np.asarray(curve['per_frame_ci95'], np.float64)
    if mean.ndim != 1 or mean.size < 1 or ci95.shape != mean.shape:
      raise ValueError(f'curves[{label!r}]: per_frame_mean and per_frame_ci95 must both be '
                       f'[T >= 1], got {mean.shape} and {ci95.shape}')
    lines.append((str(label), mean, ci95))
  if train_horizon is not None and not np.isfinite(float(train_horizon)):
    raise ValueError(f'train_horizon must be finite or None, got {train_horizon!r}')

  fig = Figure(figsize=(6.0, 4.0), layout='constrained')
  ax = fig.add_subplot()
  colors = matplotlib.rcParams['axes.prop_cycle'].by_key()['color']
  for i, (label, mean, ci95) in enumerate(lines):
    x = _frame_axis(first_frame, mean.size)
    color = colors[i % len(colors)]
    ax.plot(x, mean, color=color, lw=1.8, label=label, marker='.' if mean.size == 1 else None)
    ax.fill_between(x, mean - ci95, mean + ci95, color=color, alpha=0.2, lw=0)
  if train_horizon is not None:
    ax.axvline(float(train_horizon), color='0.3', ls='--', lw=1.2, label='training horizon')
  ax.set_xlabel('frame')
  ax.set_ylabel(METRIC_LABELS.get(metric.lower(), metric))
  ax.grid(True, alpha=0.3)
  ax.legend(loc='best', fontsize='small', framealpha=0.9)
  if title:
    ax.set_title(title)
  return _save_figure(fig, out_prefix)


# --------------------------------------------------------------------------------------------------
# Fig. 3/4/9: samples.


def _check_video(name: str, video) -> np.ndarray:
  video = np.asarray(video)
  if video.ndim != 4 or video.shape[0] < 1 or video.shape[-1] not in (1, 3):
    raise ValueError(f'{name} must be a video [T, H, W, C] with C = 1 or 3, got {video.shape}')
  return video


def _check_sample_inputs(ground_truth, rows, n_past) -> Tuple[List[str], np.ndarray, np.ndarray]:
  """-> labels, uint8 videos [R+1, T, H, W, C] (ground truth first), border colours [R+1, T, 3]."""
  ground_truth = _check_video('ground_truth', ground_truth)
  if not isinstance(rows, Mapping):
    raise ValueError(f'rows must be a dict label -> video [T, H, W, C], got {type(rows).__name__}')
  videos = [media.to_uint8(ground_truth)]
  for label, video in rows.items():
    video = _check_video(f'rows[{label!r}]', video)
    if video.shape != ground_truth.shape:
      raise ValueError(f'rows[{label!r}] has shape {video.shape}, '
                       f'ground_truth {ground_truth.shape}')
    videos.append(media.to_uint8(video))
  t = ground_truth.shape[0]
  if int(n_past) != n_past or not 0 <= n_past <= t:
    raise ValueError(f'n_past must be an integer in 0..{t} (the number of frames), got {n_past!r}')
  borders = np.empty((len(videos), t, 3), np.uint8)
  borders[0] = media.GREEN  # ground truth: every frame is real
  borders[1:] = media.context_borders(t, int(n_past))
  labels = ['ground truth'] + [str(label) for label in rows]
  return labels, np.stack(videos), borders


def _font(size: int):
  try:
    return ImageFont.load_default(size=size)  # FreeType (Pillow >= 10.1)
  except (TypeError, OSError, ImportError):
    return ImageFont.load_default()  # bitmap font


def _caption_strip(labels: Sequence[str], tile_w: int, pad: int, width: int) -> np.ndarray:
  """uint8 [h, width, 3] white strip, each label centred under its column (shrunk or cut to fit)."""
  height = 16
  strip = Image.new('RGB', (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(strip)
  room = tile_w + pad
  for i, label in enumerate(labels):
    for size in (11, 10, 9, 8):
      font = _font(size)
      if draw.textlength(label, font=font) <= room:
        break
    text = label
    while text and draw.textlength(text, font=font) > room:
      text = text[:-1]
    x0 = pad + i * (tile_w + pad) + (tile_w - draw.textlength(text, font=font)) / 2
    draw.text((x0, 1), text, fill=(0, 0, 0), font=font)
  return np.asarray(strip)


def save_sample_figure(out_prefix: str,
                       ground_truth,
                       rows: Mapping[str, np.ndarray],
                       n_past: int,
                       fps: float = 4) -> Dict[str, str]:
  """Ground truth and model rows as an animated GIF and a still strip (the paper's Fig. 3/4/9).

  Args:
    out_prefix: writes out_prefix + '.gif', '.png' and '.pdf'.
    ground_truth: [T, H, W, C] (C = 1 or 3) in [0, 1] (or uint8), context frames included.
    rows: ordered label -> video of the same shape, e.g. 'posterior', 'best SSIM', 'random 1'.
    n_past: number of context frames at the start of every video.
    fps: GIF frame rate.

  The GIF has one column per label (ground truth first, then `rows` in order, captions underneath);
  the PNG/PDF has one row per label with time running left to right. Borders: ground truth all
  green; other rows green for the first n_past frames and red after (generated).

  Returns:
    {'gif': path, 'png': path, 'pdf': path}.
  """
  out_prefix = _check_prefix(out_prefix)
  labels, videos, borders = _check_sample_inputs(ground_truth, rows, n_past)
  n, t, h, w, _ = videos.shape
  pad = 2

  # Animated: the tiles side by side, captions under them.
  grid = media.tile_videos(videos, ncols=n, pad=pad, borders=borders)  # [T, H', W', 3]
  strip = _caption_strip(labels, w, pad, grid.shape[2])  # [h_s, W', 3]
  grid = np.concatenate([grid, np.broadcast_to(strip, (t,) + strip.shape)], axis=1)
  media.save_gif(f'{out_prefix}.gif', grid, fps=fps)

  # Still: every (label, t) frame as its own tile, labels down the left.
  frames = videos.reshape((n * t, 1, h, w, videos.shape[-1]))  # [N*T, 1, H, W, C]
  still = media.tile_videos(frames, ncols=t, pad=pad, borders=borders.reshape(n * t, 1, 3))[0]
  fig = Figure(figsize=(still.shape[1] / _DPI + 1.4, still.shape[0] / _DPI + 0.5))
  ax = fig.add_axes((0, 0, 1, 1))
  ax.imshow(still, interpolation='nearest')
  ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(n)], labels)
  step = max(1, int(np.ceil(t / 25)))  # at most ~25 tick labels
  ticks = list(range(0, t, step))
  ax.set_xticks([pad + c * (w + pad) + w / 2 for c in ticks], [str(c + 1) for c in ticks])
  ax.tick_params(length=0, labelsize=9)
  ax.set_xlabel('frame')
  for side in ax.spines.values():
    side.set_visible(False)
  png, pdf = _save_figure(fig, out_prefix)
  return {'gif': f'{out_prefix}.gif', 'png': png, 'pdf': pdf}


def save_sample_figures(out_dir: str,
                        videos: Sequence[Tuple[np.ndarray, Mapping[str, np.ndarray]]],
                        n_past: int,
                        max_videos: Optional[int] = None,
                        fps: float = 4) -> List[Dict[str, str]]:
  """`save_sample_figure` for several test videos: out_dir/samples_000.{gif,png,pdf}, ...

  Args:
    out_dir: folder (created if missing).
    videos: list of (ground_truth [T, H, W, C], rows {label: video}).
    n_past: context frames.
    max_videos: write at most this many (the first ones); None writes all.
    fps: GIF frame rate.

  Returns:
    the path dicts, one per written video.
  """
  if not isinstance(out_dir, (str, os.PathLike)) or not os.fspath(out_dir):
    raise ValueError(f'out_dir must be a non-empty path, got {out_dir!r}')
  if max_videos is not None and (int(max_videos) != max_videos or max_videos < 0):
    raise ValueError(f'max_videos must be an integer >= 0 or None, got {max_videos!r}')
  videos = list(videos)
  for i, item in enumerate(videos):
    if not isinstance(item, (tuple, list)) or len(item) != 2:
      raise ValueError(f'videos[{i}] must be a pair (ground_truth, rows)')
  if max_videos is not None:
    videos = videos[:int(max_videos)]
  return [save_sample_figure(os.path.join(os.fspath(out_dir), f'samples_{i:03d}'), gt, rows,
                             n_past, fps=fps) for i, (gt, rows) in enumerate(videos)]


# --------------------------------------------------------------------------------------------------
# Fig. 6: the learned prior's standard deviation and the walls.


def _check_std(std) -> np.ndarray:
  """-> float64 [N, T]; a single curve [T] becomes N = 1."""
  std = np.asarray(std, np.float64)
  if std.ndim == 1:
    std = std[None]
  if std.ndim != 2 or std.shape[0] < 1 or std.shape[1] < 1:
    raise ValueError(f'std must be [N, T] or [T] with N, T >= 1, got shape {std.shape}')
  return std


def plot_prior_std(std,
                   out_prefix: str,
                   wall_hits=None,
                   first_frame: int = 1,
                   digit_labels: Optional[Sequence[str]] = None,
                   title: Optional[str] = None) -> Tuple[str, str]:
  """The learned prior's std over time with wall hits marked (the paper's Fig. 6).

  Like the paper, the line is the mean over the N sequences and the band is mean +- one standard
  deviation over them (not a percentile band).

  Args:
    std: [N, T] (or [T]) prior std per sequence and step, already averaged over latent dims; N
      sequences sharing one trajectory (different digits), as in the paper, or any sequences.
    out_prefix: writes out_prefix + '.png' and '.pdf'.
    wall_hits: optional bool [T, D]: digit d hit a wall at step t (`smmnist` wall_hits aligned to
      std's steps by the caller); drawn as vertical lines, one colour and line style per digit.
      In SM-MNIST a hit at frame t clamps the digit in frame t and draws its new velocity for
      frame t + 1, so a prior that recognises the hit peaks at t + 1.
    first_frame: frame index (1-based) of std[:, 0].
    digit_labels: legend text per digit, default 'digit {d} hits a wall'.
    title: optional axes title.

  Returns:
    (png path, pdf path).
  """
  out_prefix = _check_prefix(out_prefix)
  std = _check_std(std)
  n, t = std.shape
  x = _frame_axis(first_frame, t)
  hits = None
  if wall_hits is not None:
    hits = np.asarray(wall_hits)
    if hits.ndim != 2 or hits.shape[0] != t or hits.shape[1] < 1:
      raise ValueError(f'wall_hits must be [T, D] with T = {t} (std\'s steps), got {hits.shape}')
    hits = hits.astype(bool)
    if digit_labels is None:
      digit_labels = [f'digit {d + 1} hits a wall' for d in range(hits.shape[1])]
    digit_labels = [str(label) for label in digit_labels]
    if len(digit_labels) != hits.shape[1]:
      raise ValueError(f'digit_labels must have D = {hits.shape[1]} entries, '
                       f'got {len(digit_labels)}')

  mean, spread = std.mean(axis=0), std.std(axis=0)
  fig = Figure(figsize=(8.0, 4.2), layout='constrained')
  ax = fig.add_subplot()
  ax.plot(x, mean, color='k', lw=1.6, label=f'prior std (mean over {n} sequences)',
          marker='.' if t == 1 else None)
  if n > 1:
    ax.fill_between(x, mean - spread, mean + spread, color='0.5', alpha=0.3, lw=0,
                    label='± 1 std over sequences')
  if hits is not None:
    for d in range(hits.shape[1]):
      color = DIGIT_COLORS[d % len(DIGIT_COLORS)]
      style = DIGIT_LINESTYLES[d % len(DIGIT_LINESTYLES)]
      for k, step in enumerate(np.flatnonzero(hits[:, d])):
        ax.axvline(x[step], color=color, ls=style, lw=1.2, alpha=0.9,
                   label=digit_labels[d] if k == 0 else None)
    ratio = prior_std_wall_ratio(std, hits)['ratio']
    if ratio is not None:
      ax.set_title(f'mean std at hit steps / elsewhere = {ratio:.2f}', loc='right',
                   fontsize='small')
  ax.set_xlabel('frame')
  ax.set_ylabel(r'prior $\sigma_\psi$ (mean over latent dims)')
  ax.set_xlim(x[0] - 0.5, x[-1] + 0.5)
  ax.grid(True, alpha=0.3)
  handles, _ = ax.get_legend_handles_labels()
  fig.legend(loc='outside lower center', ncol=min(len(handles), 4), fontsize='small')
  if title:
    ax.set_title(title, loc='left')
  return _save_figure(fig, out_prefix)


def prior_std_wall_ratio(std, wall_hits, lag: int = 0) -> Dict[str, Optional[float]]:
  """Mean prior std at wall-hit steps vs all other steps: Fig. 6 as one number.

  Args:
    std: [N, T] or [T].
    wall_hits: bool [T, D] (one trajectory shared by all N) or [N, T, D] (per sequence); a step
      counts as a hit when any digit hits a wall.
    lag: a hit at step t marks std step t + lag (1 asks whether the prior peaks the step after the
      hit, see `plot_prior_std`); hits shifted outside 0..T-1 are dropped.

  Returns:
    dict mean_at_hits, mean_elsewhere, ratio (their quotient; None when either set of steps is empty
    or mean_elsewhere is 0), num_hit_steps, num_other_steps (numbers of std entries, i.e. of
    (sequence, step) pairs, averaged in each mean).
  """
  std = _check_std(std)
  n, t = std.shape
  hits = np.asarray(wall_hits)
  if hits.ndim == 2 and hits.shape[0] == t and hits.shape[1] >= 1:
    mask = np.broadcast_to(hits.astype(bool).any(axis=1), (n, t))
  elif hits.ndim == 3 and hits.shape[:2] == (n, t) and hits.shape[2] >= 1:
    mask = hits.astype(bool).any(axis=2)
  else:
    raise ValueError(f'wall_hits must be [T, D] or [N, T, D] with N, T = {n}, {t} (from std), '
                     f'got {hits.shape}')
  if int(lag) != lag:
    raise ValueError(f'lag must be an integer, got {lag!r}')
  lag = int(lag)
  shifted = np.zeros_like(mask)
  if abs(lag) < t:
    if lag >= 0:
      shifted[:, lag:] = mask[:, :t - lag]
    else:
      shifted[:, :t + lag] = mask[:, -lag:]
  at_hits, elsewhere = std[shifted], std[~shifted]
  mean_at = float(at_hits.mean()) if at_hits.size else None
  mean_else = float(elsewhere.mean()) if elsewhere.size else None
  ratio = None
  if mean_at is not None and mean_else is not None and mean_else != 0:
    ratio = mean_at / mean_else
  return {
      'mean_at_hits': mean_at,
      'mean_elsewhere': mean_else,
      'ratio': ratio,
      'num_hit_steps': int(at_hits.size),
      'num_other_steps': int(elsewhere.size),
  }


# --------------------------------------------------------------------------------------------------
# Fig. 5: where the digits go.


def _window_sums(x: np.ndarray, h: int, w: int) -> np.ndarray:
  """Sums over every h x w window: [..., H, W] -> [..., H-h+1, W-w+1] (integral image)."""
  s = np.zeros(x.shape[:-2] + (x.shape[-2] + 1, x.shape[-1] + 1), np.float64)
  s[..., 1:, 1:] = x.cumsum(axis=-2).cumsum(axis=-1)
  return s[..., h:, w:] - s[..., :-h, w:] - s[..., h:, :-w] + s[..., :-h, :-w]


def estimate_digit_positions(frames, digits) -> np.ndarray:
  """(y, x) top-left of each known digit in every frame, by normalised cross-correlation.

  Each digit's template is matched at all (H-h+1) x (W-w+1) placements (33 x 33 for 32x32 digits
  on 64x64 frames) and the placement with the highest NCC wins. Correlations are one FFT product
  per frame and digit (circular correlation, which equals the plain one for placements that stay
  inside the frame), window statistics come from integral images: ~100 videos x 25 frames take
  well under a second. Works on blurry generated frames (the peak broadens but stays put).

  Limitation: each digit is found by its own template independently. Where two digits overlap, the
  saturated sum no longer looks like either template and estimates can jump to the other digit or
  to a partial match; a digit the model has dissolved gives an arbitrary position.

  Args:
    frames: [T, H, W, 1] or [T, H, W] frames in [0, 1] (ground truth or generated).
    digits: [D, h, w] the digit images in the video (e.g. digits.images[digit_indices]).

  Returns:
    int32 [T, D, 2] estimated (y, x) of each digit's top-left corner, in 0..H-h and 0..W-w.
  """
  frames = np.asarray(frames, np.float64)
  if frames.ndim == 4 and frames.shape[-1] == 1:
    frames = frames[..., 0]
  if frames.ndim != 3 or frames.shape[0] < 1:
    raise ValueError(f'frames must be [T, H, W, 1] or [T, H, W] with T >= 1, got {frames.shape}')
  digits = np.asarray(digits, np.float64)
  if digits.ndim != 3 or digits.shape[0] < 1:
    raise ValueError(f'digits must be [D >= 1, h, w], got shape {digits.shape}')
  _, hh, ww = frames.shape
  _, h, w = digits.shape
  if not (1 <= h <= hh and 1 <= w <= ww):
    raise ValueError(f'digits {digits.shape} must fit inside the frames {frames.shape}')
  templates = digits - digits.mean(axis=(1, 2), keepdims=True)  # [D, h, w], zero mean
  norms = np.sqrt((templates**2).sum(axis=(1, 2)))  # [D]
  if (norms < 1e-8).any():
    raise ValueError(f'digits {np.flatnonzero(norms < 1e-8).tolist()} are constant images')

  # Numerator: sum over the window of frame * zero-mean template (the frame's mean term drops out).
  spectrum = np.fft.rfft2(frames)  # [T, H, W//2+1]
  kernel = np.fft.rfft2(templates, s=(hh, ww))  # [D, H, W//2+1]
  corr = np.fft.irfft2(spectrum[:, None] * np.conj(kernel)[None], s=(hh, ww))  # [T, D, H, W]
  corr = corr[..., :hh - h + 1, :ww - w + 1]  # [T, D, Py, Px]
  # Denominator: the window's own deviation from its mean.
  total = _window_sums(frames, h, w)  # [T, Py, Px]
  energy = _window_sums(frames**2, h, w)
  variance = np.maximum(energy - total**2 / (h * w), 0.0)
  ncc = corr / (np.sqrt(np.maximum(variance, 1e-12))[:, None] * norms[None, :, None, None])
  flat = ncc.reshape(ncc.shape[:2] + (-1,)).argmax(axis=-1)  # [T, D]
  ys, xs = np.divmod(flat, ncc.shape[-1])
  return np.stack([ys, xs], axis=-1).astype(np.int32)  # [T, D, 2]


def displacements(positions) -> np.ndarray:
  """Per-step moves (dy, dx) of every digit: positions [N, T, D, 2] -> [N*(T-1)*D, 2].

  A single sequence [T, D, 2] is taken as N = 1. Row order is sequence, step, digit.
  """
  positions = np.asarray(positions)
  if positions.ndim == 3:
    positions = positions[None]
  if positions.ndim != 4 or positions.shape[-1] != 2 or positions.shape[1] < 2:
    raise ValueError(f'positions must be [N, T >= 2, D, 2] (or [T, D, 2]), got {positions.shape}')
  if not np.issubdtype(positions.dtype, np.number):
    raise ValueError(f'positions must be numeric, got {positions.dtype}')
  moves = positions[:, 1:] - positions[:, :-1]  # [N, T-1, D, 2]
  return moves.reshape(-1, 2)


def _check_disp(name: str, disp) -> np.ndarray:
  disp = np.asarray(disp)
  if disp.ndim != 2 or disp.shape[1] != 2 or disp.shape[0] < 1:
    raise ValueError(f'{name} must be [M >= 1, 2] (dy, dx) rows, got shape {disp.shape}')
  return disp.astype(np.float64)


def displacement_histogram(disp, max_abs: int = DISPLACEMENT_RANGE) -> np.ndarray:
  """Fractions [2m+1, 2m+1] (rows dy, columns dx, -m..m) of rounded moves, clipped to ±m."""
  disp = _check_disp('disp', disp)
  cells = np.clip(np.rint(disp), -max_abs, max_abs).astype(np.int64) + max_abs
  size = 2 * max_abs + 1
  counts = np.bincount(cells[:, 0] * size + cells[:, 1], minlength=size * size)
  return (counts / counts.sum()).reshape(size, size)


def plot_displacement_distribution(model_disp, true_disp, out_prefix: str,
                                   title: Optional[str] = None) -> Tuple[str, str]:
  """Per-step digit moves of model samples vs ground truth (the paper's Fig. 5, pooled over steps).

  Three panels: the 2-D distribution of (dx, dy) for the model and for the ground truth (same
  colour scale, log-spaced so rare moves stay visible; moves beyond ±8 px land in the edge cells,
  their share is printed) and the overlaid distributions of the speed |(dy, dx)|. The title
  carries the total-variation distance between the two 2-D histograms.

  Args:
    model_disp: [M, 2] (dy, dx) moves in generated videos (`displacements` of estimated positions).
    true_disp: [M', 2] moves in the ground truth.
    out_prefix: writes out_prefix + '.png' and '.pdf'.
    title: optional figure title (prefixed to the distance).

  Returns:
    (png path, pdf path).
  """
  out_prefix = _check_prefix(out_prefix)
  model_disp = _check_disp('model_disp', model_disp)
  true_disp = _check_disp('true_disp', true_disp)
  m = DISPLACEMENT_RANGE
  hists = {'model': displacement_histogram(model_disp), 'ground truth': displacement_histogram(
      true_disp)}
  tv = 0.5 * np.abs(hists['model'] - hists['ground truth']).sum()

  fig = Figure(figsize=(12.0, 3.9), layout='constrained')
  axes = fig.subplots(1, 3, gridspec_kw={'width_ratios': [1, 1, 1.15]})
  floor = 1e-4
  norm = LogNorm(vmin=floor, vmax=max(h.max() for h in hists.values()))
  image = None
  for ax, (name, hist), disp in zip(axes[:2], hists.items(), (model_disp, true_disp)):
    extent = (-m - 0.5, m + 0.5, -m - 0.5, m + 0.5)  # cell centres on the integer moves
    image = ax.imshow(np.maximum(hist, floor), origin='lower', extent=extent, cmap='viridis',
                      norm=norm, interpolation='nearest')
    outside = float((np.abs(disp) > m).any(axis=1).mean())
    label = f'{name} ({len(disp)} moves'
    label += f', {100 * outside:.1f}% beyond ±{m})' if outside else ')'
    ax.set_title(label, fontsize='medium')
    ax.set_xlabel('dx (pixels / step)')
    ax.set_ylabel('dy (pixels / step)')
    ax.set_xticks(range(-m, m + 1, 2))
    ax.set_yticks(range(-m, m + 1, 2))
  fig.colorbar(image, ax=list(axes[:2]), fraction=0.03, pad=0.02, label='fraction of moves')

  edges = np.arange(0, np.sqrt(2) * m + 1.0, 0.5)
  for disp, name, color in ((true_disp, 'ground truth', 'k'), (model_disp, 'model', 'tab:red')):
    speed = np.minimum(np.hypot(disp[:, 0], disp[:, 1]), edges[-1] - 1e-9)
    axes[2].hist(speed, bins=edges, weights=np.full(len(speed), 1.0 / len(speed)),
                 histtype='step', lw=1.6, color=color, label=name)
  axes[2].set_xlabel('speed |(dy, dx)| (pixels / step)')
  axes[2].set_ylabel('fraction of moves')
  axes[2].yaxis.set_label_position('right')  # away from the colour bar's label
  axes[2].yaxis.tick_right()
  axes[2].legend(fontsize='small')
  axes[2].grid(True, alpha=0.3)
  heading = f'total variation (2-D) = {tv:.3f}'
  fig.suptitle(f'{title}: {heading}' if title else f'digit displacement per step, {heading}')
  return _save_figure(fig, out_prefix)
