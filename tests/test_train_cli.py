"""train.py as a user runs it: dry-run counts, bad flags, bad data, a short replicated run."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

TINY = ["--base_filters=4", "--g_dim=8", "--rnn_size=16", "--z_dim=3", "--batch_size=4",
        "--n_past=2", "--n_future=2"]


def run_train(*args, timeout=300):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def params(stdout):
  return {line.split()[1]: int(line.split()[2]) for line in stdout.splitlines()
          if line.startswith("params ")}


def test_dry_run_prints_counts_per_module():
  out = run_train("--dataset=smmnist", "--model=lp", "--dry_run")
  assert out.returncode == 0, out.stderr
  counts = params(out.stdout)
  assert list(counts) == ["encoder", "decoder", "frame_predictor", "posterior", "prior", "total"]
  assert counts["total"] == 12_609_961 and counts["encoder"] == 3_805_376
  assert "--torch_lstm_bias adds them (total 12609961 vs 12614057)" in out.stderr


def test_dry_run_bair_with_torch_biases():
  out = run_train("--dataset=bair", "--dry_run", "--torch_lstm_bias")
  assert out.returncode == 0, out.stderr
  assert params(out.stdout)["total"] == 22_831_747


@pytest.mark.parametrize("args,message", [
    (["--dataset=ucf101"], "--dataset"),
    (["--model=gan"], "--model"),
    (["--skip_rule=reference", "--n_past=1"], "--skip_rule"),
    (["--dataset=bair", "--num_digits=1"], "--num_digits"),
    (["--last_frame_skip", "--skip_rule=reference"], "--last_frame_skip"),
    (["--checkpoint_every=0"], "--checkpoint_every"),
    (["--max_bad_steps=0"], "--max_bad_steps"),
    (["--strategy=ring"], "--strategy"),
    (["--dataset=kth", "--channels=3"], "--channels applies to --dataset=videos only"),
    (["--dataset=videos", "--data_dir=/nonexistent"], "not a converted video folder"),
])
def test_bad_flags_give_a_one_line_error_naming_the_flag(args, message):
  out = run_train(*args, "--dry_run")
  assert out.returncode != 0
  assert message in out.stderr
  assert "Traceback" not in out.stderr


def test_a_missing_mnist_file_is_named(tmp_path):
  missing = str(tmp_path / "nowhere" / "mnist.npz")
  out = run_train(*TINY, "--train_steps=1", f"--model_dir={tmp_path / 'run'}",
                  f"--mnist_path={missing}")
  assert out.returncode != 0
  assert missing in out.stderr


def test_a_truncated_tfrecord_is_named_with_its_record(tmp_path):
  from pipelines import smmnist, tfrecord
  data_dir = str(tmp_path / "data")
  smmnist.write_tfrecords(data_dir, "train", num_sequences=8, seq_len=4, seed=0,
                          examples_per_shard=4)
  shard = tfrecord.list_shards(data_dir)[1]
  with open(shard, "rb") as f:
    data = f.read()
  with open(shard, "wb") as f:
    f.write(data[:len(data) - 5000])  # cut into its last records
  out = run_train(*TINY, "--train_steps=3", "--num_preview=0", f"--data_dir={data_dir}",
                  f"--model_dir={tmp_path / 'run'}")
  assert out.returncode == 1
  assert f"error: bad training data: {shard}: record 3: " in out.stderr  # the first cut record
  assert "Traceback" not in out.stderr


def test_short_run_on_two_cpu_replicas_writes_its_outputs(tmp_path):
  model_dir = tmp_path / "run"
  out = run_train(*TINY, "--train_steps=2", "--cpu_replicas=2", "--log_every=1",
                  f"--model_dir={model_dir}", "--num_preview=2", "--image_every=2")
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"run directory: {model_dir}" in out.stdout
  assert "on 2 replica(s)" in out.stderr
  assert "train | step 2/2" in out.stderr
  assert (model_dir / "samples" / "step_0000002.gif").stat().st_size > 0
  assert any(p.name.startswith("events.out.tfevents") for p in (model_dir / "train").iterdir())
