"""Folders of videos converted once into TFRecord shards, resumably; and the streams read from them.

Shared by KTH (pipelines/kth.py) and any folder of videos (pipelines/videos.py). A conversion
writes, per split:

  out/<split>/<split>-00000-of-000NN.tfrecord ...   one tf.train.Example per video
              (pipelines/tfrecord.py format): frames uint8 [T, S, S, C], the whole video, plus
              the dataset's extras, always `sequences` (int32 [K, 2], 0-based half-open frame
              ranges that training windows are drawn from; the whole video when it has none)
  out/<split>/<shard>.manifest.json                what a complete shard holds
  out/<split>/dataset_info.json                    written last: the split is complete
  out/<settings file>                              the conversion's settings

Resumable: videos go to shards in a fixed order, each shard is written under a temporary name and
renamed when complete, then its manifest records what it holds; a re-run keeps every shard whose
manifest matches (same videos, same settings, same byte size) without decoding its videos again,
and removes what killed runs left. Decoding runs `workers` at once (each an ffmpeg process for
video files); shards are written in order, so the output does not depend on `workers`. Run one
conversion per output folder at a time.
"""

import concurrent.futures
import json
import math
import os
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from pipelines import tfrecord
from svg_tf import media

MANIFEST_SUFFIX = '.manifest.json'
DEFAULT_SHUFFLE_BUFFER = 256  # training windows (not videos) held for shuffling

# decode(path) -> (frames uint8 [T, S, S, C], what the decoder said); raises ValueError naming why.
Decode = Callable[[str], Tuple[np.ndarray, Dict[str, Any]]]
# make_record(source, frames, said) -> (extras for the Example, incl. `sequences`; manifest entry,
# incl. `name` and `num_frames`), or raises SkipVideo.
MakeRecord = Callable[['Source', np.ndarray, Dict[str, Any]], Tuple[Dict[str, Any], Dict[str, Any]]]


class Source(NamedTuple):
  name: str  # unique and stable: the video's key in manifests and dataset_info.json
  path: str  # the local file (or folder of frames) to decode


class SkipVideo(ValueError):
  """A decoded video the dataset does not keep (e.g. too short); the message is the reason."""


def format_duration(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds >= 3600:
    return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
  return f'{seconds // 60}m{seconds % 60:02d}s'


def read_json(path: str) -> Optional[Dict[str, Any]]:
  """Contents of a JSON file, or None when it is absent or unreadable."""
  try:
    with tf.io.gfile.GFile(path, 'r') as f:
      return json.loads(f.read())
  except (tf.errors.NotFoundError, ValueError):
    return None


def write_json(path: str, value: Any) -> None:
  media.write_file_atomic(path, json.dumps(value, indent=2, sort_keys=True) + '\n')


def _our_files(split_dir: str) -> List[str]:
  """Files a conversion writes in a split folder: shards, manifests, temporaries, the info file."""
  if not tf.io.gfile.isdir(split_dir):
    return []
  patterns = (tfrecord.SHARD_PATTERN, '*' + MANIFEST_SUFFIX, '*.tmp-*', tfrecord.INFO_FILE)
  return sorted({p for pattern in patterns
                 for p in tf.io.gfile.glob(os.path.join(split_dir, pattern))})


def prepare_out_dir(out_dir: str, settings: Dict[str, Any], overwrite: bool,
                    splits: Sequence[str], settings_file: str, what: str) -> None:
  """Refuses a folder converted with other settings (unless overwrite); records the settings.

  what: the conversion's name in messages ("a KTH conversion").
  """
  settings_path = os.path.join(out_dir, settings_file)
  split_dirs = [os.path.join(out_dir, s) for s in splits]
  if overwrite:
    for path in [settings_path] + [p for d in split_dirs for p in _our_files(d)]:
      if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)
  old = read_json(settings_path) if tf.io.gfile.exists(settings_path) else None
  if old is not None:
    diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
    if diff:
      said = ', '.join(f'{k}={a!r} (now {b!r})' for k, (a, b) in sorted(diff.items()))
      raise FileExistsError(f'{out_dir} holds {what} made with {said}; pass overwrite=True '
                            '(--overwrite) to replace it, or choose another --out')
  else:
    for d in split_dirs:
      if tf.io.gfile.isdir(d) and tf.io.gfile.listdir(d):
        raise FileExistsError(f'{d} is not empty and {settings_path} is missing, so this is not '
                              f'{what} folder; choose another --out or pass overwrite=True')
  tf.io.gfile.makedirs(out_dir)
  write_json(settings_path, settings)


