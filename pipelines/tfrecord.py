"""Video TFRecords shared by the SM-MNIST test set and (later) BAIR and KTH.

One `tf.train.Example` per video:
  frames               bytes   raw uint8, C-order, T*H*W*C bytes
  shape                int64   [T, H, W, C]
  extra/<name>         int64 or float list, the flattened array (bool and ints -> int64)
  extra/<name>/shape   int64   the array's shape
  extra/<name>/dtype   bytes   numpy dtype name, so readers get back the dtype that was written

A dataset is one folder: `<prefix>-00000-of-00010.tfrecord` shards plus `dataset_info.json` (the
caller's info, the example count, the shard list with per-shard counts and a feature description).
Writes are atomic (temporary name in the same folder, then rename), and `dataset_info.json` is
written last, so a folder that has it is complete. Writers that plan their own shards (KTH's
resumable conversion) use `write_shard` per shard, then `merge_features` and `write_dataset_info`,
with the same guarantees. Readers key every record by (file, index) and turn unreadable data into
errors that name both, because "DataLossError: corrupted record at 123456" from deep inside tf.data
says neither.

The bad-record mechanism here serves every TFRecord source (these folders, SM-MNIST's and converted
KTH's, and BAIR's native files, whose record checks live in pipelines/bair.py):
  file_records      (file, index, record) of a file list, in order or interleaved in shuffled order
  keep_or_fail      a record check's verdict in the graph: fail with 'bad record: <file>: record
                    <i>: <reason>', or with skip_bad_records log and count the record and drop it
  parse_checked     apply a parser that returns (keep, element), keeping what passes
  skipped_records   what all readers with skip_bad_records dropped, {file: count}
  raise_bad_record  turn an error met while iterating into CorruptRecordError naming file and
                    record: from the error's text, else by reading the data again in Python
"""

import contextlib
import json
import math
import os
import re
import threading
import time
import uuid
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Union

from absl import logging
import numpy as np
import tensorflow as tf

from svg_tf.media import write_file_atomic

INFO_FILE = 'dataset_info.json'
SHARD_SUFFIX = '.tfrecord'
SHARD_PATTERN = '*-?????-of-?????' + SHARD_SUFFIX
FRAMES_KEY = 'frames'
SHAPE_KEY = 'shape'
EXTRA_PREFIX = 'extra/'
RESERVED_NAMES = ('frames', 'file', 'index')  # keys of video_dataset's elements
_INFO_KEYS = ('num_examples', 'shards', 'shard_counts', 'features')  # set by write_shards


class CorruptRecordError(ValueError):
  """A record that cannot be read or parsed; the message names the file and the record index."""


# --------------------------------------------------------------------------------------------------
# Writing.


def _int64_feature(values) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _bytes_feature(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def video_example(frames_uint8: np.ndarray,
                  extras: Optional[Mapping[str, np.ndarray]] = None) -> tf.train.Example:
  """Serialisable record of one video: uint8 frames [T, H, W, C] plus named numeric arrays."""
  frames = np.asarray(frames_uint8)
  if frames.dtype != np.uint8 or frames.ndim != 4:
    raise ValueError(f'frames_uint8 must be uint8 [T, H, W, C], got {frames.dtype} {frames.shape}')
  feature = {
      FRAMES_KEY: _bytes_feature(np.ascontiguousarray(frames).tobytes()),
      SHAPE_KEY: _int64_feature(list(frames.shape)),
  }
  for name, value in sorted((extras or {}).items()):
    if not name or '/' in name or name in RESERVED_NAMES:
      raise ValueError(f'extra name {name!r} is empty, contains "/" or is one of {RESERVED_NAMES}')
    value = np.asarray(value)
    key = EXTRA_PREFIX + name
    if value.dtype == np.bool_ or np.issubdtype(value.dtype, np.integer):
      feature[key] = _int64_feature(value.astype(np.int64).ravel().tolist())
    elif np.issubdtype(value.dtype, np.floating):
      feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=value.ravel().tolist()))
    else:
      raise ValueError(f'extra {name!r}: dtype {value.dtype} is neither integer, bool nor float')
    feature[key + '/shape'] = _int64_feature(list(value.shape))
    feature[key + '/dtype'] = _bytes_feature(value.dtype.name.encode())
  return tf.train.Example(features=tf.train.Features(feature=feature))


