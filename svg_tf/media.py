"""Images and GIFs for people: tiled video grids with the paper's context/prediction borders.

SVG's figures frame ground-truth context frames in green and generated frames in red; `tile_videos`
draws those borders over each frame's outer pixels (as the reference's `utils.draw_frame` does),
so tiles keep their size. Files are written atomically (temporary name, then rename) through
`tf.io.gfile`, so a crash never leaves half a GIF and run folders may live on GCS.

`samples_gif` writes the context followed by each generated sample as one tiled GIF,
`futures_grid` lays out a clip's futures beside its real future, and `save_mp4` writes any of
these as an MP4 (reading people's videos is svg_tf/video_files.py).
"""

import io
import math
import os
import tempfile
import uuid
from typing import Optional, Sequence, Union

import imageio_ffmpeg
import numpy as np
from PIL import Image
import tensorflow as tf

GREEN = (0, 200, 0)  # context (ground-truth) frames
RED = (220, 0, 0)  # predicted frames


def to_uint8(x) -> np.ndarray:
  """float in [0, 1] -> uint8 round(255 x), clipped; uint8 passes through unchanged."""
  x = np.asarray(x)
  if x.dtype == np.uint8:
    return x
  if x.dtype == np.bool_:
    return x.astype(np.uint8) * 255
  if np.issubdtype(x.dtype, np.floating):
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
  raise ValueError(f'expected float in [0, 1] or uint8, got {x.dtype}')


def context_borders(num_frames: int, num_context: int, context_color=GREEN,
                    predicted_color=RED) -> np.ndarray:
  """uint8 [T, 3] colours: `context_color` for the first num_context frames, then predicted."""
  if not 0 <= num_context <= num_frames:
    raise ValueError(f'need 0 <= num_context <= num_frames, got {num_context}, {num_frames}')
  colors = np.empty((num_frames, 3), np.uint8)
  colors[:num_context] = context_color
  colors[num_context:] = predicted_color
  return colors


def _to_rgb(frames: np.ndarray) -> np.ndarray:
  if frames.shape[-1] == 1:
    return np.repeat(frames, 3, axis=-1)
  if frames.shape[-1] == 3:
    return frames
  raise ValueError(f'expected 1 or 3 channels, got shape {frames.shape}')


def tile_videos(videos,
                ncols: Optional[int] = None,
                pad: int = 2,
                pad_value: Union[int, Sequence[int]] = 255,
                borders=None,
                border_width: int = 2) -> np.ndarray:
  """Tiles N videos into one video: [N, T, H, W, C] -> uint8 [T, H', W', 3].

  Args:
    videos: float [0, 1] or uint8 [N, T, H, W, C], C = 1 (repeated to RGB) or 3.
    ncols: tiles per row (default: all N in one row); rows fill left to right, top to bottom.
    pad: pixels between tiles and around the grid.
    pad_value: grey level or RGB triple of the padding.
    borders: optional RGB colours, [T, 3] (the same for every video) or [N, T, 3], painted over the
      outer `border_width` pixels of each frame (e.g. `context_borders(T, n_past)`).
    border_width: width of the painted border in pixels.

  Returns:
    uint8 [T, rows*H + (rows+1)*pad, ncols*W + (ncols+1)*pad, 3].
  """
  videos = to_uint8(videos)
  if videos.ndim != 5 or videos.shape[0] < 1:
    raise ValueError(f'videos must be [N >= 1, T, H, W, C], got shape {videos.shape}')
  videos = _to_rgb(videos)
  n, t, h, w, _ = videos.shape
  ncols = n if ncols is None else int(ncols)
  if ncols < 1:
    raise ValueError(f'ncols must be >= 1, got {ncols}')
  nrows = math.ceil(n / ncols)
  if borders is not None:
    colors = np.asarray(borders)
    if colors.shape == (t, 3):
      colors = np.broadcast_to(colors, (n, t, 3))
    if colors.shape != (n, t, 3):
      raise ValueError(f'borders must be [T, 3] or [N, T, 3] = [{t}, 3] or [{n}, {t}, 3], '
                       f'got {colors.shape}')
    if colors.min() < 0 or colors.max() > 255:
      raise ValueError('border colours must be in 0..255')
    if not 1 <= border_width <= min(h, w) // 2:
      raise ValueError(f'border_width must be in 1..{min(h, w) // 2}, got {border_width}')
    colors = colors.astype(np.uint8)[:, :, None, None, :]  # [N, T, 1, 1, 3]
    bw = border_width
    videos = videos.copy()
    videos[:, :, :bw, :, :] = colors
    videos[:, :, -bw:, :, :] = colors
    videos[:, :, :, :bw, :] = colors
    videos[:, :, :, -bw:, :] = colors
  grid = np.empty((t, nrows * h + (nrows + 1) * pad, ncols * w + (ncols + 1) * pad, 3), np.uint8)
  grid[...] = np.asarray(pad_value, np.uint8)
  for i in range(n):
    r, c = divmod(i, ncols)
    y0, x0 = pad + r * (h + pad), pad + c * (w + pad)
    grid[:, y0:y0 + h, x0:x0 + w] = videos[i]
  return grid


