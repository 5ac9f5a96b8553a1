"""A newest checkpoint that cannot be read (truncated, bytes flipped, index cut, state file garbled)
is skipped for the newest intact one, with a warning naming it: training resumes from the older
one, and evaluation, export and svg_tf.load use it. With none intact, one error naming each file.
"""

import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import svg_tf
from svg_tf import checkpoints
from svg_tf import config as config_lib
from tests.reliability.test_run_dir import _fixed_batch_run
from tests.reliability.test_user_errors import assert_one_line_error, run


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _flip_bytes(path):
  """One byte in every 997 inverted: every tensor of more than a kilobyte is hit (a checkpoint
  restored for its model only is read only in part)."""
  with open(path, "r+b") as f:
    data = bytearray(f.read())
    for i in range(0, len(data), 997):
      data[i] ^= 0xFF
    f.seek(0)
    f.write(data)


DAMAGES = {  # name: damage applied to ckpt-2 of <model_dir>/checkpoints
    "data truncated": lambda d: _truncate(os.path.join(d, "ckpt-2.data-00000-of-00001")),
    "data bytes flipped": lambda d: _flip_bytes(os.path.join(d, "ckpt-2.data-00000-of-00001")),
    "index truncated": lambda d: _truncate(os.path.join(d, "ckpt-2.index")),
    "data file deleted": lambda d: os.remove(os.path.join(d, "ckpt-2.data-00000-of-00001")),
}


TINY_CONFIG = config_lib.preset("smmnist", base_filters=4, g_dim=8, rnn_size=16, z_dim=3,
                                batch_size=4, n_past=2, n_future=1,
                                predictor_rnn_layers=1)  # tests/conftest.py's short_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A run directory trained 2 steps with a checkpoint at each (trained once per module)."""
  root = tmp_path_factory.mktemp("trained")
  _, train = _fixed_batch_run(TINY_CONFIG, root, seed=6, checkpoint_every=1)
  train(2)
  return str(root / "run")


@pytest.fixture
def two_checkpoints(trained, tmp_path):
  """(model_dir, train, checkpoint folder): a fresh copy of `trained`; train(steps) resumes it."""
  shutil.copytree(trained, tmp_path / "run")
  model_dir, train = _fixed_batch_run(TINY_CONFIG, tmp_path, seed=6, checkpoint_every=1)
  return model_dir, train, os.path.join(model_dir, "checkpoints")


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_the_newest_intact_checkpoint_is_used_and_the_bad_one_named(damage, two_checkpoints,
                                                                    caplog):
  model_dir, _, directory = two_checkpoints
  assert checkpoints.restore_run(model_dir).step == 2
  DAMAGES[damage](directory)
  caplog.set_level(logging.WARNING, logger="absl")
  run = checkpoints.restore_run(model_dir)
  assert run.step == 1 and run.checkpoint.endswith("ckpt-1")
  assert f"checkpoint {directory}/ckpt-2 cannot be read" in caplog.text


def test_training_resumes_from_the_intact_one_and_overwrites_the_bad_one(two_checkpoints, caplog):
  model_dir, train, directory = two_checkpoints
  DAMAGES["data truncated"](directory)
  caplog.set_level(logging.INFO, logger="absl")
  assert train(3)["step"] == 3
  assert f"checkpoint {directory}/ckpt-2 cannot be read" in caplog.text
  assert "resumed from step 1 (" in caplog.text
  for step in (2, 3):  # step 2 was saved again: everything reads now
    reader = tf.train.load_checkpoint(os.path.join(directory, f"ckpt-{step}"))
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)


def test_svg_tf_load_falls_back_too(two_checkpoints):
  model_dir, _, directory = two_checkpoints
  DAMAGES["data truncated"](directory)
  predictor = svg_tf.load(model_dir)
  assert predictor.source.endswith("ckpt-1")
  context = np.zeros((1, 2, 64, 64, 1), np.float32)
  assert predictor.sample(context, 2, 1, seed=0).shape == (1, 1, 2, 64, 64, 1)


def test_a_garbled_state_file_does_not_turn_the_run_into_a_new_one(two_checkpoints):
  model_dir, _, directory = two_checkpoints
  with open(os.path.join(directory, "checkpoint"), "w") as f:
    f.write("model_checkpoint_path: \"ckpt-2\"\nall_model_checkpoint_paths {{{ garbage")
  assert tf.train.latest_checkpoint(directory) is None  # what a restart used to go by
  assert checkpoints.restore_run(model_dir).step == 2


def test_with_no_intact_checkpoint_every_file_is_named(two_checkpoints):
  model_dir, train, directory = two_checkpoints
  for step in (1, 2):
    _truncate(os.path.join(directory, f"ckpt-{step}.data-00000-of-00001"))
  with pytest.raises(checkpoints.CheckpointReadError, match=r"no checkpoint in .* can be read: "
                     r".*ckpt-2 \(.*\); .*ckpt-1 \(.*\)"):
    checkpoints.restore_run(model_dir)
  with pytest.raises(checkpoints.CheckpointReadError):
    train(3)
  out = run("evaluate", f"--model_dir={model_dir}", f"--out={model_dir}/eval")
  assert_one_line_error(out, "ckpt-2", "ckpt-1", "can be read")
  out = run("export", f"--model_dir={model_dir}", f"--export_dir={model_dir}/exports")
  assert_one_line_error(out, "ckpt-2", "ckpt-1", "can be read")