def _shard_is_complete(split_dir: str, shard: str, names: List[str], settings: Dict[str, Any]):
  """The shard's manifest if the shard is complete and holds exactly `names`, else None."""
  manifest = read_json(os.path.join(split_dir, shard + MANIFEST_SUFFIX))
  path = os.path.join(split_dir, shard)
  if (manifest is None or manifest.get('settings') != settings or
      manifest.get('videos') != names or not tf.io.gfile.exists(path) or
      tf.io.gfile.stat(path).length != manifest.get('bytes')):
    return None
  return manifest


class _Progress:
  """Per-video progress lines with rate and ETA over the videos decoded in this run."""

  def __init__(self, tag: str, split: str, total: int):
    self.tag, self.split, self.total, self.done = tag, split, total, 0
    self.start = time.time()

  def video(self, name: str, shard: str, num_frames: Optional[int]):
    self.done += 1
    rate = self.done / max(time.time() - self.start, 1e-9)
    eta = (self.total - self.done) / rate
    logging.info('%s | convert | %s | video %d/%d | %s | %s | %s | %.2f videos/s | eta %s',
                 self.tag, self.split, self.done, self.total, shard, name,
                 'SKIPPED' if num_frames is None else f'{num_frames} frames', rate,
                 format_duration(eta))


def _write_shard(split_dir: str, shard: str, sources: List[Source], decode: Decode,
                 make_record: MakeRecord, settings: Dict[str, Any], pool,
                 progress: _Progress) -> Dict[str, Any]:
  """Decodes `sources` (in parallel), writes the shard atomically, then its manifest."""
  futures = [pool.submit(decode, s.path) for s in sources]
  records, skipped = [], []

  def examples():
    for source, future in zip(sources, futures):
      try:
        frames, said = future.result()
        extras, record = make_record(source, frames, said)
      except ValueError as err:  # undecodable (VideoDecodeError, VideoReadError) or SkipVideo
        reason = str(err) if isinstance(err, SkipVideo) else f'cannot be decoded: {err}'
        skipped.append({'name': source.name, 'reason': reason})
        progress.video(source.name, shard, None)
        continue
      records.append(record)
      progress.video(source.name, shard, len(frames))
      yield tfrecord.video_example(frames, extras)

  try:
    written = tfrecord.write_shard(os.path.join(split_dir, shard), examples())
  finally:
    for future in futures:
      future.cancel()
  manifest = {'settings': settings, 'shard': shard, 'videos': [s.name for s in sources],
              'bytes': written['bytes'], 'count': written['count'],
              'features': written['features'], 'records': records, 'skipped': skipped}
  write_json(os.path.join(split_dir, shard + MANIFEST_SUFFIX), manifest)
  return manifest


class SplitShards(NamedTuple):
  shards: List[str]  # file names, in order
  manifests: List[Dict[str, Any]]  # per shard: records (in record order), skipped, count, ...

  @property
  def records(self) -> List[Dict[str, Any]]:
    return [r for m in self.manifests for r in m['records']]

  @property
  def skipped(self) -> List[Dict[str, str]]:
    return [s for m in self.manifests for s in m['skipped']]