def write_file_atomic(path: str, data: Union[bytes, str]) -> None:
  """Writes `data` to a temporary name beside `path` (parents created), then renames it over `path`.

  A crash never leaves a half-written file under the final name; works on local disks and GCS.
  """
  parent = os.path.dirname(path)
  if parent:
    tf.io.gfile.makedirs(parent)
  tmp = f'{path}.tmp-{uuid.uuid4().hex}'
  try:
    with tf.io.gfile.GFile(tmp, 'wb') as f:
      f.write(data.encode() if isinstance(data, str) else data)
    tf.io.gfile.rename(tmp, path, overwrite=True)  # os.replace on local disks
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)


def _pil_image(frame: np.ndarray) -> Image.Image:
  if frame.ndim == 3 and frame.shape[-1] == 1:
    frame = frame[..., 0]
  if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[-1] == 3):
    return Image.fromarray(np.ascontiguousarray(frame))
  raise ValueError(f'expected a frame [H, W], [H, W, 1] or [H, W, 3], got {frame.shape}')


def save_gif(path: str, frames, fps: float = 4) -> None:
  """Writes frames uint8 (or float [0, 1]) [T, H, W, 3|1] as a GIF that loops forever.

  Pillow merges identical consecutive frames into one longer frame, so a reader may count fewer
  than T frames for a video that stands still; the playback timing is unchanged.
  """
  frames = to_uint8(frames)
  if frames.ndim not in (3, 4) or frames.shape[0] < 1:
    raise ValueError(f'frames must be [T >= 1, H, W, C], got shape {frames.shape}')
  if fps <= 0:
    raise ValueError(f'fps must be > 0, got {fps}')
  images = [_pil_image(f) for f in frames]
  buffer = io.BytesIO()
  images[0].save(buffer, format='GIF', save_all=True, append_images=images[1:],
                 duration=int(round(1000 / fps)), loop=0)
  write_file_atomic(path, buffer.getvalue())


def save_mp4(path: str, frames, fps: float = 4) -> None:
  """Writes frames uint8 (or float [0, 1]) [T, H, W, 3|1] as an H.264 MP4 (yuv420p, odd sizes
  padded by one pixel), atomically: encoded to a local temporary file, then moved into place."""
  frames = _to_rgb(to_uint8(frames))
  if frames.ndim != 4 or frames.shape[0] < 1:
    raise ValueError(f'frames must be [T >= 1, H, W, C], got shape {frames.shape}')
  if fps <= 0:
    raise ValueError(f'fps must be > 0, got {fps}')
  t, h, w, _ = frames.shape
  frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode='edge')
  with tempfile.TemporaryDirectory() as folder:
    local = os.path.join(folder, 'video.mp4')
    writer = imageio_ffmpeg.write_frames(local, (frames.shape[2], frames.shape[1]), fps=fps,
                                         codec='libx264', pix_fmt_in='rgb24',
                                         pix_fmt_out='yuv420p', macro_block_size=1, quality=None,
                                         output_params=['-crf', '18'], ffmpeg_log_level='error')
    writer.send(None)
    for frame in frames:
      writer.send(np.ascontiguousarray(frame).tobytes())
    writer.close()
    with open(local, 'rb') as f:
      write_file_atomic(path, f.read())


