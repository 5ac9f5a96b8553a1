"""Fixtures of the reliability tests: tiny MNIST digits for train.py subprocesses (loading the real
60,000 costs 6 s per process), and one uninterrupted reference run that the preemption and
multi-worker tests compare against, step for step.
"""

import numpy as np
import pytest

from svg_tf.run_dir import read_losses
from tests.conftest import shared_path
from tests.reliability.helpers import REFERENCE_STEPS, TINY, run_train


@pytest.fixture(scope="session")
def mnist_npz(tmp_path_factory) -> str:
  """A Keras-style mnist.npz of 64 random binary 28x28 'digits' (the tests need no real ones)."""
  path = str(tmp_path_factory.mktemp("mnist") / "mnist.npz")
  rng = np.random.RandomState(0)
  images = ((rng.rand(64, 28, 28) > 0.7) * 255).astype(np.uint8)
  labels = np.arange(64) % 10
  np.savez(path, x_train=images, y_train=labels, x_test=images[:16], y_test=labels[:16])
  return path


@pytest.fixture(scope="session")
def run_flags(mnist_npz) -> list:
  """The flags of every deterministic run compared step for step (model_dir and steps aside)."""
  return [*TINY, f"--mnist_path={mnist_npz}", "--deterministic"]


@pytest.fixture(scope="session")
def reference(run_flags, tmp_path_factory) -> list:
  """losses.jsonl of one uninterrupted single-process run of REFERENCE_STEPS steps (run once per
  session, whichever worker asks first)."""
  def build(root):
    out = run_train(*run_flags, f"--train_steps={REFERENCE_STEPS}", "--checkpoint_every=20",
                    f"--model_dir={root / 'run'}")
    assert out.returncode == 0, out.stderr[-4000:]
  model_dir = shared_path(tmp_path_factory, "reliability_reference", build) / "run"
  losses = read_losses(model_dir)
  assert [e["step"] for e in losses] == list(range(1, REFERENCE_STEPS + 1))
  assert all(e["applied"] for e in losses)
  return losses
