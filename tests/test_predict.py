"""predict.py: futures of any clip, with its outputs, its statement of every step, and its errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import svg_tf
from pipelines.fixtures import videos as fixture
from svg_tf import config as config_lib
from svg_tf import export, video_files
from tests.conftest import ROOT
from tests.test_export import TINY, sensitised_model, write_run

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A tiny grey 64x64 SVG-LP (n_past 2) whose latents visibly change the frames."""
  path = str(tmp_path_factory.mktemp("run"))
  write_run(path, sensitised_model(config_lib.preset("smmnist", **TINY)))
  return path


def predict(*flags, timeout=300):
  return subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), *flags], cwd=ROOT,
                        env=ENV, capture_output=True, text=True, timeout=timeout)


def test_futures_of_a_colour_mp4_for_a_grey_model(run_dir, tmp_path):
  clip = fixture.write_video(str(tmp_path / "clip.mp4"), fixture.moving_shapes(9, 48, 80, seed=3),
                             fps=10)
  out = tmp_path / "futures"
  result = predict(f"--model={run_dir}", f"--video={clip}", "--num_samples=3", "--num_future=4",
                   "--start=1", "--seed=5", f"--out={out}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "best SSIM" in result.stdout and "frames after frames 1..2" in result.stdout
  assert "predict | 12/12 frames" in result.stderr and "ETA" in result.stderr
  assert sorted(os.listdir(out)) == ["futures.gif", "futures.mp4", "futures.npz", "predict.json"]
  saved = np.load(out / "futures.npz")
  assert saved["futures"].shape == (3, 4, 64, 64, 1) and saved["futures"].dtype == np.uint8
  expected = video_files.read_clip(clip, 64, 1)  # centre-cropped, grey: what the model saw
  np.testing.assert_array_equal(saved["context"], expected.frames[1:3])
  np.testing.assert_array_equal(saved["real_future"], expected.frames[3:7])
  # The same seed through the Python API gives the same futures.
  again = svg_tf.load(run_dir).sample(expected.frames[None, 1:3], 4, num_samples=3, seed=5)[0]
  assert np.abs(saved["futures"].astype(int) - np.round(again * 255)).max() <= 1
  info = json.load(open(out / "predict.json"))
  assert info["samples"]["seed"] == 5 and info["context"]["frames"] == [1, 2]
  assert info["clip"]["crop"] == "centre square 48x48 at x=16, y=0 of 80x48"
  assert info["clip"]["channels"].startswith("grey") and info["clip"]["native_size"] == [80, 48]
  scores = info["scores"]
  assert scores["frames_compared"] == 4 and len(scores["ssim"]) == 3
  assert scores["best_sample"]["ssim"] == int(np.argmax(scores["ssim"]))
  assert scores["ssim"] == pytest.approx(np.mean(scores["ssim_per_frame"], axis=1), abs=1e-5)
  with Image.open(out / "futures.gif") as gif:  # real future + 3 samples, 2 + 4 frames each
    assert gif.size == (4 * 64 + 5 * 2, 64 + 2 * 2) and gif.n_frames == 6
  movie = video_files.read_clip(str(out / "futures.mp4"), None, 3)
  assert movie.frames.shape == (6, 68, 266, 3)


def test_an_export_and_a_clip_without_future_frames(run_dir, tmp_path):
  export_dir = str(tmp_path / "exports")
  export.export_run(run_dir, export_dir, "svg")
  frames = (fixture.moving_shapes(2, 64, 64, colour=False, seed=4)[..., :1])
  clip = tmp_path / "two_frames.npy"
  np.save(clip, frames)
  out = tmp_path / "out"
  result = predict(f"--model={export_dir}/svg", f"--video={clip}", "--num_samples=2",
                   "--num_future=3", "--seed=7", f"--out={out}")
  assert result.returncode == 0, result.stderr[-3000:]
  info = json.load(open(out / "predict.json"))
  assert info["scores"] is None and info["future"]["real_frames_after_context"] == 0
  assert info["model"]["loaded"].endswith(os.path.join("svg", "1"))
  with Image.open(out / "futures.gif") as gif:  # no real-future tile
    assert gif.size == (2 * 64 + 3 * 2, 64 + 2 * 2)


def test_bad_input_is_one_line_exit_1_and_nothing_written(run_dir, tmp_path):
  clip = fixture.write_video(str(tmp_path / "clip.mp4"), fixture.moving_shapes(6, 32, 32))
  broken = fixture.write_corrupt_video(str(tmp_path / "broken.mp4"))
  empty = tmp_path / "empty"
  empty.mkdir()
  cases = [
      ([f"--model={run_dir}", f"--video={clip}", "--num_samples=0"], "--num_samples=0: must be"),
      ([f"--model={run_dir}", f"--video={clip}", "--num_future=1001"], "--num_future=1001"),
      ([f"--model={run_dir}", f"--video={tmp_path / 'none.mp4'}"], "no such file or folder"),
      ([f"--model={empty}", f"--video={clip}"], "is neither a train.py run directory"),
      ([f"--model={run_dir}", f"--video={broken}"], "ffmpeg cannot decode it"),
      ([f"--model={run_dir}", f"--video={clip}", "--start=5"],
       "has 6 frames; --start=5 plus the model's 2 context frames need 7"),
  ]
  for flags, message in cases:
    out = tmp_path / "out"
    result = predict(*flags, f"--out={out}")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, (flags, result.stderr[-2000:])
    assert lines[-1].startswith("error: ") and message in lines[-1], (flags, lines[-1])
    assert "Traceback" not in result.stderr and not out.exists(), flags
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
