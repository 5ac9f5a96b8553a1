"""People's clips as model input: every format, crop, resize, channels, and one clear error each."""

import os

import numpy as np
import pytest
from PIL import Image

from pipelines.fixtures import videos
from svg_tf import media, video_files
from svg_tf.video_files import VideoReadError, read_clip


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mov", ".mkv", ".webm"])
def test_video_files_decode_cropped_resized_and_in_the_right_channels(tmp_path, suffix):
  frames = videos.moving_shapes(12, 48, 80, colour=True, seed=1)  # 80 wide, 48 high
  path = videos.write_video(str(tmp_path / f"clip{suffix}"), frames, fps=12)
  clip = read_clip(path, 32, 3)
  assert clip.frames.shape == (12, 32, 32, 3) and clip.frames.dtype == np.uint8
  # the centre 48x48 square, resized: compare with PIL doing the same to the encoded frames
  expected = np.stack([np.asarray(Image.fromarray(f[:, 16:64]).resize((32, 32), Image.BICUBIC))
                       for f in frames])
  assert np.abs(clip.frames.astype(int) - expected).mean() < 6  # codec noise and scaler only
  assert clip.fps == pytest.approx(12)
  assert clip.steps["native_size"] == [80, 48] and clip.steps["frames"] == 12
  assert clip.steps["crop"] == "centre square 48x48 at x=16, y=0 of 80x48"
  squashed = read_clip(path, 32, 1, crop="none")
  assert squashed.frames.shape == (12, 32, 32, 1) and squashed.steps["crop"].startswith("none")
  grey = np.stack([np.asarray(Image.fromarray(f).convert("L").resize((32, 32), Image.BICUBIC))
                   for f in frames])[..., None]
  assert np.abs(squashed.frames.astype(int) - grey).mean() < 6
  assert read_clip(path, 32, 1, max_frames=5).frames.shape[0] == 5


def test_gif_arrays_and_frame_folders_give_the_same_clip(tmp_path):
  frames = videos.moving_shapes(5, 40, 40, colour=False, seed=2)[..., :1]  # grey, square
  media.save_gif(str(tmp_path / "v.gif"), frames)
  np.save(tmp_path / "v.npy", frames)
  np.savez(tmp_path / "v.npz", frames=frames.astype(np.float32) / 255.0)
  folder = tmp_path / "frames"
  folder.mkdir()
  for t, frame in enumerate(frames):  # natural order: frame_9 before frame_10
    Image.fromarray(frame[..., 0]).save(folder / f"frame_{[10, 9, 11, 2, 12][t]}.png")
  order = np.argsort([10, 9, 11, 2, 12])
  clips = {name: read_clip(str(tmp_path / name), 40, 1) for name in ("v.gif", "v.npy", "v.npz")}
  clips["frames"] = read_clip(str(folder), 40, 1)
  for name, clip in clips.items():
    expected = frames[order] if name == "frames" else frames
    np.testing.assert_array_equal(clip.frames, expected, err_msg=name)  # no resize: exact
    assert clip.steps["native_channels"] == 1 and clip.steps["channels"] == "grey kept"
  colour = read_clip(str(tmp_path / "v.npy"), 20, 3)
  assert colour.frames.shape == (5, 20, 20, 3) and colour.steps["channels"].startswith("grey rep")
  np.testing.assert_array_equal(colour.frames[..., 0], colour.frames[..., 2])
  kept = read_clip(str(tmp_path / "v.npy"), None, None)  # as in the file
  np.testing.assert_array_equal(kept.frames, frames)


@pytest.mark.parametrize("make, message", [
    (lambda d: videos.write_corrupt_video(str(d / "broken.mp4")), "ffmpeg cannot decode it"),
    (lambda d: str(d / "missing.mp4"), "no such file or folder"),
    (lambda d: _write(d / "clip.txt", b"hello"), "not a clip svg_tf reads"),
    (lambda d: _write(d / "bad.gif", b"GIF89a not really"), "not a readable GIF"),
    (lambda d: _save(d / "a.npy", np.zeros((4, 8, 8, 2), np.uint8)), "C 1 or 3"),
    (lambda d: _save(d / "b.npy", np.full((4, 8, 8), 2.0)), "float frames must be finite and in"),
    (lambda d: _save(d / "c.npy", np.zeros((4, 8, 8), np.int64)), "must be uint8, or float"),
    (lambda d: _save(d / "e.npy", np.zeros((0, 8, 8), np.uint8)), "got shape"),
    (lambda d: str(d), "a folder without"),
])
def test_unreadable_clips_are_one_error_naming_the_file(tmp_path, make, message):
  path = make(tmp_path)
  with pytest.raises(VideoReadError, match=message) as err:
    read_clip(path, 32, 1)
  assert os.path.basename(path) in str(err.value) and "\n" not in str(err.value)


def test_frames_of_different_sizes_in_a_folder_are_refused(tmp_path):
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "1.png")
  Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "2.png")
  with pytest.raises(VideoReadError, match="2.png: 8x9, but 1.png is 8x8"):
    read_clip(str(tmp_path), 8, 1)


def test_an_empty_video_file_is_refused(tmp_path):
  path = videos.write_video(str(tmp_path / "short.mp4"), videos.moving_shapes(2, 16, 16))
  assert read_clip(path, 16, 3).frames.shape[0] == 2
  with pytest.raises(ValueError, match="max_frames must be positive"):
    read_clip(path, 16, 3, max_frames=0)
  assert video_files.is_clip(path) and not video_files.is_clip(str(tmp_path / "x.txt"))


def _write(path, data):
  path.write_bytes(data)
  return str(path)


def _save(path, array):
  np.save(path, array)
  return str(path)