def convert_split(tag: str, split: str, out_dir: str, sources: List[Source], decode: Decode,
                  make_record: MakeRecord, settings: Dict[str, Any], videos_per_shard: int,
                  workers: int) -> SplitShards:
  """Writes (or completes) the shards of one split; dataset_info.json is `write_split_info`'s."""
  split_dir = os.path.join(out_dir, split)
  tf.io.gfile.makedirs(split_dir)
  info_path = os.path.join(split_dir, tfrecord.INFO_FILE)
  num_shards = math.ceil(len(sources) / videos_per_shard)
  chunks = [sources[k * videos_per_shard:(k + 1) * videos_per_shard] for k in range(num_shards)]
  shards = [tfrecord.shard_name(split, k, num_shards) for k in range(num_shards)]
  manifests = [_shard_is_complete(split_dir, s, [v.name for v in c], settings)
               for s, c in zip(shards, chunks)]
  wanted = set(shards) | {s + MANIFEST_SUFFIX for s in shards} | {tfrecord.INFO_FILE}
  stale = [p for p in _our_files(split_dir) if os.path.basename(p) not in wanted]
  todo = [k for k, m in enumerate(manifests) if m is None]
  if (todo or stale) and tf.io.gfile.exists(info_path):
    tf.io.gfile.remove(info_path)  # the folder is about to change: never an info over a mix
  for path in stale:  # temporaries of killed runs, shards of another plan
    logging.info('%s | convert | %s | removing leftover %s', tag, split, path)
    tf.io.gfile.remove(path)
  logging.info('%s | convert | %s | %d videos in %d shards | %d shards complete, %d to write',
               tag, split, len(sources), num_shards, num_shards - len(todo), len(todo))
  progress = _Progress(tag, split, sum(len(chunks[k]) for k in todo))
  with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
    for k in range(num_shards):
      if manifests[k] is not None:
        logging.info('%s | convert | %s | shard %d/%d | complete, kept | %d records', tag, split,
                     k + 1, num_shards, manifests[k]['count'])
        continue
      shard_start = time.time()
      manifests[k] = _write_shard(split_dir, shards[k], chunks[k], decode, make_record, settings,
                                  pool, progress)
      logging.info('%s | convert | %s | shard %d/%d | %d records | %.1f s | %s', tag, split,
                   k + 1, num_shards, manifests[k]['count'], time.time() - shard_start,
                   os.path.join(split_dir, shards[k]))
  return SplitShards(shards, manifests)


def write_split_info(tag: str, split: str, out_dir: str, split_shards: SplitShards,
                     info: Dict[str, Any],
                     video_fields: Sequence[str] = ('name', 'num_frames', 'sequences')
                     ) -> Dict[str, Any]:
  """Writes dataset_info.json of a converted split (unless it already says the same); returns it.

  `info` gets `videos` (of every record, in record order: its shard and index, and the
  `video_fields` of its manifest entry) added, besides tfrecord's example counts and feature
  description.
  """
  split_dir = os.path.join(out_dir, split)
  videos = []
  for shard, manifest in zip(split_shards.shards, split_shards.manifests):
    for index, record in enumerate(manifest['records']):
      videos.append(dict({k: record[k] for k in video_fields}, shard=shard, index=index))
  info = dict(info, videos=videos)
  counts = [m['count'] for m in split_shards.manifests]
  features = tfrecord.merge_features(m['features'] for m in split_shards.manifests)
  full = dict(info, num_examples=sum(counts), shards=split_shards.shards, shard_counts=counts,
              features=features)
  if read_json(os.path.join(split_dir, tfrecord.INFO_FILE)) == json.loads(json.dumps(full)):
    logging.info('%s | convert | %s | already complete, nothing to do | %d videos | %s', tag,
                 split, full['num_examples'], split_dir)
    return full
  full = tfrecord.write_dataset_info(split_dir, info, split_shards.shards, counts, features)
  logging.info('%s | convert | %s | done | %d videos, %d frames in %d shards | %s', tag, split,
               full['num_examples'], sum(v['num_frames'] for v in videos),
               len(split_shards.shards), split_dir)
  return full


# --------------------------------------------------------------------------------------------------
# Reading a converted split.


