"""People's videos as model input: a video file, a GIF, an array file or a folder of frames, cropped
to a square, resized and given the model's channels, with every step recorded.

  clip = read_clip("walk.mp4", image_size=64, channels=1)
  clip.frames    # uint8 [T, 64, 64, 1]
  clip.steps     # what was done, in words and numbers (predict.json, dataset_info.json)

Sources:
  .mp4 .avi .mov .mkv .webm   decoded by ffmpeg (the imageio-ffmpeg wheel's binary), every frame
                              at the native rate; crop and resize run inside ffmpeg, so a long HD
                              video never exists in memory at full size
  .gif                        every frame (PIL)
  .npy, .npz                  an array (an .npz's `frames`, or its only array): (T, H, W),
                              (T, H, W, C) or (1, T, H, W, C) with C 1 or 3, uint8, or float in
                              [0, 1] (rounded to 8 bits); never unpickled; at most
                              MAX_ARRAY_BYTES (4 GiB) uncompressed, checked from the header
                              before anything is allocated
  a folder                    its .png/.jpg/.jpeg files, one frame each, in natural name order
                              (frame2 before frame10), all of one size

Each frame is centre-cropped to a square (crop="center"; crop="none" squashes the whole frame,
as the KTH conversion does), resized to image_size x image_size (bicubic: ffmpeg's scaler for
video files, PIL's for the others) and converted to `channels` (colour to grey by luma: ffmpeg's
gray pixel format, PIL's ITU-R 601-2 weights; grey to colour by repetition). Anything that cannot
be read is a VideoReadError naming the file and the reason (ffmpeg's own words for videos).
"""

import io
import os
import re
import subprocess
import zipfile
import zlib
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageSequence

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".npz")
GIF_SUFFIX = ".gif"
CLIP_SUFFIXES = VIDEO_SUFFIXES + (GIF_SUFFIX,) + ARRAY_SUFFIXES  # files a clip can be
CROPS = ("center", "none")

_STREAM = re.compile(r"Stream #0:\d+[^\n]*?: Video: ([^\s,]+)[^\n]*?, (\d+)x(\d+)")
_FPS = re.compile(r", (\d+(?:\.\d+)?) (?:fps|tbr)")
_FFMPEG_ERROR = re.compile(r"\[(error|fatal|panic)\]")  # ffmpeg -loglevel level+info prefixes
_FFMPEG_WARNING = re.compile(r"\[(warning|error|fatal|panic)\]")
_ADDRESS = re.compile(r" @ 0x[0-9a-fA-F]+")  # '[in#0 @ 0x55d1c3e2be80]' in ffmpeg's messages
_REASON_LINES = 4  # ffmpeg stderr lines quoted in an error
MAX_FRAME_PIXELS = 2**25  # 33.5 million (8K UHD is 33.2): larger GIF/image frames are refused
                          # before PIL allocates them (a damaged header can claim 4104x43025)
MAX_ARRAY_BYTES = 4 * 2**30  # an array file's frames, uncompressed: a forged header or zip bomb
                             # is refused before anything that large is allocated


class VideoReadError(ValueError):
  """A clip that cannot be read (missing, corrupt, empty, unsupported); names the file and why."""


class Clip(NamedTuple):
  frames: np.ndarray  # uint8 [T, S, S, C]
  fps: Optional[float]  # frames per second of the source, when it says
  steps: Dict[str, Any]  # source, format, native size, crop, resize, channels: what was done


def ffmpeg_exe() -> str:
  """Path of the ffmpeg binary shipped by imageio-ffmpeg (or $IMAGEIO_FFMPEG_EXE)."""
  return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_reason(stderr: str) -> str:
  """ffmpeg's last error lines, without the memory addresses that differ between runs."""
  lines = [_ADDRESS.sub("", l).strip() for l in stderr.splitlines() if l.strip()]
  errors = [l for l in lines if _FFMPEG_ERROR.search(l)]
  return " | ".join((errors or lines)[-_REASON_LINES:]) or "(ffmpeg printed nothing)"


def ffmpeg_raw(path: str, output_args: List[str], error=None) -> Tuple[bytes, str]:
  """Runs `ffmpeg -i path <output_args> -f rawvideo pipe:1` (every frame of the first video stream
  at its native rate): (raw frames, ffmpeg's log). A failure raises `error` (default
  VideoReadError) naming the path and quoting ffmpeg's own error lines."""
  error = error or VideoReadError
  cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+info",
         "-threads", "1", "-i", path, "-map", "0:v:0", "-an", "-sn", "-dn",
         "-fps_mode", "passthrough",  # every decoded frame once: no drops, no duplicates
         *output_args, "-f", "rawvideo", "pipe:1"]
  try:
    result = subprocess.run(cmd, capture_output=True, check=False)
  except OSError as err:
    raise error(f"{path}: cannot run ffmpeg {cmd[0]}: {err}") from None
  stderr = result.stderr.decode("utf-8", errors="replace")
  if result.returncode != 0:
    raise error(f"{path}: ffmpeg cannot decode it (exit {result.returncode}): "
                f"{ffmpeg_reason(stderr)}")
  return result.stdout, stderr