def _describe(example: tf.train.Example) -> Dict[str, Any]:
  """Feature description of one example: frame shape, and dtype/shape of each extra."""
  feats = example.features.feature
  extras = {}
  for key in feats:
    if key.startswith(EXTRA_PREFIX) and key.count('/') == 1:
      if key + '/dtype' in feats:
        dtype = feats[key + '/dtype'].bytes_list.value[0].decode()
      else:  # written by other code: the list kind decides
        dtype = 'float32' if feats[key].WhichOneof('kind') == 'float_list' else 'int64'
      extras[key[len(EXTRA_PREFIX):]] = {
          'dtype': dtype,
          'shape': list(feats[key + '/shape'].int64_list.value),
      }
  return {'frames': {'dtype': 'uint8', 'shape': list(feats[SHAPE_KEY].int64_list.value)},
          'extras': dict(sorted(extras.items()))}


def _merge_shape(a: Sequence[Optional[int]], b: Sequence[int]):
  return [x if x == y else None for x, y in zip(a, b)]  # None: varies between examples


def _merge_description(spec: Optional[Dict[str, Any]], new: Dict[str, Any], index: int):
  if spec is None:
    return new
  where = f'example {index}'
  if len(new['frames']['shape']) != len(spec['frames']['shape']):
    raise ValueError(f'{where}: frames rank differs from the first example')
  if {k: v['dtype'] for k, v in new['extras'].items()} != {
      k: v['dtype'] for k, v in spec['extras'].items()}:
    raise ValueError(f'{where}: extras {sorted(new["extras"])} (with dtypes) differ from the first '
                     f'example\'s {sorted(spec["extras"])}; all examples must have the same extras')
  spec['frames']['shape'] = _merge_shape(spec['frames']['shape'], new['frames']['shape'])
  for name, e in new['extras'].items():
    if len(e['shape']) != len(spec['extras'][name]['shape']):
      raise ValueError(f'{where}: extra {name!r} rank differs from the first example')
    spec['extras'][name]['shape'] = _merge_shape(spec['extras'][name]['shape'], e['shape'])
  return spec


def shard_name(prefix: str, index: int, num_shards: int) -> str:
  return f'{prefix}-{index:05d}-of-{num_shards:05d}{SHARD_SUFFIX}'


