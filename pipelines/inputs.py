"""What the front ends ask of the pipelines, per dataset: training batches, previews, the test set.

`train_input_fn` returns the function that `tf.distribute` calls once per input pipeline; it
batches with the per-replica batch size and gives each pipeline its own part of the stream. It
starts the stream at `start_index` (sequences already trained on): SM-MNIST's generated stream
continues exactly where it stopped (pipeline w of W takes sequences start + w, start + w + W, ...,
so any number of workers trains on the same global batches); the shuffled TFRecord streams
(SM-MNIST --data_dir, BAIR, KTH) are re-seeded from (seed, start_index), so a resumed run draws
fresh windows instead of replaying the first ones, but not the windows the uninterrupted run would
have drawn. (Checkpointing their iterators instead would store the shuffle buffers, ~80-100 MB per
worker and checkpoint, and cannot hold the py_function of skip_bad_records.)

Bad records (TFRecord sources): a truncated or corrupted file, a record of the wrong size or shape
fails with an error naming the file and record; `explain_data_error` turns the error that iterating
the training stream raised into a `tfrecord.CorruptRecordError` naming them, whatever the dataset.
With skip_bad_records they are dropped, logged and counted in one log for all sources
(`tfrecord.skipped_records()`). Frames are uint8 on disk in every native format, so NaN or
out-of-range pixels cannot come from them; the trainer still refuses any batch that is not finite
or outside [0, 1] (svg_tf/trainer.py).

Data sources per dataset (`data_dir`):
  smmnist  none: generated on the fly from MNIST; or `python -m pipelines.smmnist` TFRecords
  bair     the download: a folder holding softmotion30_44k/{train,test}/*.tfrecords
  kth      the TFRecords of `python -m pipelines.kth --data_dir=RAW --out=DIR` (DIR)
  videos   the TFRecords of `python -m pipelines.videos --src=FOLDER --out=DIR` (DIR)
With `source="tfds"`, `data_dir` is a tensorflow-datasets data_dir holding the prepared
`stochastic_moving_mnist`, `kth_actions` or `bair_robot_pushing_small` (read by
pipelines.tfds_inputs; the first two are built by pipelines.tfds_builders).
"""

import dataclasses
import os
from typing import Any, Callable, Optional

import numpy as np
import tensorflow as tf

from pipelines import bair, kth, smmnist, tfds_inputs, tfrecord, videos
# What the front ends catch and report, from the mechanism every TFRecord source shares: the error
# naming a bad record's file and index, and the one log of the records skip_bad_records dropped.
from pipelines.tfrecord import CorruptRecordError, skipped_records  # pylint: disable=unused-import

SOURCES = ("native", "tfds")


@dataclasses.dataclass
class TestVideos:
  """A fixed test set: frames (V, T, H, W, C) float32 in [0, 1] and, for SM-MNIST, trajectories."""
  frames: np.ndarray
  positions: Optional[np.ndarray] = None  # (V, T, digits, 2) top-left (y, x) of each digit
  wall_hits: Optional[np.ndarray] = None  # (V, T, digits) bool
  digit_indices: Optional[np.ndarray] = None  # (V, digits) into the MNIST test split
  actions: Optional[np.ndarray] = None  # (V, T, action_dim) float32: BAIR's robot actions
  description: str = ""  # what the set is, for metrics.json
  # SM-MNIST: float32 (N, S, S) in [0, 1], the MNIST test digits digit_indices points into (32x32
  # for the svg variant, native 28x28 for srvp): the wall-hit figures draw them again.
  digit_images: Optional[np.ndarray] = None


InputFn = Callable[[tf.distribute.InputContext, int], tf.data.Dataset]


def _require_data_dir(config, data_dir):
  if config.dataset != "smmnist" and not data_dir:
    where = {"bair": "the folder holding softmotion30_44k/ (the extracted "
                     "bair_robot_pushing_dataset_v0.tar)",
             "kth": "the TFRecords folder written by `python -m pipelines.kth --data_dir=RAW "
                    "--out=DIR`",
             "videos": "the folder written by `python -m pipelines.videos --src=FOLDER "
                       "--out=DIR`"}[config.dataset]
    raise ValueError(f"--dataset={config.dataset} needs --data_dir: {where}")


def _check_source(source):
  if source not in SOURCES:
    raise ValueError(f"--data_source={source!r}: must be one of {', '.join(SOURCES)}")