def ffmpeg_stream(stderr: str) -> Dict[str, Any]:
  """What ffmpeg said of the first video stream: codec, width, height, fps, warnings."""
  stream = _STREAM.search(stderr)
  fps = _FPS.search(stderr[stream.start():]) if stream else None
  return {"codec": stream.group(1) if stream else None,
          "width": int(stream.group(2)) if stream else None,
          "height": int(stream.group(3)) if stream else None,
          "fps": float(fps.group(1)) if fps else None,
          "messages": [_ADDRESS.sub("", l).strip() for l in stderr.splitlines()
                       if _FFMPEG_WARNING.search(l)]}


def is_clip(path: str) -> bool:
  """Whether `path` is a file that read_clip takes by its suffix (folders of frames aside)."""
  return os.path.splitext(path)[1].lower() in CLIP_SUFFIXES


def read_clip(path: str, image_size: Optional[int], channels: Optional[int], crop: str = "center",
              max_frames: Optional[int] = None) -> Clip:
  """The frames of `path` (see the module docstring) as uint8 [T, S, S, C]; at most max_frames.

  image_size None keeps the frames as they are (no crop, no resize); channels None keeps the
  source's (3 for video files).
  """
  if crop not in CROPS:
    raise ValueError(f"--crop={crop!r}: must be one of {', '.join(CROPS)}")
  if channels not in (1, 3, None):
    raise ValueError(f"channels must be 1 or 3, got {channels!r}")
  if image_size is not None and image_size < 1:
    raise ValueError(f"image_size must be positive, got {image_size!r}")
  if max_frames is not None and max_frames < 1:
    raise ValueError(f"max_frames must be positive, got {max_frames!r}")
  if os.path.isdir(path):
    return _from_images(path, image_size, channels, crop, max_frames)
  if not os.path.isfile(path):
    raise VideoReadError(f"{path}: no such file or folder")
  suffix = os.path.splitext(path)[1].lower()
  if suffix in VIDEO_SUFFIXES:
    return _from_ffmpeg(path, image_size, channels, crop, max_frames)
  if suffix == GIF_SUFFIX:
    return _from_gif(path, image_size, channels, crop, max_frames)
  if suffix in ARRAY_SUFFIXES:
    return _from_array(path, image_size, channels, crop, max_frames)
  raise VideoReadError(f"{path}: not a clip svg_tf reads (video files "
                       f"{' '.join(VIDEO_SUFFIXES)}, {GIF_SUFFIX}, {' '.join(ARRAY_SUFFIXES)}, or a "
                       f"folder of {' '.join(IMAGE_SUFFIXES)} frames)")


def _steps(path, kind, width, height, image_size, channels_in, channels, crop, count, fps,
           **extra) -> Dict[str, Any]:
  side = min(width, height)
  if image_size is None:
    cropped, resized = "none", f"none: {width}x{height} kept"
  elif crop == "center":
    x, y = (width - side) // 2, (height - side) // 2
    cropped = f"centre square {side}x{side} at x={x}, y={y} of {width}x{height}"
    resized = f"{side}x{side} -> {image_size}x{image_size}, bicubic"
  else:
    cropped = f"none: the whole {width}x{height} frame squashed to a square"
    resized = f"{width}x{height} -> {image_size}x{image_size}, bicubic"
  colour = {(1, 1): "grey kept", (3, 3): "colour kept", (3, 1): "colour to grey (luma)",
            (1, 3): "grey repeated to 3 channels"}[channels_in, channels]
  return dict({"source": os.path.abspath(path), "format": kind, "native_size": [width, height],
               "native_channels": channels_in, "fps": fps, "frames": count, "crop": cropped,
               "resize": resized, "channels": colour}, **extra)


