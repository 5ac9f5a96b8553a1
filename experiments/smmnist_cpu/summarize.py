"""Turns the CPU-scale SM-MNIST evaluation into the numbers behind SVG's claims, and RESULTS.md.

Reads evaluate.py's output for several models (one sub-folder per model: metrics.json and
per_video_curves.npz) and the train.py run folders, then measures:

  1. After the first wall hit, best-of-N SSIM (and PSNR) of SVG-LP against the deterministic
     baseline (the paper's Fig. 3 and 7). The first *uncertain* hit of a test video is the first
     frame f >= n_past - 1 at which a digit hits a wall: the digit's new random velocity shows
     from frame f + 1, a predicted frame. Per video, the best sample's metric is averaged over the
     frames after f; models are compared on the same videos (paired differences, 95% intervals).
  2. The learned prior's standard deviation fed the true test frames, right after wall hits
     against all other steps (the paper's Fig. 6), from metrics.json.
  3. SVG-FP on the same footing.

  4. Paired differences between models before the first hit too, and, with
     --previous_eval_dir (an earlier evaluation of the same models on the same videos, e.g. before
     training longer), each model's paired change from it.

  python experiments/smmnist_cpu/summarize.py --eval_dir=W/eval --runs_dir=W/runs \
      --results_dir=experiments/smmnist_cpu/results [--train_times=W/train_times.txt] \
      [--previous_eval_dir=W/eval_16k]

Writes results_dir/RESULTS.md (with --discussion, or results_dir/../discussion.md, appended), the
figures, per-model metrics.json, per_video_curves.npz and sample GIFs, and summary.json with every
number: a later rerun can take results_dir itself as --eval_dir (or --previous_eval_dir).

  python experiments/smmnist_cpu/summarize.py --results_dir=NEW --previous_summary=OLD/summary.json

writes NEW/changes.json from two summary.json files alone: the differences of their means (for
evaluations whose per-video curves were not kept, so no paired interval exists).
"""

import json
import os
import shutil

from absl import app, flags
import numpy as np

flags.DEFINE_string("eval_dir", None, "evaluate.py --out folder (one sub-folder per model)")
flags.DEFINE_string("runs_dir", None, "folder of the train.py run directories (lp, fp, det)")
flags.DEFINE_string("results_dir", None, "where RESULTS.md, figures and summary.json go")
flags.DEFINE_string("train_times", None, "lines '<model> trained in <s> s' (run.sh writes them)")
flags.DEFINE_string("title", "SVG at CPU scale on Stochastic Moving MNIST", "RESULTS.md's heading")
flags.DEFINE_string("discussion", None, "markdown appended to RESULTS.md; default: "
                    "<results_dir>/../discussion.md when it exists")
flags.DEFINE_string("previous_eval_dir", None, "an earlier evaluation of the same models on the "
                    "same test videos: paired changes from it go into summary.json")
flags.DEFINE_string("previous_summary", None, "without --eval_dir: an earlier summary.json; "
                    "writes <results_dir>/changes.json, the differences of the two summaries' means")
FLAGS = flags.FLAGS

NAMES = {"lp": "SVG-LP", "fp": "SVG-FP", "det": "deterministic"}
PAIRS = (("lp", "det"), ("fp", "det"), ("lp", "fp"))  # paired differences reported after the hit


def mean_ci(values):
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(1.96 * values.std(ddof=1) / np.sqrt(len(values)))


def first_uncertain_hit(wall_hits: np.ndarray, n_past: int) -> np.ndarray:
  """(V, T, D) -> (V,) first frame f >= n_past - 1 with a hit, or -1."""
  hits = wall_hits.any(axis=2)
  hits[:, :n_past - 1] = False
  first = np.argmax(hits, axis=1)
  return np.where(hits.any(axis=1), first, -1)


def after_hit_means(curve: np.ndarray, first: np.ndarray, n_past: int):
  """Per video: mean of curve (V, n_future) over predicted frames after its first uncertain hit,
  and before it (NaN where there are none)."""
  frames = n_past + np.arange(curve.shape[1])  # frame index of each predicted frame
  after = (first[:, None] >= 0) & (frames[None] > first[:, None])
  before = (first[:, None] < 0) | (frames[None] <= first[:, None])
  with np.errstate(invalid="ignore"):
    return (np.where(after, curve, 0).sum(1) / after.sum(1),
            np.where(before, curve, 0).sum(1) / before.sum(1))


