"""Training and evaluation input from prepared tensorflow-datasets data (`--data_source=tfds`).

`pipelines.inputs` calls these for `source="tfds"`: the same windows and test sets as the native
pipelines, read from a tfds data_dir holding the prepared `stochastic_moving_mnist`, `kth_actions`
(the builders of `pipelines.tfds_builders`, registered by importing it) or tfds' own
`bair_robot_pushing_small`.
"""

from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

# Importing tfds_builders also registers its builders with tfds, so tfds.builder finds them by name.
from pipelines import kth, tfds_builders, video_shards, videos

TFDS_NAMES = {"smmnist": tfds_builders.StochasticMovingMnist.name,  # stochastic_moving_mnist
              "kth": tfds_builders.KthActions.name,  # kth_actions
              "bair": "bair_robot_pushing_small",  # tfds' own builder
              "videos": tfds_builders.VideoFolder.name}  # video_folder
SMMNIST_CONFIG_NAMES = {1: "one_digit", 2: "two_digits"}  # by --num_digits


def _builder(config, data_dir: Optional[str]):
  """The prepared tfds builder for config.dataset (KTH: the config of config.image_size)."""
  name = TFDS_NAMES[config.dataset]
  if config.dataset == "kth":
    name += f"/{config.image_size}x{config.image_size}"
  elif config.dataset == "videos":
    name += (f"/{config.image_size}x{config.image_size}_"
             f"{'grey' if config.channels == 1 else 'rgb'}")
  elif config.dataset == "smmnist":
    if config.num_digits not in SMMNIST_CONFIG_NAMES:
      raise ValueError(f"--num_digits={config.num_digits}: stochastic_moving_mnist has configs "
                       f"for {sorted(SMMNIST_CONFIG_NAMES)} digits")
    name += "/" + SMMNIST_CONFIG_NAMES[config.num_digits] + (
        "_srvp" if config.smmnist_variant == "srvp" else "")
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    raise FileNotFoundError(
        f"tensorflow-datasets {name} is not prepared in {builder.data_dir_root}: prepare it once "
        f"(python -c \"import pipelines.tfds_builders, tensorflow_datasets as tfds; "
        f"tfds.builder('{name}', data_dir='{data_dir or ''}').download_and_prepare()\"; KTH needs "
        "download_config=tfds.download.DownloadConfig(manual_dir=RAW), as video_folder does)")
  return builder


def _frames_and_actions(config, example):
  """A tfds example -> {'frames': uint8 [T, H, W, C], 'actions'?, 'sequences'?}."""
  if config.dataset == "bair":
    camera = "image_" + config.bair_camera
    return {"frames": example[camera], "actions": example["action"]}
  out = {"frames": example["video"]}
  if config.dataset == "kth":
    out["sequences"] = example["sequences"]
  if config.dataset == "videos":  # windows start anywhere in a clip
    out["sequences"] = tf.stack([[0, tf.shape(example["video"])[0]]])
  return out


def train_input_fn(config, data_dir: Optional[str]):
  """Like pipelines.inputs.train_input_fn, from a prepared tfds dataset: shuffled random windows
  (KTH: SVG's sub-sequence draw), sharded by input pipeline, repeated."""
  builder = _builder(config, data_dir)
  seq_len = config.seq_len
  video_len = {"smmnist": lambda: builder.info.features["video"].shape[0],
               "bair": lambda: 30, "kth": lambda: None, "videos": lambda: None}[config.dataset]()
  if video_len is not None and video_len < seq_len:
    raise ValueError(f"{builder.name} videos have {video_len} frames; training needs "
                     f"n_past + n_future = {seq_len}")

  def input_fn(ctx, start_index):
    seed = int(np.random.default_rng([config.seed, start_index]).integers(2**31 - 1))
    # SM-MNIST is stored in index order (sequences are i.i.d., so the window shuffle suffices);
    # tfds refuses to shuffle the files of an ordered dataset.
    ds = builder.as_dataset(split="train", shuffle_files=not builder.info.disable_shuffling,
                            read_config=tfds.ReadConfig(shuffle_seed=seed,
                                                        input_context=ctx))
    ds = ds.map(lambda e: _frames_and_actions(config, e), num_parallel_calls=tf.data.AUTOTUNE)
    if config.dataset in ("kth", "videos"):
      ds = ds.filter(lambda e: tf.reduce_any(e["sequences"][:, 1] - e["sequences"][:, 0]
                                             >= seq_len))
    ds = ds.repeat().enumerate()

    def window(i, e):
      key = tf.stack([tf.constant(seed, tf.int64), i])
      if config.dataset in ("kth", "videos"):
        frames = video_shards.subsequence_window(e["frames"], e["sequences"], seq_len, key)
        out = {"frames": frames}
      else:
        start = tf.random.stateless_uniform([], key, 0, tf.shape(e["frames"])[0] - seq_len + 1,
                                            tf.int32)
        out = {k: v[start:start + seq_len] for k, v in e.items()}
      out["frames"] = tf.cast(out["frames"], tf.float32) / 255.0
      shape = [seq_len, config.image_size, config.image_size, config.channels]
      out["frames"] = tf.ensure_shape(out["frames"], shape)
      return (out["frames"], out["actions"]) if config.action_dim else out["frames"]

    ds = ds.map(window, num_parallel_calls=tf.data.AUTOTUNE).shuffle(256, seed=seed)
    batch = ctx.get_per_replica_batch_size(config.batch_size)
    return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

  return input_fn


