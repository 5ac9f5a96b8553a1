"""The evaluation protocol end to end: sampler, best-of-N scoring, outputs, figures, CLI."""

import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pipelines import inputs
from svg_tf import checkpoints, evaluation, metrics, strategies, train_loop
from svg_tf.model import SVG
from tests.conftest import ROOT, shared_path


class PerfectSampleSampler:
  """Returns noise for every sample except sample 2, which is the true future."""

  def __init__(self, frames, n_past, n_future):
    self.frames, self.n_past, self.n_future = frames, n_past, n_future

  def sample(self, context, num_samples, seed, actions=None):
    rng = np.random.default_rng(0)
    shape = (len(context), num_samples, self.n_future) + self.frames.shape[2:]
    out = rng.random(shape).astype(np.float32)
    for i, c in enumerate(context):  # which test video this context is
      video = np.flatnonzero((self.frames[:, :self.n_past] == c).all(axis=(1, 2, 3, 4)))[0]
      out[i, 2] = self.frames[video, self.n_past:self.n_past + self.n_future]
    return out, np.ones(out.shape[:3], np.float32)


def test_best_sample_is_found_and_context_frames_are_never_scored():
  rng = np.random.default_rng(1)
  frames = rng.random((5, 7, 16, 16, 1)).astype(np.float32)  # 3 context + 4 predicted
  truth = frames[:, 3:]
  scores = evaluation.score(PerfectSampleSampler(frames, 3, 4), frames, num_samples=4,
                            videos_per_batch=2, keep=2)
  for metric in ("ssim", "psnr"):
    assert scores.best[metric].shape == (5, 4)  # predicted frames only
    assert np.all(scores.best_index[metric] == 2)
  np.testing.assert_allclose(scores.best["ssim"], 1.0, atol=1e-5)
  np.testing.assert_allclose(scores.kept_best, truth[:2])
  # The mean over samples: one perfect sample (SSIM 1) and three of noise, averaged.
  noise = np.random.default_rng(0).random((2, 4, 4, 16, 16, 1)).astype(np.float32)[:, [0, 1, 3]]
  noise_ssim = metrics.ssim_per_frame(noise, np.broadcast_to(truth[:2, None],
                                                                        noise.shape))
  np.testing.assert_allclose(scores.sample_mean["ssim"][:2],
                             (1.0 + np.asarray(noise_ssim).sum(axis=1)) / 4, atol=1e-5)
  assert np.all(scores.sample_mean["psnr"] < scores.best["psnr"])
  summary = evaluation.summary(scores, n_past=3)
  assert len(summary["ssim"]["per_frame_mean"]) == 4 and summary["num_videos"] == 5
  assert summary["mean_over_samples"]["ssim"]["mean"] == pytest.approx(
      scores.sample_mean["ssim"].mean())


class FixedSamples:
  """A sampler returning given samples (V, S, T, H, W, C) whatever it is asked."""

  def __init__(self, samples, n_past):
    self.samples, self.n_past, self.n_future = samples, n_past, samples.shape[2]

  def sample(self, context, num_samples, seed, actions=None):
    return self.samples, np.ones(self.samples.shape[:3], np.float32)


def test_srvp_psnr_picks_its_own_best_sample():
  """Sample 0 errs equally in every channel, sample 1 mostly in red: the frame's PSNR prefers
  sample 0, SRVP's channel average sample 1."""
  truth = np.full((1, 3, 16, 16, 3), 0.5, np.float32)  # 1 context + 2 predicted frames
  samples = np.stack([truth[:, 1:] + np.float32([0.05, 0.05, 0.05]),
                      truth[:, 1:] + np.float32([0.1, 0.001, 0.001])], axis=1)
  scores = evaluation.score(FixedSamples(samples, 1), truth, num_samples=2, srvp_psnr=True)
  assert scores.best_index["psnr"][0] == 0 and scores.best_index["psnr_srvp"][0] == 1
  np.testing.assert_allclose(scores.best["psnr"][0], 10 * np.log10(1 / 0.05 ** 2), rtol=1e-5)
  np.testing.assert_allclose(scores.best["psnr_srvp"][0], (20 + 60 + 60) / 3, rtol=1e-4)


