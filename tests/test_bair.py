"""BAIR robot pushing from its native TFRecords: exact pixels, TFDS agreement, windows, sharding,
the test set, bad records that name their file and index, and the CLI."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pipelines import bair, inputs, tfrecord
from pipelines.fixtures import bair as fixture
from svg_tf import config as config_lib
from tests.tfrecord_damage import cut_at_boundary as _cut_at_boundary
from tests.tfrecord_damage import read_records as _records
from tests.tfrecord_damage import truncate_in_record as _truncate
from tests.tfrecord_damage import write_records as _write_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES, PER_FILE = 3, 5  # 3 files sort as traj_0_to_4, traj_10_to_14, traj_5_to_9: not numeric
TEST_RECORDS = 6
SEED = 4


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  """A user's extraction folder: softmotion30_44k/{train: 3 files x 5, test: 1 file x 6}."""
  root = str(tmp_path_factory.mktemp('bair'))
  train = fixture.write_bair_tfrecords(root, 'train', FILES, PER_FILE, seed=SEED)
  test = fixture.write_bair_tfrecords(root, 'test', 1, TEST_RECORDS, seed=SEED)
  return root, train, test


def _numbers(frames):
  """Trajectory number and frame index of each frame, from the fixture's pixel-(0, 0) markers."""
  marks = np.rint(np.asarray(frames)[..., 0, 0, :] * 255).astype(int)  # [..., 3]
  return marks[..., 0], marks[..., 1], marks[..., 2]


# ---------------------------------------------------------------------------------------------
# Files and exact records.


def test_split_files_accepts_both_layouts_in_sorted_order(data):
  root, train, test = data
  names = [os.path.basename(p) for p in bair.split_files(root, 'train')]
  assert names == ['traj_0_to_4.tfrecords', 'traj_10_to_14.tfrecords', 'traj_5_to_9.tfrecords']
  assert bair.split_files(root, 'train') == train
  inner = os.path.join(root, 'softmotion30_44k')
  assert bair.split_files(inner, 'train') == train
  assert bair.split_files(inner, 'test') == test == bair.split_files(root, 'test')


def test_split_files_errors_name_paths_and_choices(tmp_path):
  with pytest.raises(ValueError, match=r"unknown BAIR split 'val'; valid splits: train, test"):
    bair.split_files(str(tmp_path), 'val')
  with pytest.raises(FileNotFoundError) as err:
    bair.split_files(str(tmp_path), 'test')
  assert str(tmp_path / 'softmotion30_44k' / 'test') in str(err.value)
  assert str(tmp_path / 'test') in str(err.value)
  assert 'softmotion30_44k/{train,test}/traj_<a>_to_<b>.tfrecords' in str(err.value)
  folder = tmp_path / 'softmotion30_44k' / 'test'
  folder.mkdir(parents=True)
  with pytest.raises(FileNotFoundError,
                     match=re.escape(f'no *.tfrecords files in {folder} (it holds 0 entries)')):
    bair.split_files(str(tmp_path), 'test')
  (folder / 'traj_0_to_255.tfrecord').write_bytes(b'')  # wrong extension
  with pytest.raises(FileNotFoundError) as err:
    bair.split_files(str(tmp_path), 'test')
  assert f'no *.tfrecords files in {folder}' in str(err.value)
  assert 'traj_0_to_255.tfrecord' in str(err.value)


@pytest.mark.parametrize('camera', ['aux1', 'main'])
def test_record_dataset_yields_the_written_records_in_file_order(data, camera):
  _, train, _ = data
  kwargs = {} if camera == 'aux1' else {'camera': camera}
  ds = bair.record_dataset(train, **kwargs)
  spec = ds.element_spec
  assert spec['frames'].shape == (30, 64, 64, 3) and spec['frames'].dtype == tf.uint8
  assert spec['actions'].shape == (30, 4) and spec['actions'].dtype == tf.float32
  assert spec['endeffector_pos'].shape == (30, 3) and spec['index'].dtype == tf.int64
  records = list(ds.as_numpy_iterator())
  want = fixture.expected_arrays(train, seed=SEED, camera=camera)
  assert len(records) == FILES * PER_FILE
  assert [r['file'].decode() for r in records] == want['file']
  assert [r['index'] for r in records] == list(want['index'])
  for key in ('frames', 'actions', 'endeffector_pos'):
    np.testing.assert_array_equal(np.stack([r[key] for r in records]), want[key], err_msg=key)
  number, t, cam = _numbers(np.stack([r['frames'] for r in records]) / 255.0)
  np.testing.assert_array_equal(number[:, 0], [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 5, 6, 7, 8, 9])
  assert (t == np.arange(30)).all() and (cam == fixture.CAMERA_MARKERS[camera]).all()