def write_shards(out_dir: str,
                 examples: Iterable[Union[tf.train.Example, bytes]],
                 num_examples: int,
                 examples_per_shard: int,
                 info: Mapping[str, Any],
                 progress_every: int = 1000,
                 prefix: str = 'data',
                 overwrite: bool = False) -> Dict[str, Any]:
  """Writes `num_examples` examples into ceil(num_examples / examples_per_shard) shards.

  Args:
    out_dir: dataset folder (created). One dataset per folder.
    examples: iterable of `tf.train.Example` (or their serialised bytes); exactly `num_examples`
      are consumed and it must not run out earlier.
    num_examples: number of examples to write (>= 1).
    examples_per_shard: shard size (>= 1); the last shard may be smaller.
    info: JSON-serialisable facts about the data (dataset name, split, seed...), stored in
      dataset_info.json next to num_examples, shards, shard_counts and features.
    progress_every: log a progress line every this many examples.
    prefix: shard file prefix, e.g. the split name.
    overwrite: replace an existing dataset in `out_dir` (its info file is removed first, so a crash
      midway never leaves an info file describing a mix of old and new shards).

  Returns:
    The dict written to dataset_info.json.

  Raises:
    ValueError: bad sizes, reserved info keys, examples that run out or whose extras differ from
      the first example's. Shards completed before the error stay, but without dataset_info.json
      readers refuse the folder.
    FileExistsError: `out_dir` holds a dataset and overwrite is False.
  """
  if num_examples < 1 or examples_per_shard < 1:
    raise ValueError(f'num_examples ({num_examples}) and examples_per_shard '
                     f'({examples_per_shard}) must be >= 1')
  clash = sorted(set(info) & set(_INFO_KEYS))
  if clash:
    raise ValueError(f'info keys {clash} are reserved for write_shards')
  tf.io.gfile.makedirs(out_dir)
  info_path = os.path.join(out_dir, INFO_FILE)
  old = tf.io.gfile.glob(os.path.join(out_dir, SHARD_PATTERN))
  if tf.io.gfile.exists(info_path) or old:
    if not overwrite:
      raise FileExistsError(f'{out_dir} already holds a dataset ({INFO_FILE} or shards); choose an '
                            'empty folder or pass overwrite=True')
    if tf.io.gfile.exists(info_path):
      tf.io.gfile.remove(info_path)
    for path in old:
      tf.io.gfile.remove(path)

  num_shards = math.ceil(num_examples / examples_per_shard)
  iterator = iter(examples)
  names, counts, spec = [], [], None
  written, start = 0, time.time()
  for k in range(num_shards):
    count = min(examples_per_shard, num_examples - written)
    name = shard_name(prefix, k, num_shards)
    path = os.path.join(out_dir, name)
    tmp = f'{path}.tmp-{uuid.uuid4().hex}'
    try:
      with tf.io.TFRecordWriter(tmp) as writer:
        for _ in range(count):
          try:
            example = next(iterator)
          except StopIteration:
            raise ValueError(f'examples ran out after {written} of num_examples={num_examples}'
                             ) from None
          if isinstance(example, bytes):
            serialized, example = example, tf.train.Example.FromString(example)
          else:
            serialized = example.SerializeToString()
          spec = _merge_description(spec, _describe(example), written)
          writer.write(serialized)
          written += 1
          if written % progress_every == 0 and written < num_examples:
            rate = written / max(time.time() - start, 1e-9)
            logging.info('write | shard %d/%d | %d/%d examples | %.1f examples/s | ETA %.0fs',
                         k + 1, num_shards, written, num_examples, rate,
                         (num_examples - written) / rate)
      tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
      if tf.io.gfile.exists(tmp):
        tf.io.gfile.remove(tmp)
    names.append(name)
    counts.append(count)
    logging.info('write | shard %d/%d | %d/%d examples | %.1f examples/s | %s', k + 1, num_shards,
                 written, num_examples, written / max(time.time() - start, 1e-9), path)

  full_info = dict(info)
  full_info.update(num_examples=num_examples, shards=names, shard_counts=counts, features=spec)
  write_file_atomic(info_path, json.dumps(full_info, indent=2, sort_keys=True) + '\n')
  logging.info('write | done | %d examples in %d shards | %s', num_examples, num_shards, out_dir)
  return full_info


def write_shard(path: str,
                examples: Iterable[Union[tf.train.Example, bytes]]) -> Dict[str, Any]:
  """Writes one shard file atomically, for writers that plan their own shards (e.g. resumable ones).

  The records go to a temporary name beside `path`, renamed to `path` only after the last one, so a
  killed writer never leaves a partial shard under its final name (a later run may delete the
  `<path>.tmp-*` leftovers). Pair with `merge_features` and `write_dataset_info`.

  Args:
    path: final shard path; name it with `shard_name` so readers find it.
    examples: `tf.train.Example`s or their serialised bytes, possibly none (an empty shard).

  Returns:
    {'count': records written, 'bytes': file size, 'features': the feature description of these
    records (as in dataset_info.json), None when there are none}. Examples are serialised
    deterministically, so equal examples give byte-identical shards in any process.

  Raises:
    ValueError: examples whose extras differ from the first one's. Nothing is left at `path`.
  """
  tmp = f'{path}.tmp-{uuid.uuid4().hex}'
  count, spec = 0, None
  try:
    with tf.io.TFRecordWriter(tmp) as writer:
      for example in examples:
        if isinstance(example, bytes):
          serialized, example = example, tf.train.Example.FromString(example)
        else:  # map order fixed: the same examples give the same bytes in every process
          serialized = example.SerializeToString(deterministic=True)
        spec = _merge_description(spec, _describe(example), count)
        writer.write(serialized)
        count += 1
    tf.io.gfile.rename(tmp, path, overwrite=True)
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)
  return {'count': count, 'bytes': tf.io.gfile.stat(path).length, 'features': spec}


def merge_features(descriptions: Iterable[Optional[Mapping[str, Any]]]) -> Optional[Dict[str, Any]]:
  """One feature description for several shards' (`write_shard`'s 'features'; None entries skipped).

  Dimensions that differ become None, as in `write_shards`. Raises ValueError when extras differ.
  """
  spec = None
  for index, description in enumerate(descriptions):
    if description is not None:
      spec = _merge_description(spec, json.loads(json.dumps(description)), index)
  return spec