def test_sampler_results_do_not_depend_on_chunking_or_batch(tiny_config):
  model = SVG(tiny_config)
  context = np.random.default_rng(2).random((3, 2, 64, 64, 1)).astype(np.float32)
  big = evaluation.Sampler(model, 2, 3, chunk_size=64)
  small = evaluation.Sampler(model, 2, 3, chunk_size=2)
  a, std_a = big.sample(context, 4, seed=7)
  b, _ = small.sample(context, 4, seed=7)
  assert a.shape == (3, 4, 3, 64, 64, 1) and std_a.shape == (3, 4, 3)
  direct = model.sample(context, 3, num_samples=4, seed=7)  # what the sampler's rows come from
  np.testing.assert_allclose(a, direct.frames, atol=1e-5)
  np.testing.assert_allclose(std_a, direct.prior_std.numpy().mean(axis=-1), atol=1e-6)
  np.testing.assert_allclose(a, b, atol=1e-5)
  alone, _ = big.sample(context[1:2], 4, seed=7)  # same video, alone
  np.testing.assert_allclose(alone[0], a[1], atol=1e-5)


def test_an_action_conditioned_model_is_scored_with_each_videos_actions(tiny_config):
  model = SVG(tiny_config.replace(action_dim=2))
  rng = np.random.default_rng(3)
  frames = rng.random((2, 5, 64, 64, 1)).astype(np.float32)
  actions = rng.normal(size=(2, 5, 2)).astype(np.float32)
  sampler = evaluation.Sampler(model, 2, 3, bn_mode="batch")
  a, _ = sampler.sample(frames[:, :2], 2, seed=1, actions=actions)
  pushed = actions.copy()
  pushed[:, 2] += 30.0  # a_2 drives x_3, the second generated frame
  b, _ = sampler.sample(frames[:, :2], 2, seed=1, actions=pushed)
  np.testing.assert_allclose(a[:, :, 0], b[:, :, 0], atol=1e-5)
  assert np.abs(a[:, :, 1:] - b[:, :, 1:]).max() > 1e-5
  with pytest.raises(ValueError, match="action-conditioned"):
    sampler.sample(frames[:, :2], 2, seed=1)
  scores = evaluation.score(sampler, frames, 2, videos_per_batch=1, actions=actions)
  assert scores.best["ssim"].shape == (2, 3)


def test_two_replicas_sample_what_one_does(tiny_config):
  model = SVG(tiny_config)
  context = np.random.default_rng(3).random((3, 2, 64, 64, 1)).astype(np.float32)
  one, _ = evaluation.Sampler(model, 2, 2, chunk_size=8).sample(context, 3, seed=1)
  two_strategy = strategies.make_strategy(cpu_replicas=2)
  with two_strategy.scope():
    mirrored = SVG(tiny_config)
  for a, b in zip(model.variables, mirrored.variables):
    b.assign(a.numpy())
  two, _ = evaluation.Sampler(mirrored, 2, 2, chunk_size=8, strategy=two_strategy).sample(
      context, 3, seed=1)
  np.testing.assert_allclose(two, one, atol=1e-5)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  """A tiny SVG-LP trained for 2 steps on SM-MNIST, and its run directory (trained once per
  session, whichever worker asks first: the tests only read it)."""
  from svg_tf import config
  cfg = config.preset("smmnist", base_filters=4, g_dim=8, rnn_size=16, z_dim=3, batch_size=4,
                      n_past=2, n_future=3, train_steps=2)
  build = lambda root: train_loop.train(cfg, str(root / "lp"), inputs.train_input_fn(cfg))
  return str(shared_path(tmp_path_factory, "evaluate_trained_run", build) / "lp")


def evaluate_run(model_dir, out, n_past, n_future, max_videos, **kwargs):
  """What evaluate.py does: the run's model, the SM-MNIST test videos and digits, then scoring."""
  run = checkpoints.restore_run(model_dir)
  videos = inputs.test_videos(run.model.config, n_past + n_future, max_videos=max_videos)
  return evaluation.evaluate(run.model, videos, out, n_past, n_future, run.checkpoint, run.step,
                             digit_images=videos.digit_images, **kwargs)


