"""Images and GIFs for people: tiled video grids with the paper's context/prediction borders.

SVG's figures frame ground-truth context frames in green and generated frames in red; `tile_videos`
draws those borders over each frame's outer pixels (as the reference's `utils.draw_frame` does),
so tiles keep their size. Files are written atomically (temporary name, then rename) through
`tf.io.gfile`, so a crash never leaves half a GIF and run folders may live on GCS.

Videos from people: `read_video` reads a .gif, .npy or .npz file as float frames in [0, 1],
`fit_frames` resizes them and sets their channels for a model, and `samples_gif` writes the
context followed by each generated sample as one tiled GIF.
"""

import io
import math
import os
import uuid
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageSequence
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


def read_video(path: str) -> np.ndarray:
  """A video file as float32 (T, H, W, C) in [0, 1]: .gif (every frame), .npy, or .npz (`frames`,
  as save_preview writes). uint8 pixels are divided by 255."""
  if path.endswith('.gif'):
    with Image.open(path) as image:
      gray = _is_gray(image)
      frames = [np.asarray(f.convert('L' if gray else 'RGB')) for f in ImageSequence.Iterator(image)]
    video = np.stack(frames)
  elif path.endswith('.npy'):
    video = np.load(path, allow_pickle=False)
  elif path.endswith('.npz'):
    with np.load(path, allow_pickle=False) as data:
      video = data['frames']
  else:
    raise ValueError(f'--video={path}: expected a .gif, .npy or .npz file')
  if video.ndim == 3:
    video = video[..., None]
  if video.ndim == 5 and video.shape[0] == 1:
    video = video[0]
  if video.ndim != 4:
    raise ValueError(f'--video={path}: expected frames (T, H, W[, C]), got shape {video.shape}')
  return video.astype(np.float32) / 255.0 if video.dtype == np.uint8 else video.astype(np.float32)


def _is_gray(image) -> bool:
  for frame in ImageSequence.Iterator(image):
    rgb = np.asarray(frame.convert('RGB')).astype(np.int16)
    if np.abs(rgb[..., 0] - rgb[..., 1]).max() or np.abs(rgb[..., 1] - rgb[..., 2]).max():
      return False
  return True


def fit_frames(video: np.ndarray, image_size: int = 0, channels: int = 0) -> np.ndarray:
  """Resizes (T, H, W, C) frames to image_size (0: keep) and converts to 1 or 3 channels (0: keep)."""
  if channels == 1 and video.shape[-1] == 3:
    video = video.mean(axis=-1, keepdims=True)
  elif channels == 3 and video.shape[-1] == 1:
    video = np.repeat(video, 3, axis=-1)
  if image_size and video.shape[1:3] != (image_size, image_size):
    resized = [np.asarray(Image.fromarray(f).resize((image_size, image_size), Image.BILINEAR))
               for f in video.transpose(3, 0, 1, 2).reshape(-1, *video.shape[1:3])]
    video = np.stack(resized).reshape(video.shape[3], video.shape[0], image_size, image_size)
    video = video.transpose(1, 2, 3, 0)
  return video.astype(np.float32)


def samples_gif(path: str, context: np.ndarray, samples: np.ndarray, fps: float = 4) -> None:
  """One tile per sample: the context frames (green border) then the sample's (red), as a GIF.

  context (n_context, H, W, C); samples (S, T, H, W, C)."""
  num = samples.shape[0]
  videos = np.concatenate([np.repeat(context[None], num, axis=0), samples], axis=1)
  borders = context_borders(videos.shape[1], context.shape[0])
  save_gif(path, tile_videos(videos, ncols=min(num, 8), borders=borders), fps=fps)