def test_record_dataset_shuffled_files_read_every_record_once(data):
  _, train, _ = data
  keys = lambda ds: [(r['file'].decode(), int(r['index'])) for r in ds.as_numpy_iterator()]
  first = keys(bair.record_dataset(train, shuffle=True, seed=1))
  assert sorted(first) == sorted((f, i) for f in train for i in range(PER_FILE))
  assert keys(bair.record_dataset(train, shuffle=True, seed=1)) == first


def test_record_dataset_rejects_bad_arguments(data):
  _, train, _ = data
  with pytest.raises(ValueError, match="camera must be one of"):
    bair.record_dataset(train, camera='side')
  with pytest.raises(FileNotFoundError, match='nope.tfrecords'):
    bair.record_dataset(train + ['/nope.tfrecords'])
  with pytest.raises(ValueError, match='non-empty list'):
    bair.record_dataset([])


def test_agrees_with_tensorflow_datasets_generator(data, tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  root, train, _ = data
  builder = tfds.builder('bair_robot_pushing_small', data_dir=str(tmp_path))  # no download
  generate = builder._generate_examples  # pylint: disable=protected-access
  theirs = list(generate(filedir=os.path.dirname(train[0])))
  aux1 = list(bair.record_dataset(bair.split_files(root, 'train')).as_numpy_iterator())
  main = list(bair.record_dataset(train, camera='main').as_numpy_iterator())
  assert len(theirs) == len(aux1) == len(main) == FILES * PER_FILE
  for (key, frames), a, m in zip(theirs, aux1, main):
    assert key == f'{os.path.basename(a["file"].decode())}_{a["index"]}'  # same order
    assert len(frames) == 30
    np.testing.assert_array_equal(np.stack([f['image_aux1'] for f in frames]), a['frames'])
    np.testing.assert_array_equal(np.stack([f['image_main'] for f in frames]), m['frames'])
    np.testing.assert_array_equal(np.array([f['action'] for f in frames], np.float32),
                                  a['actions'])
    np.testing.assert_array_equal(np.array([f['endeffector_pos'] for f in frames], np.float32),
                                  a['endeffector_pos'])


# ---------------------------------------------------------------------------------------------
# Training windows and sharding.


def test_train_windows_are_contiguous_runs_of_real_trajectories(data):
  root, _, _ = data
  seq_len = 7
  ds = bair.train_dataset(root, seq_len=seq_len, seed=3, shuffle_buffer=4)
  assert ds.element_spec['frames'].shape == (seq_len, 64, 64, 3)
  assert ds.element_spec['actions'].shape == (seq_len, 4)
  windows = list(ds.take(45).as_numpy_iterator())  # 3 epochs: the stream repeats
  seen, starts = set(), []
  for w in windows:
    frames, actions = w['frames'], w['actions']
    assert frames.dtype == np.float32 and 0.0 <= frames.min() and frames.max() <= 1.0
    number, t, cam = _numbers(frames)
    start = t[0]
    assert (number == number[0]).all() and (cam == 1).all()
    assert 0 <= start <= 30 - seq_len
    np.testing.assert_array_equal(t, np.arange(start, start + seq_len))
    want = fixture.trajectory(SEED, number[0])
    np.testing.assert_array_equal(frames, want.aux1[start:start + seq_len] / np.float32(255))
    np.testing.assert_array_equal(actions, want.actions[start:start + seq_len])
    seen.add(int(number[0]))
    starts.append(int(start))
  assert seen == set(range(FILES * PER_FILE))
  assert len(set(starts)) >= 8  # starts vary (24 possible)
  numbers = [int(_numbers(w['frames'])[0][0]) for w in windows[:15]]
  assert numbers != sorted(numbers)  # shuffled


def test_train_stream_is_reproducible_from_the_seed(data):
  root, _, _ = data

  def first(seed, n=12):
    ds = bair.train_dataset(root, seq_len=4, seed=seed, shuffle_buffer=8)
    return [w['frames'] for w in ds.take(n).as_numpy_iterator()]

  a, b, c = first(5), first(5), first(6)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, z) for x, z in zip(a, c))