def test_evaluate_run_writes_metrics_csv_and_figures(trained_run, tmp_path):
  out = str(tmp_path / "eval")
  result = evaluate_run(trained_run, out, 2, 4, max_videos=3, num_samples=3, reference_ssim=True,
                        num_figure_videos=2)
  saved = json.load(open(os.path.join(out, "metrics.json")))
  assert saved["checkpoint_step"] == 2 and saved["num_videos"] == 3 and saved["num_samples"] == 3
  assert saved["n_past"] == 2 and saved["n_future"] == 4 and saved["batchnorm"] == "moving"
  curves = np.load(os.path.join(out, "per_video_curves.npz"))
  for metric in ("ssim", "psnr", "ssim_reference"):
    assert len(saved[metric]["per_frame_mean"]) == 4 and len(saved[metric]["per_frame_ci95"]) == 4
    per_video = curves[f"best_{metric}"].mean(axis=1)  # each video's best sample, time mean
    assert saved[metric]["mean"] == pytest.approx(per_video.mean(), rel=1e-6)
    assert saved[metric]["ci95"] == pytest.approx(1.96 * per_video.std() / np.sqrt(3), rel=1e-6)
  assert "never downloaded" in saved["lpips"]["note"] and "never downloaded" in saved["fvd"]["note"]
  ratios = evaluation.wall_hit_ratios(curves["prior_std_given"], curves["wall_hits"])
  for alignment in ("after_wall_hit", "at_wall_hit"):  # from the saved curves, as a reader would
    assert saved["prior_std_given_true_frames"][alignment] == ratios[alignment]
  assert result["ssim"]["mean"] == saved["ssim"]["mean"]
  assert curves["best_ssim"].shape == (3, 4) and curves["prior_std_given"].shape == (3, 5)
  assert curves["wall_hits"].shape == (3, 6, 2)
  np.testing.assert_allclose(curves["best_ssim"].mean(axis=0), saved["ssim"]["per_frame_mean"],
                             rtol=1e-6)
  assert np.all(curves["mean_ssim"].mean(axis=1) <= curves["best_ssim"].mean(axis=1) + 1e-6)
  np.testing.assert_allclose(curves["mean_psnr"].mean(axis=0),
                             saved["mean_over_samples"]["psnr"]["per_frame_mean"], rtol=1e-6)
  rows = list(csv.DictReader(open(os.path.join(out, "per_video.csv"))))
  assert len(rows) == 3 and 0 <= int(rows[0]["ssim_best_sample"]) < 3
  # TensorBoard: the same numbers as metrics.json, the curves by frame number, the sample panels.
  events = {}
  for path in glob.glob(os.path.join(out, "events.out.tfevents.*")):
    for record in tf.data.TFRecordDataset(path):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        events.setdefault(value.tag, []).append((event.step, value))
  (step, ssim), = events["eval/ssim"]
  assert step == 2 and tf.make_ndarray(ssim.tensor) == pytest.approx(saved["ssim"]["mean"])
  curve = sorted((s, float(tf.make_ndarray(v.tensor))) for s, v in events["eval/psnr_per_frame"])
  assert [s for s, _ in curve] == [3, 4, 5, 6]  # frames n_past + 1 .. n_past + n_future
  np.testing.assert_allclose([v for _, v in curve], saved["psnr"]["per_frame_mean"], rtol=1e-6)
  assert "eval/mean_over_samples/ssim" in events and "eval/samples" in events
  for name in ("ssim_per_frame.png", "ssim_per_frame.pdf", "psnr_per_frame.png",
               "prior_std.png", "displacements.png", "samples_000.gif"):
    assert os.path.getsize(os.path.join(out, name)) > 0, name


def test_cli_compares_models(trained_run, tmp_path):
  first = tmp_path / "first"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  cmd = [sys.executable, os.path.join(ROOT, "evaluate.py"), f"--model_dir={trained_run}",
         "--num_samples=2", "--max_videos=2", "--n_past=2", "--n_future=3"]
  out = subprocess.run(cmd + [f"--out={first}"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "evaluate | 2/2 videos" in out.stderr
  both = tmp_path / "both"
  out = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"),
                        f"--compare={first}/metrics.json", f"--compare={first}/metrics.json",
                        f"--out={both}"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert (both / "ssim_per_frame.png").stat().st_size > 0
  bad = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), f"--out={both}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert bad.returncode != 0 and "--model_dir" in bad.stderr


def test_lpips_and_fvd_from_user_savedmodels(trained_run, tmp_path):
  """With local SavedModels given, metrics.json holds LPIPS (best of N, lower is better) and FVD."""
  from tests.test_metrics import _FakeI3d, _FakeLpips
  paths = {}
  for name, module in (("lpips", _FakeLpips()), ("i3d", _FakeI3d())):
    paths[name] = str(tmp_path / name)
    tf.saved_model.save(module, paths[name], signatures={"serving_default": module.__call__})
  out = str(tmp_path / "eval")
  evaluate_run(trained_run, out, 2, 3, max_videos=3, num_samples=2, num_figure_videos=1,
               lpips_path=paths["lpips"], i3d_path=paths["i3d"])
  saved = json.load(open(os.path.join(out, "metrics.json")))
  curves = np.load(os.path.join(out, "per_video_curves.npz"))
  assert len(saved["lpips"]["per_frame_mean"]) == 3
  assert saved["lpips"]["mean"] == pytest.approx(curves["best_lpips"].mean(), rel=1e-6)
  assert np.isfinite(saved["fvd"]["value"]) and saved["fvd"]["value"] >= 0
  rows = list(csv.DictReader(open(os.path.join(out, "per_video.csv"))))
  assert "lpips_best_sample" in rows[0]
