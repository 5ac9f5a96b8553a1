"""BAIR robot pushing (Ebert et al. 2017) read from its native TFRecords (SPEC section 3.4).

Format. `bair_robot_pushing_dataset_v0.tar` (~30 GB) extracts to
`softmotion30_44k/{train,test}/traj_<a>_to_<b>.tfrecords`, 256 trajectories per file (the test
split is the single file traj_0_to_255.tfrecords: 256 videos; train ~43,000 in ~170 files). Each
record is a serialised `tf.train.Example` holding one 30-frame trajectory with per-frame keys,
t = 0..29:
  {t}/image_aux1/encoded   bytes_list with one value: raw uint8 64x64x3 RGB, 12,288 bytes, HWC.
                           Not PNG or JPEG, despite the name. The camera SVG uses.
  {t}/image_main/encoded   the same, the other camera.
  {t}/action               float_list, 4 floats.
  {t}/endeffector_pos      float_list, 3 floats.
tensorflow-datasets' `bair_robot_pushing_small` reads the same bytes (tests/test_bair.py checks
that we agree with its generator, record by record).

Why the native files. The SVG reference first converts them to PNGs with `data/convert_bair.py`,
which uses TF1 APIs (`tf.python_io.tf_record_iterator`) that broke for users on TF2, and writes
each frame with `scipy.misc.imsave`, which min-max stretches every frame to 0..255. "BAIR as
converted by SVG" is therefore not the raw pixels. Here frames are the raw pixels / 255, in [0, 1].

Train and test (the SRVP convention, anchors section 3.1): training uses random windows of
`seq_len` consecutive frames, start ~ U{0..30-seq_len}, from the train split (`train_dataset`);
the test set is the 256 test videos, all 30 frames, in file order (`test_videos`), evaluated with
2 context frames and 28 predicted ones.

Bad records, with the mechanism every TFRecord source shares (pipelines/tfrecord.py). The keys a
pipeline reads (the chosen camera's images, action, endeffector_pos) are checked in the graph,
record by record, for presence, value counts and byte counts. A missing key, a wrong byte count or
a wrong number of floats raises, when iterated, a tf.errors.InvalidArgumentError whose message
contains "bad record: <file>: record <i>: <what is wrong>"; `tfrecord.raise_bad_record` /
`tfrecord.explain_errors` turn it into a `tfrecord.CorruptRecordError`. With
`skip_bad_records=True` such records are dropped, each one logged with its file, index and reason
and counted in `tfrecord.skipped_records()` (see `tfrecord.keep_or_fail`).

File lengths, checked per file rather than per record: a file's name says how many records it
holds (traj_<a>_to_<b>: b - a + 1, `expected_records`), and `tfrecord.counted_records` compares.
A file that ends early, truncated inside a record or cut exactly at a record boundary, fails the
same way at its first missing record ("... the file ends after <i> of its <n> records (as its name
says)"); with skip_bad_records its missing rest is logged once and counted as n - i records. A
file holding more records than its name says is read whole: its records are trajectories like any
other, only the name is off, so training goes on; the check (`print_summary`, the CLI) warns.
Files named otherwise are read without a count.

Not covered in the graph, with or without skip_bad_records: bytes that are not a
`tf.train.Example` at all, or a feature of the wrong type (int64_list for action), fail inside the
parser, and TensorFlow names the record only for the wrong type; a file whose name gives no count
and that cannot be read (truncated, bad CRC) fails in the reader with a DataLossError that names
neither file nor record. For those, give `check_records(files)` to `tfrecord.raise_bad_record` /
`tfrecord.explain_errors`: it finds the first bad record by reading the files again in Python
(`check_files`, which the CLI runs over a whole split).

CLI (a data check, exit status 1 when any file is bad; and a preview):
  python -m pipelines.bair --data_dir=DIR --split=test
  python -m pipelines.bair --data_dir=DIR --split=test --preview_out=P --preview_num=8
"""

