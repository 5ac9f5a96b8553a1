"""KTH: 00sequences.txt, AVI decoding, resumable conversion, training windows, SRVP test clips, CLI.

The raw data are real MPEG-4 AVIs written by `pipelines.fixtures.kth`, whose frames carry their own
frame index and video identity in flat grey strips, so every decoded or streamed frame can be traced
back to its source after the codec and the 160x120 -> 64x64 squash.
"""

import contextlib
import filecmp
import logging as std_logging
import os
import re
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from pipelines import kth
from pipelines import tfrecord, video_shards
from pipelines.fixtures import kth as fixture

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Codec + resize tolerance, measured on these fixtures (mpeg4 -q:v 3): mean |error| 0.42-0.51 grey
# levels at 64x64 and 0.50-0.60 at 128x128, 99th percentile 2-3, worst pixel 4-9 (at strip edges).
MAX_MEAN_ERROR = 1.5
MAX_PIXEL_ERROR = 16
CORRUPT = 'person02_handclapping_d1'
UNLISTED = 'person22_boxing_d2'
OVERRUN = 'person01_boxing_d1'  # its last 00sequences range ends 5 frames after the video
TRAIN_NAMES = ['person01_boxing_d1', 'person01_handclapping_d1', 'person02_boxing_d1']
TEST_NAMES = ['person21_boxing_d1', 'person21_handclapping_d1', 'person22_boxing_d1', UNLISTED,
              'person22_handclapping_d1']
VIDEOS_PER_SHARD = 2


@contextlib.contextmanager
def absl_records():
  """Collects the log records of absl's logger."""

  class Handler(std_logging.Handler):

    def __init__(self):
      super().__init__(std_logging.DEBUG)
      self.records = []

    def emit(self, record):
      self.records.append(record)

  handler = Handler()
  logger = std_logging.getLogger('absl')
  logger.addHandler(handler)
  try:
    yield handler.records
  finally:
    logger.removeHandler(handler)


@pytest.fixture(scope='module')
def raw(tmp_path_factory):
  return fixture.write_kth_raw(
      str(tmp_path_factory.mktemp('kth_raw')), persons=(1, 2, 21, 22),
      actions=('boxing', 'handclapping'), scenarios=(1,),
      num_frames={'person21_handclapping_d1': 60, OVERRUN: 40}, missing=kth.KNOWN_MISSING,
      corrupt=(CORRUPT,), unlisted=(UNLISTED,), sequences={OVERRUN: [(1, 9), (11, 30), (31, 45)]})


@pytest.fixture(scope='module')
def decoded(raw):
  """name -> decode_video(...) at 64x64 for every decodable fixture video."""
  return {name: kth.decode_video(raw.paths[name], 64) for name in raw.num_frames}


@pytest.fixture(scope='module')
def converted(raw, tmp_path_factory):
  out = str(tmp_path_factory.mktemp('kth_converted'))
  with absl_records() as records:
    infos = kth.convert(raw.raw_dir, out, image_size=64, videos_per_shard=VIDEOS_PER_SHARD)
  return out, infos, records


def expected_sequences(raw, name, num_frames):
  ranges = raw.sequences.get(name) or [(0, num_frames)]
  return [[s, min(e, num_frames)] for s, e in ranges if s < num_frames]


# --------------------------------------------------------------------------------------------------
# 00sequences.txt and the raw folder.


def test_parse_sequences_file(tmp_path, raw):
  path = tmp_path / kth.SEQUENCES_FILE
  path.write_text(
      'Sequences of the KTH database\r\n'
      'Training:   person11, person12, person13\r\n'
      '\r\n'
      'person01_boxing_d1      frames  1-95, 96-185, 186-245, 246-360\r\n'
      '   person13_handclapping_d3\r\n'
      '\r\n'
      'person25_walking_d4\t\tframes\t1-1,2-80 ,  81-190,\t\r\n'
      'person24_running_d3 frames 1 - 40 41-80\r\n')
  assert kth.parse_sequences_file(str(path)) == {
      'person01_boxing_d1': [(0, 95), (95, 185), (185, 245), (245, 360)],
      'person13_handclapping_d3': [],  # listed without ranges
      'person25_walking_d4': [(0, 1), (1, 80), (80, 190)],  # 3 ranges, odd spacing
      'person24_running_d3': [(0, 40), (40, 80)],  # no comma
  }
  assert kth.parse_sequences_file(os.path.join(raw.raw_dir, kth.SEQUENCES_FILE)) == raw.sequences

  for bad in ('frames 1-95, 96-x', 'frames 1-95, 90-80', 'frames 0-5', '1-95, 96-185'):
    path.write_text(f'header\n\nperson01_boxing_d1 frames 1-9\nperson01_boxing_d2 {bad}\n')
    with pytest.raises(ValueError, match=rf'{path}, line 4: .*'):
      kth.parse_sequences_file(str(path))
  path.write_text('person01_boxing_d1 frames 1-9\n\nperson01_boxing_d1 frames 1-9\n')
  with pytest.raises(ValueError, match='line 3: person01_boxing_d1 is already listed on line 1'):
    kth.parse_sequences_file(str(path))


