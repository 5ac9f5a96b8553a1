"""tensorflow-datasets builders for SM-MNIST, KTH and any folder of videos.

    import pipelines.tfds_builders  # registers the builders below with tfds
    import tensorflow_datasets as tfds
    ds = tfds.load('stochastic_moving_mnist', split='test')          # generated from MNIST
    ds = tfds.load('kth_actions/64x64', split='train',                # from the raw AVIs
                   download_and_prepare_kwargs=dict(download_config=tfds.download.DownloadConfig(
                       manual_dir='/path/to/kth_raw')))

`stochastic_moving_mnist` reuses `pipelines.smmnist.fixed_sequences` (record i of a split is
sequence (seed, i) of that split's fixed seed, from that split's MNIST digits; the *_srvp configs
hold SRVP's variant, with SRVP's own test set), and `kth_actions`
reuses `pipelines.kth`'s file discovery, `00sequences.txt` parser and ffmpeg decoder: one home for
each, so a tfds user and a `python -m pipelines.kth` user see the same frames.

`video_folder` reads every clip under its `manual_dir` with `pipelines.videos`' discovery, stable
split and `svg_tf.video_files` reader, so it holds the frames of `python -m pipelines.videos`.

`train.py --data_source=tfds --data_dir=TFDS_DATA_DIR` trains from the prepared datasets (and tfds'
own `bair_robot_pushing_small`) through `pipelines.tfds_inputs`.
"""

import dataclasses
import os

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from pipelines import kth, smmnist, videos
from svg_tf import video_files

# ---------------------------------------------------------------------------------------------
# Stochastic Moving MNIST.


@dataclasses.dataclass(eq=False)
class SmmnistConfig(tfds.core.BuilderConfig):
  """Sizes and seeds of a generated SM-MNIST variant (record i of a split = sequence (seed, i))."""
  num_digits: int = 2
  seq_len: int = 25
  num_train: int = 60_000
  num_test: int = 5_000
  train_seed: int = 1
  test_seed: int = 42  # SRVP's test-set seed (anchors section 3.3)
  deterministic_bounce: bool = False
  variant: str = "svg"  # pipelines.smmnist.VARIANTS: whose generator