def test_train_dataset_checks_arguments(data):
  root, _, _ = data
  for seq_len in (0, 31, 2.5):
    with pytest.raises(ValueError, match=f'seq_len={seq_len!r}'):
      bair.train_dataset(root, seq_len=seq_len, seed=0)
  with pytest.raises(ValueError, match='shard_index'):
    bair.train_dataset(root, seq_len=3, seed=0, num_shards=2, shard_index=2)


def _shard_numbers(root, num_shards, n):
  return [{int(_numbers(w['frames'])[0][0]) for w in bair.train_dataset(
      root, seq_len=2, seed=9, num_shards=num_shards, shard_index=k,
      shuffle_buffer=4).take(n).as_numpy_iterator()} for k in range(num_shards)]


def test_two_shards_of_files_are_disjoint_and_cover_everything(data):
  root, _, _ = data  # 3 files >= 2 shards: shard 0 reads files 0 and 2, shard 1 file 1
  first, second = _shard_numbers(root, 2, 30)
  assert first.isdisjoint(second) and first | second == set(range(FILES * PER_FILE))
  assert second == set(range(10, 15))  # traj_10_to_14.tfrecords, the second file in sorted order


def test_two_shards_of_records_are_disjoint_and_cover_everything(tmp_path):
  fixture.write_bair_tfrecords(str(tmp_path), 'train', 1, 6, seed=SEED)  # 1 file < 2 shards
  first, second = _shard_numbers(str(tmp_path), 2, 20)
  assert len(first) == len(second) == 3
  assert first.isdisjoint(second) and first | second == set(range(6))


# ---------------------------------------------------------------------------------------------
# Test set and preview.


def test_test_videos_are_the_first_frames_in_file_order(data):
  root, _, test = data
  want = fixture.expected_arrays(test, seed=SEED)
  frames, actions = bair.test_videos(root)
  assert frames.shape == (TEST_RECORDS, 30, 64, 64, 3) and frames.dtype == np.float32
  np.testing.assert_array_equal(frames, want['frames'] / np.float32(255))
  np.testing.assert_array_equal(actions, want['actions'])
  frames, actions = bair.test_videos(root, num_frames=10, max_videos=4, camera='main')
  assert frames.shape == (4, 10, 64, 64, 3) and actions.shape == (4, 10, 4)
  want = fixture.expected_arrays(test, seed=SEED, camera='main')
  np.testing.assert_array_equal(frames, want['frames'][:4, :10] / np.float32(255))
  np.testing.assert_array_equal(actions, want['actions'][:4, :10])
  with pytest.raises(ValueError, match='num_frames=31'):
    bair.test_videos(root, num_frames=31)


def test_cli_preview_writes_the_first_test_trajectories(data, tmp_path):
  root, _, test = data
  prefix = str(tmp_path / 'preview')
  run = subprocess.run([sys.executable, '-m', 'pipelines.bair', f'--data_dir={root}',
                        '--split=test', f'--preview_out={prefix}', '--preview_num=3'],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr[-3000:]
  with np.load(prefix + '.npz') as npz:
    frames = npz['frames']
  assert frames.dtype == np.uint8 and frames.shape == (3, 30, 64, 64, 3)
  np.testing.assert_array_equal(frames, fixture.expected_arrays(test, seed=SEED)['frames'][:3])
  assert os.path.getsize(prefix + '.gif') > 0


def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'pipelines.bair', *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))


