"""Tiled videos with context/prediction borders, GIF and PNG files."""

import os

import numpy as np
from PIL import Image
import pytest

from svg_tf import media

N, T, H, W = 3, 4, 9, 7  # distinct sizes so a swapped axis fails


def _videos(channels=1):
  rng = np.random.default_rng(0)
  return rng.random((N, T, H, W, channels)).astype(np.float32)


def test_to_uint8_rounds_and_clips():
  np.testing.assert_array_equal(media.to_uint8(np.array([0.0, 0.5, 1.2, -0.1, 0.999])),
                                [0, 128, 255, 0, 255])
  u8 = np.array([3, 250], np.uint8)
  assert media.to_uint8(u8) is u8
  with pytest.raises(ValueError):
    media.to_uint8(np.array([1, 2], np.int32))


def test_tile_videos_places_each_video():
  videos = _videos()
  grid = media.tile_videos(videos, ncols=2, pad=2)
  assert grid.shape == (T, 2 * H + 3 * 2, 2 * W + 3 * 2, 3) and grid.dtype == np.uint8
  u8 = media.to_uint8(videos)
  for i in range(N):
    r, c = divmod(i, 2)
    y0, x0 = 2 + r * (H + 2), 2 + c * (W + 2)
    tile = grid[:, y0:y0 + H, x0:x0 + W]  # [T, H, W, 3], grey repeated to RGB
    for ch in range(3):
      np.testing.assert_array_equal(tile[..., ch], u8[i, ..., 0])
  assert (grid[:, :2] == 255).all() and (grid[:, :, :2] == 255).all()
  assert (grid[:, H + 4:, W + 4:] == 255).all()  # the empty fourth cell is padding
  assert media.tile_videos(_videos(3), pad=0).shape == (T, H, N * W, 3)


def test_borders_mark_context_and_predicted_frames():
  videos = _videos(3)
  colors = media.context_borders(T, 2)  # [T, 3]: green then red
  grid = media.tile_videos(videos, pad=1, borders=colors, border_width=2)
  u8 = media.to_uint8(videos)
  x1 = 1 + (W + 1)  # video 1
  for t in range(T):
    want = media.GREEN if t < 2 else media.RED
    for y, x in [(1, x1), (1 + H - 1, x1 + W - 1), (1 + 1, x1 + 1), (1 + H // 2, x1)]:
      np.testing.assert_array_equal(grid[t, y, x], want)
    np.testing.assert_array_equal(grid[t, 1 + 2:1 + H - 2, x1 + 2:x1 + W - 2],
                                  u8[1, t, 2:H - 2, 2:W - 2])  # interior untouched
  per_video = np.zeros((N, T, 3), np.uint8)
  per_video[2] = (0, 0, 255)
  grid = media.tile_videos(videos, pad=1, borders=per_video, border_width=1)
  np.testing.assert_array_equal(grid[0, 1, 1 + 2 * (W + 1)], (0, 0, 255))
  np.testing.assert_array_equal(grid[0, 1, 1], (0, 0, 0))
  with pytest.raises(ValueError, match='borders'):
    media.tile_videos(videos, borders=np.zeros((T + 1, 3)))


def test_save_gif_writes_looping_gif_atomically(tmp_path):
  frames = np.zeros((5, 8, 6, 3), np.uint8)
  for t in range(5):
    frames[t, t, :, :] = (255, 0, 0)  # a red line moving down: every frame differs
  path = tmp_path / 'nested' / 'dir' / 'clip.gif'
  media.save_gif(str(path), frames, fps=4)
  assert os.listdir(path.parent) == ['clip.gif']
  with Image.open(path) as gif:
    assert gif.n_frames == 5 and gif.size == (6, 8)
    assert gif.info.get('loop') == 0 and gif.info.get('duration') == 250
    gif.seek(3)
    back = np.asarray(gif.convert('RGB'))
  np.testing.assert_array_equal(back, frames[3])
  media.save_gif(str(tmp_path / 'grey.gif'), frames[..., :1])  # one channel works too


def test_samples_gif_tiles_the_context_before_each_sample(tmp_path):
  videos = np.round(_videos() * 4) / 4  # five grey levels: the GIF palette keeps every colour
  context, samples = videos[0, :2], videos[:, :3]  # 2 context frames, N samples of 3 frames
  path = tmp_path / 'samples.gif'
  media.samples_gif(str(path), context, samples)
  with Image.open(path) as gif:
    assert gif.size == (N * W + (N + 1) * 2, H + 2 * 2) and gif.n_frames == 5
    for t, color in [(0, media.GREEN), (1, media.GREEN), (2, media.RED), (4, media.RED)]:
      gif.seek(t)
      frame = np.asarray(gif.convert('RGB'))
      for n in range(N):  # each tile: context framed green, then its sample framed red
        np.testing.assert_array_equal(frame[2, 2 + n * (W + 2)], color)