class StochasticMovingMnist(tfds.core.GeneratorBasedBuilder):
  """Stochastic Moving MNIST as the SVG reference generates it (Denton & Fergus, ICML 2018).

  MNIST digits resized to 32x32 move on a 64x64 canvas with integer velocities in -4..4 and get a
  new random velocity at every wall hit; pixels are summed and clipped. The test split is SRVP's
  protocol: 5,000 sequences of 25 frames (5 context -> 20 predicted) from the MNIST test digits,
  seed 42, the same sequences `python -m pipelines.smmnist --split=test --seed=42` writes.
  Trajectories (positions, wall hits) come with every video, for the paper's Fig. 5 and 6.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: the SVG reference's generator, SRVP's test protocol."}
  BUILDER_CONFIGS = [
      SmmnistConfig(name="two_digits", description="2 digits, 25 frames: train 60,000 "
                    "sequences (seed 1, MNIST train digits), test 5,000 (seed 42, test digits)."),
      SmmnistConfig(name="one_digit", num_digits=1, description="As two_digits with one digit."),
      SmmnistConfig(name="two_digits_srvp", variant="srvp", description="SRVP's generator (native "
                    "28x28 digits, exact reflection): train 60,000 sequences (seed 1), test "
                    "SRVP's own test set (seed 42: 5,000 sequences, each test digit once)."),
      SmmnistConfig(name="one_digit_srvp", variant="srvp", num_digits=1, num_test=10_000,
                    description="As two_digits_srvp with one digit (10,000 test sequences)."),
  ]
  DEFAULT_CONFIG_NAME = "two_digits"

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    t, d = c.seq_len, c.num_digits
    size = smmnist.IMAGE_SIZE
    return self.dataset_info_from_configs(
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Video(shape=(t, size, size, 1)),
            "positions": tfds.features.Tensor(shape=(t, d, 2), dtype=np.int32,
                                              doc="(y, x) top-left of each digit where drawn"),
            "velocities": tfds.features.Tensor(shape=(t, d, 2), dtype=np.int32,
                                               doc="(dy, dx) applied after frame t"),
            "wall_hits": tfds.features.Tensor(shape=(t, d), dtype=np.bool_,
                                              doc="the digit's velocity changes between frame "
                                              "t and t + 1 (a wall hit)"),
            "digit_indices": tfds.features.Tensor(shape=(d,), dtype=np.int64),
            "labels": tfds.features.Tensor(shape=(d,), dtype=np.int64),
        }),
        supervised_keys=None,
        disable_shuffling=True,  # record i is sequence (seed, i), as in the native TFRecords
        homepage="https://github.com/edenton/svg",
        citation=CITATION_SVG,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # digits come from pipelines.mnist_digits (offline wheel, then tfds mnist)
    c = self.builder_config
    return {
        "train": self._generate_examples("train", c.num_train, c.train_seed),
        "test": self._generate_examples("test", c.num_test, c.test_seed),
    }

  def _generate_examples(self, split, count, seed):
    c = self.builder_config
    sequences, digits = smmnist.fixed_sequences(c.variant, split, count, c.seq_len, seed,
                                                c.num_digits, c.deterministic_bounce)
    for i, seq in enumerate(sequences):
      yield i, {
          "video": smmnist.to_uint8(seq.frames),
          "positions": seq.positions,
          "velocities": seq.velocities,
          "wall_hits": seq.wall_hits,
          "digit_indices": seq.digit_indices,
          "labels": digits.labels[seq.digit_indices].astype(np.int64),
      }


CITATION_SVG = """@inproceedings{denton2018stochastic,
  title={Stochastic Video Generation with a Learned Prior},
  author={Denton, Emily and Fergus, Rob},
  booktitle={International Conference on Machine Learning},
  year={2018}
}"""


# ---------------------------------------------------------------------------------------------
# KTH actions, from the raw AVIs the user downloaded.


@dataclasses.dataclass(eq=False)
class KthConfig(tfds.core.BuilderConfig):
  image_size: int = 64


class KthActions(tfds.core.GeneratorBasedBuilder):
  """KTH human actions (Schuldt et al., 2004) for video prediction, decoded from the raw AVIs.

  One example per video: the whole video squashed to SxS grey frames (as the SVG reference's
  `ffmpeg -s SxS`), its person, action and scenario, and the sub-sequence ranges of
  00sequences.txt (0-based, half-open; the whole video when a video is not listed). Splits follow
  SVG and SRVP: persons 1-20 train, 21-25 test. Videos listed without a file (the download lacks
  person13_handclapping_d3) and files ffmpeg cannot decode are skipped and named: the missing ones
  in one warning before generation, the undecodable ones in one warning per split once it is
  decoded (tfds generates the splits one after another; `python -m pipelines.kth` lists both in
  one warning and in dataset_info.json).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: whole videos with 00sequences.txt ranges."}
  BUILDER_CONFIGS = [
      KthConfig(name="64x64", image_size=64, description="64x64 frames (SRVP, SLAMP, MCVD)."),
      KthConfig(name="128x128", image_size=128, description="128x128 frames (the SVG paper)."),
  ]
  DEFAULT_CONFIG_NAME = "64x64"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download the six zips of http://www.nada.kth.se/cvap/actions/ (walking, jogging, running,
  boxing, handwaving, handclapping) and 00sequences.txt from the same page, and unpack them into
  `manual_dir` (flat, or one folder per action): personNN_<action>_dK_uncomp.avi files plus
  00sequences.txt. Pass it with
  tfds.download.DownloadConfig(manual_dir=...) (default: ~/tensorflow_datasets/downloads/manual).
  """

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    return self.dataset_info_from_configs(
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Video(shape=(None, size, size, 1)),
            "person": tfds.features.Scalar(dtype=np.int32, doc="1..25"),
            "action": tfds.features.ClassLabel(names=list(kth.ACTIONS)),
            "scenario": tfds.features.Scalar(dtype=np.int32, doc="1..4 (d1 .. d4)"),
            "sequences": tfds.features.Tensor(shape=(None, 2), dtype=np.int32,
                                              doc="0-based half-open frame ranges"),
        }),
        homepage="https://www.csc.kth.se/cvap/actions/",
        citation=CITATION_KTH,
    )

  def _split_generators(self, dl_manager):
    raw_dir = os.fspath(dl_manager.manual_dir)
    paths = kth.find_videos(raw_dir)
    listed = kth.parse_sequences_file(kth.find_sequences_file(raw_dir))
    plan = kth.plan_splits(paths, listed)
    skipped = [s for split in kth.SPLITS for s in plan.skipped[split]] + plan.ignored
    if skipped:
      logging.warning(  # the AVIs that fail to decode are listed after decoding
          "kth_actions | skipping %d listed videos:\n%s", len(skipped),
          "\n".join(f"  {s['name']}: {s['reason']}" for s in skipped))
    return {split: self._generate_examples(plan.split_videos[split], paths, listed)
            for split in kth.SPLITS}

  def _generate_examples(self, names, paths, listed):
    undecodable = []
    for name in names:
      try:
        frames = kth.decode_video(paths[name], self.builder_config.image_size)
      except kth.VideoDecodeError as err:
        undecodable.append(f"  {name}: {err}")
        continue
      person, action, scenario = kth.parse_video_name(name)
      sequences, _ = kth.clip_ranges(listed.get(name) or [(0, len(frames))], len(frames))
      yield name, {"video": frames, "person": person, "action": action, "scenario": scenario,
                   "sequences": sequences}
    if undecodable:
      logging.warning("kth_actions | skipped %d videos ffmpeg cannot decode:\n%s",
                      len(undecodable), "\n".join(undecodable))


CITATION_KTH = """@inproceedings{schuldt2004recognizing,
  title={Recognizing human actions: a local SVM approach},
  author={Schuldt, Christian and Laptev, Ivan and Caputo, Barbara},
  booktitle={International Conference on Pattern Recognition},
  year={2004}
}"""


# ---------------------------------------------------------------------------------------------
# A folder of people's videos.


@dataclasses.dataclass(eq=False)
class VideoFolderConfig(tfds.core.BuilderConfig):
  """How clips become frames, and the split (as `python -m pipelines.videos`' flags)."""
  image_size: int = 64
  channels: int = 3
  crop: str = "center"
  test_fraction: float = 0.1
  seed: int = 0
  min_frames: int = videos.DEFAULT_MIN_FRAMES


class VideoFolder(tfds.core.GeneratorBasedBuilder):
  """Every clip under `manual_dir` (video files, GIFs, .npy/.npz, folders of frames), one example
  each: the whole clip cropped, resized and coloured as `svg_tf.video_files.read_clip` does, and
  its relative path. The split is `pipelines.videos`' stable hash of that path; clips that cannot
  be read or are shorter than min_frames are skipped, named in one warning per split.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      VideoFolderConfig(name=f"{size}x{size}_{name}", image_size=size, channels=channels,
                        description=f"{size}x{size} {name} frames, centre-cropped")
      for size in videos.IMAGE_SIZES for name, channels in (("rgb", 3), ("grey", 1))]
  DEFAULT_CONFIG_NAME = "64x64_rgb"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put your clips under `manual_dir`, at any depth: video files (.mp4 .avi .mov .mkv .webm),
  GIFs, .npy/.npz arrays, or folders of PNG/JPEG frames. Pass it with
  tfds.download.DownloadConfig(manual_dir=...).
  """

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return self.dataset_info_from_configs(
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Video(shape=(None, c.image_size, c.image_size, c.channels)),
            "name": tfds.features.Text(doc="the clip's path relative to manual_dir"),
        }),
        disable_shuffling=True,  # examples in name order, as in pipelines.videos' shards
    )

  def _split_generators(self, dl_manager):
    c = self.builder_config
    paths = videos.find_clips(os.fspath(dl_manager.manual_dir))
    splits = videos.split_clips(list(paths), c.seed, c.test_fraction, None)
    return {split: self._generate_examples(split, splits[split], paths) for split in videos.SPLITS}

  def _generate_examples(self, split, names, paths):
    c = self.builder_config
    skipped = []
    for name in names:
      try:
        clip = video_files.read_clip(paths[name], c.image_size, c.channels, c.crop)
      except ValueError as err:
        skipped.append(f"  {name}: cannot be decoded: {err}")
        continue
      if len(clip.frames) < c.min_frames:
        skipped.append(f"  {name}: {len(clip.frames)} frames, fewer than min_frames="
                       f"{c.min_frames}")
        continue
      yield name, {"video": clip.frames, "name": name}
    if skipped:
      logging.warning("video_folder | %s | skipped %d clips:\n%s", split, len(skipped),
                      "\n".join(skipped))
