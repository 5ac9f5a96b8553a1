"""The installable package: a built wheel, installed into a fresh virtual environment (not
editable), runs every console command from another folder, through a new user's whole path:
convert their videos, train, evaluate, export, serve, predict.

The fresh environment reads the test environment's site-packages through a .pth file (the
dependencies: TensorFlow alone is 600 MB), but svg_tf, svg_cli and pipelines come from the wheel:
its site-packages comes first on sys.path, and the test asserts where they were imported from.
"""

import glob
import json
import os
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np

from pipelines.fixtures import videos as fixture
from svg_tf.serving.local_server import LocalServer
from tests.conftest import ROOT

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
TINY = ["--base_filters=4", "--g_dim=8", "--rnn_size=16", "--z_dim=3", "--n_past=2",
        "--n_future=3"]


class _Command:
  """A command running in the background, its output in files (a pipe that nobody reads while
  the test waits for another command would stall it once full)."""

  def __init__(self, cmd, cwd):
    self.cmd = [str(c) for c in cmd]
    self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    self.proc = subprocess.Popen(self.cmd, cwd=cwd, env=ENV, stdout=self.out, stderr=self.err,
                                 text=True)

  def finish(self, timeout=600) -> subprocess.CompletedProcess:
    """Waits for the command and checks that it succeeded."""
    try:
      self.proc.wait(timeout=timeout)
    finally:
      self.kill()
    self.out.seek(0)
    self.err.seek(0)
    result = subprocess.CompletedProcess(self.cmd, self.proc.returncode, self.out.read(),
                                         self.err.read())
    assert result.returncode == 0, (self.cmd, result.stdout[-2000:], result.stderr[-3000:])
    return result

  def kill(self):
    if self.proc.poll() is None:
      self.proc.kill()
      self.proc.wait()


def _run(cmd, cwd, timeout=600):
  return _Command(cmd, cwd).finish(timeout)


def test_the_wheel_installs_and_every_command_runs_from_another_folder(tmp_path):
  dist = tmp_path / "dist"
  _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT], cwd=tmp_path)
  wheel, = glob.glob(str(dist / "svg_tf-*.whl"))
  venv = tmp_path / "venv"
  # Without pip of its own (ensurepip takes seconds): this environment's pip installs into it.
  _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
  python, bin_dir = venv / "bin" / "python", venv / "bin"
  purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                 cwd=tmp_path).stdout.strip()
  with open(os.path.join(purelib, "test_environment.pth"), "w") as f:
    f.write(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
  _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
        "--no-index", wheel], cwd=tmp_path)

  work = tmp_path / "elsewhere"  # not the checkout: nothing of it may be imported
  work.mkdir()
  where = _run([python, "-c", "import svg_tf, svg_cli, pipelines; print(svg_tf.__file__, "
                "svg_cli.__file__, pipelines.__file__, svg_tf.__version__)"], cwd=work).stdout
  assert where.count(str(venv)) == 3 and ROOT not in where, where

  # Commands that do not need each other's outputs run at once (each is a process of its own
  # that starts TensorFlow): the dry run beside the rest; evaluate, export and predict once the
  # run is trained.
  background = []

  def start(cmd):
    background.append(_Command(cmd, work))
    return background[-1]

  try:
    dry = start([bin_dir / "svg-train", "--dataset=smmnist", "--dry_run"])
    clips = work / "my_clips"
    clips.mkdir()
    for i in range(4):
      fixture.write_video(str(clips / f"clip_{i}.mp4"),
                          fixture.moving_shapes(14, 48, 64, seed=i), fps=10)
    (work / "test_list.txt").write_text("clip_3.mp4\n")
    fixture.write_video(str(work / "unseen.mov"), fixture.moving_shapes(8, 64, 96, seed=9))
    _run([python, "-m", "pipelines.videos", "--src=my_clips", "--out=data", "--min_frames=5",
          "--test_list=test_list.txt"], cwd=work)
    _run([bin_dir / "svg-train", "--dataset=videos", "--data_dir=data", "--model_dir=run",
          "--train_steps=2", "--batch_size=2", "--num_preview=1", *TINY], cwd=work)
    evaluating = start([bin_dir / "svg-evaluate", "--model_dir=run", "--data_dir=data",
                        "--num_samples=2", "--max_videos=2", "--out=eval"])
    exporting = start([bin_dir / "svg-export", "--model_dir=run", "--export_dir=exports"])
    predicting = start([bin_dir / "svg-predict", "--model=run", "--video=unseen.mov",
                        "--num_samples=2", "--num_future=3", "--seed=1", "--out=futures"])
    exporting.finish()
    with LocalServer(str(work / "exports" / "svg"), "svg") as server:
      _run([bin_dir / "svg-client", f"--server={server.grpc_address}", "--video=unseen.mov",
            "--image_size=64", "--n_context=2", "--num_samples=2", "--num_future=3",
            "--out=served.gif"], cwd=work)
    assert (work / "served.gif").stat().st_size > 1000
    evaluating.finish()
    assert json.load(open(work / "eval" / "metrics.json"))["n_future"] == 3
    predicted = predicting.finish()
    assert "best SSIM" in predicted.stdout
    assert np.load(work / "futures" / "futures.npz")["futures"].shape == (2, 3, 64, 64, 3)
    assert "params total 12609961" in dry.finish().stdout
  finally:
    for command in background:
      command.kill()