def aligned_curve(curve: np.ndarray, first: np.ndarray, n_past: int, max_k: int):
  """Mean of curve at k = 0..max_k frames after the first uncertain hit (k = 0: the hit frame)."""
  out = []
  for k in range(max_k + 1):
    rows = [curve[v, first[v] + k - n_past] for v in range(len(first))
            if first[v] >= 0 and 0 <= first[v] + k - n_past < curve.shape[1]]
    out.append((float(np.mean(rows)), len(rows)) if rows else (float("nan"), 0))
  return out


def plot_aligned(aligned, metric, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 3.6))
  for model, curve in aligned.items():
    ks = [k for k, (m, n) in enumerate(curve) if n >= 20]
    ax.plot(ks, [curve[k][0] for k in ks], marker="o", ms=3, label=NAMES.get(model, model))
  ax.axvline(0.5, color="grey", ls=":", lw=1)
  ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  ax.set_xlabel("frames after the first wall hit in the predicted frames (0: the hit frame)")
  ax.set_ylabel(f"best-of-N {metric.upper()}")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_losses(runs_dir, models, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
  for model in models:
    log = os.path.join(runs_dir, model, "losses.jsonl")
    if not os.path.exists(log):
      continue
    rows = [json.loads(line) for line in open(log)]
    step = np.array([r["step"] for r in rows])
    for ax, key in zip(axes, ("mse", "kl")):
      values = np.array([np.nan if r[key] is None else r[key] for r in rows], float)
      window = max(1, len(values) // 100)
      smooth = np.convolve(values, np.ones(window) / window, mode="valid")
      ax.plot(step[window - 1:], smooth, label=NAMES.get(model, model))
  axes[0].set_ylabel("mse (sum over 14 steps)")
  axes[1].set_ylabel("kl (sum over steps and z)")
  for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend()
  axes[0].set_yscale("log")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def paired_changes(previous, curves, models, first, n_past, metric):
  """Per model, the per-video change of the best sample's metric after the first hit (and of the
  mean over samples) from the previous evaluation: mean, 95% interval, fraction that rose."""
  out = {}
  for m in models:
    now, _ = after_hit_means(curves[m][f"best_{metric}"], first, n_past)
    before, _ = after_hit_means(previous[m][f"best_{metric}"], first, n_past)
    keep = np.isfinite(now) & np.isfinite(before)
    diff = now[keep] - before[keep]
    out[m] = {"best": mean_ci(diff), "rose_fraction": float((diff > 0).mean()),
              "num_videos": int(keep.sum())}
    if f"mean_{metric}" in curves[m] and f"mean_{metric}" in previous[m]:
      now_mean, _ = after_hit_means(curves[m][f"mean_{metric}"], first, n_past)
      old_mean, _ = after_hit_means(previous[m][f"mean_{metric}"], first, n_past)
      out[m]["mean_of_samples"] = mean_ci(now_mean[keep] - old_mean[keep])
  return out


def summary_changes(now, previous):
  """Differences of the means of two summary.json (now - previous), for the models both have,
  and the between-model differences of `now` that both means give: what is traceable when the
  per-video curves behind paired intervals were not kept."""
  models = [m for m in now["models"] if m in previous["models"]]
  diff = lambda a, b: float(a[0] - b[0])
  out = {"note": "differences of means from the two summary.json files (unpaired: the per-video "
                 "curves were not kept, so there is no paired interval)", "models": models}
  for metric in ("ssim", "psnr"):
    out[metric] = {m: {
        "after_first_hit": diff(now["after_first_hit"][metric][m],
                                previous["after_first_hit"][metric][m]),
        "after_first_hit_mean_of_samples": diff(
            now["after_first_hit_mean_over_samples"][metric][m],
            previous["after_first_hit_mean_over_samples"][metric][m]),
        "before_first_hit": diff(now["before_first_hit"][metric][m],
                                 previous["before_first_hit"][metric][m]),
    } for m in models}
    out[metric]["before_first_hit_now"] = {
        f"{a}_minus_{b}": diff(now["before_first_hit"][metric][a],
                               now["before_first_hit"][metric][b])
        for a, b in PAIRS if a in now["models"] and b in now["models"]}
  out["prior_std_ratio_after_hit"] = {
      m: {"now": now["prior_std"][m]["after_wall_hit"]["ratio"],
          "previous": previous["prior_std"][m]["after_wall_hit"]["ratio"]}
      for m in models if now["prior_std"].get(m) and previous["prior_std"].get(m)}
  return out


def main(argv):
  del argv
  if FLAGS.eval_dir is None:
    if not FLAGS.previous_summary:
      raise app.UsageError("pass --eval_dir (a full summary) or --previous_summary (changes only)")
    now = json.load(open(os.path.join(FLAGS.results_dir, "summary.json")))
    changes = summary_changes(now, json.load(open(FLAGS.previous_summary)))
    with open(os.path.join(FLAGS.results_dir, "changes.json"), "w") as f:
      json.dump(changes, f, indent=2)
    print(json.dumps(changes, indent=1))
    return
  if FLAGS.discussion and not os.path.exists(FLAGS.discussion):
    raise app.UsageError(f"--discussion={FLAGS.discussion} does not exist")
  models = [m for m in ("lp", "fp", "det") if os.path.isdir(os.path.join(FLAGS.eval_dir, m))]
  if not models:
    raise app.UsageError(f"no lp/fp/det sub-folders in {FLAGS.eval_dir}")
  os.makedirs(FLAGS.results_dir, exist_ok=True)
  metrics, curves = {}, {}
  for m in models:
    metrics[m] = json.load(open(os.path.join(FLAGS.eval_dir, m, "metrics.json")))
    curves[m] = dict(np.load(os.path.join(FLAGS.eval_dir, m, "per_video_curves.npz")))
  previous = None
  if FLAGS.previous_eval_dir:
    previous = {m: dict(np.load(os.path.join(FLAGS.previous_eval_dir, m,
                                             "per_video_curves.npz"))) for m in models}
  first_model = models[0]
  n_past = metrics[first_model]["n_past"]
  first = first_uncertain_hit(curves[first_model]["wall_hits"], n_past)
  summary = {"models": models, "num_videos": metrics[first_model]["num_videos"],
             "num_samples": {m: metrics[m]["num_samples"] for m in models},
             "videos_with_a_hit_in_the_predicted_frames": int((first >= 0).sum()),
             "overall": {m: {k: {"mean": metrics[m][k]["mean"], "ci95": metrics[m][k]["ci95"]}
                             for k in ("ssim", "psnr")} for m in models},
             "overall_mean_over_samples": {
                 m: {k: {"mean": v["mean"], "ci95": v["ci95"]}
                     for k, v in metrics[m].get("mean_over_samples", {}).items()}
                 for m in models},
             "after_first_hit": {}, "after_first_hit_mean_over_samples": {},
             "before_first_hit": {}, "prior_std": {}}
  aligned = {}
  for metric in ("ssim", "psnr"):
    per_model_after, per_model_before = {}, {}
    for m in models:
      after, before = after_hit_means(curves[m][f"best_{metric}"], first, n_past)
      per_model_after[m], per_model_before[m] = after, before
    keep = np.all([np.isfinite(per_model_after[m]) for m in models], axis=0)
    keep_b = np.all([np.isfinite(per_model_before[m]) for m in models], axis=0)
    summary["after_first_hit"][metric] = {m: mean_ci(per_model_after[m][keep]) for m in models}
    summary["before_first_hit"][metric] = {m: mean_ci(per_model_before[m][keep_b])
                                           for m in models}
    for a, b in PAIRS:
      if a in models and b in models:
        for part, values, mask in (("after_first_hit", per_model_after, keep),
                                   ("before_first_hit", per_model_before, keep_b)):
          diff = values[a][mask] - values[b][mask]
          summary[part][metric][f"{a}_minus_{b}"] = mean_ci(diff)
          summary[part][metric][f"{a}_above_{b}_fraction"] = float((diff > 0).mean())
    summary["after_first_hit"][metric]["num_videos"] = int(keep.sum())
    summary["before_first_hit"][metric]["num_videos"] = int(keep_b.sum())
    if previous is not None:
      summary.setdefault("change_from_previous", {})[metric] = paired_changes(
          previous, curves, models, first, n_past, metric)
    # One random sample on average (evaluate.py's mean over samples), after the same hit: what a
    # single draw is worth, and how much best-of-N owes to the samples' spread.
    summary["after_first_hit_mean_over_samples"].setdefault(metric, {})
    for m in models:
      if f"mean_{metric}" in curves[m]:
        after_mean, _ = after_hit_means(curves[m][f"mean_{metric}"], first, n_past)
        summary["after_first_hit_mean_over_samples"][metric][m] = mean_ci(after_mean[keep])
    aligned[metric] = {m: aligned_curve(curves[m][f"best_{metric}"], first, n_past, 19)
                       for m in models}
    plot_aligned(aligned[metric], metric,
                 os.path.join(FLAGS.results_dir, f"{metric}_after_first_hit.png"))
  summary["aligned_after_first_hit"] = aligned
  for m in models:
    summary["prior_std"][m] = metrics[m].get("prior_std_given_true_frames")

  # Artifacts: per-model metrics and figures, comparison plots, training curves.
  for m in models:
    dest = os.path.join(FLAGS.results_dir, m)
    os.makedirs(dest, exist_ok=True)
    for name in ("metrics.json", "per_video_curves.npz", "samples_000.gif", "samples_001.gif",
                 "samples_000.png", "prior_std.png", "displacements.png"):
      src = os.path.join(FLAGS.eval_dir, m, name)
      if os.path.exists(src) and not os.path.samefile(os.path.dirname(src), dest):
        shutil.copy(src, os.path.join(dest, name))
  for name in ("ssim_per_frame.png", "psnr_per_frame.png"):
    src = os.path.join(FLAGS.eval_dir, name)
    if os.path.exists(src):
      shutil.copy(src, os.path.join(FLAGS.results_dir, name))
  if FLAGS.runs_dir:
    plot_losses(FLAGS.runs_dir, models, os.path.join(FLAGS.results_dir, "training_losses.png"))
    config = json.load(open(os.path.join(FLAGS.runs_dir, models[0], "config.json")))
    summary["config"] = {k: v for k, v in config.items() if k != "model"}
    summary["final_window"] = {}
    for m in models:
      log = os.path.join(FLAGS.runs_dir, m, "losses.jsonl")
      rows = [json.loads(line) for line in open(log)][-250:] if os.path.exists(log) else []
      if rows:
        summary["final_window"][m] = {k: float(np.mean([r[k] for r in rows if r[k] is not None]))
                                      for k in ("loss", "mse", "kl")}
  if FLAGS.train_times and os.path.exists(FLAGS.train_times):
    times = {}
    for line in open(FLAGS.train_times):
      parts = line.split()
      if len(parts) >= 4:
        times[parts[0]] = times.get(parts[0], 0) + int(parts[3])
    summary["train_seconds"] = times
  with open(os.path.join(FLAGS.results_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  write_results_md(summary, models)
  print(json.dumps({k: summary[k] for k in ("after_first_hit", "after_first_hit_mean_over_samples",
                                            "prior_std", "overall")},
                   indent=1)[:4000])


def write_results_md(s, models):
  def pm(pair, digits=4):
    return f"{pair[0]:.{digits}f} +- {pair[1]:.{digits}f}"

  lines = [f"# {FLAGS.title}", ""]
  c = s.get("config", {})
  if c:
    lines += [
        f"## Configuration (the same for the {len(models)} models)", "",
        "| setting | value | the paper's |", "|---|---|---|",
        f"| digits | {c['num_digits']} (SVG's stochastic bounce, 32x32 digits) | 2 |",
        f"| frames | {c['n_past']} context + {c['n_future']} predicted in training; 5 -> 20 "
        "in evaluation | the same |",
        f"| networks | DCGAN-64 with base width {c['base_filters']}, g_dim {c['g_dim']}, LSTMs "
        f"{c['rnn_size']} units ({c['predictor_rnn_layers']}/{c['posterior_rnn_layers']}/"
        f"{c['prior_rnn_layers']} layers), z {c['z_dim']} | width 64, g 128, 256 units |",
        f"| objective | beta {c['beta']}, Adam lr {c['lr']} | the same |",
        f"| batch x steps | {c['batch_size']} x {c['train_steps']} = "
        f"{c['batch_size'] * c['train_steps']:,} sequences | 100 x 180,000 = 18,000,000 |",
        f"| precision, seed | {c['precision']}, {c['seed']} | float32 |", ""]
  if "train_seconds" in s:
    lines += ["Training wall time on the 2-core CPU: " + ", ".join(
        f"{NAMES[m]} {s['train_seconds'][m] / 60:.0f} min" for m in models
        if m in s["train_seconds"]) + ".", ""]
  if s.get("final_window"):
    lines += ["Mean of the last 250 steps: " + "; ".join(
        f"{NAMES[m]} mse {v['mse']:.4f}, kl {v['kl']:.2f}" for m, v in s["final_window"].items())
              + " (sums over the 14 predicted steps, as train.py logs them).", "",
              "![training losses](training_losses.png)", ""]
  n = s["num_videos"]
  lines += [f"## Evaluation: {n} test videos (seed 42, MNIST test digits), best of "
            f"{max(s['num_samples'].values())} samples", "",
            "SSIM is `tf.image.ssim(max_val=1)`, PSNR `tf.image.psnr(max_val=1)`, per predicted "
            "frame; each video's best sample is chosen per metric on its mean over the 20 "
            "predicted frames; +- is a 95% interval over videos.", "",
            "| model | SSIM, 20 frames | PSNR (dB), 20 frames | SSIM, mean of the samples | "
            "PSNR, mean of the samples |", "|---|---|---|---|---|"]
  for m in models:
    o, om = s["overall"][m], s.get("overall_mean_over_samples", {}).get(m, {})
    cells = [pm((om[k]["mean"], om[k]["ci95"]), d) if k in om else "n/a"
             for k, d in (("ssim", 4), ("psnr", 2))]
    lines.append(f"| {NAMES[m]} | {pm((o['ssim']['mean'], o['ssim']['ci95']))} | "
                 f"{pm((o['psnr']['mean'], o['psnr']['ci95']), 2)} | {cells[0]} | {cells[1]} |")
  lines += ["", "![SSIM per frame](ssim_per_frame.png) ![PSNR per frame](psnr_per_frame.png)", ""]
  a = s["after_first_hit"]
  claim1 = ("## Claim 1: after the first wall hit, SVG-LP beats the deterministic model"
            if "det" in models else "## After the first wall hit")
  lines += [claim1, "",
            f"{s['videos_with_a_hit_in_the_predicted_frames']} of {n} test videos have a wall "
            "hit whose new random velocity shows in the predicted frames. Per video, the best "
            "sample's metric averaged over the predicted frames after that first hit, and over "
            "the predicted frames up to it:", "",
            "| model | SSIM after | PSNR after | SSIM before | SSIM after, mean of the samples "
            "| PSNR after, mean of the samples |", "|---|---|---|---|---|---|"]
  am = s.get("after_first_hit_mean_over_samples", {})
  for m in models:
    mean_cells = [pm(am[k][m], d) if m in am.get(k, {}) else "n/a"
                  for k, d in (("ssim", 4), ("psnr", 2))]
    lines.append(f"| {NAMES[m]} | {pm(a['ssim'][m])} | {pm(a['psnr'][m], 2)} | "
                 f"{pm(s['before_first_hit']['ssim'][m])} | {mean_cells[0]} | {mean_cells[1]} |")
  lines += ["", "The first three columns score each video's best of the samples; the last two the "
            "mean over its samples (one random draw on average; the deterministic model has one)."]
  for m, o in PAIRS:
    if f"{m}_minus_{o}" in a["ssim"]:
      lines.append("")
      lines.append(f"{NAMES[m]} minus {NAMES[o]}, after the hit, paired over "
                   f"{a['ssim']['num_videos']} videos: SSIM {pm(a['ssim'][f'{m}_minus_{o}'])} "
                   f"(higher on {100 * a['ssim'][f'{m}_above_{o}_fraction']:.0f}% of videos), "
                   f"PSNR {pm(a['psnr'][f'{m}_minus_{o}'], 2)} dB (higher on "
                   f"{100 * a['psnr'][f'{m}_above_{o}_fraction']:.0f}%).")
  lines += ["", "![SSIM after the first hit](ssim_after_first_hit.png)", ""]
  lines += ["## Claim 2: the learned prior is uncertain where digits hit walls", "",
            "The learned prior p(z_t | x_1..t-1) fed the true test frames (the paper's Fig. 6 "
            "measurement), its standard deviation averaged over z:", "",
            "| model | right after a hit | elsewhere | ratio | at the hit frame: ratio |",
            "|---|---|---|---|---|"]
  for m in models:
    p = s["prior_std"].get(m)
    if p:
      aft, at = p["after_wall_hit"], p["at_wall_hit"]
      ratio = "n/a" if aft["ratio"] is None else f"{aft['ratio']:.3f}"
      ratio_at = "n/a" if at["ratio"] is None else f"{at['ratio']:.3f}"
      lines.append(f"| {NAMES[m]} | {aft['mean_at_hits']:.4f} | {aft['mean_elsewhere']:.4f} | "
                   f"{ratio} | {ratio_at} |")
  lines += ["", "(SVG-FP's prior is N(0, I): std 1 everywhere; the deterministic model has no "
            "latent.) Right after a hit: step t such that a digit hits a wall at frame t-1, the "
            "first frame moving with its new random velocity is frame t.", "",
            "![prior std, 32 videos sharing one trajectory](lp/prior_std.png)", "",
            "## Samples", "",
            "Ground truth, posterior reconstruction, best-SSIM sample and random samples; "
            "context framed green, predictions red:", ""]
  for m in models:
    lines.append(f"- {NAMES[m]}: ![{m}]({m}/samples_000.gif)")
  discussion = FLAGS.discussion or os.path.join(
      os.path.dirname(os.path.abspath(FLAGS.results_dir)), "discussion.md")
  if os.path.exists(discussion):
    lines += ["", open(discussion).read().strip()]
  with open(os.path.join(FLAGS.results_dir, "RESULTS.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  flags.mark_flags_as_required(["results_dir"])
  app.run(main)
