"""What a person looks at during training: ground truth, posterior reconstruction and prior samples.

Rows follow the reference's `plot`/`plot_rec` (and the paper's Fig. 3): for every held-out video,
the ground truth, the approximate-posterior reconstruction, and a few samples from the prior (from
N(0, I) for SVG-FP; the single prediction for the deterministic model). Context frames are framed
green and generated frames red.
"""

from typing import Dict, Optional

import numpy as np

from svg_tf import media
from svg_tf.model import SVG


def make_panels(model: SVG, frames: np.ndarray, n_past: int, seed: int, num_samples: int = 3,
                actions: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
  """Reconstructions and samples for `frames` (K, T, H, W, C), float32 in [0, 1].

  `actions` (K, T, action_dim): the videos' actions, for an action-conditioned model.

  Returns `ground_truth` (K, T, ...), `reconstruction` (K, T, ...) and `samples` (K, S, T, ...):
  the context frames followed by the generated ones (`SVG.sample` with `seed`). The deterministic
  model has one sample.
  """
  frames = np.asarray(frames, np.float32)
  n_future = frames.shape[1] - n_past
  context = frames[:, :n_past]
  reconstruction = model.reconstruct(frames, n_past, actions=actions).numpy()
  samples = num_samples if model.config.latent_dim else 1
  generated = model.sample(context, n_future, samples, seed, actions=actions).frames.numpy()
  return {
      "ground_truth": frames,
      "reconstruction": np.concatenate([context, reconstruction], axis=1),
      "samples": np.concatenate([np.repeat(context[:, None], samples, axis=1), generated], axis=2),
  }


def _rows(panels: Dict[str, np.ndarray]) -> np.ndarray:
  """(K * rows, T, H, W, C): for each video, ground truth, reconstruction, then samples."""
  rows = [panels["ground_truth"][:, None], panels["reconstruction"][:, None], panels["samples"]]
  stacked = np.concatenate(rows, axis=1)  # (K, rows, T, ...)
  return stacked.reshape((-1,) + stacked.shape[2:])


def _borders(panels, n_past):
  """(rows, T, 3) colours: context green and generated red; the ground-truth row all green."""
  k, t = panels["ground_truth"].shape[:2]
  rows_per_video = 2 + panels["samples"].shape[1]
  borders = np.broadcast_to(media.context_borders(t, n_past), (k * rows_per_video, t, 3)).copy()
  borders[::rows_per_video] = media.GREEN
  return borders


def save_panels_gif(path: str, panels: Dict[str, np.ndarray], n_past: int, fps: int = 4):
  """An animated grid: one column per row kind (truth, reconstruction, samples), one row per video."""
  rows = _rows(panels)
  ncols = 2 + panels["samples"].shape[1]
  media.save_gif(path, media.tile_videos(rows, ncols=ncols, borders=_borders(panels, n_past)), fps=fps)


def timeline_image(panels: Dict[str, np.ndarray], n_past: int) -> np.ndarray:
  """A still (H', W', 3) uint8 image: one line per panel row, time running left to right."""
  rows = _rows(panels)  # (R, T, H, W, C)
  r, t = rows.shape[:2]
  stills = rows.reshape((r * t, 1) + rows.shape[2:])  # each frame a one-frame video, row-major
  borders = _borders(panels, n_past).reshape(r * t, 1, 3)
  return media.tile_videos(stills, ncols=t, borders=borders)[0]