def read_split_info(data_dir: str, split: str, dataset: str,
                    not_converted: Callable[[str], Exception]) -> Dict[str, Any]:
  """dataset_info.json of data_dir/split, checked to be `dataset`'s; when it is missing, raises
  not_converted(split_dir), the dataset's own error saying what to run."""
  split_dir = os.path.join(data_dir, split)
  if not tf.io.gfile.exists(os.path.join(split_dir, tfrecord.INFO_FILE)):
    raise not_converted(split_dir)
  info = tfrecord.read_info(split_dir)
  if info.get('dataset') != dataset or info.get('split') != split:
    raise ValueError(f'{split_dir} holds dataset {info.get("dataset")!r} split '
                     f'{info.get("split")!r}, not {dataset!r} {split!r}')
  return info


def subsequence_window(frames: tf.Tensor, sequences: tf.Tensor, seq_len: int,
                       key: tf.Tensor) -> tf.Tensor:
  """SVG's KTH draw: a uniform sub-sequence among those of >= seq_len frames, a uniform start in it.

  Args:
    frames: [T, ...] a whole video.
    sequences: int [K, 2] 0-based half-open ranges; at least one must hold seq_len frames.
    seq_len: window length.
    key: int64 [2] stateless seed pair.
  Returns:
    frames[start:start + seq_len], [seq_len, ...].
  """
  key_sequence, key_start = tf.unstack(tf.random.experimental.stateless_split(key, 2))
  sequences = tf.cast(sequences, tf.int32)  # [K, 2]
  lengths = sequences[:, 1] - sequences[:, 0]  # [K]
  usable = tf.cast(tf.where(lengths >= seq_len)[:, 0], tf.int32)  # [K'], K' >= 1
  pick = usable[tf.random.stateless_uniform([], key_sequence, 0, tf.size(usable), tf.int32)]
  start = sequences[pick, 0] + tf.random.stateless_uniform(
      [], key_start, 0, lengths[pick] - seq_len + 1, tf.int32)
  return frames[start:start + seq_len]