def test_find_videos_flat_and_per_action(tmp_path, raw):
  assert kth.find_videos(raw.raw_dir) == dict(sorted(raw.paths.items()))
  nested = fixture.write_kth_raw(str(tmp_path / 'nested'), persons=(3,),
                                 actions=('running', 'walking'), num_frames=4, layout='per_action')
  found = kth.find_videos(nested.raw_dir)
  assert found == {
      'person03_running_d1': str(tmp_path / 'nested/running/person03_running_d1_uncomp.avi'),
      'person03_walking_d1': str(tmp_path / 'nested/walking/person03_walking_d1_uncomp.avi'),
  }
  assert kth.find_sequences_file(nested.raw_dir) == str(tmp_path / 'nested' / kth.SEQUENCES_FILE)
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'empty' / 'person01_boxing_d1.avi').write_bytes(b'not the KTH name')
  with pytest.raises(FileNotFoundError, match=r'personNN_<action>_dK_uncomp\.avi'):
    kth.find_videos(str(tmp_path / 'empty'))
  with pytest.raises(FileNotFoundError, match='does not exist'):
    kth.find_videos(str(tmp_path / 'nowhere'))


# --------------------------------------------------------------------------------------------------
# Decoding.


@pytest.mark.parametrize('image_size', [64, 128])
def test_decode_video_matches_encoded_frames(raw, image_size):
  name = 'person21_handclapping_d1'
  frames = kth.decode_video(raw.paths[name], image_size)
  assert frames.dtype == np.uint8 and frames.shape == (60, image_size, image_size, 1)
  error = np.abs(frames.astype(np.int32) - raw.frames(name, image_size))
  assert error.mean() < MAX_MEAN_ERROR and error.max() <= MAX_PIXEL_ERROR
  assert [fixture.read_frame_index(f) for f in frames] == list(range(60))  # no drop, no duplicate
  assert {fixture.read_video_identity(f) for f in frames} == {name}


def test_decode_other_mpeg4_variant(tmp_path):
  small = fixture.write_kth_raw(str(tmp_path), persons=(5,), actions=('jogging',), num_frames=12,
                                codec='msmpeg4v2')
  frames = kth.decode_video(small.paths['person05_jogging_d1'])
  error = np.abs(frames.astype(np.int32) - small.frames('person05_jogging_d1', 64))
  assert frames.shape == (12, 64, 64, 1) and error.mean() < MAX_MEAN_ERROR


def test_decode_errors_name_the_file(raw, tmp_path):
  with pytest.raises(kth.VideoDecodeError,
                     match=rf'{raw.paths[CORRUPT]}: ffmpeg cannot decode it .*Invalid data found'):
    kth.decode_video(raw.paths[CORRUPT])
  missing = str(tmp_path / 'person01_boxing_d3_uncomp.avi')
  with pytest.raises(kth.VideoDecodeError, match=f'{missing}: no such file'):
    kth.decode_video(missing)
  with pytest.raises(ValueError, match='image_size must be one of'):
    kth.decode_video(raw.paths['person01_boxing_d1'], 100)
  empty = str(tmp_path / 'person01_boxing_d4_uncomp.avi')
  fixture.encode_avi(empty, np.zeros((0, fixture.HEIGHT, fixture.WIDTH), np.uint8))
  assert os.path.getsize(empty) > 0  # a valid AVI header without frames
  with pytest.raises(kth.VideoDecodeError, match=empty):
    kth.decode_video(empty)
  assert issubclass(kth.VideoDecodeError, ValueError)


# --------------------------------------------------------------------------------------------------
# Conversion.