import os
import re
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from absl import flags, logging
from google.protobuf import message
import numpy as np
import tensorflow as tf

from pipelines import tfrecord
from svg_tf import command_line, media
from svg_tf.command_line import UserError

NUM_FRAMES = 30  # frames per trajectory
IMAGE_SIZE = 64  # height and width
CHANNELS = 3  # RGB
IMAGE_BYTES = IMAGE_SIZE * IMAGE_SIZE * CHANNELS  # 12,288 raw bytes per frame
ACTION_DIM = 4
STATE_DIM = 3  # end-effector position
CAMERAS = {'aux1': 'image_aux1', 'main': 'image_main'}  # SVG uses aux1
IMAGE_KEY = '{t}/{camera}/encoded'  # camera: a value of CAMERAS
ACTION_KEY = '{t}/action'
STATE_KEY = '{t}/endeffector_pos'
SPLITS = ('train', 'test')
DATASET_FOLDER = 'softmotion30_44k'  # what the tar extracts to
FILE_PATTERN = '*.tfrecords'
FILE_NAME = re.compile(r'traj_(\d+)_to_(\d+)\.tfrecords')  # trajectories a..b
COUNT_SOURCE = 'as its name says'  # where a file's record count comes from, in error messages
DATASET_NAME = 'bair'


def image_key(t: int, camera: str) -> str:
  return IMAGE_KEY.format(t=t, camera=CAMERAS[camera])


def _check_camera(camera: str) -> None:
  if camera not in CAMERAS:
    raise ValueError(f'camera must be one of {sorted(CAMERAS)}, got {camera!r}')


def _check_frames(name: str, value: int) -> None:
  if isinstance(value, bool) or int(value) != value or not 1 <= value <= NUM_FRAMES:
    raise ValueError(f'{name} must be an integer in 1..{NUM_FRAMES} (BAIR trajectories have '
                     f'{NUM_FRAMES} frames), got {name}={value!r}')


# --------------------------------------------------------------------------------------------------
# Files.


def split_files(data_dir: str, split: str) -> List[str]:
  """Sorted `*.tfrecords` paths of `split`.

  Args:
    data_dir: the folder holding `softmotion30_44k/`, or `softmotion30_44k/` itself (holding
      `train/` and `test/`). Any tf.io.gfile path (local, gs://...).
    split: 'train' or 'test'.

  Returns:
    The paths in lexicographic order (traj_10240_to_10495 before traj_1024_to_1279), the order
    tensorflow-datasets reads them in.

  Raises:
    ValueError: unknown split.
    FileNotFoundError: neither layout exists, or the split folder holds no *.tfrecords file.
  """
  if split not in SPLITS:
    raise ValueError(f'unknown BAIR split {split!r}; valid splits: {", ".join(SPLITS)}')
  candidates = [os.path.join(data_dir, DATASET_FOLDER, split), os.path.join(data_dir, split)]
  folder = next((c for c in candidates if tf.io.gfile.isdir(c)), None)
  if folder is None:
    raise FileNotFoundError(
        f'no BAIR {split} folder: looked in {candidates[0]} and {candidates[1]}. Expected the '
        f'extracted bair_robot_pushing_dataset_v0.tar: data_dir holds {DATASET_FOLDER}/'
        f'{{train,test}}/traj_<a>_to_<b>.tfrecords, or is {DATASET_FOLDER}/ itself')
  files = sorted(tf.io.gfile.glob(os.path.join(folder, FILE_PATTERN)))
  if not files:
    entries = sorted(tf.io.gfile.listdir(folder))
    shown = ', '.join(entries[:5]) + (', ...' if len(entries) > 5 else '')
    raise FileNotFoundError(
        f'no {FILE_PATTERN} files in {folder} (it holds {len(entries)} entries'
        f'{": " + shown if entries else ""}); expected traj_<a>_to_<b>.tfrecords files from '
        f'bair_robot_pushing_dataset_v0.tar')
  return files


