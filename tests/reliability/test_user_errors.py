"""Every front end, given a user's mistake, exits 1 with one line `error: ...` naming the flag,
file or value: no traceback, no usage text (svg_tf/command_line.py).

One table of mistakes, run as a user would run them (subprocesses). Most end before TensorFlow
starts; the rest (a run directory or checkpoints to look at) after it.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from svg_tf import config as config_lib
from tests.conftest import ROOT
from tests.reliability.helpers import TINY, subprocess_env

SCRIPTS = {"train": ["train.py"], "evaluate": ["evaluate.py"], "export": ["export.py"],
           "predict": ["predict.py"], "client": ["-m", "svg_tf.serving"],
           "smmnist": ["-m", "pipelines.smmnist"], "kth": ["-m", "pipelines.kth"],
           "videos": ["-m", "pipelines.videos"]}


def run(script, *args, timeout=300):
  return subprocess.run([sys.executable, *SCRIPTS[script], *args], cwd=ROOT,
                        env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(out, *needles):
  """Exit status 1; the last stderr line is the only `error:` line and names every needle."""
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 1, (out.returncode, out.stderr[-3000:])
  assert lines and lines[-1].startswith("error: "), out.stderr[-3000:]
  assert sum(line.startswith("error:") for line in lines) == 1, out.stderr[-3000:]
  assert "Traceback" not in out.stderr, out.stderr[-3000:]
  assert "USAGE" not in out.stderr and "flags:" not in out.stderr, out.stderr[-3000:]
  for needle in needles:
    assert needle in lines[-1], (needle, lines[-1])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """Things to point flags at: a plain file, a run directory without checkpoints, one with a
  corrupt config.json, a non-JSON metrics file, a tiny clip."""
  root = tmp_path_factory.mktemp("mistakes")
  a_file = root / "a_file"
  a_file.write_text("not a folder")
  config = config_lib.preset("smmnist", base_filters=4, g_dim=8, rnn_size=16, z_dim=3,
                             batch_size=4, n_past=2, n_future=2)
  no_checkpoints = root / "no_checkpoints"
  no_checkpoints.mkdir()
  (no_checkpoints / "config.json").write_text(config.to_json())
  corrupt = root / "corrupt_config"
  corrupt.mkdir()
  (corrupt / "config.json").write_text('{"dataset": "smmn')
  not_json = root / "metrics.json"
  not_json.write_text("SSIM 0.8\n")
  clip = root / "clip.npy"
  np.save(clip, np.zeros((4, 64, 64, 1), np.uint8))
  return dict(root=root, file=str(a_file), under_file=str(a_file / "sub"),
              no_checkpoints=str(no_checkpoints), corrupt=str(corrupt), not_json=str(not_json),
              clip=str(clip))


DRY = "--dry_run"  # train.py: check the flags, build the model, stop
CASES = [  # (script, args with {placeholders} from `files`, what the error line names)
    ("train", ["--beta=nan", DRY], ["--beta=nan", "finite"]),
    ("train", ["--lr=inf", DRY], ["--lr=inf", "finite"]),
    ("train", ["--beta1=1.5", DRY], ["--beta1=1.5", "[0, 1)"]),
    ("train", ["--lr=0", DRY], ["--lr=0", "positive"]),
    ("train", ["--batch_size=0", DRY], ["--batch_size=0"]),
    ("train", ["--batch_size=four", DRY], ["--batch_size", "four"]),  # absl's parse error
    ("train", ["--no_such_flag=1", DRY], ["no_such_flag"]),
    ("train", ["positional", DRY], ["unexpected arguments: positional"]),
    ("train", ["--seed=-1", DRY], ["--seed=-1"]),
    ("train", ["--num_preview=-1", DRY], ["--num_preview=-1"]),
    ("train", ["--model_dir={corrupt}", "--train_steps=1"], ["config.json is corrupt", "not JSON"]),
    ("evaluate", ["--model_dir={root}/missing", "--out={root}/e1"], ["--model_dir=", "no such"]),
    ("evaluate", ["--model_dir={no_checkpoints}", "--out={root}/e2"], ["no checkpoint"]),
    ("evaluate", ["--model_dir={corrupt}", "--out={root}/e3"], ["config.json is corrupt"]),
    ("evaluate", ["--model_dir={no_checkpoints}", "--out={file}"], ["--out=", "is a file"]),
    ("evaluate", ["--model_dir={no_checkpoints}", "--out={under_file}"],
     ["--out=", "cannot be written"]),
    ("evaluate", ["--model_dir={no_checkpoints}", "--out={root}/e4", "--max_videos=0"],
     ["--max_videos=0"]),
    ("evaluate", ["--model_dir={no_checkpoints}", "--out={root}/e5", "--n_past=-1"],
     ["--n_past=-1"]),
    ("evaluate", ["--model_dir={no_checkpoints}", "--out={root}/e6", "--n_past=0"],
     ["--n_past=0"]),
    ("evaluate", ["--compare={not_json}", "--out={root}/e7"], ["--compare=", "not JSON"]),
    ("evaluate", ["--compare={root}/missing.json", "--out={root}/e8"], ["--compare=", "missing"]),
    ("evaluate", ["--model_dir={no_checkpoints}"], ["--out is required"]),
    ("evaluate", ["--model_dir={no_checkpoints}", "--out={root}/e9", "--num_shards=2",
                  "--shard_index=2"], ["--shard_index=2", "[0, 2)"]),
    ("evaluate", ["--model_dir={no_checkpoints}", "--out={root}/e10", "--num_shards=0"],
     ["--num_shards=0"]),
    ("evaluate", ["--merge={root}", "--model_dir={no_checkpoints}", "--out={root}/e11"],
     ["--merge with --model_dir"]),
    ("evaluate", ["--merge={root}"], ["--out is required"]),
    ("export", ["--model_dir={no_checkpoints}", "--export_dir={file}"],
     ["--export_dir=", "is a file"]),
    ("export", ["--model_dir={no_checkpoints}", "--export_dir={root}/x1"], ["no checkpoint"]),
    ("export", ["--model_dir={root}/missing", "--export_dir={root}/x2"], ["--model_dir=", "no such"]),
    ("export", ["--export_dir={root}/x3"], ["--model_dir is required"]),
    ("predict", ["--model={no_checkpoints}", "--video={clip}", "--out={file}"],
     ["--out=", "is a file"]),
    ("predict", ["--model={no_checkpoints}", "--video={root}/none.mp4", "--out={root}/p"],
     ["--video=", "no such"]),
    ("client", ["--server=127.0.0.1:9", "--video={clip}", "--out={root}/c.gif",
                "--seed=4294967303"], ["seed", "4294967303"]),
    ("client", ["--server=127.0.0.1:9", "--video={clip}", "--out={root}/c.gif",
                "--num_samples=0"], ["--num_samples=0"]),
    ("smmnist", ["--out={file}", "--num_sequences=2"], ["a_file"]),
    ("kth", ["--data_dir={root}/no_kth", "--out={root}/k"], ["no_kth"]),
    ("videos", ["--src={root}/no_videos", "--out={root}/v"], ["no_videos"]),
]


@pytest.mark.parametrize("script,args,needles", CASES,
                         ids=[f"{s}:{' '.join(a)}" for s, a, _ in CASES])
def test_a_mistake_is_one_line_and_exit_1(script, args, needles, files):
  extra = TINY if script == "train" else []
  out = run(script, *extra, *[a.format(**files) for a in args])
  assert_one_line_error(out, *needles)


def test_config_mismatch_names_every_differing_flag_at_once(mnist_npz, tmp_path):
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  config = config_lib.preset("smmnist", base_filters=4, g_dim=8, rnn_size=16, z_dim=3,
                             batch_size=4, n_past=2, n_future=2, train_steps=1)
  (model_dir / "config.json").write_text(config.to_json())
  out = run("train", *TINY, "--train_steps=1", "--lr=1e-3", "--beta=0.5",
            f"--mnist_path={mnist_npz}", f"--model_dir={model_dir}")
  assert_one_line_error(out, "--beta=0.5 (saved: 0.0001)", "--lr=0.001 (saved: 0.002)")
  assert json.loads((model_dir / "config.json").read_text()) == config.to_dict()


def test_an_empty_config_json_is_a_corrupt_run_directory_not_overwritten(mnist_npz, tmp_path):
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  (model_dir / "config.json").write_text("{}")
  out = run("train", *TINY, "--train_steps=1", f"--mnist_path={mnist_npz}",
            f"--model_dir={model_dir}")
  assert_one_line_error(out, f"{model_dir}/config.json is corrupt", "holds no configuration")
  assert (model_dir / "config.json").read_text() == "{}"
  assert not os.path.exists(model_dir / "checkpoints")