def test_convert_splits_persons_and_stores_whole_videos(converted, raw, decoded):
  out, infos, _ = converted
  for split, names in (('train', TRAIN_NAMES), ('test', TEST_NAMES)):
    info = tfrecord.read_info(os.path.join(out, split))
    assert info == infos[split] and info['dataset'] == 'kth' and info['split'] == split
    assert info['image_size'] == 64 and info['persons'] == list(kth.SPLIT_PERSONS[split])
    assert [v['name'] for v in info['videos']] == names
    records = list(tfrecord.video_dataset(os.path.join(out, split), False).as_numpy_iterator())
    assert len(records) == len(names) == info['num_examples']
    for meta, record in zip(info['videos'], records):
      name = meta['name']
      assert os.path.basename(record['file'].decode()) == meta['shard']
      assert record['index'] == meta['index']
      assert kth.video_name(record['person'], record['action'], record['scenario']) == name
      assert record['person'] in kth.SPLIT_PERSONS[split]
      np.testing.assert_array_equal(record['frames'], decoded[name])  # the whole video
      assert record['frames'].shape == (raw.num_frames[name], 64, 64, 1)
      assert fixture.read_video_identity(record['frames'][0]) == name
      sequences = expected_sequences(raw, name, raw.num_frames[name])
      assert record['sequences'].dtype == np.int32
      assert record['sequences'].tolist() == sequences == meta['sequences']
  # train: 4 AVIs in 2 shards, the corrupt one skipped; test: 5 videos in 3 shards.
  assert infos['train']['shard_counts'] == [2, 1] and infos['test']['shard_counts'] == [2, 2, 1]
  assert infos['train']['sources'] == [os.path.basename(raw.paths[n]) for n in
                                       sorted(TRAIN_NAMES + [CORRUPT])]


def test_convert_reports_skipped_unlisted_and_clipped(converted):
  out, infos, records = converted
  skipped = {s['name']: s['reason'] for s in infos['train']['skipped']}
  assert sorted(skipped) == [CORRUPT, 'person13_handclapping_d3'] and infos['test']['skipped'] == []
  assert 'Invalid data found' in skipped[CORRUPT] and 'known to be missing' in skipped[
      'person13_handclapping_d3']
  warnings = [r.getMessage() for r in records if r.levelno == std_logging.WARNING]
  listing = [w for w in warnings if 'person13_handclapping_d3' in w]
  assert len(listing) == 1 and CORRUPT in listing[0]  # one warning names every skipped video
  assert infos['test']['unlisted'] == [UNLISTED]
  assert any(UNLISTED in w and 'used whole' in w for w in warnings)
  assert infos['train']['clipped'] == [{'name': OVERRUN, 'num_frames': 40, 'ranges': [[30, 45]]}]
  assert any(OVERRUN in w and 'clipped' in w for w in warnings)
  files = sorted(os.listdir(os.path.join(out, 'test')))
  assert files == sorted(['dataset_info.json'] + [
      f'test-0000{k}-of-00003.tfrecord{suffix}' for k in range(3)
      for suffix in ('', video_shards.MANIFEST_SUFFIX)])  # no temporaries


KILL_SCRIPT = """
import os, signal, sys
from pipelines import kth
real_decode, calls = kth._decode, []
def dying_decode(path, image_size):
  calls.append(path)
  if len(calls) == int(sys.argv[3]):
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind
  return real_decode(path, image_size)
kth._decode = dying_decode
kth.convert(sys.argv[1], sys.argv[2], videos_per_shard=int(sys.argv[4]), num_workers=1)
"""


