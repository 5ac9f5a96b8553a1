"""A folder of people's videos as a dataset: conversion, stable split, skipped files, streams, CLI."""

import filecmp
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pipelines import tfrecord, videos
from pipelines.fixtures import videos as fixture
from tests.conftest import ROOT

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def make_folder(root, extra=()):
  """Real clips of several kinds, sizes, rates and colour modes, one corrupt, one too short."""
  root.mkdir(parents=True, exist_ok=True)
  (root / "walks" / "day1").mkdir(parents=True, exist_ok=True)
  fixture.write_video(str(root / "walks" / "day1" / "a.mp4"),
                      fixture.moving_shapes(30, 48, 80, seed=1), fps=10)
  fixture.write_video(str(root / "walks" / "b.avi"),
                      fixture.moving_shapes(26, 64, 64, colour=False, seed=2), fps=25)
  fixture.write_video(str(root / "c.mov"), fixture.moving_shapes(24, 96, 72, seed=3), fps=30)
  fixture.write_video(str(root / "d.mkv"), fixture.moving_shapes(22, 40, 40, seed=4), fps=12)
  fixture.write_video(str(root / "e.webm"), fixture.moving_shapes(21, 32, 48, seed=5), fps=15)
  np.save(root / "f.npy", fixture.moving_shapes(23, 64, 64, colour=False, seed=6)[..., :1])
  frames = root / "g_frames"
  frames.mkdir(exist_ok=True)
  for t, frame in enumerate(fixture.moving_shapes(25, 50, 50, seed=7)):
    Image.fromarray(frame).save(frames / f"{t:03d}.png")
  fixture.write_corrupt_video(str(root / "broken.mp4"))
  fixture.write_video(str(root / "short.mp4"), fixture.moving_shapes(2, 32, 32, seed=8))
  for name in extra:
    fixture.write_video(str(root / name), fixture.moving_shapes(20, 32, 32, seed=9), fps=8)
  return str(root)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  src = make_folder(tmp_path_factory.mktemp("clips") / "src")
  out = str(tmp_path_factory.mktemp("converted") / "one_worker")
  infos = videos.convert(src, out, image_size=64, channels=3, test_fraction=0.3, seed=4,
                         workers=1, videos_per_shard=3)
  return src, out, infos


def test_every_clip_is_converted_or_named_as_skipped(converted):
  src, out, infos = converted
  names = {v["name"] for s in videos.SPLITS for v in infos[s]["videos"]}
  assert names == {"walks/day1/a.mp4", "walks/b.avi", "c.mov", "d.mkv", "e.webm", "f.npy",
                   "g_frames"}
  skipped = {s["name"]: s["reason"] for i in infos.values() for s in i["skipped"]}
  assert set(skipped) == {"broken.mp4", "short.mp4"}
  assert "ffmpeg cannot decode it" in skipped["broken.mp4"]
  assert skipped["short.mp4"] == "2 frames, fewer than --min_frames=20"
  lengths = {v["name"]: v["num_frames"] for s in videos.SPLITS for v in infos[s]["videos"]}
  assert lengths == {"walks/day1/a.mp4": 30, "walks/b.avi": 26, "c.mov": 24, "d.mkv": 22,
                     "e.webm": 21, "f.npy": 23, "g_frames": 25}
  for split in videos.SPLITS:
    records = list(tfrecord.video_dataset(os.path.join(out, split), shuffle_files=False))
    assert [int(r["frames"].shape[0]) for r in records] == [
        v["num_frames"] for v in infos[split]["videos"]]
    assert all(r["frames"].shape[1:] == (64, 64, 3) for r in records)
    np.testing.assert_array_equal(records[0]["sequences"].numpy(),
                                  [[0, infos[split]["videos"][0]["num_frames"]]])