# ---------------------------------------------------------------------------------------- video
def _from_ffmpeg(path, image_size, channels, crop, max_frames) -> Clip:
  channels = channels or 3
  args = []
  if image_size is not None:
    args += ["-vf", ("crop=min(iw\\,ih):min(iw\\,ih)," if crop == "center" else "") +
             f"scale={image_size}:{image_size}:flags=bicubic"]
  args += ["-pix_fmt", "gray" if channels == 1 else "rgb24"]
  if max_frames:
    args += ["-frames:v", str(max_frames)]
  raw, stderr = ffmpeg_raw(path, args)
  stream = ffmpeg_stream(stderr)
  width, height = stream["width"] or image_size, stream["height"] or image_size
  out_h, out_w = (height, width) if image_size is None else (image_size, image_size)
  if not out_h or not out_w:
    raise VideoReadError(f"{path}: ffmpeg did not say the frame size: {ffmpeg_reason(stderr)}")
  count, rest = divmod(len(raw), out_h * out_w * channels)
  if count == 0 or rest:
    raise VideoReadError(f"{path}: ffmpeg decoded no frames: {ffmpeg_reason(stderr)}")
  frames = np.frombuffer(raw, np.uint8).reshape(count, out_h, out_w, channels)
  steps = _steps(path, f"video ({stream['codec']}, decoded by ffmpeg)", width, height, image_size,
                 channels, channels, crop, count, stream["fps"], ffmpeg_warnings=stream["messages"])
  steps["channels"] = "grey (ffmpeg's gray pixel format: luma)" if channels == 1 else "colour (rgb24)"
  return Clip(frames, stream["fps"], steps)


# ---------------------------------------------------------------- GIFs, arrays, folders of images
def _fit(image: Image.Image, image_size: Optional[int], channels: int, crop: str) -> np.ndarray:
  """One PIL frame cropped, resized and converted: uint8 [S, S, C]."""
  if image_size is not None:
    if crop == "center":
      side = min(image.size)
      left, top = (image.width - side) // 2, (image.height - side) // 2
      image = image.crop((left, top, left + side, top + side))
    image = image.resize((image_size, image_size), Image.BICUBIC)
  array = np.asarray(image.convert("L" if channels == 1 else "RGB"))
  return array[..., None] if channels == 1 else array


def _pil_frames(path, images: List[Image.Image], kind, image_size, channels, crop, fps,
                **extra) -> Clip:
  if not images:
    raise VideoReadError(f"{path}: no frames")
  grey = all(i.mode in ("L", "1", "I", "I;16", "F") for i in images)
  channels = channels or (1 if grey else 3)
  frames = np.stack([_fit(i, image_size, channels, crop) for i in images])
  width, height = images[0].size
  return Clip(frames, fps, _steps(path, kind, width, height, image_size, 1 if grey else 3,
                                  channels, crop, len(frames), fps, **extra))


def _check_frame_size(image: Image.Image, path: str):
  if image.width * image.height > MAX_FRAME_PIXELS:
    raise VideoReadError(f"{path}: a frame of {image.width}x{image.height} pixels, over the "
                         f"{MAX_FRAME_PIXELS} pixels svg_tf decodes (a damaged or forged header?)")


def _from_gif(path, image_size, channels, crop, max_frames) -> Clip:
  try:
    with Image.open(path) as gif:
      images, durations = [], []
      for frame in ImageSequence.Iterator(gif):
        if max_frames and len(images) == max_frames:
          break
        _check_frame_size(frame, path)  # before PIL allocates it
        rgb = frame.convert("RGB")
        array = np.asarray(rgb)
        grey = not (np.any(array[..., 0] != array[..., 1]) or np.any(array[..., 1] != array[..., 2]))
        images.append(rgb.convert("L") if grey else rgb)
        durations.append(frame.info.get("duration"))
  except VideoReadError:
    raise
  except Exception as err:  # pylint: disable=broad-except
    # PIL meets damaged files with many kinds of error (OSError, SyntaxError, IndexError,
    # struct.error, DecompressionBombError, ...): each is this file's fault, said in one line.
    raise VideoReadError(f"{path}: not a readable GIF ({type(err).__name__}: {err})") from None
  if images and any(i.mode == "RGB" for i in images):
    images = [i.convert("RGB") for i in images]  # one colour frame makes the clip colour
  known = [d for d in durations if d]
  fps = round(1000.0 / np.mean(known), 3) if known else None
  return _pil_frames(path, images, "GIF", image_size, channels, crop, fps)


