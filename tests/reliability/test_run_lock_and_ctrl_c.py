"""One train.py per run directory (run.lock); Ctrl-C saves and exits 130, a second stops at once;
a mistake never leaves a run directory that refuses the corrected command."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from svg_tf import run_dir, train_loop
from svg_tf.config import LoopOptions
from tests.reliability.helpers import TINY, TrainProcess, run_train
from tests.reliability.test_user_errors import assert_one_line_error


def _dead_pid() -> int:
  """The PID of a process that has exited (and been reaped)."""
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def _write_lock(model_dir, **holder):
  os.makedirs(model_dir, exist_ok=True)
  with open(os.path.join(model_dir, run_dir.LOCK_FILE), "w") as f:
    json.dump(dict({"host": socket.gethostname(), "started": "2026-11-30T12:00:00+00:00"},
                   **holder), f)


def test_ctrl_c_saves_and_exits_130_a_second_run_meanwhile_is_refused(mnist_npz, tmp_path):
  model_dir = tmp_path / "run"
  common = [*TINY, "--checkpoint_every=1000", f"--mnist_path={mnist_npz}",
            f"--model_dir={model_dir}"]
  args = [*common, "--train_steps=1000"]
  first = TrainProcess(args, tmp_path / "first.log")
  try:
    first.wait_for(r"train \| step 2/")
    lock = json.loads((model_dir / "run.lock").read_text())
    assert lock["pid"] == first.proc.pid and lock["host"] == socket.gethostname()
    second = run_train(*common, "--train_steps=1001")
    assert_one_line_error(second, f"in use by another train.py (PID {first.proc.pid}")
    first.signal(signal.SIGINT)
    code = first.finish(timeout=120)
  finally:
    first.kill()
  assert code == 130, first.tail()
  assert "Traceback" not in first.stderr()
  step = int(first.stdout.split("interrupted: checkpoint of step ")[1].split()[0])
  assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith(f"ckpt-{step}")
  assert [e["step"] for e in run_dir.read_losses(model_dir)] == list(range(1, step + 1))
  assert not (model_dir / "run.lock").exists()  # released on the way out


def test_a_second_ctrl_c_stops_at_once(mnist_npz, tmp_path):
  model_dir = tmp_path / "run"
  args = [*TINY, "--train_steps=1000", f"--mnist_path={mnist_npz}", f"--model_dir={model_dir}"]
  run = TrainProcess(args, tmp_path / "run.log")
  try:
    run.wait_for(r"train \| step 2/")
    run.signal(signal.SIGINT)
    run.signal(signal.SIGINT)
    code = run.finish(timeout=120)
  finally:
    run.kill()
  log = run.stderr()
  assert code == 130, run.tail()
  assert "Traceback" not in log
  assert "interrupted" in log + run.stdout
  assert not (model_dir / "run.lock").exists()


def test_a_lock_of_a_live_process_refuses_a_dead_ones_is_taken_over(tmp_path, caplog):
  model_dir = str(tmp_path)
  first = run_dir.RunLock(model_dir)
  first.acquire()
  with pytest.raises(run_dir.RunDirError, match=rf"in use by another train.py \(PID "
                     rf"{os.getpid()} on {socket.gethostname()}, since "):
    run_dir.RunLock(model_dir).acquire()
  first.release()
  assert not os.path.exists(os.path.join(model_dir, run_dir.LOCK_FILE))

  _write_lock(model_dir, pid=12345, host="another-machine")  # never taken over: it may run
  with pytest.raises(run_dir.RunDirError, match=r"in use by a train.py on another-machine"):
    run_dir.RunLock(model_dir).acquire()

  caplog.set_level(logging.WARNING, logger="absl")
  for stale in ({"pid": _dead_pid()}, None):  # a killed run's lock; a lock cut short
    if stale:
      _write_lock(model_dir, **stale)
    else:
      with open(os.path.join(model_dir, run_dir.LOCK_FILE), "w") as f:
        f.write('{"host": "')
    lock = run_dir.RunLock(model_dir)
    lock.acquire()
    with open(os.path.join(model_dir, run_dir.LOCK_FILE)) as f:
      assert json.load(f)["pid"] == os.getpid()
    lock.release()
  assert caplog.text.count(f"taking over {model_dir}/run.lock") == 2


def test_a_run_that_fails_before_its_first_step_writes_no_config(short_config, tmp_path):
  model_dir = str(tmp_path / "run")
  right = np.zeros((4, short_config.seq_len, 64, 64, 1), np.float32)
  with pytest.raises(ValueError, match="the training data ran out at step 1"):
    train_loop.train(short_config.replace(train_steps=1), model_dir,  # an empty stream
                     lambda ctx, start: tf.data.Dataset.from_tensors(right).take(0),
                     options=LoopOptions())
  assert not os.path.exists(os.path.join(model_dir, "config.json"))
  assert not os.path.exists(os.path.join(model_dir, "run.lock"))
  # The corrected command, with another configuration even, is not refused.
  result = train_loop.train(short_config.replace(train_steps=1, lr=1e-3), model_dir,
                            lambda ctx, start: tf.data.Dataset.from_tensors(right).repeat())
  assert result["step"] == 1
  assert run_dir.read_config(model_dir).lr == 1e-3


def test_a_batch_the_replicas_cannot_share_is_refused_before_anything_is_written(mnist_npz,
                                                                                 tmp_path):
  model_dir = tmp_path / "run"
  out = run_train(*TINY, "--cpu_replicas=3", "--batch_size=4", "--train_steps=1",
                  f"--mnist_path={mnist_npz}", f"--model_dir={model_dir}")
  assert_one_line_error(out, "--batch_size=4", "divisible by the 3 replicas")
  assert not model_dir.exists()