@pytest.mark.parametrize('args, error', [
    (['--preview_num=3', '--bair_camera=main'],
     'error: --preview_num, --bair_camera only apply with --preview_out'),
    ([], 'error: no BAIR test folder: looked in '),
])
def test_cli_user_errors_are_one_line_and_exit_1(tmp_path, args, error):
  run = _cli(f'--data_dir={tmp_path}', *args)  # an empty folder: no data
  assert run.returncode == 1, run.stderr[-3000:]
  assert run.stderr.strip().splitlines()[-1].startswith(error), run.stderr[-3000:]
  assert 'Traceback' not in run.stderr and 'BAIR robot pushing (Ebert' not in run.stderr  # usage


# ---------------------------------------------------------------------------------------------
# Bad records.

COUNT_PROBLEMS = {  # corruption -> the reason the in-graph check gives
    'missing_key': 'key 7/image_aux1/encoded is missing or empty',
    'short_image': 'key 7/image_aux1/encoded has 100 bytes, expected 12288',
    'two_images': 'key 7/image_aux1/encoded has 2 values, expected 1',
    'short_action': 'key 7/action has 3 floats, expected 4',
}


@pytest.mark.parametrize('corruption', sorted(COUNT_PROBLEMS))
def test_bad_record_raises_naming_file_index_and_problem(tmp_path, corruption):
  paths = fixture.write_bair_tfrecords(str(tmp_path), 'test', 2, 3, seed=SEED,
                                       corrupt={(1, 1): corruption})
  expected = f'{paths[1]}: record 1: {COUNT_PROBLEMS[corruption]}'
  with pytest.raises(tfrecord.CorruptRecordError) as err:
    with tfrecord.explain_errors():
      list(bair.record_dataset(paths))
  assert str(err.value) == expected
  tf_error = err.value.__cause__  # what iterating without explain_errors raises
  assert isinstance(tf_error, tf.errors.InvalidArgumentError)
  assert f'{tfrecord.BAD_RECORD}{expected}' in tf_error.message  # 'bad record: <file>: ...'


def test_test_videos_raise_for_a_bad_record(tmp_path):
  paths = fixture.write_bair_tfrecords(str(tmp_path), 'test', 1, 3, seed=SEED,
                                       corrupt={(0, 2): 'short_image'})
  with pytest.raises(tfrecord.CorruptRecordError,
                     match=f'^{paths[0]}: record 2: key 7/image_aux1/'):
    bair.test_videos(str(tmp_path))


def test_skip_bad_records_drops_and_counts_them(tmp_path):
  kinds = sorted(COUNT_PROBLEMS)
  corrupt = {(0, 1): kinds[0], (0, 2): kinds[1], (1, 0): kinds[2], (2, 2): kinds[3]}
  paths = fixture.write_bair_tfrecords(str(tmp_path), 'test', 3, 3, seed=SEED, corrupt=corrupt)
  tfrecord.reset_skipped_records()
  records = list(bair.record_dataset(paths, skip_bad_records=True).as_numpy_iterator())
  # Files sort as traj_0_to_2, traj_3_to_5, traj_6_to_8, i.e. file numbers 0, 1, 2.
  good = [(k, r) for k in range(3) for r in range(3) if (k, r) not in corrupt]
  assert [(r['file'].decode(), r['index']) for r in records] == [(paths[k], r) for k, r in good]
  want = fixture.expected_arrays(paths, seed=SEED)
  rows = [3 * k + r for k, r in good]
  for key in ('frames', 'actions', 'endeffector_pos'):
    np.testing.assert_array_equal(np.stack([r[key] for r in records]), want[key][rows])
  assert tfrecord.skipped_records() == {paths[0]: 2, paths[1]: 1, paths[2]: 1}
  frames, _ = bair.test_videos(str(tmp_path), skip_bad_records=True)  # meets them again
  np.testing.assert_array_equal(frames, want['frames'][rows] / np.float32(255))
  assert tfrecord.skipped_records() == {paths[0]: 2, paths[1]: 1, paths[2]: 1}  # distinct records


def test_only_the_keys_in_use_are_required(tmp_path):
  paths = fixture.write_bair_tfrecords(str(tmp_path), 'test', 1, 3, seed=SEED,
                                       corrupt={(0, 1): 'missing_key'})  # an aux1 key
  records = list(bair.record_dataset(paths, camera='main').as_numpy_iterator())
  np.testing.assert_array_equal(records[1]['frames'], fixture.expected(paths[0], 1, SEED).main)