def _read_npy(f, path: str, available: int) -> np.ndarray:
  """The array of an open .npy stream, after checking that its header's size fits the bytes there
  (a forged header must not allocate gigabytes); never unpickled."""
  version = np.lib.format.read_magic(f)
  if version == (1, 0):
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
  elif version == (2, 0):
    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
  else:
    raise VideoReadError(f"{path}: unsupported .npy format version {version}")
  del fortran
  if dtype.hasobject:
    raise VideoReadError(f"{path}: an array of Python objects (never unpickled)")
  declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
  if declared > min(available, MAX_ARRAY_BYTES):
    raise VideoReadError(f"{path}: its header declares {shape} {dtype} ({declared} bytes), more "
                         f"than the {min(available, MAX_ARRAY_BYTES)} bytes it can hold")
  f.seek(0)
  return np.lib.format.read_array(f, allow_pickle=False)


def _load_array(path: str) -> np.ndarray:
  """An .npy's array, or an .npz's `frames` (or only) array."""
  if not path.lower().endswith(".npz"):
    with open(path, "rb") as f:
      return _read_npy(f, path, os.path.getsize(path))
  with zipfile.ZipFile(path) as archive:
    members = {n[:-len(".npy")] if n.endswith(".npy") else n: n for n in archive.namelist()}
    if "frames" not in members and len(members) != 1:
      raise VideoReadError(f"{path}: an .npz needs an array named frames (or only one array); "
                           f"it has {', '.join(members) or 'none'}")
    member = archive.getinfo(members["frames" if "frames" in members else next(iter(members))])
    with archive.open(member) as stream:
      data = stream.read(min(member.file_size, MAX_ARRAY_BYTES) + 1)
  if len(data) > MAX_ARRAY_BYTES:
    raise VideoReadError(f"{path}: its array is over {MAX_ARRAY_BYTES} bytes uncompressed")
  return _read_npy(io.BytesIO(data), path, len(data))


def _from_array(path, image_size, channels, crop, max_frames) -> Clip:
  try:
    array = _load_array(path)
  except VideoReadError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
          NotImplementedError) as err:  # NotImplementedError: a zip compression not supported
    raise VideoReadError(f"{path}: not a readable numpy file ({type(err).__name__}: "
                         f"{err})") from None
  if array.ndim == 5 and array.shape[0] == 1:
    array = array[0]
  if array.ndim == 3:
    array = array[..., None]
  if array.ndim != 4 or array.shape[-1] not in (1, 3) or 0 in array.shape:
    raise VideoReadError(f"{path}: frames must be (T, H, W), (T, H, W, C) or (1, T, H, W, C) "
                         f"with C 1 or 3; got shape {array.shape}")
  if array.dtype == np.bool_:
    array = array.astype(np.uint8) * 255
  elif np.issubdtype(array.dtype, np.floating):
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
      raise VideoReadError(f"{path}: float frames must be finite and in [0, 1]; got "
                           f"{np.nanmin(array)}..{np.nanmax(array)}")
    array = np.round(array * 255.0).astype(np.uint8)
  elif array.dtype != np.uint8:
    raise VideoReadError(f"{path}: frames must be uint8, or float in [0, 1]; got {array.dtype}")
  if max_frames:
    array = array[:max_frames]
  mode = "L" if array.shape[-1] == 1 else "RGB"
  images = [Image.fromarray(f[..., 0] if mode == "L" else f, mode) for f in array]
  return _pil_frames(path, images, f"numpy array {array.dtype} {list(array.shape)}", image_size,
                     channels, crop, None)


def _natural_key(name: str):
  return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _from_images(path, image_size, channels, crop, max_frames) -> Clip:
  names = sorted((n for n in os.listdir(path) if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES),
                 key=_natural_key)
  if not names:
    raise VideoReadError(f"{path}: a folder without {'/'.join(IMAGE_SUFFIXES)} frames")
  names = names[:max_frames] if max_frames else names
  images = []
  for name in names:
    try:
      with Image.open(os.path.join(path, name)) as image:
        _check_frame_size(image, os.path.join(path, name))
        image.load()
        images.append(image.convert("L") if image.mode in ("L", "1", "I", "I;16", "F")
                      else image.convert("RGB"))
    except VideoReadError:
      raise
    except Exception as err:  # pylint: disable=broad-except  (see _from_gif)
      raise VideoReadError(f"{os.path.join(path, name)}: not a readable image "
                           f"({type(err).__name__}: {err})") from None
    if images[-1].size != images[0].size:
      raise VideoReadError(f"{os.path.join(path, name)}: {images[-1].size[0]}x"
                           f"{images[-1].size[1]}, but {names[0]} is {images[0].size[0]}x"
                           f"{images[0].size[1]}: frames must have one size")
  if any(i.mode == "RGB" for i in images):
    images = [i.convert("RGB") for i in images]
  return _pil_frames(path, images, f"folder of {len(names)} image files", image_size, channels,
                     crop, None, first_frame=names[0], last_frame=names[-1])
