"""What the front ends ask of the pipelines, per dataset: training batches and held-out previews.

`train_input_fn` returns the function that `tf.distribute` calls once per input pipeline; it
batches with the per-replica batch size and gives each pipeline its own part of the stream, and
it starts the stream at `start_index` so a resumed run continues with the sequences it had not
seen. Only SM-MNIST has a pipeline so far; BAIR and KTH raise a clear error.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from pipelines import mnist_digits, smmnist, tfrecord

@dataclasses.dataclass
class TestVideos:
  """A fixed test set: frames (V, T, H, W, C) float32 in [0, 1] and, for SM-MNIST, trajectories."""
  frames: np.ndarray
  positions: Optional[np.ndarray] = None  # (V, T, digits, 2) top-left (y, x) of each digit
  wall_hits: Optional[np.ndarray] = None  # (V, T, digits) bool
  digit_indices: Optional[np.ndarray] = None  # (V, digits) into the MNIST test split


InputFn = Callable[[tf.distribute.InputContext, int], tf.data.Dataset]


def _require_smmnist(config):
  if config.dataset != "smmnist":
    raise NotImplementedError(
        f"--dataset={config.dataset}: this version has an input pipeline for smmnist only; "
        "models for bair and kth can be built (--dry_run) but not yet trained")


def train_input_fn(config, data_dir: Optional[str] = None,
                   mnist_path: Optional[str] = None) -> InputFn:
  """(input_context, start_index) -> dataset of (per-replica batch, T, H, W, C) float32 batches.

  SM-MNIST: sequences generated on the fly from the MNIST train digits (seeded by config.seed;
  sequence i depends only on (seed, i)), or read from `data_dir` TFRecords (random windows of
  n_past + n_future frames, shuffled).
  """
  _require_smmnist(config)
  seq_len = config.seq_len
  digits = None if data_dir else mnist_digits.load_digits("train", mnist_path)
  if data_dir:
    info = tfrecord.read_info(data_dir)  # fails early, naming the folder, if it holds no dataset
    if info.get("seq_len", 0) < seq_len:
      raise ValueError(f"--data_dir={data_dir} holds sequences of {info.get('seq_len')} frames; "
                       f"training needs n_past + n_future = {seq_len}")

  def input_fn(ctx: tf.distribute.InputContext, start_index: int) -> tf.data.Dataset:
    batch = ctx.get_per_replica_batch_size(config.batch_size)
    if data_dir:
      # One shuffle seed for all pipelines, so their shards of the shuffled order are disjoint.
      ds = smmnist.tfrecord_dataset(data_dir, shuffle=True, seed=config.seed)
      ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id).repeat()
      window_seed = config.seed * 1000 + ctx.input_pipeline_id
      ds = ds.enumerate().map(
          lambda i, frames: tfrecord.random_window(frames, seq_len, tf.stack(
              [tf.constant(window_seed, tf.int64), i])),
          num_parallel_calls=tf.data.AUTOTUNE)
    else:
      ds = smmnist.generated_dataset(digits, seq_len, config.num_digits, config.seed,
                                     start_index=start_index + ctx.input_pipeline_id,
                                     index_stride=ctx.num_input_pipelines,
                                     deterministic=config.deterministic_bounce)
    return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

  return input_fn


def preview_videos(config, count: int, mnist_path: Optional[str] = None,
                   seed: int = 2018) -> np.ndarray:
  """`count` held-out videos (test digits), n_past + 2 * n_future frames: (K, T, H, W, C) float32."""
  _require_smmnist(config)
  digits = mnist_digits.load_digits("test", mnist_path)
  length = config.n_past + 2 * config.n_future
  return np.stack([
      smmnist.generate_sequence(smmnist.sequence_rng(seed, i), digits.images, length,
                                config.num_digits, deterministic=config.deterministic_bounce).frames
      for i in range(count)])


def test_videos(config, num_frames: int, data_dir: Optional[str] = None,
                max_videos: Optional[int] = None, mnist_path: Optional[str] = None,
                seed: int = 42, num_videos: int = 5000) -> TestVideos:
  """The fixed test set evaluation scores, in file order: the first `num_frames` of each video.

  SM-MNIST: the TFRecords of `python -m pipelines.smmnist --split=test --seed=42 ...` in
  `data_dir`, or, without it, the same sequences generated here (test digits, (seed, i) for
  i < num_videos), positions and wall hits included.
  """
  _require_smmnist(config)
  count = num_videos if max_videos is None else min(max_videos, num_videos)
  if data_dir:
    info = tfrecord.read_info(data_dir)
    if info.get("seq_len", 0) < num_frames:
      raise ValueError(f"--data_dir={data_dir} holds {info.get('seq_len')}-frame videos; the "
                       f"evaluation needs n_past + n_future = {num_frames}")
    records = tfrecord.video_dataset(data_dir, shuffle_files=False)
    if max_videos is not None:
      records = records.take(max_videos)
    frames, positions, hits, indices = [], [], [], []
    for r in records.as_numpy_iterator():
      frames.append(r["frames"][:num_frames].astype(np.float32) / 255.0)
      positions.append(r["positions"][:num_frames])
      hits.append(r["wall_hits"][:num_frames])
      indices.append(r["digit_indices"])
    return TestVideos(np.stack(frames), np.stack(positions), np.stack(hits), np.stack(indices))
  digits = mnist_digits.load_digits("test", mnist_path)
  sequences = [smmnist.generate_sequence(smmnist.sequence_rng(seed, i), digits.images, num_frames,
                                         config.num_digits, deterministic=config.deterministic_bounce)
               for i in range(count)]
  return TestVideos(np.stack([s.frames for s in sequences]),
                    np.stack([s.positions for s in sequences]),
                    np.stack([s.wall_hits for s in sequences]),
                    np.stack([s.digit_indices for s in sequences]))
