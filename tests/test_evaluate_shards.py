"""Evaluation that scales out: 2 shard processes and a merge write what one unsharded run writes
(bit for bit with the default --videos_per_batch=1; to float32 rounding with larger batches,
whose kernels round a row by its batch); a merge refuses a missing, duplicated, mismatched or damaged shard with
one line naming it."""

import csv
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pipelines import inputs
from svg_tf import checkpoints, evaluation, evaluation_shards
from svg_tf import config as config_lib
from tests.conftest import ROOT, shared_path
from tests.test_evaluate import evaluate_run
from tests.test_export import TINY, sensitised_model, write_run

# 5 videos over 2 shards (3 and 2), 3 figure videos (2 in shard 0, 1 in shard 1); one video per
# batch (the default), so that every sampling and scoring call holds what it holds in the
# unsharded run.
SETTINGS = dict(n_past=2, n_future=3, max_videos=5, num_samples=3, num_figure_videos=3, seed=3)
FLAGS = [f"--{k}={v}" for k, v in SETTINGS.items()]


def evaluate_cli(*args, timeout=300):
  return subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), *args], cwd=ROOT,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True,
                        text=True, timeout=timeout)


def assert_one_line_error(out, *needles):
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 1, (out.returncode, out.stderr[-3000:])
  assert lines[-1].startswith("error: ") and "Traceback" not in out.stderr, out.stderr[-3000:]
  assert sum(line.startswith("error:") for line in lines) == 1, out.stderr[-3000:]
  for needle in needles:
    assert needle in lines[-1], (needle, lines[-1])


# The three fixtures below are built once per session, whichever worker asks first (the tests
# only read them, or copy them before changing them): tests/conftest.py's shared_path.
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A tiny SM-MNIST SVG-LP run directory (untrained, latents that matter), named lp."""
  build = lambda root: write_run(str(root / "lp"),
                                 sensitised_model(config_lib.preset("smmnist", **TINY)))
  return str(shared_path(tmp_path_factory, "shards_run", build) / "lp")


@pytest.fixture(scope="module")
def unsharded(run_dir, tmp_path_factory):
  """One unsharded evaluation, in this process, with the shards' settings."""
  build = lambda out: evaluate_run(run_dir, str(out), label="lp", **SETTINGS)
  return str(shared_path(tmp_path_factory, "shards_unsharded", build))


@pytest.fixture(scope="module")
def shard_dirs(run_dir, tmp_path_factory):
  """Two shards, each written by its own evaluate.py process into its own folder (the two
  processes run at once, as on two hosts)."""
  def build(root):
    folders = [str(root / f"host{i}") for i in range(2)]
    procs = [subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "evaluate.py"), f"--model_dir={run_dir}", *FLAGS,
         "--num_shards=2", f"--shard_index={i}", f"--out={folder}"], cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i, folder in enumerate(folders)]
    try:
      outs = [proc.communicate(timeout=300) for proc in procs]
    finally:
      for proc in procs:
        if proc.poll() is None:
          proc.kill()
          proc.wait()
    for i, (proc, (_, stderr), folder) in enumerate(zip(procs, outs, folders)):
      assert proc.returncode == 0, stderr[-3000:]
      assert f"evaluate | {3 - i}/{3 - i} videos" in stderr  # only its share is sampled
      assert os.listdir(folder) == [evaluation_shards.shard_name(i, 2)]  # no metrics.json
  root = shared_path(tmp_path_factory, "shards_cli", build)
  return [str(root / f"host{i}") for i in range(2)]


def _events(out):
  """TensorBoard scalars and images: {tag: [(step, value)]}."""
  events = {}
  for path in glob.glob(os.path.join(out, "events.out.tfevents.*")):
    for record in tf.data.TFRecordDataset(path):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        events.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor)))
  return events