def write_dataset_info(out_dir: str, info: Mapping[str, Any], shards: Sequence[str],
                       shard_counts: Sequence[int],
                       features: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
  """Writes dataset_info.json for shards written with `write_shard`; call it after the last shard.

  Args:
    out_dir: the dataset folder.
    info: the caller's JSON-serialisable facts (keys other than those set here).
    shards: shard base names, in reading order.
    shard_counts: records per shard.
    features: `merge_features` of the shards' descriptions.

  Returns:
    The dict written, readable with `read_info` / `video_dataset` like `write_shards`' output.
  """
  clash = sorted(set(info) & set(_INFO_KEYS))
  if clash:
    raise ValueError(f'info keys {clash} are reserved for write_dataset_info')
  if len(shards) != len(shard_counts):
    raise ValueError(f'{len(shards)} shards but {len(shard_counts)} shard_counts')
  full_info = dict(info)
  full_info.update(num_examples=int(sum(shard_counts)), shards=list(shards),
                   shard_counts=[int(c) for c in shard_counts], features=features)
  write_file_atomic(os.path.join(out_dir, INFO_FILE),
                    json.dumps(full_info, indent=2, sort_keys=True) + '\n')
  return full_info


# --------------------------------------------------------------------------------------------------
# Reading.


def read_info(data_dir: str) -> Dict[str, Any]:
  """Contents of `data_dir`/dataset_info.json (written last, so its presence means complete)."""
  path = os.path.join(data_dir, INFO_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path} not found: {data_dir} is not a finished dataset folder '
                            f'({INFO_FILE} is written after the last shard)')
  with tf.io.gfile.GFile(path, 'r') as f:
    return json.loads(f.read())


def list_shards(data_dir: str) -> list:
  """Sorted shard paths of `data_dir`; checked against dataset_info.json when that exists."""
  files = sorted(tf.io.gfile.glob(os.path.join(data_dir, SHARD_PATTERN)))
  if not files:
    raise FileNotFoundError(f'no {SHARD_PATTERN} shards in {data_dir}')
  if tf.io.gfile.exists(os.path.join(data_dir, INFO_FILE)):
    expected = read_info(data_dir).get('shards')
    found = [os.path.basename(f) for f in files]
    if expected is not None and sorted(expected) != found:
      missing = sorted(set(expected) - set(found))
      extra = sorted(set(found) - set(expected))
      raise ValueError(f'{data_dir}: shards differ from {INFO_FILE}: missing {missing}, '
                       f'unexpected {extra}')
  return files


def _parse_spec(features: Optional[Mapping[str, Any]]):
  spec = {FRAMES_KEY: tf.io.FixedLenFeature([], tf.string),
          SHAPE_KEY: tf.io.FixedLenFeature([4], tf.int64)}
  extras = (features or {}).get('extras', {})
  for name, e in extras.items():
    kind = tf.float32 if np.issubdtype(np.dtype(e['dtype']), np.floating) else tf.int64
    spec[EXTRA_PREFIX + name] = tf.io.FixedLenSequenceFeature([], kind, allow_missing=True)
    spec[EXTRA_PREFIX + name + '/shape'] = tf.io.FixedLenFeature([len(e['shape'])], tf.int64)
  return spec, extras


# --------------------------------------------------------------------------------------------------
# Bad records: the mechanism every TFRecord source uses (these folders, converted KTH, BAIR).

BAD_RECORD = 'bad record: '  # starts the reading checks' messages, so callers can find them


class _SkipLog:
  """Thread-safe record of what readers with skip_bad_records=True dropped.

  A repeated (training) stream meets the same bad record every epoch: it is logged and counted once.
  """

  def __init__(self):
    self.lock = threading.Lock()
    self.records = {}  # {(file, index): records lost there (a file's unreadable tail counts all)}

  def add(self, file, index, count, reason) -> bool:
    file, index, count = file.numpy().decode(), int(index.numpy()), int(count.numpy())
    with self.lock:
      new = (file, index) not in self.records
      self.records[(file, index)] = count
      total = sum(self.records.values())
    if new:
      logging.warning('tfrecord | skipped bad record | %s: record %d: %s | %d bad records skipped '
                      'so far', file, index, reason.numpy().decode(errors='replace'), total)
    return False  # the filter's "keep" value


_SKIPPED = _SkipLog()


