"""Test setup: two logical CPU devices, so the MirroredStrategy path runs on this CPU.

The split must happen before TensorFlow initialises its runtime, hence here, at collection time.
Single-replica tests use the default strategy and are unaffected.
"""

import fcntl
import os
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
  # pytest -n 2 on two cores: one TensorFlow thread per worker (and per process a test starts)
  # instead of two each, which would oversubscribe the cores.
  os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
  os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


@pytest.fixture(scope="session")
def tiny_config():
  """A few-thousand-parameter SM-MNIST SVG-LP with distinct sizes, so swapped axes fail. (An
  SVGConfig is frozen: one per session serves module-scoped fixtures too.)"""
  from svg_tf import config
  return config.preset("smmnist", base_filters=4, g_dim=8, rnn_size=16, z_dim=3, batch_size=4,
                       n_past=2, n_future=3)


@pytest.fixture(scope="session")
def short_config(tiny_config):
  """tiny_config with 3-frame sequences and a one-layer frame predictor, for tests that trace
  training steps: tracing the replicated step (not running it) is what costs, and it grows with
  the unrolled LSTM steps; what these tests assert does not depend on the sequence length."""
  return tiny_config.replace(n_future=1, predictor_rnn_layers=1)


def shared_path(tmp_path_factory, name, build):
  """The folder `name`, filled by `build(path)` once per test session, whichever pytest-xdist worker
  asks for it first; a worker that asks meanwhile waits for it, and every later one reuses it.

  A module- or session-scoped fixture is otherwise built once per worker that runs its tests, and
  again each time --dist worksteal hands a worker the rest of a module it had left: the expensive
  ones (a trained run, evaluations, CLI conversions) build their files through this. What `build`
  writes must not depend on the worker, and the tests that use it must not change it (they copy
  it first, as they did with the module's own copy)."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # the session's folder, which holds every worker's basetemp
  path = root / "shared" / name
  path.parent.mkdir(exist_ok=True)
  with open(f"{path}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, whatever happens
    if not os.path.exists(f"{path}.done"):
      shutil.rmtree(path, ignore_errors=True)  # what a build that failed part way left
      path.mkdir()
      build(path)
      open(f"{path}.done", "w").close()
  return path


def pytest_collection_modifyitems(config, items):
  """Drops tf.test.TestCase.test_session: a context manager TF marks "Not a test" (it would show
  as a skipped test in every tfds.testing.DatasetBuilderTestCase)."""
  del config
  items[:] = [item for item in items if item.name != "test_session"]