def test_two_shards_merged_equal_one_unsharded_run_exactly(shard_dirs, unsharded, tmp_path):
  out = tmp_path / "merged"
  merged = evaluate_cli(*[f"--merge={d}" for d in shard_dirs], f"--out={out}")
  assert merged.returncode == 0, merged.stderr[-3000:]
  assert "merge | 2 shards of 5 videos (3, 2)" in merged.stderr
  want = json.load(open(os.path.join(unsharded, "metrics.json")))
  got = json.load(open(out / "metrics.json"))
  assert got.pop("shards") == 2
  assert got == want  # every metric, per-frame curve, interval and field, bit for bit
  assert want["num_videos"] == 5 and len(want["ssim"]["per_frame_mean"]) == 3
  assert open(out / "per_video.csv").read() == open(os.path.join(unsharded, "per_video.csv")).read()
  assert len(list(csv.DictReader(open(out / "per_video.csv")))) == 5
  curves, want_curves = np.load(out / "per_video_curves.npz"), np.load(
      os.path.join(unsharded, "per_video_curves.npz"))
  assert sorted(curves.files) == sorted(want_curves.files)
  for key in want_curves.files:  # best_*, mean_*, prior_std_sampled, prior_std_given, wall_hits
    np.testing.assert_array_equal(curves[key], want_curves[key], err_msg=key)
  # The figure videos (2 from shard 0, 1 from shard 1) and TensorBoard, in test-set order.
  for k in range(3):
    assert (out / f"samples_{k:03d}.png").read_bytes() == open(
        os.path.join(unsharded, f"samples_{k:03d}.png"), "rb").read()
  assert not (out / "samples_003.png").exists()
  for name in ("ssim_per_frame.png", "prior_std.png", "displacements.png"):
    assert (out / name).stat().st_size > 0, name
  events, want_events = _events(str(out)), _events(unsharded)
  assert sorted(events) == sorted(want_events)
  for tag, values in want_events.items():
    for (step, value), (want_step, want_value) in zip(events[tag], values):
      assert step == want_step
      np.testing.assert_array_equal(value, want_value, err_msg=tag)


def test_a_missing_shard_is_refused_naming_it(shard_dirs, tmp_path):
  out = evaluate_cli(f"--merge={shard_dirs[0]}", f"--out={tmp_path / 'm'}")
  assert_one_line_error(out, "shard 1 of 2 missing", "shard-00001-of-00002.npz", shard_dirs[0])
  assert not (tmp_path / "m" / "metrics.json").exists()


def test_a_duplicated_shard_is_refused_naming_both_files(shard_dirs, tmp_path):
  copy = tmp_path / "copy"
  copy.mkdir()
  shutil.copy(os.path.join(shard_dirs[1], "shard-00001-of-00002.npz"), copy)
  out = evaluate_cli(*[f"--merge={d}" for d in shard_dirs], f"--merge={copy}",
                     f"--out={tmp_path / 'm'}")
  assert_one_line_error(out, "shard 1 of 2 found twice", shard_dirs[1], str(copy))


def _rewrite_meta(path, **changes):
  """The shard file with settings changed in its description: as a shard of another run."""
  with np.load(path) as npz:
    arrays = {k: npz[k] for k in npz.files}
  meta = json.loads(str(arrays["meta"]))
  meta["settings"].update(changes)
  arrays["meta"] = np.array(json.dumps(meta))
  np.savez_compressed(path, **arrays)


def test_a_shard_of_another_seed_or_checkpoint_is_refused(shard_dirs, tmp_path):
  other = tmp_path / "other"
  shutil.copytree(shard_dirs[1], other)
  path = str(other / "shard-00001-of-00002.npz")
  _rewrite_meta(path, seed=4, checkpoint="elsewhere/ckpt-9")
  out = evaluate_cli(f"--merge={shard_dirs[0]}", f"--merge={other}", f"--out={tmp_path / 'm'}")
  assert_one_line_error(out, path, "different runs or settings", "seed 4 against 3",
                        "checkpoint 'elsewhere/ckpt-9'")