def skipped_records() -> Dict[str, int]:
  """{file: number of distinct records skipped} by all readers with skip_bad_records=True."""
  counts = {}
  with _SKIPPED.lock:
    for (file, _), count in _SKIPPED.records.items():
      counts[file] = counts.get(file, 0) + count
  return counts


def reset_skipped_records() -> None:
  """Forgets the skipped records (they are logged again when met again)."""
  with _SKIPPED.lock:
    _SKIPPED.records.clear()


def keep_or_fail(ok, file, index, reason_fn, skip_bad_records: bool, count=1):
  """The verdict on one record, in the graph: True for a good record (`ok`, a scalar bool).

  A bad one, with skip_bad_records, is logged once and counted in `skipped_records()` under
  (file, index) (`count` records lost) and gets False, for the caller to drop (`parse_checked`);
  this runs a tf.py_function, only for bad records, so such a pipeline cannot be serialised (e.g.
  for the tf.data service). Otherwise reading fails with InvalidArgumentError
  'bad record: <file>: record <index>: <reason_fn()>', which `raise_bad_record` turns into a
  CorruptRecordError. `reason_fn` () -> string tensor is evaluated for bad records only.
  """
  reason = tf.cond(ok, lambda: tf.constant(''), reason_fn)  # text built only for bad records
  if skip_bad_records:
    return tf.cond(ok, lambda: tf.constant(True), lambda: tf.py_function(
        _SKIPPED.add, [file, index, tf.cast(count, tf.int64), reason], tf.bool))
  message = tf.strings.join([BAD_RECORD, file, ': record ', tf.strings.as_string(index), ': ',
                             reason])
  with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
    return tf.identity(ok)


def checked_parser(features: Optional[Mapping[str, Any]], skip_bad_records: bool):
  """parse(file, index, record) -> (keep, dict(frames, file, index, **extras)).

  Checks, naming the file and record: the byte count of `frames` against prod(shape), and the
  shape against the dataset's declared frame shape (its known dimensions). A record that is not a
  tf.train.Example with frames and shape fails inside the parser, which names it for most errors.
  """
  spec, extras = _parse_spec(features)
  frame_shape = (features or {}).get('frames', {}).get('shape', [None] * 4)
  declared = tf.constant([-1 if d is None else d for d in frame_shape], tf.int64)
  declared_text = 'x'.join('?' if d is None else str(d) for d in frame_shape)

  def parse(file, index, record):
    name = tf.strings.join([file, ': record ', tf.strings.as_string(index)])
    parsed = tf.io.parse_example(record[None], spec, example_names=name[None])
    parsed = {k: v[0] for k, v in parsed.items()}
    shape = parsed[SHAPE_KEY]  # [T, H, W, C]
    num_bytes = tf.cast(tf.strings.length(parsed[FRAMES_KEY]), tf.int64)
    expected = tf.reduce_prod(shape)
    size_ok = tf.equal(num_bytes, expected)
    shape_ok = tf.reduce_all((declared < 0) | tf.equal(shape, declared))
    shape_text = tf.strings.reduce_join(tf.strings.as_string(shape), separator='x')

    def reason():
      return tf.cond(
          size_ok,
          lambda: tf.strings.join(['frames have shape ', shape_text, ', the dataset declares ',
                                   declared_text]),
          lambda: tf.strings.join(['frames has ', tf.strings.as_string(num_bytes), ' bytes, shape ',
                                   shape_text, ' needs ', tf.strings.as_string(expected)]))

    keep = keep_or_fail(size_ok & shape_ok, file, index, reason, skip_bad_records)
    with tf.control_dependencies([keep]):
      frames = tf.cond(keep, lambda: tf.reshape(tf.io.decode_raw(parsed[FRAMES_KEY], tf.uint8),
                                                shape),
                       lambda: tf.zeros([0, 0, 0, 0], tf.uint8))  # dropped by the caller
    frames.set_shape(frame_shape)  # [T, H, W, C], None where it varies
    out = {'frames': frames, 'file': file, 'index': index}
    for name, e in extras.items():
      value = tf.reshape(parsed[EXTRA_PREFIX + name], parsed[EXTRA_PREFIX + name + '/shape'])
      value = tf.cast(value, tf.as_dtype(np.dtype(e['dtype'])))
      value.set_shape(e['shape'])
      out[name] = value
    return keep, out

  return parse