def test_unparsable_records_are_located_by_explain_errors(tmp_path):
  paths = fixture.write_bair_tfrecords(str(tmp_path), 'test', 2, 2, seed=SEED,
                                       corrupt={(1, 1): 'wrong_type'})
  with pytest.raises(tfrecord.CorruptRecordError) as err:
    with tfrecord.explain_errors():  # the parser names the record itself
      list(bair.record_dataset(paths))
  assert str(err.value).startswith(f'{paths[1]}: record 1: key 7/action: ')

  paths = fixture.write_bair_tfrecords(str(tmp_path / 'garbage'), 'test', 2, 2, seed=SEED,
                                       corrupt={(0, 1): 'not_example'})
  with pytest.raises(tfrecord.CorruptRecordError) as err:
    with tfrecord.explain_errors(lambda: bair.check_records(paths)):  # reads the files again
      list(bair.record_dataset(paths))
  assert str(err.value).startswith(f'{paths[0]}: record 1: not a tf.train.Example')

  # A file whose name gives no record count, cut short in its second record: the reader's
  # DataLossError names neither file nor record, so the files are read again.
  paths = fixture.write_bair_tfrecords(str(tmp_path / 'cut'), 'test', 2, 2, seed=SEED)
  unnamed = os.path.join(os.path.dirname(paths[1]), 'cut.tfrecords')
  os.rename(paths[1], unnamed)
  paths[1] = unnamed
  assert bair.expected_records(unnamed) is None
  _truncate(unnamed, 1)
  with pytest.raises(tfrecord.CorruptRecordError) as err:
    with tfrecord.explain_errors(lambda: bair.check_records(paths)):
      list(bair.record_dataset(paths))
  assert str(err.value).startswith(f'{unnamed}: record 1: cannot be read, nor any record after')
  assert isinstance(err.value.__cause__, tf.errors.DataLossError)


def test_check_files_and_summary_report_every_bad_record(tmp_path, capsys):
  root = str(tmp_path)
  paths = fixture.write_bair_tfrecords(root, 'test', 3, 2, seed=SEED,
                                       corrupt={(0, 1): 'short_action', (1, 0): 'wrong_type'})
  with open(paths[2], 'r+b') as f:  # truncate the last file in its second record
    f.truncate(os.path.getsize(paths[2]) - 1000)
  result = bair.check_files(paths, progress_every=2)
  assert result.counts == {paths[0]: 2, paths[1]: 2, paths[2]: 1}
  assert [(f, i) for f, i, _ in result.bad] == [(paths[0], 1), (paths[1], 0), (paths[2], 1)]
  assert result.bad[0][2] == 'key 7/action has 3 floats, expected 4'
  assert result.bad[1][2] == 'key 7/action holds int64_list, expected float_list'
  assert result.bad[2][2].startswith('cannot be read, nor any record after it (truncated or '
                                     'corrupted file): DataLossError')

  assert bair.print_summary(root, 'test') == 3  # what the CLI prints without --preview_out
  out = capsys.readouterr().out
  assert 'BAIR test: 3 files, 5 records, 3 bad' in out
  assert f'bad: {paths[0]}: record 1: key 7/action has 3 floats, expected 4' in out


# ---------------------------------------------------------------------------------------------
# Files shorter or longer than their names say (traj_<a>_to_<b>: b - a + 1 records).

BAIR_CONFIG = config_lib.preset('bair', batch_size=2, n_future=3)  # 5-frame windows


SHORT_FILES = {'truncated': _truncate, 'cut_at_boundary': _cut_at_boundary}


def _short_file_error(path, index, expected):
  return (f'{path}: record {index}: missing or unreadable, as every record after it: the file '
          f'ends after {index} of its {expected} records (as its name says); it is truncated or '
          f'corrupted')


def test_expected_records_come_from_the_file_name():
  assert bair.expected_records('/d/traj_0_to_255.tfrecords') == 256
  assert bair.expected_records('traj_10240_to_10495.tfrecords') == 256
  for name in ('data.tfrecords', 'traj_5_to_4.tfrecords', 'traj_0_to_3.tfrecords.tmp'):
    assert bair.expected_records(name) is None