def expected_records(path: str) -> Optional[int]:
  """Records a file must hold, from its name traj_<a>_to_<b>.tfrecords (b - a + 1); None for
  other names, whose length is then not checked."""
  match = FILE_NAME.fullmatch(os.path.basename(path))
  if not match or int(match.group(2)) < int(match.group(1)):
    return None
  return int(match.group(2)) - int(match.group(1)) + 1


# --------------------------------------------------------------------------------------------------
# Parsing in the graph.


def _feature_spec(camera: str) -> Dict[str, tf.io.FixedLenSequenceFeature]:
  # Sequence features with allow_missing=True parse whatever count is there ([] when the key is
  # missing), so the counts can be checked and reported below instead of failing in the parser.
  spec = {}
  for t in range(NUM_FRAMES):
    spec[image_key(t, camera)] = tf.io.FixedLenSequenceFeature([], tf.string, allow_missing=True)
    spec[ACTION_KEY.format(t=t)] = tf.io.FixedLenSequenceFeature([], tf.float32,
                                                                  allow_missing=True)
    spec[STATE_KEY.format(t=t)] = tf.io.FixedLenSequenceFeature([], tf.float32,
                                                                 allow_missing=True)
  return spec


def _problem_text(keys, counts, expected_count, what, sizes=None, expected_size=None):
  """[30] strings: '' where a key is fine, else what is wrong with it."""
  keys = tf.constant(keys)
  counts_s = tf.strings.as_string(counts)
  text = tf.where(counts != expected_count,
                  tf.strings.join(['key ', keys, ' has ', counts_s, f' {what}, expected ',
                                   str(expected_count)]), '')
  if sizes is not None:
    text = tf.where(
        (counts == expected_count) & (sizes != expected_size),
        tf.strings.join(['key ', keys, ' has ', tf.strings.as_string(sizes),
                         f' bytes, expected {expected_size}']), text)
  return tf.where(counts == 0, tf.strings.join(['key ', keys, ' is missing or empty']), text)


def _first_problem(problems: tf.Tensor) -> tf.Tensor:
  """'first problem (and N more problems)' from a vector of problem strings ('' = fine)."""
  found = tf.boolean_mask(problems, tf.strings.length(problems) > 0)
  more = tf.size(found) - 1
  suffix = tf.cond(more > 0,
                   lambda: tf.strings.join([' (and ', tf.strings.as_string(more),
                                            ' more problems)']), lambda: tf.constant(''))
  return tf.strings.join([found[0], suffix])