CONVERTED = {"kth": kth, "videos": videos}  # datasets converted once into video_shards folders


def _check_converted_shape(config, data_dir):
  """KTH and video folders: the converted frames must have the model's size and channels."""
  info = CONVERTED[config.dataset].read_converted_info(data_dir, "train")
  size, channels = info["image_size"], info["channels"]
  if size != config.image_size:
    raise ValueError(f"--data_dir={data_dir} holds frames of {size}x{size}; the model is "
                     f"--image_size={config.image_size} (convert again with --image_size="
                     f"{config.image_size}, or train with --image_size={size})")
  if channels != config.channels:
    raise ValueError(f"--data_dir={data_dir} holds frames of {channels} channel(s); the model has "
                     f"{config.channels}")


def _stream_seed(config, start_index: int) -> int:
  """Seed of a shuffled stream that starts after `start_index` sequences (fresh on every resume)."""
  return int(np.random.default_rng([config.seed, start_index]).integers(2**31 - 1))


def _select(config):
  """Dataset elements (dicts) -> what the trainer takes: frames, or (frames, actions)."""
  if config.action_dim:
    return lambda e: (e["frames"], e["actions"])
  return lambda e: e["frames"]


def train_input_fn(config, data_dir: Optional[str] = None, mnist_path: Optional[str] = None,
                   skip_bad_records: bool = False, source: str = "native") -> InputFn:
  """(input_context, start_index) -> dataset of per-replica batches.

  Elements: frames (per-replica batch, n_past + n_future, H, W, C) float32 in [0, 1]; for an
  action-conditioned config the pair (frames, actions (batch, T, action_dim)). Checks that fail
  early (missing folders, wrong frame size or length) raise here, before training starts.
  """
  _check_source(source)
  seq_len = config.seq_len
  if config.action_dim and config.dataset != "bair":
    raise ValueError(f"--use_actions: only BAIR has actions, not --dataset={config.dataset}")
  if skip_bad_records and not (source == "native" and (config.dataset != "smmnist" or data_dir)):
    raise ValueError("--skip_bad_records applies to the records that svg_tf reads from files: "
                     "SM-MNIST TFRecords (--dataset=smmnist --data_dir=...), BAIR and converted "
                     "KTH; not to " + ("--data_source=tfds" if source == "tfds" else
                                       "SM-MNIST generated on the fly"))
  if source == "tfds":
    return tfds_inputs.train_input_fn(config, data_dir)
  if config.dataset == "smmnist":
    return _smmnist_input_fn(config, data_dir, mnist_path, skip_bad_records)
  _require_data_dir(config, data_dir)
  if config.dataset == "bair":
    bair.split_files(data_dir, "train")  # fails now, naming the folder, if there is no data

    def make(ctx, seed):
      return bair.train_dataset(data_dir, seq_len, seed, camera=config.bair_camera,
                                skip_bad_records=skip_bad_records,
                                num_shards=ctx.num_input_pipelines,
                                shard_index=ctx.input_pipeline_id)
  else:
    _check_converted_shape(config, data_dir)

    def make(ctx, seed):
      return CONVERTED[config.dataset].train_dataset(
          data_dir, seq_len, seed, num_shards=ctx.num_input_pipelines,
          shard_index=ctx.input_pipeline_id, skip_bad_records=skip_bad_records)

  def input_fn(ctx: tf.distribute.InputContext, start_index: int) -> tf.data.Dataset:
    batch = ctx.get_per_replica_batch_size(config.batch_size)
    ds = make(ctx, _stream_seed(config, start_index)).map(
        _select(config), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

  return input_fn


def _smmnist_input_fn(config, data_dir, mnist_path, skip_bad_records=False) -> InputFn:
  """SM-MNIST: generated on the fly (sequence i depends only on (seed, i)), or random windows of
  `python -m pipelines.smmnist` TFRecords, shuffled (bad records fail naming the file and record,
  or with skip_bad_records are dropped and counted)."""
  seq_len = config.seq_len
  digits = None if data_dir else smmnist.variant_digits(config.smmnist_variant, "train",
                                                        mnist_path)
  if data_dir:
    info = tfrecord.read_info(data_dir)  # fails early, naming the folder, if it holds no dataset
    if info.get("seq_len", 0) < seq_len:
      raise ValueError(f"--data_dir={data_dir} holds sequences of {info.get('seq_len')} frames; "
                       f"training needs n_past + n_future = {seq_len}")

  def input_fn(ctx: tf.distribute.InputContext, start_index: int) -> tf.data.Dataset:
    batch = ctx.get_per_replica_batch_size(config.batch_size)
    if data_dir:
      # One shuffle seed for all pipelines, so their shards of the shuffled order are disjoint;
      # a new one on every resume, as for BAIR and KTH.
      seed = _stream_seed(config, start_index)
      ds = smmnist.tfrecord_dataset(data_dir, shuffle=True, seed=seed,
                                    skip_bad_records=skip_bad_records)
      ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id).repeat()
      window_seed = seed * 1000 + ctx.input_pipeline_id
      ds = ds.enumerate().map(
          lambda i, frames: tfrecord.random_window(frames, seq_len, tf.stack(
              [tf.constant(window_seed, tf.int64), i])),
          num_parallel_calls=tf.data.AUTOTUNE)
    else:
      ds = smmnist.generated_dataset(digits, seq_len, config.num_digits, config.seed,
                                     start_index=start_index + ctx.input_pipeline_id,
                                     index_stride=ctx.num_input_pipelines,
                                     deterministic=config.deterministic_bounce,
                                     variant=config.smmnist_variant)
    return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

  return input_fn