@pytest.mark.parametrize('damage', sorted(SHORT_FILES))
def test_short_train_file_stops_training_naming_it_or_is_skipped_and_counted(tmp_path, damage):
  root = str(tmp_path)
  paths = fixture.write_bair_tfrecords(root, 'train', 2, 3, seed=SEED)  # trajectories 0-2, 3-5
  SHORT_FILES[damage](paths[1], 1)  # trajectories 4 and 5 lost

  stream = inputs.train_input_fn(BAIR_CONFIG, root)  # what train.py iterates
  with pytest.raises(tf.errors.OpError) as caught:
    next(iter(stream(tf.distribute.InputContext(), 0)))
  with pytest.raises(tfrecord.CorruptRecordError,
                     match='^' + re.escape(_short_file_error(paths[1], 1, 3)) + '$'):
    inputs.explain_data_error(BAIR_CONFIG, root, 'native', caught.value)

  tfrecord.reset_skipped_records()
  windows = bair.train_dataset(root, seq_len=5, seed=0, skip_bad_records=True, shuffle_buffer=4)
  numbers = {int(_numbers(w['frames'])[0][0]) for w in windows.take(40).as_numpy_iterator()}
  assert numbers == {0, 1, 2, 3}
  assert tfrecord.skipped_records() == {paths[1]: 2}  # each epoch meets them: counted once


@pytest.mark.parametrize('damage', sorted(SHORT_FILES))
def test_short_test_file_fails_naming_it_or_is_skipped_and_counted(tmp_path, damage):
  root = str(tmp_path)
  path, = fixture.write_bair_tfrecords(root, 'test', 1, 4, seed=SEED)
  SHORT_FILES[damage](path, 2)
  with pytest.raises(tfrecord.CorruptRecordError,
                     match='^' + re.escape(_short_file_error(path, 2, 4)) + '$'):
    inputs.test_videos(BAIR_CONFIG, 30, root)  # what evaluate.py scores
  tfrecord.reset_skipped_records()
  videos = inputs.test_videos(BAIR_CONFIG, 30, root, skip_bad_records=True)
  want = fixture.expected_arrays([path], seed=SEED)['frames'][:2]
  np.testing.assert_array_equal(videos.frames, want / np.float32(255))
  assert tfrecord.skipped_records() == {path: 2}


def test_file_longer_than_its_name_is_read_whole_and_warned_about(tmp_path, capsys):
  path, = fixture.write_bair_tfrecords(str(tmp_path), 'test', 1, 3, seed=SEED)
  assert bair.print_summary(str(tmp_path), 'test') == 0
  out = capsys.readouterr().out
  assert 'BAIR test: 1 files, 3 records, 0 bad' in out
  assert 'bad:' not in out and 'warning' not in out
  records = _records(path)
  _write_records(path, records + records[:1])
  assert [r['index'] for r in bair.record_dataset([path]).as_numpy_iterator()] == [0, 1, 2, 3]
  assert bair.print_summary(str(tmp_path), 'test') == 0
  assert (f'warning: {path}: holds 4 records, 1 more than the 3 its name says'
          in capsys.readouterr().out)


def test_cli_check_names_short_files_and_exits_1(tmp_path):
  root = str(tmp_path)
  paths = fixture.write_bair_tfrecords(root, 'test', 3, 3, seed=SEED)
  _truncate(paths[0], 1)
  _cut_at_boundary(paths[1], 2)
  _write_records(paths[2], _records(paths[2]) * 2)
  run = _cli(f'--data_dir={root}', '--split=test')
  assert run.returncode == 1, run.stderr[-3000:]
  assert 'BAIR test: 3 files, 9 records, 2 bad' in run.stdout
  assert f'bad: {paths[0]}: record 1: cannot be read, nor any record after it' in run.stdout
  assert (f'bad: {paths[1]}: record 2: missing, as every record after it: the file ends after 2 '
          f'of its 3 records (as its name says); it was cut short at a record boundary'
          in run.stdout)
  assert f'warning: {paths[2]}: holds 6 records, 3 more than the 3 its name says' in run.stdout