BLUE = (0, 90, 255)  # the best sample's predicted frames


def futures_grid(context, futures, truth=None, best: Optional[int] = None) -> np.ndarray:
  """One video of a clip's futures, side by side: [truth,] sample 0, sample 1, ...; each tile is
  the context then the future, context framed green, predictions red (the best sample's blue),
  the real future green. -> uint8 [T, H', W', 3], at most 8 tiles a row.

  context [n, H, W, C]; futures [S, F, H, W, C]; truth [R, H, W, C] with R <= F real frames (the
  tile holds still after them).
  """
  context, futures = to_uint8(context), to_uint8(futures)
  num, future_len = futures.shape[:2]
  tiles = [np.concatenate([np.repeat(context[None], num, axis=0), futures], axis=1)]
  borders = np.broadcast_to(context_borders(tiles[0].shape[1], len(context)),
                            (num,) + tiles[0].shape[1:2] + (3,)).copy()
  if best is not None:
    borders[best, len(context):] = BLUE
  if truth is not None and len(truth):
    truth = to_uint8(truth)
    held = np.concatenate([truth, np.repeat(truth[-1:], future_len - len(truth), axis=0)])
    tiles.insert(0, np.concatenate([context, held])[None])
    borders = np.concatenate([np.broadcast_to(GREEN, (1, borders.shape[1], 3)), borders])
  videos = np.concatenate(tiles)
  return tile_videos(videos, ncols=min(len(videos), 8), borders=borders)


PREVIEW_GIF_MAX = 32  # videos tiled into a preview GIF; the npz keeps all of them


def save_preview(path_prefix: str, videos, fps: float = 4) -> str:
  """Writes what a dataset looks like: <prefix>.npz (key `frames`) and <prefix>.gif.

  Args:
    path_prefix: output path without extension (a trailing .npz or .gif is dropped).
    videos: uint8 (or float [0, 1]) [K, T, H, W, C], C = 1 or 3; all K go into the npz, the first
      PREVIEW_GIF_MAX are tiled 8 per row into the GIF.
  Returns:
    the prefix actually used.
  """
  videos = to_uint8(videos)
  if videos.ndim != 5 or videos.shape[0] < 1:
    raise ValueError(f'videos must be [K >= 1, T, H, W, C], got shape {videos.shape}')
  for ext in ('.npz', '.gif'):
    if path_prefix.endswith(ext):
      path_prefix = path_prefix[:-len(ext)]
  buffer = io.BytesIO()
  np.savez_compressed(buffer, frames=videos)
  write_file_atomic(path_prefix + '.npz', buffer.getvalue())
  shown = videos[:PREVIEW_GIF_MAX]  # a GIF of thousands of tiles helps nobody
  save_gif(path_prefix + '.gif', tile_videos(shown, ncols=min(len(shown), 8)), fps=fps)
  return path_prefix


def samples_gif(path: str, context: np.ndarray, samples: np.ndarray, fps: float = 4) -> None:
  """One tile per sample: the context frames (green border) then the sample's (red), as a GIF.

  context (n_context, H, W, C); samples (S, T, H, W, C)."""
  num = samples.shape[0]
  videos = np.concatenate([np.repeat(context[None], num, axis=0), samples], axis=1)
  borders = context_borders(videos.shape[1], context.shape[0])
  save_gif(path, tile_videos(videos, ncols=min(num, 8), borders=borders), fps=fps)