def make_parser(features: Optional[Mapping[str, Any]] = None):
  """Returns parse(file, index, record) -> dict(frames, file, index, **extras).

  `features` is dataset_info.json's "features" entry (None: frames only). The byte count of
  `frames` is checked against prod(shape), and the shape against the declared frame shape, failing
  with the file and record index in the message.
  """
  checked = checked_parser(features, skip_bad_records=False)
  return lambda file, index, record: checked(file, index, record)[1]


def indexed_records(file):
  """(file, index within file, serialised record) for each record of one file, in order."""
  return tf.data.TFRecordDataset(file).enumerate().map(lambda i, r: (file, i, r))


def counted_records(file, expected, skip_bad_records: bool,
                    count_source: str = 'dataset_info.json counts'):
  """`indexed_records` of a file that should hold `expected` records, checking that it does.

  TFRecordDataset stops at the first record it cannot read (truncated or corrupted file) with a
  DataLossError naming neither file nor record. Here that error ends the file's records, and the
  count read so far names the first missing record: an error, or with skip_bad_records a logged skip
  of the rest of the file (counted as the `expected` - read records lost). A file cut at a record
  boundary, which reads without error, is caught the same way. `count_source` says where
  `expected` comes from, in the message. Records beyond `expected` are read like the others.
  """
  records = tf.data.TFRecordDataset(file).enumerate().ignore_errors()
  end = tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64), tf.constant('')))

  def count(read, element):
    i, record = element
    return tf.where(i < 0, read, i + 1), (i, record, read)

  def keep(i, record, read):
    del record

    def reason():
      return tf.strings.join([
          'missing or unreadable, as every record after it: the file ends after ',
          tf.strings.as_string(read), ' of its ', tf.strings.as_string(expected),
          f' records ({count_source}); it is truncated or corrupted'])

    complete = keep_or_fail((i >= 0) | (read >= expected), file, read, reason, skip_bad_records,
                            count=expected - read)
    return complete & (i >= 0)

  return records.concatenate(end).scan(tf.constant(0, tf.int64), count).filter(keep).map(
      lambda i, record, read: (file, i, record))


def file_records(files: Sequence[str],
                 shuffle: bool = False,
                 seed: Optional[int] = None,
                 num_parallel_reads: int = tf.data.AUTOTUNE,
                 expected_counts: Optional[Sequence[Optional[int]]] = None,
                 skip_bad_records: bool = False,
                 count_source: str = 'dataset_info.json counts') -> tf.data.Dataset:
  """(file, index within file, serialised record) of every record of `files`.

  shuffle=False reads exactly file by file, record by record. shuffle=True shuffles the file order
  with `seed` (a new order each epoch; reproducible only when a seed is given) and interleaves
  `num_parallel_reads` files. `expected_counts` (records per file, in the order of `files`; None
  where unknown) checks each file's length with `counted_records` (`count_source` says where the
  counts come from). Files of unknown length are read as they are: an unreadable one fails with
  TensorFlow's DataLossError, with or without skip_bad_records (see `raise_bad_record`).
  """
  files = [str(f) for f in files]
  if expected_counts is not None and len(expected_counts) != len(files):
    raise ValueError(f'{len(files)} files but {len(expected_counts)} expected_counts')
  known = [c is not None for c in expected_counts or ()]
  if not any(known):
    ds = tf.data.Dataset.from_tensor_slices(files)
    read = indexed_records
  else:
    counts = np.array([-1 if c is None else c for c in expected_counts], np.int64)
    ds = tf.data.Dataset.from_tensor_slices((files, counts))

    def read(file, expected):
      counted = counted_records(file, expected, skip_bad_records, count_source)
      if all(known):
        return counted
      # Some files of unknown length (-1): the count decides, per file, which reader yields.
      return tf.data.Dataset.choose_from_datasets(
          [indexed_records(file), counted],
          tf.data.Dataset.from_tensors(tf.cast(expected >= 0, tf.int64)).repeat())
  if shuffle:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    return ds.interleave(read, cycle_length=num_parallel_reads,
                         num_parallel_calls=num_parallel_reads, deterministic=seed is not None)
  return ds.flat_map(read)