def explain_data_error(config, data_dir: Optional[str], source: str, err: BaseException) -> None:
  """Raises CorruptRecordError (tfrecord's) naming the file and record behind an error of the
  training stream of `train_input_fn(config, data_dir, source=source)`, when a bad record caused it.

  `err` is what iterating the stream raised (a tf.errors.OpError or UnicodeDecodeError). The
  record is found from the error's text when the reading checks raised it, else by reading the
  training files again in Python, up to the first bad record (slow: all of them in the worst
  case): SM-MNIST TFRecords in data_dir, converted KTH in data_dir/train, BAIR's train split
  (the keys of config.bair_camera). Returns None when the error is not a bad record's, or the
  stream reads no files (SM-MNIST generated on the fly, tfds): re-raise `err` then.
  """
  tfrecord.raise_bad_record(err, _train_records_check(config, data_dir, source))


def _train_records_check(config, data_dir, source) -> Optional[Callable[[], Any]]:
  """check() for tfrecord.raise_bad_record: reads the files of the training stream again, raising
  CorruptRecordError at the first bad record; None when the stream reads no files."""
  if source != "native" or not data_dir:
    return None
  if config.dataset == "bair":
    return lambda: bair.check_records(bair.split_files(data_dir, "train"),
                                      cameras=(config.bair_camera,))
  if config.dataset in CONVERTED:
    return lambda: tfrecord.check_dataset(os.path.join(data_dir, "train"))
  return lambda: tfrecord.check_dataset(data_dir)


def preview_videos(config, count: int, data_dir: Optional[str] = None,
                   mnist_path: Optional[str] = None, seed: int = 2018,
                   skip_bad_records: bool = False, source: str = "native") -> TestVideos:
  """`count` held-out videos for the training GIFs, n_past + 2 * n_future frames where the test
  videos are that long (BAIR: at most 30): the first test videos (SM-MNIST: test digits)."""
  length = config.n_past + 2 * config.n_future
  if config.dataset == "smmnist" and source == "native":
    sequences, _ = smmnist.fixed_sequences(config.smmnist_variant, "test", count, length, seed,
                                           config.num_digits, config.deterministic_bounce,
                                           mnist_path)
    return TestVideos(np.stack([s.frames for s in sequences]))
  if config.dataset == "bair":
    length = min(length, 30)
  if config.dataset == "videos":
    length = config.seq_len  # people's clips may be no longer than training needs
  return test_videos(config, length, data_dir, max_videos=count, mnist_path=mnist_path,
                     skip_bad_records=skip_bad_records, source=source)