def test_videos(config, num_frames: int, data_dir: Optional[str],
                max_videos: Optional[int]) -> Dict[str, Any]:
  """Like pipelines.inputs.test_videos, from a prepared tfds dataset's test split, in order
  (KTH: SRVP's seeded clips, drawn exactly as pipelines.kth.test_clips draws them).

  Returns the fields of `pipelines.inputs.TestVideos` as a dict: frames float32 [V, T, H, W, C]
  in [0, 1], positions, wall_hits, digit_indices (SM-MNIST), actions (BAIR; others None) and
  description.
  """
  builder = _builder(config, data_dir)
  ds = builder.as_dataset(split="test", shuffle_files=False)
  if config.dataset == "videos":  # the native set's clips: same names, order, plan
    clips = [e["video"] for e in ds.as_numpy_iterator()]
    count = videos.TEST_NUM_CLIPS if max_videos is None else min(max_videos,
                                                                  videos.TEST_NUM_CLIPS)
    plan = videos.plan_test_clips([len(c) for c in clips], count, num_frames)
    frames = np.stack([clips[v][start:start + num_frames] for v, start in plan])
    return {"frames": frames.astype(np.float32) / 255.0,
            "description": f"tfds {builder.name} test split, {count} seeded clips of "
                           f"{num_frames} frames (seed {videos.TEST_SEED})"}
  if config.dataset == "kth":
    by_name = {}
    for e in ds.as_numpy_iterator():
      by_name[kth.video_name(int(e["person"]), int(e["action"]), int(e["scenario"]))] = e["video"]
    clip_len = max(num_frames, kth.TEST_CLIP_LEN)
    count = kth.TEST_NUM_CLIPS if max_videos is None else min(max_videos, kth.TEST_NUM_CLIPS)
    plan = kth.plan_test_clips({n: len(v) for n, v in by_name.items()}, count, clip_len)
    frames = np.stack([by_name[name][start:start + num_frames] for name, start, *_ in plan])
    return {"frames": frames.astype(np.float32) / 255.0,  # tfds order is irrelevant here
            "description": f"tfds {builder.name} test persons 21-25, {count} seeded clips of "
                           f"{clip_len} frames (seed {kth.TEST_SEED})"}
  if max_videos is not None:
    ds = ds.take(max_videos)
  fields = {"frames": [], "actions": [], "positions": [], "wall_hits": [], "digit_indices": []}
  for e in ds.as_numpy_iterator():
    item = _frames_and_actions(config, e)
    if len(item["frames"]) < num_frames:
      raise ValueError(f"{builder.name} test videos have {len(item['frames'])} frames; the "
                       f"evaluation needs n_past + n_future = {num_frames}")
    fields["frames"].append(item["frames"][:num_frames].astype(np.float32) / 255.0)
    if config.dataset == "bair":
      fields["actions"].append(item["actions"][:num_frames])
    else:
      fields["positions"].append(e["positions"][:num_frames])
      fields["wall_hits"].append(e["wall_hits"][:num_frames])
      fields["digit_indices"].append(e["digit_indices"])
  stacked = {k: np.stack(v) if v else None for k, v in fields.items()}
  # bair_robot_pushing_small is tfds' own builder: it stores the test videos in its hashed order,
  # not file order (the mean over all 256 is the same; a --max_videos subset differs).
  order = "tfds' own order" if config.dataset == "bair" else "in order"
  return dict(stacked, description=f"tfds {builder.name} test split, {order}")