def parse_checked(records: tf.data.Dataset, parse, skip_bad_records: bool,
                  drop_unparsable: bool = True) -> tf.data.Dataset:
  """The elements of `records` ((file, index, record) tuples) that `parse` keeps.

  `parse(file, index, record) -> (keep, element)` checks each record with `keep_or_fail` (e.g.
  `checked_parser`). With skip_bad_records the records it rejects are dropped; and when
  `drop_unparsable`, also those the parser itself fails on (bytes that are not a
  tf.train.Example), reported only in TensorFlow's log. Without skip_bad_records a bad record
  fails the iteration (see `raise_bad_record`).
  """
  ds = records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if skip_bad_records:
    if drop_unparsable:
      ds = ds.ignore_errors(log_warning=True)
    ds = ds.filter(lambda keep, element: keep)
  return ds.map(lambda keep, element: element)


def video_dataset(data_dir: str,
                  shuffle_files: bool,
                  seed: Optional[int] = None,
                  num_parallel_reads: int = tf.data.AUTOTUNE,
                  skip_bad_records: bool = False) -> tf.data.Dataset:
  """Videos of a write_shards folder as dicts.

  Elements: {'frames': uint8 [T, H, W, C], 'file': string, 'index': int64 (record index in its
  file), plus one entry per extra with the dtype and shape it was written with}.

  With shuffle_files=False the order is exactly file by file, record by record (an evaluation set
  reads the same every time). With shuffle_files=True the shard order is shuffled with `seed` and
  `num_parallel_reads` shards are interleaved; the order is reproducible only when a seed is given.

  Bad data fails when iterated with an error naming the file and record ('bad record: <file>:
  record <i>: ...'): a file with fewer readable records than dataset_info.json counts (truncated
  or corrupted: the first unreadable record is named), frames whose byte count or shape is wrong.
  With skip_bad_records those records (for a short file: its unreadable rest) are dropped, each
  logged once and counted in `skipped_records()`; bytes that are not a tf.train.Example are then
  dropped too, reported only in TensorFlow's log. Frames are uint8, so their values cannot be out
  of range.
  """
  info = read_info(data_dir)
  files = list_shards(data_dir)
  counts = dict(zip(info.get('shards', []), info.get('shard_counts', [])))
  expected = None  # no counts to check against (a folder written by other code)
  if all(os.path.basename(f) in counts for f in files):
    expected = [counts[os.path.basename(f)] for f in files]
  records = file_records(files, shuffle=shuffle_files, seed=seed,
                         num_parallel_reads=num_parallel_reads, expected_counts=expected,
                         skip_bad_records=skip_bad_records)
  return parse_checked(records, checked_parser(info.get('features'), skip_bad_records),
                       skip_bad_records)


# --------------------------------------------------------------------------------------------------
# Diagnosis.


def check_records(files: Sequence[str],
                  features: Optional[Mapping[str, Any]] = None,
                  expected_counts: Optional[Mapping[str, int]] = None) -> Dict[str, int]:
  """Reads and parses every record of `files` in order; returns {file: number of records}.

  Raises:
    CorruptRecordError: naming the file and record index where reading (e.g. a truncated file,
      tf.errors.DataLossError) or parsing fails, or a file whose record count differs from
      `expected_counts` (keyed by base name, as in dataset_info.json).
  """
  parse = make_parser(features)
  options = tf.data.Options()
  options.experimental_optimization.apply_default_optimizations = False  # strictly sequential
  counts = {}
  for file in files:
    ds = indexed_records(tf.constant(file)).map(parse).with_options(options)
    index = 0
    try:
      for _ in ds:
        index += 1
    except (tf.errors.OpError, ValueError) as e:
      detail = getattr(e, 'message', str(e)).strip().splitlines()[0]
      raise CorruptRecordError(f'{file}: record {index} cannot be read or parsed (records before it '
                               f'are fine): {type(e).__name__}: {detail}') from e
    counts[file] = index
    if expected_counts is not None:
      want = expected_counts.get(os.path.basename(file))
      if want is not None and want != index:
        raise CorruptRecordError(f'{file}: has {index} records but {INFO_FILE} says {want}: the '
                                 f'file ends early at record {index}')
  return counts


def check_dataset(data_dir: str) -> Dict[str, int]:
  """`check_records` over the shards of a write_shards folder, against dataset_info.json's counts
  and features (when it has them). Raises CorruptRecordError at the first bad record."""
  try:
    info = read_info(data_dir)
  except FileNotFoundError:
    info = {}
  expected = None
  if 'shards' in info and 'shard_counts' in info:
    expected = dict(zip(info['shards'], info['shard_counts']))
  return check_records(list_shards(data_dir), info.get('features'), expected)