def test_a_damaged_shard_is_refused_naming_the_file(shard_dirs, tmp_path):
  damaged = tmp_path / "damaged"
  shutil.copytree(shard_dirs[1], damaged)
  path = damaged / "shard-00001-of-00002.npz"
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])  # cut short: no zip directory
  out = evaluate_cli(f"--merge={shard_dirs[0]}", f"--merge={damaged}", f"--out={tmp_path / 'm'}")
  assert_one_line_error(out, str(path), "damaged")
  # Damage inside an array (the zip's CRC) shows when the merge reads it.
  flipped = bytearray(data)
  flipped[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(flipped))
  evaluation_shards.check_shards([shard_dirs[0], str(damaged)])  # its description still reads
  with pytest.raises(evaluation_shards.ShardError, match=f"{path}: damaged"):
    evaluation_shards.merge([shard_dirs[0], str(damaged)])


def test_batch_statistics_are_recorded_in_the_merged_metrics(shard_dirs, tmp_path):
  """generation_bn=batch shards (their description rewritten) merge; metrics.json gets the caveat
  (write_outputs adds merged_fields, as the merge of the first test shows with `shards`)."""
  dirs = [str(tmp_path / f"h{i}") for i in range(2)]
  for folder, path in zip(dirs, shard_dirs):
    shutil.copytree(path, folder)
    _rewrite_meta(glob.glob(os.path.join(folder, "*.npz"))[0], batchnorm="batch")
  results, count = evaluation_shards.merge(dirs)
  assert results.fields["batchnorm"] == "batch"
  fields = evaluation_shards.merged_fields(count, results.fields["batchnorm"])
  assert fields["shards"] == 2 and "depends on the sharding" in fields["shards_note"]
  assert "shards_note" not in evaluation_shards.merged_fields(2, "moving")


def test_with_several_videos_per_batch_shards_agree_to_float_rounding(run_dir, unsharded,
                                                                     tmp_path):
  """Batches of 2 videos: a shard's batches hold other videos than the unsharded run's, and CPU
  kernels round a row by its batch's size and its place in it, so samples can differ in the last
  bit: against the one-video batches of `unsharded`, every number agrees to 1e-6 (relative, or
  absolute near 0: SSIM) and the same samples are picked."""
  run = checkpoints.restore_run(run_dir)
  videos = inputs.test_videos(run.model.config, 5, max_videos=5)
  settings = {k: v for k, v in SETTINGS.items() if k != "max_videos"}
  dirs = []
  for i in range(2):
    results = evaluation.compute_results(
        run.model, videos, checkpoint=run.checkpoint, checkpoint_step=run.step, label="lp",
        num_shards=2, shard_index=i, digit_images=videos.digit_images,
        **dict(settings, videos_per_batch=2))
    assert list(results.video_index) == list(range(i, 5, 2))
    dirs.append(str(tmp_path / f"shard{i}"))
    evaluation_shards.save_shard(results, dirs[-1], i, 2)
  merged, count = evaluation_shards.merge(dirs)
  assert count == 2 and list(merged.video_index) == list(range(5))
  want = np.load(os.path.join(unsharded, "per_video_curves.npz"))
  rows = list(csv.DictReader(open(os.path.join(unsharded, "per_video.csv"))))
  for metric in ("ssim", "psnr"):
    np.testing.assert_allclose(merged.scores.best[metric], want[f"best_{metric}"], rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(merged.scores.sample_mean[metric], want[f"mean_{metric}"],
                               rtol=1e-6, atol=1e-6)
    assert list(merged.scores.best_index[metric]) == [int(r[f"{metric}_best_sample"])
                                                      for r in rows]
  np.testing.assert_allclose(merged.scores.prior_std, want["prior_std_sampled"], rtol=1e-6,
                             atol=1e-6)
  np.testing.assert_array_equal(merged.wall["prior_std_given"], want["prior_std_given"])
  np.testing.assert_array_equal(merged.wall["wall_hits"], want["wall_hits"])
