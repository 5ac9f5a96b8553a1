"""experiments/smmnist_cpu/summarize.py: the numbers behind the README's claims, on a synthetic
evaluation whose answers are known (which frames count as after a video's first wall hit, paired
differences, RESULTS.md's heading and appended discussion)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "smmnist_cpu", "summarize.py")
N_PAST, N_FUTURE = 5, 20


def _wall_hits():
  hits = np.zeros((4, N_PAST + N_FUTURE, 2), bool)
  hits[0, 9, 1] = True    # first uncertain hit at frame 9: predicted frames 10..24 are after it
  hits[0, 15, 0] = True   # a later hit does not move the first one
  hits[1, 4, 0] = True    # at the last context frame: every predicted frame is after it
  hits[2, 2, 0] = True    # inside the context only: no uncertain hit, not scored after a hit
  hits[3, 24, 1] = True   # at the last frame: no predicted frame after it, not scored
  return hits


def _write_model(eval_dir, model, after_value, prior_ratio):
  hits = _wall_hits()
  frames = N_PAST + np.arange(N_FUTURE)
  first = np.array([9, 4, -1, 24])
  after = (first[:, None] >= 0) & (frames[None] > first[:, None])
  ssim = np.where(after, after_value, 0.5)
  os.makedirs(os.path.join(eval_dir, model))
  np.savez(os.path.join(eval_dir, model, "per_video_curves.npz"), wall_hits=hits,
           best_ssim=ssim, best_psnr=20 * ssim, mean_ssim=ssim - 0.1, mean_psnr=20 * ssim - 2)
  prior = {name: {"mean_at_hits": 0.1 * prior_ratio, "mean_elsewhere": 0.1, "ratio": prior_ratio}
           for name in ("after_wall_hit", "at_wall_hit")}
  metrics = {"n_past": N_PAST, "num_videos": 4, "num_samples": 100,
             "ssim": {"mean": float(ssim.mean()), "ci95": 0.01},
             "psnr": {"mean": float(20 * ssim.mean()), "ci95": 0.2},
             "prior_std_given_true_frames": prior}
  with open(os.path.join(eval_dir, model, "metrics.json"), "w") as f:
    json.dump(metrics, f)


def _summarize(*args):
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                        cwd=ROOT, timeout=300)


def test_after_hit_scores_paired_differences_and_results_md(tmp_path):
  eval_dir, results = str(tmp_path / "eval"), str(tmp_path / "results")
  _write_model(eval_dir, "lp", after_value=0.6, prior_ratio=1.5)
  _write_model(eval_dir, "fp", after_value=0.55, prior_ratio=1.0)
  discussion = tmp_path / "notes.md"
  discussion.write_text("## Why\n\nA note appended verbatim.\n")
  out = _summarize(f"--eval_dir={eval_dir}", f"--results_dir={results}",
                   f"--discussion={discussion}", "--title=Two models, longer")
  assert out.returncode == 0, out.stderr[-3000:]

  summary = json.load(open(os.path.join(results, "summary.json")))
  assert summary["models"] == ["lp", "fp"]
  after = summary["after_first_hit"]["ssim"]
  assert after["num_videos"] == 2  # videos 0 and 1: 2 has no uncertain hit, 3 none after it
  np.testing.assert_allclose(after["lp"], [0.6, 0.0], atol=1e-12)
  np.testing.assert_allclose(after["lp_minus_fp"], [0.05, 0.0], atol=1e-12)
  assert after["lp_above_fp_fraction"] == 1.0
  np.testing.assert_allclose(summary["after_first_hit"]["psnr"]["lp_minus_fp"], [1.0, 0.0],
                             atol=1e-9)
  np.testing.assert_allclose(summary["after_first_hit_mean_over_samples"]["ssim"]["lp"],
                             [0.5, 0.0], atol=1e-12)
  # Before the hit: every predicted frame of videos 2 and 3, frames 5..9 of video 0; video 1 has
  # none. All score 0.5 for both models.
  np.testing.assert_allclose(summary["before_first_hit"]["ssim"]["fp"], [0.5, 0.0], atol=1e-12)
  assert summary["aligned_after_first_hit"]["ssim"]["lp"][1] == [0.6, 2]  # one frame after a hit

  text = open(os.path.join(results, "RESULTS.md")).read()
  assert text.startswith("# Two models, longer\n")
  assert "## After the first wall hit" in text and "deterministic model" not in text.split(
      "## After the first wall hit")[0]
  assert "SVG-LP minus SVG-FP, after the hit, paired over 2 videos: SSIM 0.0500 +- 0.0000" in text
  assert "| SVG-LP | 0.1500 | 0.1000 | 1.500 | 1.500 |" in text
  assert text.rstrip().endswith("## Why\n\nA note appended verbatim.")


def test_a_missing_discussion_file_is_refused_before_any_output(tmp_path):
  eval_dir, results = str(tmp_path / "eval"), str(tmp_path / "results")
  _write_model(eval_dir, "lp", after_value=0.6, prior_ratio=1.5)
  out = _summarize(f"--eval_dir={eval_dir}", f"--results_dir={results}",
                   f"--discussion={tmp_path / 'absent.md'}")
  assert out.returncode != 0
  assert "absent.md does not exist" in out.stderr
  assert not os.path.exists(results)


def test_paired_before_hit_differences_changes_and_a_rerun_from_the_results(tmp_path):
  """Before-hit pairs, paired changes from an earlier evaluation, per-video curves kept in the
  results (so the results folder is itself an evaluation a rerun can read), and changes.json
  from two summaries alone."""
  old, new = str(tmp_path / "old"), str(tmp_path / "new")
  _write_model(old, "lp", after_value=0.6, prior_ratio=1.5)
  _write_model(old, "fp", after_value=0.55, prior_ratio=1.0)
  _write_model(new, "lp", after_value=0.7, prior_ratio=2.0)
  _write_model(new, "fp", after_value=0.58, prior_ratio=1.0)
  old_results, new_results = str(tmp_path / "old_results"), str(tmp_path / "new_results")
  assert _summarize(f"--eval_dir={old}", f"--results_dir={old_results}").returncode == 0
  out = _summarize(f"--eval_dir={new}", f"--results_dir={new_results}",
                   f"--previous_eval_dir={old_results}")  # the kept curves of the old results
  assert out.returncode == 0, out.stderr[-3000:]
  summary = json.load(open(os.path.join(new_results, "summary.json")))
  before = summary["before_first_hit"]["ssim"]
  np.testing.assert_allclose(before["lp_minus_fp"], [0.0, 0.0], atol=1e-12)  # 0.5 vs 0.5
  assert before["num_videos"] == 3  # videos 0, 2, 3: video 1's hit leaves no frame before it
  change = summary["change_from_previous"]["ssim"]
  np.testing.assert_allclose(change["lp"]["best"], [0.1, 0.0], atol=1e-12)
  np.testing.assert_allclose(change["fp"]["best"], [0.03, 0.0], atol=1e-12)
  assert change["lp"]["rose_fraction"] == 1.0 and change["lp"]["num_videos"] == 2
  assert os.path.exists(os.path.join(new_results, "lp", "per_video_curves.npz"))
  out = _summarize(f"--results_dir={new_results}",
                   f"--previous_summary={os.path.join(old_results, 'summary.json')}")
  assert out.returncode == 0, out.stderr[-3000:]
  changes = json.load(open(os.path.join(new_results, "changes.json")))
  assert changes["ssim"]["lp"]["after_first_hit"] == pytest.approx(0.1)
  assert changes["ssim"]["fp"]["after_first_hit"] == pytest.approx(0.03)
  assert changes["ssim"]["before_first_hit_now"]["lp_minus_fp"] == pytest.approx(0.0)
  assert changes["prior_std_ratio_after_hit"]["lp"] == {"now": 2.0, "previous": 1.5}