# Errors that bad data can cause while iterating; re-reading the data is worth it for these only.
_DATA_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError, UnicodeDecodeError)
_PARSER_ERROR = re.compile(r'Name: (.*?: record \d+), Key: (\S+), Index: \d+\.\s+(.*?)(?:\n|$)')


def raise_bad_record(err: BaseException, check: Optional[Callable[[], Any]] = None) -> None:
  """Raises CorruptRecordError naming the file and record behind an input-pipeline error, if found.

  `err` is what iterating a dataset of these readers raised: a tf.errors.OpError, or a
  UnicodeDecodeError (TensorFlow puts an unparsable record's bytes into some messages, which then
  may not decode). Found from its text: the errors of the reading checks ('bad record: <file>:
  record <i>: <reason>', see `keep_or_fail`) and the parser's for a feature of the wrong type
  (records are parsed with example_names '<file>: record <i>'). Otherwise, for errors that data
  can cause (DataLossError, InvalidArgumentError, UnicodeDecodeError) and when `check` is given,
  `check()` reads the data again in Python and raises CorruptRecordError at the first bad record
  (e.g. `check_dataset`; slow: all the data in the worst case); this finds the truncated or
  corrupted file behind a DataLossError, which names neither file nor record.

  The CorruptRecordError is raised from `err`. Returns None when no bad record is found: the caller
  then re-raises `err`.
  """
  text = getattr(err, 'message', None) or str(err)
  found = re.search(re.escape(BAD_RECORD) + r'(.*?)\]?(?:\n|$)', text)
  if found:
    raise CorruptRecordError(found.group(1)) from err
  found = _PARSER_ERROR.search(text)
  if found:
    raise CorruptRecordError(f'{found.group(1)}: key {found.group(2)}: {found.group(3)}') from err
  if check is None or not isinstance(err, _DATA_ERRORS):
    return None
  logging.info('tfrecord | input error, reading the data again to find the bad record: %s',
               text.strip().splitlines()[0] if text.strip() else type(err).__name__)
  try:
    check()
  except CorruptRecordError as bad:
    raise bad from err
  return None


@contextlib.contextmanager
def explain_errors(check: Optional[Callable[[], Any]] = None) -> Iterator[None]:
  """`with explain_errors(check): for x in ds: ...` raises CorruptRecordError for a bad record.

  Input-pipeline errors (tf.errors.OpError, UnicodeDecodeError) go through `raise_bad_record(err,
  check)`; those it does not explain are re-raised unchanged.
  """
  try:
    yield
  except (tf.errors.OpError, UnicodeDecodeError) as err:
    raise_bad_record(err, check)
    raise


def explain_data_error(data_dir: str, err: BaseException) -> None:
  """`raise_bad_record` for an error met reading the write_shards folder `data_dir`.

  Raises CorruptRecordError naming the file and record: from the error's text when the reading
  checks raised it, else by reading the shards again (`check_dataset`). Returns None if they all
  read cleanly (re-raise `err` then).
  """
  raise_bad_record(err, lambda: check_dataset(data_dir))


# --------------------------------------------------------------------------------------------------
# Windows.


def random_window(frames: tf.Tensor, length: int, seed) -> tf.Tensor:
  """A random run of `length` consecutive frames, start ~ U{0..T-length} (stateless, from `seed`).

  Args:
    frames: [T, ...] tensor.
    length: window length (>= 1).
    seed: shape [2] int seed pair (tf.random.stateless_* convention).

  Returns:
    [length, ...] tensor.
  """
  if length < 1:
    raise ValueError(f'length must be >= 1, got {length}')
  frames = tf.convert_to_tensor(frames)
  static_t = frames.shape[0]
  if static_t is not None and static_t < length:
    raise ValueError(f'random_window: video has {static_t} frames, fewer than length={length}')
  num_frames = tf.shape(frames)[0]
  check = tf.debugging.assert_greater_equal(
      num_frames, length, message=f'random_window: video has fewer frames than length={length}')
  with tf.control_dependencies([check]):
    start = tf.random.stateless_uniform([], seed=seed, minval=0, maxval=num_frames - length + 1,
                                        dtype=tf.int32)
  window = frames[start:start + length]
  window.set_shape(tf.TensorShape([length]).concatenate(frames.shape[1:]))  # [length, ...]
  return window