def test_convert_resumes_after_a_kill(converted, raw, tmp_path, monkeypatch):
  reference_out = converted[0]
  out = str(tmp_path / 'out')
  # Decode order: train shard 0 (2 videos), shard 1 (corrupt + 1), test shard 0 (2), shard 1 (2),
  # ... The 8th decode is the second video of test shard 1: the process dies with that shard open.
  killed = subprocess.run([sys.executable, '-c', KILL_SCRIPT, raw.raw_dir, out, '8',
                           str(VIDEOS_PER_SHARD)], cwd=REPO, capture_output=True, text=True,
                          timeout=180, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert killed.returncode == -9, killed.stderr[-2000:]
  test_dir = os.path.join(out, 'test')
  files = sorted(os.listdir(test_dir))
  assert files[:2] == ['test-00000-of-00003.tfrecord',
                       'test-00000-of-00003.tfrecord' + video_shards.MANIFEST_SUFFIX]
  # The open shard exists only under its temporary name.
  assert len(files) == 3 and files[2].startswith('test-00001-of-00003.tfrecord.tmp-')
  with pytest.raises(kth.NotConvertedError, match='did not finish'):
    kth.read_converted_info(out, 'test')
  kept = [os.path.join(out, 'train', n) for n in infos_shards(reference_out, 'train')]
  kept.append(os.path.join(test_dir, 'test-00000-of-00003.tfrecord'))
  before = {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in kept}

  real_decode, calls = kth._decode, []  # pylint: disable=protected-access

  def counting_decode(path, image_size):
    calls.append(os.path.basename(path)[:-len(kth.VIDEO_SUFFIX)])
    return real_decode(path, image_size)

  monkeypatch.setattr(kth, '_decode', counting_decode)
  infos = kth.convert(raw.raw_dir, out, videos_per_shard=VIDEOS_PER_SHARD, num_workers=1)
  assert calls == TEST_NAMES[2:]  # only the unfinished test shards were decoded again
  assert {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in kept} == before
  assert not os.path.exists(os.path.join(test_dir, files[2]))  # the temporary is gone
  for split in kth.SPLITS:  # identical to the uninterrupted conversion
    assert infos[split] == tfrecord.read_info(os.path.join(reference_out, split))
    for shard in infos[split]['shards']:
      assert filecmp.cmp(os.path.join(out, split, shard),
                         os.path.join(reference_out, split, shard), shallow=False)

  calls.clear()
  info_files = [os.path.join(out, s, tfrecord.INFO_FILE) for s in kth.SPLITS]
  stamps = [os.stat(p).st_mtime_ns for p in info_files]
  assert kth.convert(raw.raw_dir, out, videos_per_shard=VIDEOS_PER_SHARD) == infos
  assert calls == [] and [os.stat(p).st_mtime_ns for p in info_files] == stamps  # nothing to do

  with pytest.raises(FileExistsError, match=r'image_size=64 \(now 128\)'):
    kth.convert(raw.raw_dir, out, image_size=128, videos_per_shard=VIDEOS_PER_SHARD)
  with pytest.raises(FileExistsError, match=r'videos_per_shard=2 \(now 3\)'):
    kth.convert(raw.raw_dir, out, videos_per_shard=3)
  assert calls == [] and [os.stat(p).st_mtime_ns for p in info_files] == stamps

  infos = kth.convert(raw.raw_dir, out, image_size=128, videos_per_shard=3, overwrite=True)
  assert infos['test']['image_size'] == 128 and infos['test']['shard_counts'] == [3, 2]
  assert sorted(os.listdir(test_dir)) == sorted(['dataset_info.json'] + [
      f'test-0000{k}-of-00002.tfrecord{suffix}' for k in range(2)
      for suffix in ('', video_shards.MANIFEST_SUFFIX)])
  assert kth.read_converted_info(out, 'train')['features']['frames']['shape'][1:] == [128, 128, 1]


def infos_shards(out, split):
  return tfrecord.read_info(os.path.join(out, split))['shards']


def test_convert_refuses_a_foreign_folder(raw, tmp_path):
  (tmp_path / 'train').mkdir()
  (tmp_path / 'train' / 'notes.txt').write_text('mine')
  with pytest.raises(FileExistsError, match='not a KTH conversion folder'):
    kth.convert(raw.raw_dir, str(tmp_path))
  small = fixture.write_kth_raw(str(tmp_path / 'raw'), persons=(3,), actions=('running',),
                                num_frames=3)
  os.remove(os.path.join(small.raw_dir, kth.SEQUENCES_FILE))
  with pytest.raises(FileNotFoundError, match=f'{kth.SEQUENCES_FILE} not found in'):
    kth.convert(small.raw_dir, str(tmp_path / 'out'))
  assert not os.path.exists(tmp_path / 'out')  # nothing written before the raw folder checks out


# --------------------------------------------------------------------------------------------------
# Training windows.


def _windows(out, n, **kwargs):
  ds = kth.train_dataset(out, **kwargs)
  return np.stack([w['frames'] for w in ds.take(n).as_numpy_iterator()])


def test_train_windows_come_from_long_enough_subsequences(converted, decoded):
  out, infos, _ = converted
  seq_len = 5
  windows = _windows(out, 24, seq_len=seq_len, seed=7)
  assert windows.shape == (24, seq_len, 64, 64, 1) and windows.dtype == np.float32
  assert windows.min() >= 0.0 and windows.max() <= 1.0
  sequences = {v['name']: v['sequences'] for v in infos['train']['videos']}
  used = set()
  for window in windows:
    frames = np.round(window * 255).astype(np.uint8)
    name = fixture.read_video_identity(frames[0])
    start = fixture.read_frame_index(frames[0])
    assert name in TRAIN_NAMES
    np.testing.assert_array_equal(frames, decoded[name][start:start + seq_len])
    inside = [(s, e) for s, e in sequences[name] if s <= start and start + seq_len <= e]
    assert len(inside) == 1, (name, start, sequences[name])  # never across a range boundary
    used.add((name, inside[0]))
  assert len({n for n, _ in used}) == 3 and len(used) > 4  # all videos, several sub-sequences

  np.testing.assert_array_equal(windows, _windows(out, 24, seq_len=seq_len, seed=7))
  assert not np.array_equal(windows, _windows(out, 24, seq_len=seq_len, seed=8))


def test_train_input_pipelines_are_disjoint(converted):
  out = converted[0]

  def names(shard_index):
    windows = _windows(out, 10, seq_len=4, seed=1, num_shards=2, shard_index=shard_index)
    return {fixture.read_video_identity(np.round(w[0] * 255).astype(np.uint8)) for w in windows}

  first, second = names(0), names(1)
  assert first == {TRAIN_NAMES[0], TRAIN_NAMES[2]} and second == {TRAIN_NAMES[1]}


def test_train_dataset_errors(converted, raw):
  out = converted[0]
  with pytest.raises(kth.NotConvertedError, match=rf'raw KTH download.*python -m pipelines\.kth '
                     rf'--data_dir={raw.raw_dir} --out=DIR'):
    kth.train_dataset(raw.raw_dir, 5, seed=0)
  with pytest.raises(ValueError, match='no train video .* seq_len=41 .* longest sub-sequence has'):
    kth.train_dataset(out, 41, seed=0)
  with pytest.raises(ValueError, match='shard_index'):
    kth.train_dataset(out, 5, seed=0, num_shards=2, shard_index=2)
  assert kth.read_converted_info(out, 'train')['image_size'] == 64


def _damaged_copy(out, tmp_path, wrong_bytes=False):
  """A copy of the conversion whose first train shard is cut inside its last record (record 1)
  and, with wrong_bytes, whose second shard's record 0 has one frame byte too few."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  copy = str(tmp_path / 'kth')
  shutil.copytree(out, copy)
  shards = tfrecord.list_shards(os.path.join(copy, 'train'))
  records = [r.numpy() for r in tf.data.TFRecordDataset(shards[0])]
  with open(shards[0], 'rb+') as f:
    f.truncate(sum(len(r) + 16 for r in records) - 7)  # 16 bytes of framing per record
  if wrong_bytes:
    records = [r.numpy() for r in tf.data.TFRecordDataset(shards[1])]
    example = tf.train.Example.FromString(records[0])
    frames = example.features.feature['frames'].bytes_list.value
    frames[0] = frames[0][:-1]
    records[0] = example.SerializeToString()
    with tf.io.TFRecordWriter(shards[1]) as writer:
      for r in records:
        writer.write(r)
  return copy, shards


def test_bad_train_records_are_named_or_skipped_and_counted(converted, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  copy, shards = _damaged_copy(converted[0], tmp_path, wrong_bytes=True)
  with pytest.raises(tf.errors.InvalidArgumentError) as caught:
    _windows(copy, 24, seq_len=5, seed=3)
  with pytest.raises(tfrecord.CorruptRecordError,
                     match=rf'^({re.escape(shards[0])}: record 1: missing or unreadable, as '
                           rf'every record after it: the file ends after 1 of its 2 records|'
                           rf'{re.escape(shards[1])}: record 0: frames has \d+ bytes, shape '
                           rf'\d+x64x64x1 needs \d+)'):
    tfrecord.explain_data_error(os.path.join(copy, 'train'), caught.value)

  tfrecord.reset_skipped_records()
  windows = _windows(copy, 12, seq_len=5, seed=3, skip_bad_records=True)
  names = {fixture.read_video_identity(np.round(w[0] * 255).astype(np.uint8)) for w in windows}
  assert names == {TRAIN_NAMES[0]}  # the two damaged records are gone, the rest is intact
  assert tfrecord.skipped_records() == {shards[0]: 1, shards[1]: 1}


# --------------------------------------------------------------------------------------------------
# Test clips.


def test_test_clips_follow_srvp_draws(converted, decoded):
  out, infos, _ = converted
  clips = kth.test_clips(out, num_clips=12, clip_len=30, seed=5)
  assert clips.frames.shape == (12, 30, 64, 64, 1) and clips.frames.dtype == np.uint8
  lengths = {v['name']: v['num_frames'] for v in infos['test']['videos']}
  rng, expected = np.random.RandomState(5), []  # SRVP's make_test_set.py, with redraws
  while len(expected) < 12:
    action = rng.randint(6)  # SRVP's order: action, person, trial, start
    person = rng.randint(21, 26)
    scenario = rng.randint(1, 5)
    name = kth.video_name(person, action, scenario)
    if lengths.get(name, 0) >= 30:
      expected.append((name, rng.randint(lengths[name] - 30 + 1)))
  assert list(zip(clips.videos, clips.starts.tolist())) == expected
  for frames, name, start, person in zip(clips.frames, clips.videos, clips.starts, clips.persons):
    assert name in TEST_NAMES and person in kth.TEST_PERSONS
    np.testing.assert_array_equal(frames, decoded[name][start:start + 30])
  assert len(set(clips.videos)) > 2 and len(set(clips.starts.tolist())) > 2

  again = kth.test_clips(out, num_clips=12, clip_len=30, seed=5)
  np.testing.assert_array_equal(again.frames, clips.frames)
  first = kth.test_clips(out, num_clips=12, clip_len=30, seed=5, max_clips=4)
  np.testing.assert_array_equal(first.frames, clips.frames[:4])
  assert first.videos == clips.videos[:4]
  other = kth.test_clips(out, num_clips=12, clip_len=30, seed=6)
  assert list(zip(other.videos, other.starts)) != list(zip(clips.videos, clips.starts))
  with pytest.raises(ValueError, match='no test video .* 61 frames'):
    kth.test_clips(out, clip_len=61)


# --------------------------------------------------------------------------------------------------
# Command line.


def _cli(*args, wait=True):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  process = subprocess.Popen([sys.executable, '-m', 'pipelines.kth', *args], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  if not wait:
    return process
  _, stderr = process.communicate(timeout=180)
  return process.returncode, stderr


def test_cli_converts_then_previews(raw, tmp_path):
  out, preview = tmp_path / 'out', tmp_path / 'previews' / 'test'
  bad_combination = _cli(f'--data_dir={raw.raw_dir}', '--image_size=128',
                         f'--preview_out={tmp_path / "x"}', wait=False)
  nothing_to_do = _cli(f'--data_dir={raw.raw_dir}', wait=False)
  code, stderr = _cli(f'--data_dir={raw.raw_dir}', f'--out={out}', '--videos_per_shard=3',
                      f'--preview_out={preview}', '--preview_num=3')
  assert code == 0, stderr[-3000:]
  assert 'kth | convert | train | video 1/4 |' in stderr and '| eta ' in stderr
  assert 'kth | convert | test | shard 2/2 | 2 records' in stderr
  assert 'skipped 2 videos' in stderr and 'kth | preview | test | 3 clips' in stderr
  with np.load(f'{preview}.npz', allow_pickle=False) as npz:
    frames = npz['frames']
  assert frames.shape == (3, 40, 64, 64, 1) and frames.dtype == np.uint8
  np.testing.assert_array_equal(frames, kth.test_clips(str(out), max_clips=3).frames)
  with Image.open(f'{preview}.gif') as gif:
    assert gif.n_frames > 1

  raw_preview = _cli(f'--data_dir={raw.raw_dir}', f'--preview_out={tmp_path / "y"}', wait=False)
  train_preview = str(tmp_path / 'train')  # what --split=train --preview_out=... runs
  videos = kth.write_preview(train_preview, str(out), 'train', 2, seq_len=6, seed=3)
  with np.load(f'{train_preview}.npz', allow_pickle=False) as npz:
    np.testing.assert_array_equal(npz['frames'], videos)
  expected = np.stack([w['frames'] for w in kth.train_dataset(str(out), 6, seed=3).take(2)])
  np.testing.assert_array_equal(videos, np.round(expected * 255).astype(np.uint8))
  assert videos.shape == (2, 6, 64, 64, 1) and os.path.exists(f'{train_preview}.gif')

  _, stderr = bad_combination.communicate(timeout=180)
  assert bad_combination.returncode != 0 and '--image_size only apply with --out' in stderr
  _, stderr = nothing_to_do.communicate(timeout=180)
  assert nothing_to_do.returncode != 0 and 'nothing to do' in stderr
  _, stderr = raw_preview.communicate(timeout=180)
  assert raw_preview.returncode != 0 and 'raw KTH download' in stderr and '--out=DIR' in stderr
  assert not os.path.exists(tmp_path / 'y.npz')