def test_the_split_is_by_file_and_stable_when_videos_are_added(converted, tmp_path):
  src, _, infos = converted
  before = {v["name"]: s for s in videos.SPLITS for v in infos[s]["videos"]}
  assert sorted(before.values()).count("test") >= 1 and "train" in before.values()
  names = list(before) + [f"new/clip_{i}.mp4" for i in range(40)]
  after = videos.split_clips(names, seed=4, test_fraction=0.3, test_list=None)
  for split in videos.SPLITS:
    assert {n for n in after[split] if n in before} == {n for n, s in before.items() if s == split}
  share = len([n for n in after["test"] if n.startswith("new/")]) / 40
  assert 0.1 < share < 0.5  # about the fraction asked for
  listed = videos.split_clips(names, 0, None, ["c.mov", "nowhere.mp4"])
  assert listed["test"] == ["c.mov"]


def test_workers_do_not_change_the_files_and_a_rerun_keeps_complete_shards(converted, tmp_path):
  src, out, infos = converted
  other = str(tmp_path / "three_workers")
  again = videos.convert(src, other, image_size=64, channels=3, test_fraction=0.3, seed=4,
                         workers=3, videos_per_shard=3)
  for split in videos.SPLITS:
    for shard in infos[split]["shards"]:
      assert filecmp.cmp(os.path.join(out, split, shard), os.path.join(other, split, shard),
                         shallow=False)
    assert again[split]["videos"] == infos[split]["videos"]
  stamps = {f: os.stat(os.path.join(other, "train", f)).st_mtime_ns
            for f in infos["train"]["shards"]}
  videos.convert(src, other, image_size=64, channels=3, test_fraction=0.3, seed=4, workers=2,
                 videos_per_shard=3)
  assert stamps == {f: os.stat(os.path.join(other, "train", f)).st_mtime_ns
                    for f in infos["train"]["shards"]}
  with pytest.raises(FileExistsError, match="made with channels=3 \\(now 1\\)"):
    videos.convert(src, other, image_size=64, channels=1, test_fraction=0.3, seed=4)


def test_training_windows_and_seeded_test_clips(converted):
  _, out, infos = converted
  windows = videos.train_dataset(out, seq_len=20, seed=1).take(4)
  frames = [w["frames"].numpy() for w in windows]
  assert all(f.shape == (20, 64, 64, 3) and 0 <= f.min() and f.max() <= 1 for f in frames)
  clips = videos.test_clips(out, clip_len=20, num_clips=6)
  again = videos.test_clips(out, clip_len=20, num_clips=6)
  np.testing.assert_array_equal(clips.frames, again.frames)
  assert clips.frames.shape == (6, 20, 64, 64, 3)
  assert set(clips.videos) <= {v["name"] for v in infos["test"]["videos"]}
  np.testing.assert_array_equal(videos.test_clips(out, 20, num_clips=6, max_clips=2).frames,
                                clips.frames[:2])
  with pytest.raises(ValueError, match="no test video has 500 frames"):
    videos.test_clips(out, clip_len=500)


def test_cli_converts_and_refuses_bad_input_in_one_line(tmp_path):
  src = make_folder(tmp_path / "src")
  out = tmp_path / "out"
  cmd = [sys.executable, "-m", "pipelines.videos", f"--src={src}", f"--out={out}",
         "--channels=1", "--test_fraction=0.5", "--workers=2", "--min_frames=21"]
  result = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "converted into" in result.stdout and "ETA" not in result.stdout
  assert "eta" in result.stderr and "video 1/" in result.stderr  # progress per video
  info = json.load(open(out / "train" / "dataset_info.json"))
  assert info["channels"] == 1 and info["min_frames"] == 21
  missing = subprocess.run(cmd[:3] + [f"--src={tmp_path / 'nothing'}", f"--out={out}"], cwd=ROOT,
                           env=ENV, capture_output=True, text=True, timeout=300)
  assert missing.returncode == 1 and "no such folder" in missing.stderr
  assert "Traceback" not in missing.stderr