def _make_parser(camera: str, skip_bad_records: bool):
  """parse(file, index, record) -> (keep, dict), with the checks described in the module doc."""
  spec = _feature_spec(camera)
  image_keys = [image_key(t, camera) for t in range(NUM_FRAMES)]
  action_keys = [ACTION_KEY.format(t=t) for t in range(NUM_FRAMES)]
  state_keys = [STATE_KEY.format(t=t) for t in range(NUM_FRAMES)]

  def parse(file, index, record):
    name = tf.strings.join([file, ': record ', tf.strings.as_string(index)])
    # parse_example rather than parse_single_example: only it keeps example_names, so that a
    # feature of the wrong type fails with "Name: <file>: record <i>, Key: ...".
    parsed = tf.io.parse_example(record[None], spec, example_names=name[None])
    parsed = {k: v[0] for k, v in parsed.items()}  # each [count]
    images = [parsed[k] for k in image_keys]
    image_counts = tf.stack([tf.size(v) for v in images])  # [30]
    image_sizes = tf.stack([tf.reduce_sum(tf.strings.length(v)) for v in images])  # [30]
    action_counts = tf.stack([tf.size(parsed[k]) for k in action_keys])  # [30]
    state_counts = tf.stack([tf.size(parsed[k]) for k in state_keys])  # [30]
    ok = tf.reduce_all((image_counts == 1) & (image_sizes == IMAGE_BYTES)
                       & (action_counts == ACTION_DIM) & (state_counts == STATE_DIM))

    def reason():
      problems = tf.stack([
          _problem_text(image_keys, image_counts, 1, 'values', image_sizes, IMAGE_BYTES),
          _problem_text(action_keys, action_counts, ACTION_DIM, 'floats'),
          _problem_text(state_keys, state_counts, STATE_DIM, 'floats'),
      ], axis=1)  # [30, 3]: frame by frame, keys in the order image, action, state
      return _first_problem(tf.reshape(problems, [-1]))

    keep = tfrecord.keep_or_fail(ok, file, index, reason, skip_bad_records)

    def decode():
      raw = tf.strings.reduce_join(tf.stack([v[0] for v in images]))  # 30 x 12,288 bytes
      frames = tf.reshape(tf.io.decode_raw(raw, tf.uint8),
                          [NUM_FRAMES, IMAGE_SIZE, IMAGE_SIZE, CHANNELS])
      actions = tf.reshape(tf.stack([parsed[k] for k in action_keys]), [NUM_FRAMES, ACTION_DIM])
      states = tf.reshape(tf.stack([parsed[k] for k in state_keys]), [NUM_FRAMES, STATE_DIM])
      return frames, actions, states

    def zeros():  # placeholder for a record that is dropped or has already raised
      return (tf.zeros([NUM_FRAMES, IMAGE_SIZE, IMAGE_SIZE, CHANNELS], tf.uint8),
              tf.zeros([NUM_FRAMES, ACTION_DIM]), tf.zeros([NUM_FRAMES, STATE_DIM]))

    with tf.control_dependencies([keep]):
      frames, actions, states = tf.cond(keep, decode, zeros)
    return keep, {
        'frames': frames,  # uint8 [30, 64, 64, 3]
        'actions': actions,  # float32 [30, 4]
        'endeffector_pos': states,  # float32 [30, 3]
        'file': file,
        'index': index,
    }

  return parse


def record_dataset(files: Sequence[str],
                   camera: str = 'aux1',
                   skip_bad_records: bool = False,
                   shuffle: bool = False,
                   seed: Optional[int] = None,
                   num_parallel_reads: int = tf.data.AUTOTUNE) -> tf.data.Dataset:
  """Whole trajectories of BAIR files, one element per record.

  Args:
    files: .tfrecords paths (e.g. `split_files(...)`).
    camera: 'aux1' (SVG's) or 'main'.
    skip_bad_records: drop records with a missing key or wrong sizes, and the missing rest of a
      file shorter than its name says (logged and counted in `tfrecord.skipped_records()`),
      instead of raising. See the module doc for what is not covered.
    shuffle: shuffle the FILE order (seeded by `seed`, a new order each epoch) and interleave
      `num_parallel_reads` files. Records are not shuffled: callers add a shuffle buffer.
      shuffle=False reads exactly file by file, record by record.
    seed: file-order seed; with shuffle=True the order is reproducible only when it is given.
    num_parallel_reads: interleave cycle length when shuffle=True.

  Returns:
    Dataset of {'frames': uint8 [30, 64, 64, 3], 'actions': float32 [30, 4],
    'endeffector_pos': float32 [30, 3], 'file': string, 'index': int64 (record index in its
    file, from 0)}.
  """
  _check_camera(camera)
  if isinstance(files, (str, bytes)) or not files:
    raise ValueError(f'files must be a non-empty list of .tfrecords paths, got {files!r}')
  files = [str(f) for f in files]
  missing = [f for f in files if not tf.io.gfile.exists(f)]
  if missing:
    raise FileNotFoundError(f'{len(missing)} of {len(files)} BAIR files do not exist, e.g. '
                            f'{missing[0]}')
  records = tfrecord.file_records(files, shuffle=shuffle, seed=seed,
                                  num_parallel_reads=num_parallel_reads,
                                  expected_counts=[expected_records(f) for f in files],
                                  skip_bad_records=skip_bad_records, count_source=COUNT_SOURCE)
  # Unparsable bytes fail even with skip_bad_records (module doc): drop_unparsable=False.
  return tfrecord.parse_checked(records, _make_parser(camera, skip_bad_records), skip_bad_records,
                                drop_unparsable=False)


