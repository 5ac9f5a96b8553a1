"""Two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy from TF_CONFIG, one CPU device
each, ring all-reduce over gRPC) train like one process with the same global batch, write only
from the chief, and stop together, saved, when one of them is preempted.

Tolerance: the first 3 steps' loss and mse within rtol 1e-5 of the single-process run, kl within
rtol 1e-3. Both runs see the same global batch (sequences s*4 .. s*4+3 at step s, worker w taking
positions w and w+2) with the same latent noise per sequence; what differs is the float summation
order (per-worker partial sums, then the all-reduce), ~1e-7 relative on the first step, which Adam
amplifies for weights whose gradient is noise-level (epsilon 1e-8). kl is 1e-4 of the loss here and
depends most on such weights: it drifts faster (measured: 6e-5 relative by step 3, 5e-4 by step 4;
loss 1e-7 and 4e-7).
"""

import json
import os
import re
import signal
import socket

import numpy as np

from svg_tf.run_dir import read_losses
from tests.reliability.helpers import (REFERENCE_STEPS, TrainProcess, progress_lines,
                                       subprocess_env)


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  try:
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def test_two_workers_train_like_one_process_and_stop_together_when_one_is_preempted(
    run_flags, reference, tmp_path):
  cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
  model_dir = tmp_path / "run"
  args = [*run_flags, f"--train_steps={REFERENCE_STEPS}", "--strategy=multi_worker",
          "--checkpoint_every=2", f"--model_dir={model_dir}"]
  workers = []
  try:
    for index in range(2):
      tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
      workers.append(TrainProcess(args, tmp_path / f"worker{index}.log",
                                  env=subprocess_env(TF_CONFIG=tf_config)))
    workers[0].wait_for(r"train \| step 3/", timeout=240)
    workers[1].signal(signal.SIGTERM)  # the non-chief is preempted: both must save and stop
    codes = [w.finish(timeout=120) for w in workers]
  finally:
    for w in workers:
      w.kill()
  tails = "\n\n".join(f"worker {i}:\n{w.tail()}" for i, w in enumerate(workers))
  assert codes == [42, 42], tails
  stopped = [int(re.search(r"preempted: checkpoint of step (\d+)", w.stdout).group(1))
             for w in workers]
  assert stopped[0] == stopped[1] >= 3, (stopped, tails)
  step = stopped[0]
  logs = [w.stderr() for w in workers]
  assert "global batch 4 on 2 replica(s) of 2 worker(s)" in logs[0]
  # The workers agree on every step's losses (one all-reduce gives both the same values).
  lines = [progress_lines(log) for log in logs]
  assert lines[0] == lines[1] and max(lines[0]) == step, tails
  # Only the chief wrote; worker 1's temporary checkpoints are gone.
  assert sorted(os.listdir(model_dir)) == ["checkpoints", "config.json", "losses.jsonl", "train"]
  with open(model_dir / "checkpoints" / "checkpoint") as f:
    assert f'model_checkpoint_path: "ckpt-{step}"' in f.read()
  assert f"saved checkpoint {model_dir}/checkpoints/ckpt-{step}" in logs[0]
  assert f"saved checkpoint {model_dir}/workertemp_1/ckpt-{step}" in logs[1]
  # The same losses as one process with the same global batch (tolerance: module doc).
  losses = read_losses(model_dir)
  assert [e["step"] for e in losses] == list(range(1, step + 1))
  for got, want in zip(losses[:3], reference[:3]):
    np.testing.assert_allclose([got["loss"], got["mse"]], [want["loss"], want["mse"]], rtol=1e-5)
    np.testing.assert_allclose(got["kl"], want["kl"], rtol=1e-3)