def train_windows(split_dir: str, info: Dict[str, Any], seq_len: int, seed: int,
                  num_shards: int = 1, shard_index: int = 0,
                  shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, cycle_length: int = 4,
                  skip_bad_records: bool = False) -> tf.data.Dataset:
  """Infinite stream of random training windows {'frames': float32 [seq_len, S, S, C] in [0, 1]}.

  Each pass visits every video record of this input pipeline once, in a shuffled order (shards
  shuffled, `cycle_length` of them interleaved). For each video: a uniformly random sub-sequence
  among those with at least seq_len frames, then a uniform start within it (`subsequence_window`).
  Videos without such a sub-sequence are skipped. Windows then pass a shuffle buffer of
  `shuffle_buffer` windows. All randomness is stateless from `seed` (window k of pipeline i uses
  the seed pair (seed, k * num_shards + i)), so the stream is the same on every run.

  Args:
    split_dir: a converted split folder; info: its dataset_info.json.
    seq_len: frames per window (>= 1).
    seed: stream seed.
    num_shards: number of input pipelines; record r (in dataset_info.json's order) belongs to
      pipeline r % num_shards, so pipelines are disjoint and together cover every record.
    shard_index: this pipeline, 0 <= shard_index < num_shards.
    shuffle_buffer: windows held for shuffling (>= 1; 1 = no window shuffle).
    cycle_length: shard files read at once.
    skip_bad_records: drop bad records (logged once and counted in `tfrecord.skipped_records()`)
      instead of failing. Either way a truncated or corrupted shard, or a record whose frames have
      the wrong byte count or shape, is named by file and record index.

  Raises:
    ValueError: bad arguments, or no video of this pipeline has a sub-sequence of seq_len frames.
  """
  if int(seq_len) != seq_len or seq_len < 1:
    raise ValueError(f'seq_len must be an integer >= 1, got {seq_len!r}')
  if int(num_shards) != num_shards or num_shards < 1 or not 0 <= shard_index < num_shards:
    raise ValueError(f'need num_shards >= 1 and 0 <= shard_index < num_shards, got '
                     f'num_shards={num_shards!r}, shard_index={shard_index!r}')
  if shuffle_buffer < 1:
    raise ValueError(f'shuffle_buffer must be >= 1, got {shuffle_buffer!r}')
  seq_len, num_shards, shard_index = int(seq_len), int(num_shards), int(shard_index)
  seed = int(seed)
  files = tfrecord.list_shards(split_dir)
  offsets = dict(zip(info['shards'], np.cumsum([0] + info['shard_counts'][:-1]).tolist()))
  keep = np.array([i % num_shards == shard_index and
                   any(e - s >= seq_len for s, e in v['sequences'])
                   for i, v in enumerate(info['videos'])], bool)  # [num_records]
  if not keep.any():
    longest = max((e - s for v in info['videos'] for s, e in v['sequences']), default=0)
    raise ValueError(f'no {info["split"]} video of {os.path.dirname(split_dir)} (input pipeline '
                     f'{shard_index} of {num_shards}) has a sub-sequence of seq_len={seq_len} '
                     f'frames; the longest sub-sequence has {longest}')
  size, channels = info['image_size'], info['channels']
  parse = tfrecord.checked_parser(info['features'], skip_bad_records)
  keep_table = tf.constant(keep)
  counts = dict(zip(info['shards'], info['shard_counts']))

  def records(file, offset, expected):
    return tfrecord.counted_records(file, expected, skip_bad_records).map(
        lambda file, i, record: (file, i, offset + i, record))

  def window(counter, example):
    key = tf.stack([tf.constant(seed, tf.int64), counter * num_shards + shard_index])
    frames = subsequence_window(example['frames'], example['sequences'], seq_len, key)
    frames = tf.ensure_shape(tf.cast(frames, tf.float32) / 255.0, [seq_len, size, size, channels])
    return {'frames': frames}

  ds = tf.data.Dataset.from_tensor_slices(
      ([str(f) for f in files],
       np.array([offsets[os.path.basename(f)] for f in files], np.int64),
       np.array([counts[os.path.basename(f)] for f in files], np.int64)))
  ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
  ds = ds.interleave(records, cycle_length=min(cycle_length, len(files)), block_length=1,
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.filter(lambda file, index, global_index, record: tf.gather(keep_table, global_index))
  ds = ds.map(lambda file, index, global_index, record: (file, index, record))
  # With skip_bad_records, bytes that are not an Example are dropped too (TensorFlow's log).
  ds = tfrecord.parse_checked(ds, parse, skip_bad_records)
  ds = ds.enumerate().map(window, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if shuffle_buffer > 1:
    ds = ds.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def read_clips(split_dir: str, info: Dict[str, Any],
               plan: Sequence[Tuple[int, int]], clip_len: int) -> np.ndarray:
  """Frames of planned clips: plan[i] = (record index in info['videos'], start) ->
  uint8 [len(plan), clip_len, S, S, C]. Reads the shards once, in record order."""
  size, channels = info['image_size'], info['channels']
  frames = np.zeros((len(plan), clip_len, size, size, channels), np.uint8)
  wanted = {}
  for i, (record, start) in enumerate(plan):
    wanted.setdefault(record, []).append((i, start))
  found = set()
  for record, example in enumerate(tfrecord.video_dataset(split_dir, shuffle_files=False)):
    if record not in wanted:
      continue
    entry = info['videos'][record]
    video = example['frames'].numpy()  # [T, S, S, C]
    if len(video) != entry['num_frames']:
      raise ValueError(f'{example["file"].numpy().decode()}: record {int(example["index"])} '
                       f'({entry["name"]}) has {len(video)} frames but dataset_info.json says '
                       f'{entry["num_frames"]}')
    for i, start in wanted[record]:
      frames[i] = video[start:start + clip_len]
    found.add(record)
  if found != set(wanted):
    missing = [info['videos'][r]['name'] for r in sorted(set(wanted) - found)]
    raise ValueError(f'{split_dir}: videos {missing} are in dataset_info.json but not in the '
                     'shards')
  return frames