# --------------------------------------------------------------------------------------------------
# Train windows and the test set.


def train_dataset(data_dir: str,
                  seq_len: int,
                  seed: int,
                  camera: str = 'aux1',
                  skip_bad_records: bool = False,
                  num_shards: int = 1,
                  shard_index: int = 0,
                  shuffle_buffer: int = 256) -> tf.data.Dataset:
  """Infinite stream of random `seq_len`-frame windows of the train split, not batched.

  File order is shuffled (seeded, new each epoch); the k-th trajectory read gets its window start
  ~ U{0..30-seq_len} drawn statelessly from (seed, shard_index, k); windows then pass a seeded
  `shuffle_buffer`. The same seed gives the same stream element by element. Frames and actions
  are cut at the same start.

  Several input pipelines (multi-worker): pipeline `shard_index` of `num_shards` reads every
  num_shards-th file when there are at least num_shards files, else every num_shards-th record;
  either way the pipelines see disjoint trajectories. All of them must use the same seed.

  Args:
    data_dir: see `split_files`.
    seq_len: window length, 1..30.
    seed: stream seed (>= 0).
    camera: 'aux1' or 'main'.
    skip_bad_records: see `record_dataset`.
    num_shards: number of input pipelines (>= 1).
    shard_index: this pipeline, 0..num_shards-1.
    shuffle_buffer: records in the shuffle buffer (>= 1; 256 windows of 30 frames are ~94 MB).

  Returns:
    Dataset of {'frames': float32 [seq_len, 64, 64, 3] in [0, 1] (uint8 / 255),
    'actions': float32 [seq_len, 4]}.
  """
  _check_frames('seq_len', seq_len)
  seq_len = int(seq_len)
  if isinstance(seed, bool) or int(seed) != seed or seed < 0:
    raise ValueError(f'seed must be an integer >= 0, got {seed!r}')
  if int(num_shards) != num_shards or num_shards < 1 or not 0 <= shard_index < num_shards:
    raise ValueError(f'need num_shards >= 1 and 0 <= shard_index < num_shards, got '
                     f'num_shards={num_shards!r}, shard_index={shard_index!r}')
  if int(shuffle_buffer) != shuffle_buffer or shuffle_buffer < 1:
    raise ValueError(f'shuffle_buffer must be an integer >= 1, got {shuffle_buffer!r}')
  seed, num_shards, shard_index = int(seed), int(num_shards), int(shard_index)
  files = split_files(data_dir, 'train')
  shard_files = len(files) >= num_shards
  if shard_files:
    files = files[shard_index::num_shards]
  ds = record_dataset(files, camera=camera, skip_bad_records=skip_bad_records, shuffle=True,
                      seed=seed)
  if not shard_files:
    ds = ds.shard(num_shards, shard_index)  # the seeded file order is the same in every pipeline
  ds = ds.repeat().enumerate()
  stream_key = tf.constant([seed, shard_index], tf.int64)

  def window(k, example):
    element_seed = tf.random.experimental.stateless_fold_in(stream_key, k)
    steps = tfrecord.random_window(tf.range(NUM_FRAMES), seq_len, element_seed)  # [seq_len]
    return {'frames': tf.gather(example['frames'], steps),  # uint8 [seq_len, 64, 64, 3]
            'actions': tf.gather(example['actions'], steps)}  # [seq_len, 4]

  def to_float(example):
    return {'frames': tf.cast(example['frames'], tf.float32) / 255.0,
            'actions': example['actions']}

  ds = ds.map(window, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.shuffle(shuffle_buffer, seed=seed)  # uint8 in the buffer: 4x less memory than float
  ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def _first_trajectories(data_dir: str, split: str, num_frames: int, max_videos: Optional[int],
                        camera: str, skip_bad_records: bool) -> Tuple[np.ndarray, np.ndarray]:
  """uint8 frames [V, num_frames, 64, 64, 3] and actions [V, num_frames, 4], in file order."""
  _check_frames('num_frames', num_frames)
  if max_videos is not None and (int(max_videos) != max_videos or max_videos < 1):
    raise ValueError(f'max_videos must be None or an integer >= 1, got {max_videos!r}')
  files = split_files(data_dir, split)
  with tfrecord.explain_errors(lambda: check_records(files, cameras=(camera,))):
    ds = record_dataset(files, camera=camera, skip_bad_records=skip_bad_records)
    if max_videos is not None:
      ds = ds.take(int(max_videos))
    ds = ds.map(lambda e: (e['frames'][:num_frames], e['actions'][:num_frames]))
    frames, actions = [], []
    for f, a in ds.as_numpy_iterator():
      frames.append(f)
      actions.append(a)
  if not frames:
    raise ValueError(f'BAIR {split} split in {data_dir} yielded no trajectories')
  return np.stack(frames), np.stack(actions)


def test_videos(data_dir: str,
                num_frames: int = NUM_FRAMES,
                max_videos: Optional[int] = None,
                camera: str = 'aux1',
                skip_bad_records: bool = False) -> Tuple[np.ndarray, np.ndarray]:
  """The test split in file order (256 videos in the real data), the first num_frames of each.

  Returns:
    frames float32 [V, num_frames, 64, 64, 3] in [0, 1] (uint8 / 255) and actions float32
    [V, num_frames, 4]; V = all test trajectories, or the first max_videos.
  """
  frames, actions = _first_trajectories(data_dir, 'test', num_frames, max_videos, camera,
                                        skip_bad_records)
  return frames.astype(np.float32) / np.float32(255.0), actions


test_videos.__test__ = False  # a data function, not a pytest test


def write_preview(path_prefix: str, data_dir: str, split: str, count: int,
                  camera: str = 'aux1', skip_bad_records: bool = False) -> np.ndarray:
  """Writes <prefix>.npz (`frames` uint8 [K, 30, 64, 64, 3]) and <prefix>.gif (videos tiled).

  The K = count videos are the first trajectories of the split in file order, all 30 frames.
  """
  if int(count) != count or count < 1:
    raise ValueError(f'count must be an integer >= 1, got {count!r}')
  videos, _ = _first_trajectories(data_dir, split, NUM_FRAMES, count, camera, skip_bad_records)
  if len(videos) < count:
    raise ValueError(f'BAIR {split} split in {data_dir} has only {len(videos)} readable '
                     f'trajectories, fewer than count={count}')
  path_prefix = media.save_preview(path_prefix, videos)
  logging.info('preview | %d %s trajectories (%s) | %s.npz | %s.gif', count, split, camera,
               path_prefix, path_prefix)
  return videos


# --------------------------------------------------------------------------------------------------
# Diagnosis: the same checks in Python, record by record, for error reports and the CLI.


def record_problems(serialized: bytes, cameras: Sequence[str] = tuple(CAMERAS)) -> List[str]:
  """What is wrong with one serialised record ([] if nothing), checking the keys of `cameras`.

  Covers everything the graph checks plus bytes that are not a tf.train.Example and features of
  the wrong type. Messages read as the graph's do ('key 7/action has 3 floats, expected 4').
  """
  try:
    example = tf.train.Example.FromString(serialized)
  except message.DecodeError as e:
    return [f'not a tf.train.Example ({len(serialized)} bytes that do not parse: {e})']
  features = example.features.feature
  problems = []

  def check(key, kind, count, what, size=None):
    if key not in features or not getattr(features[key], kind).value:
      actual_kind = features[key].WhichOneof('kind') if key in features else None
      if actual_kind not in (None, kind):
        problems.append(f'key {key} holds {actual_kind}, expected {kind}')
      else:
        problems.append(f'key {key} is missing or empty')
      return
    values = getattr(features[key], kind).value
    if len(values) != count:
      problems.append(f'key {key} has {len(values)} {what}, expected {count}')
    elif size is not None and len(values[0]) != size:
      problems.append(f'key {key} has {len(values[0])} bytes, expected {size}')

  for t in range(NUM_FRAMES):
    for camera in cameras:
      check(image_key(t, camera), 'bytes_list', 1, 'values', IMAGE_BYTES)
    check(ACTION_KEY.format(t=t), 'float_list', ACTION_DIM, 'floats')
    check(STATE_KEY.format(t=t), 'float_list', STATE_DIM, 'floats')
  return problems


def _reason(problems: Sequence[str]) -> str:
  more = len(problems) - 1
  return problems[0] + (f' (and {more} more problems)' if more > 0 else '')


class CheckResult(NamedTuple):
  counts: Dict[str, int]  # file -> records read
  bad: List[Tuple[str, int, str]]  # (file, record index, reason)


def check_files(files: Sequence[str],
                cameras: Sequence[str] = tuple(CAMERAS),
                progress_every: int = 5000,
                stop_at_first: bool = False) -> CheckResult:
  """Reads every record of `files` in order and checks it with `record_problems`.

  A file that cannot be read on (truncated, bad CRC) is reported as one bad entry at the first
  unreadable record, a file that reads cleanly but ends before the count in its name
  (`expected_records`) as one at its first missing record; the check goes on with the next file.
  Logs progress every `progress_every` records.
  """
  for camera in cameras:
    _check_camera(camera)
  counts, bad = {}, []
  total, start = 0, time.time()
  for number, file in enumerate(files):
    index = 0
    try:
      for record in tf.data.TFRecordDataset(file):
        problems = record_problems(record.numpy(), cameras)
        if problems:
          bad.append((file, index, _reason(problems)))
          logging.warning('check | bad record | %s: record %d: %s', file, index, bad[-1][2])
          if stop_at_first:
            return CheckResult(counts, bad)
        index += 1
        total += 1
        if total % progress_every == 0:
          elapsed = max(time.time() - start, 1e-9)
          eta = f'{elapsed / number * (len(files) - number):.0f}s' if number else 'after a file'
          logging.info('check | %d records | file %d of %d | %d bad | %.0f records/s | ETA %s',
                       total, number + 1, len(files), len(bad), total / elapsed, eta)
    except tf.errors.OpError as e:
      detail = e.message.strip().splitlines()[0] if e.message else type(e).__name__
      bad.append((file, index, f'cannot be read, nor any record after it (truncated or '
                               f'corrupted file): {type(e).__name__}: {detail}'))
      logging.warning('check | unreadable | %s: record %d: %s', file, index, bad[-1][2])
      if stop_at_first:
        return CheckResult(counts, bad)
    else:
      expected = expected_records(file)
      if expected is not None and index < expected:
        bad.append((file, index, f'missing, as every record after it: the file ends after '
                                 f'{index} of its {expected} records ({COUNT_SOURCE}); it was '
                                 f'cut short at a record boundary'))
        logging.warning('check | short file | %s: record %d: %s', file, index, bad[-1][2])
        if stop_at_first:
          return CheckResult(counts, bad)
    counts[file] = index
  logging.info('check | done | %d records in %d files | %d bad | %.1f s', total, len(files),
               len(bad), time.time() - start)
  return CheckResult(counts, bad)


def check_records(files: Sequence[str],
                  cameras: Sequence[str] = tuple(CAMERAS)) -> Dict[str, int]:
  """Reads `files` in order like `check_files`, but raises at the first bad record.

  The `check` for `tfrecord.raise_bad_record` / `tfrecord.explain_errors`, like
  `tfrecord.check_records` for video TFRecords. Returns {file: number of records} when all are
  good.

  Raises:
    tfrecord.CorruptRecordError: '<file>: record <i>: <what is wrong>'.
  """
  result = check_files(files, cameras, stop_at_first=True)
  if result.bad:
    file, index, reason = result.bad[0]
    raise tfrecord.CorruptRecordError(f'{file}: record {index}: {reason}')
  return result.counts


# --------------------------------------------------------------------------------------------------
# Command line. Flags are defined only when this file runs as a script: train.py imports the module.


def _define_flags():
  """Defines the CLI flags; called only under __main__ so importers keep a clean flag namespace."""
  flags.DEFINE_string('data_dir', None,
                      f'Folder holding {DATASET_FOLDER}/ (the extracted '
                      f'bair_robot_pushing_dataset_v0.tar), or {DATASET_FOLDER}/ itself.')
  flags.DEFINE_enum('split', 'test', list(SPLITS), 'BAIR split to check or preview.')
  flags.DEFINE_string('preview_out', None,
                      'Path prefix P: writes P.npz (uint8 frames [K, 30, 64, 64, 3], the first K '
                      'trajectories in file order) and P.gif. Without it: check every record of '
                      'the split and print a summary.')
  flags.DEFINE_integer('preview_num', 8, 'K, the number of trajectories in the preview.',
                       lower_bound=1)
  flags.DEFINE_enum('bair_camera', 'aux1', list(CAMERAS),
                    'Camera of the preview: aux1 (the one SVG uses) or main.')
  flags.DEFINE_boolean('skip_bad_records', False,
                       'Preview: skip bad records (missing keys, wrong sizes, the missing rest of '
                       'a truncated file; logged) instead of failing. The check always reports '
                       'all of them.')
  flags.mark_flag_as_required('data_dir')


_PREVIEW_FLAGS = ('preview_num', 'bair_camera', 'skip_bad_records')


def print_summary(data_dir: str, split: str) -> int:
  """Checks every record of the split (`check_files`), prints a summary; returns the bad count.

  Files holding more records than their names say get a warning line: they read fine, and training
  uses every record, but the name (or the file) is not what the download holds.
  """
  files = split_files(data_dir, split)
  print(f'BAIR {split}: {len(files)} files in {os.path.dirname(files[0])}; checking every record')
  result = check_files(files)
  total = sum(result.counts.values())
  print(f'BAIR {split}: {len(files)} files, {total} records, {len(result.bad)} bad')
  for file, index, reason in result.bad[:50]:
    print(f'  bad: {file}: record {index}: {reason}')
  if len(result.bad) > 50:
    print(f'  ... and {len(result.bad) - 50} more bad records')
  for file, count in result.counts.items():
    expected = expected_records(file)
    if expected is not None and count > expected:
      print(f'  warning: {file}: holds {count} records, {count - expected} more than the '
            f'{expected} its name says; they are read like the others')
  return len(result.bad)


def main(argv):
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  del argv  # command_line.run refuses positional arguments
  given = [f'--{name}' for name in _PREVIEW_FLAGS if FLAGS[name].present]
  if given and not FLAGS.preview_out:
    raise UserError(f'{", ".join(given)} only apply with --preview_out (the check reads every '
                    'record of both cameras)')
  if FLAGS.preview_out:  # before reading any data
    command_line.check_output_dir(os.path.dirname(os.path.abspath(FLAGS.preview_out)),
                                  'preview_out')
  try:
    if not FLAGS.preview_out:
      return 1 if print_summary(FLAGS.data_dir, FLAGS.split) else 0
    write_preview(FLAGS.preview_out, FLAGS.data_dir, FLAGS.split, FLAGS.preview_num,
                  camera=FLAGS.bair_camera, skip_bad_records=FLAGS.skip_bad_records)
  except (OSError, ValueError) as err:  # FileNotFoundError: --data_dir; CorruptRecordError
    raise UserError(str(err)) from None
  return 0


if __name__ == '__main__':
  _define_flags()
  command_line.run(main)