def test_videos(config, num_frames: int, data_dir: Optional[str] = None,
                max_videos: Optional[int] = None, mnist_path: Optional[str] = None,
                seed: int = 42, num_videos: int = 5000, skip_bad_records: bool = False,
                source: str = "native") -> TestVideos:
  """The fixed test set evaluation scores, in a fixed order: the first `num_frames` of each video.

  SM-MNIST: the TFRecords of `python -m pipelines.smmnist --split=test --seed=42 ...` in
    `data_dir`, or, without it, the same sequences generated here (test digits, (seed, i) for
    i < num_videos), positions and wall hits included.
  BAIR: the test split's trajectories in file order (256 in the download), with their actions.
  KTH: SRVP-style seeded clips of the test persons (1000 clips of 40 frames, seed 42).
  videos: seeded clips of the test videos (256 of num_frames frames, seed 42).
  """
  _check_source(source)
  if source == "tfds":
    return TestVideos(**tfds_inputs.test_videos(config, num_frames, data_dir, max_videos))
  if config.dataset == "bair":
    _require_data_dir(config, data_dir)
    if num_frames > bair.NUM_FRAMES:
      raise ValueError(f"BAIR videos have {bair.NUM_FRAMES} frames; n_past + n_future = "
                       f"{num_frames}")
    frames, actions = bair.test_videos(data_dir, num_frames, max_videos=max_videos,
                                       camera=config.bair_camera,
                                       skip_bad_records=skip_bad_records)
    return TestVideos(frames, actions=actions,
                      description=f"BAIR test split, file order, camera {config.bair_camera}")
  if config.dataset == "videos":
    _require_data_dir(config, data_dir)
    _check_converted_shape(config, data_dir)
    clips = videos.test_clips(data_dir, num_frames, max_clips=max_videos)
    return TestVideos(clips.frames.astype(np.float32) / 255.0,
                      description=f"the test videos of {data_dir}, {len(clips.frames)} seeded "
                                  f"clips of {num_frames} frames (seed {videos.TEST_SEED})")
  if config.dataset == "kth":
    _require_data_dir(config, data_dir)
    _check_converted_shape(config, data_dir)
    clip_len = max(num_frames, kth.TEST_CLIP_LEN)
    clips = kth.test_clips(data_dir, clip_len=clip_len, max_clips=max_videos)
    return TestVideos(clips.frames[:, :num_frames].astype(np.float32) / 255.0,
                      description=f"KTH test persons 21-25, {len(clips.frames)} seeded clips of "
                                  f"{clip_len} frames (seed {kth.TEST_SEED})")
  return _smmnist_test_videos(config, num_frames, data_dir, max_videos, mnist_path, seed,
                              num_videos)


def _smmnist_test_videos(config, num_frames, data_dir, max_videos, mnist_path, seed,
                         num_videos) -> TestVideos:
  count = num_videos if max_videos is None else min(max_videos, num_videos)
  if data_dir:
    info = tfrecord.read_info(data_dir)
    if info.get("seq_len", 0) < num_frames:
      raise ValueError(f"--data_dir={data_dir} holds {info.get('seq_len')}-frame videos; the "
                       f"evaluation needs n_past + n_future = {num_frames}")
    variant = info.get("variant", "svg")  # the generator that wrote the records
    records = tfrecord.video_dataset(data_dir, shuffle_files=False)
    if max_videos is not None:
      records = records.take(max_videos)
    frames, positions, hits, indices = [], [], [], []
    for r in records.as_numpy_iterator():
      frames.append(r["frames"][:num_frames].astype(np.float32) / 255.0)
      positions.append(r["positions"][:num_frames])
      hits.append(r["wall_hits"][:num_frames])
      indices.append(r["digit_indices"])
    return TestVideos(np.stack(frames), np.stack(positions), np.stack(hits), np.stack(indices),
                      description=f"SM-MNIST TFRecords in {data_dir} ({variant} variant)",
                      digit_images=_float_digits(smmnist.variant_digits(variant, "test",
                                                                        mnist_path).images))
  variant = config.smmnist_variant
  sequences, digits = smmnist.fixed_sequences(variant, "test", count, num_frames, seed,
                                              config.num_digits, config.deterministic_bounce,
                                              mnist_path)
  sequences = list(sequences)
  what = ("SRVP's test set (its make_test_set.py rules: native 28x28 digits, each test digit "
          "once, seed " if variant == "srvp" else "SVG-style sequences (seed ")
  return TestVideos(np.stack([s.frames for s in sequences]),
                    np.stack([s.positions for s in sequences]),
                    np.stack([s.wall_hits for s in sequences]),
                    np.stack([s.digit_indices for s in sequences]),
                    description=f"SM-MNIST generated from the MNIST test digits: {what}{seed}), "
                                f"{len(sequences)} sequences",
                    digit_images=_float_digits(digits.images))


def _float_digits(images: np.ndarray) -> np.ndarray:
  """Digit images as float32 in [0, 1] (SRVP's native digits are uint8)."""
  return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images
