"""The paper's evaluation protocol, made explicit: best of N sampled futures per test video.

For every test video the model sees `n_past` context frames and draws `num_samples` futures of
`n_future` frames; only predicted frames are scored, with SSIM (`tf.image.ssim`, max_val 1) and
PSNR (`tf.image.psnr`, max_val 1) per frame; for each metric separately the best sample is the one
with the best mean over time; results are means over videos with 95% intervals (SRVP's
convention, see ../shared/reference/anchors.md section 2).

Sampling runs as one `tf.function` over chunks of (video, sample) rows in the batch dimension,
through `SVG.sample_rows`. The latent noise of sample s depends only on (seed, s) (svg_tf's one
noise scheme, `svg_tf.model.latent_noise`), and BatchNorm uses its moving statistics by default,
so results do not depend on the chunk size, the batch composition or the number of replicas, and
sample s of a video is what `svg_tf.load(...).sample` and the SavedModel give for that seed, up
to float rounding: CPU kernels round a row by its batch's size and its place in it (~1e-7 on a
pixel). One video per call (the default) makes a video's calls the same in every run, which is
what lets shards merge bit for bit (svg_tf/evaluation_shards.py).

This module knows nothing of datasets: evaluate.py loads the test videos (`pipelines.inputs`) and
passes them in.
"""

import dataclasses
import io
import json
import os
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from svg_tf import figures, media, metrics, previews
from svg_tf.config import SVGConfig
from svg_tf.model import SVG, mean_prior_std


class Sampler:
  """Draws futures for many (video, sample) rows, chunk by chunk, in one traced function.

  Each chunk goes through `SVG.sample_rows` (split over the strategy's replicas), so sample s of a
  video is what `svg_tf.load(...).sample` and the SavedModel give for the same seed, whatever the
  chunk size or the number of replicas (BatchNorm on its moving statistics), up to float rounding.
  """

  def __init__(self, model: SVG, n_past: int, n_future: int, chunk_size: int = 256,
               strategy: Optional[tf.distribute.Strategy] = None, bn_mode: Optional[str] = None):
    c = model.config
    self.model, self.n_past, self.n_future = model, n_past, n_future
    self.strategy = strategy or tf.distribute.get_strategy()
    replicas = self.strategy.num_replicas_in_sync
    self.chunk_size = max(replicas, chunk_size - chunk_size % replicas)
    self.action_dim = c.action_dim
    self.steps = n_past - 1 + n_future
    shape = [None, n_past, c.image_size, c.image_size, c.channels]
    signature = [tf.TensorSpec(shape, tf.float32), tf.TensorSpec([None], tf.int32),
                 tf.TensorSpec([], tf.int32),
                 tf.TensorSpec([None, self.steps, max(c.action_dim, 1)], tf.float32)]

    def generate(context, sample_index, seed, actions):
      out = model.sample_rows(context, n_future, sample_index, seed,
                              actions if c.action_dim else None, bn_mode)
      return out.frames, mean_prior_std(out.prior_std)

    self._generate = tf.function(generate, input_signature=signature)
    self._replicated = tf.function(
        lambda *args: self.strategy.run(generate, args=args))

  def _run_chunk(self, context, sample_index, seed, actions):
    replicas = self.strategy.num_replicas_in_sync
    seed = tf.constant(seed, tf.int32)
    if replicas == 1:
      frames, std = self._generate(context, sample_index, seed, actions)
      return frames.numpy(), std.numpy()
    rows = context.shape[0]
    pad = (-rows) % replicas
    parts = [context, sample_index, actions]
    if pad:  # equal slices per replica; the padding rows are dropped below
      parts = [np.concatenate([p, np.repeat(p[-1:], pad, axis=0)]) for p in parts]
    per = (rows + pad) // replicas

    def split(rows_first):  # replica r gets rows [r * per, (r + 1) * per)
      return self.strategy.experimental_distribute_values_from_function(
          lambda ctx: rows_first[ctx.replica_id_in_sync_group * per:][:per])

    context, sample_index, actions = [split(p) for p in parts]
    frames, std = self._replicated(context, sample_index, seed, actions)
    frames = self.strategy.gather(frames, axis=0).numpy()[:rows]
    std = self.strategy.gather(std, axis=0).numpy()[:rows]
    return frames, std

  def sample(self, context: np.ndarray, num_samples: int, seed: int,
             actions: Optional[np.ndarray] = None):
    """context (V, n_past, H, W, C) -> frames (V, S, n_future, H, W, C), prior std (V, S, n_future).

    actions (V, >= n_past + n_future - 1, action_dim): required by action-conditioned models.
    """
    v = context.shape[0]
    rows_context = np.repeat(context.astype(np.float32), num_samples, axis=0)  # video-major rows
    sample_index = np.tile(np.arange(num_samples, dtype=np.int32), v)
    if self.action_dim:
      if actions is None or actions.shape[1] < self.steps:
        raise ValueError(f"this model is action-conditioned: sampling needs actions for "
                         f"{self.steps} steps, got {None if actions is None else actions.shape}")
      rows_actions = np.repeat(np.asarray(actions, np.float32)[:, :self.steps], num_samples,
                               axis=0)
    else:
      rows_actions = np.zeros((rows_context.shape[0], self.steps, 1), np.float32)  # unused
    frames, stds = [], []
    for start in range(0, rows_context.shape[0], self.chunk_size):
      chunk = slice(start, start + self.chunk_size)
      f, s = self._run_chunk(rows_context[chunk], sample_index[chunk], seed, rows_actions[chunk])
      frames.append(f)
      stds.append(s)
    frames = np.concatenate(frames).reshape((v, num_samples) + frames[0].shape[1:])
    return frames, np.concatenate(stds).reshape(v, num_samples, -1)


@dataclasses.dataclass
class Scores:
  """Per-video results of one model on one test set."""
  best: Dict[str, np.ndarray]  # metric -> (V, n_future) curve of that metric's best sample
  best_index: Dict[str, np.ndarray]  # metric -> (V,) sample index
  # metric -> (V, n_future) mean over the samples: what one random draw scores on average. Its gap
  # to `best` is what best-of-N gains from the samples' diversity.
  sample_mean: Dict[str, np.ndarray]
  prior_std: np.ndarray  # (V, n_future), mean over samples of the prior std
  kept_samples: np.ndarray  # (K, S_kept, n_future, H, W, C) for figures
  kept_best: np.ndarray  # (K, n_future, H, W, C): the best-SSIM sample of each kept video
  fvd: Optional[float] = None
  # (V, D) I3D activations of the real videos and of sample 0, kept so that shards' can be joined
  # before the distance is taken (FVD is not a mean over videos).
  real_activations: Optional[np.ndarray] = None
  fake_activations: Optional[np.ndarray] = None
  # Where the time went: {"sampling": s, "scoring": s} (None when merged from shards); logged, not
  # written to metrics.json, whose content depends only on the model and the test set.
  seconds: Optional[Dict[str, float]] = None


def score(sampler: Sampler, frames: np.ndarray, num_samples: int, seed: int = 1,
          videos_per_batch: int = 1, reference_ssim: bool = False, keep: int = 4,
          keep_samples: int = 3, lpips=None, i3d=None,
          actions: Optional[np.ndarray] = None, srvp_psnr: bool = False,
          fvd_distance: bool = True) -> Scores:
  """Best-of-N SSIM/PSNR per test video (and the reference's SSIM, SRVP's channel-averaged PSNR if
  asked, each with its own best sample), with progress lines.

  frames: the test videos (V, T, H, W, C) in [0, 1], T >= n_past + n_future; actions (V, T, A)
  for an action-conditioned model.
  lpips: optional metrics.load_lpips callable, scored best-of-N like the others (lower is better).
  i3d: optional metrics.load_i3d callable: FVD as SRVP computes it, context plus predicted frames
  of one sample per video (sample 0, a random draw) against the real videos; activations are
  collected here and the distance is `Scores.fvd` (unless fvd_distance is False: a shard keeps
  only the activations, the merge takes the distance over all videos).
  """
  n_past, n_future = sampler.n_past, sampler.n_future
  num_videos = frames.shape[0]
  if frames.shape[1] < n_past + n_future:
    raise ValueError(f"test videos have {frames.shape[1]} frames; n_past + n_future = "
                     f"{n_past + n_future}")
  scorers = {"ssim": metrics.ssim_per_frame, "psnr": metrics.psnr_per_frame}
  if reference_ssim:
    scorers["ssim_reference"] = metrics.reference_ssim_per_frame
  if srvp_psnr:
    scorers["psnr_srvp"] = metrics.psnr_srvp_per_frame
  if lpips is not None:
    scorers["lpips"] = lpips
  best = {k: [] for k in scorers}
  sample_mean = {k: [] for k in scorers}
  real_acts, fake_acts = [], []
  best_index = {k: [] for k in scorers}
  prior_std, kept_samples, kept_best = [], [], []
  started = time.perf_counter()
  seconds = {"sampling": 0.0, "scoring": 0.0}
  for start in range(0, num_videos, videos_per_batch):
    batch = frames[start:start + videos_per_batch]
    context, truth = batch[:, :n_past], batch[:, n_past:n_past + n_future]
    batch_actions = None if actions is None else actions[start:start + videos_per_batch]
    tick = time.perf_counter()
    samples, std = sampler.sample(context, num_samples, seed,
                                  actions=batch_actions)  # (B, S, T, H, W, C)
    seconds["sampling"] += time.perf_counter() - tick
    tick = time.perf_counter()
    truth_rows = np.broadcast_to(truth[:, None], samples.shape)  # only predicted frames are scored
    for name, scorer in scorers.items():
      values = np.asarray(scorer(samples, truth_rows))  # (B, S, T)
      curve, index = metrics.best_of_samples(values, higher_is_better=name != "lpips")
      best[name].append(curve)
      best_index[name].append(index)
      sample_mean[name].append(values.mean(axis=1))
      if name == "ssim":
        for b in range(batch.shape[0]):
          if start + b < keep:
            kept_best.append(samples[b, index[b]])
            kept_samples.append(samples[b, :keep_samples])
    prior_std.append(std.mean(axis=1))
    if i3d is not None:
      real_acts.append(i3d(batch[:, :n_past + n_future]))
      fake_acts.append(i3d(np.concatenate([context, samples[:, 0]], axis=1)))
    seconds["scoring"] += time.perf_counter() - tick
    done = start + batch.shape[0]
    rate = done / max(time.perf_counter() - started, 1e-9)
    logging.info("evaluate | %d/%d videos | %d samples each | %.2f videos/s | ETA %.0fs", done,
                 num_videos, num_samples, rate, (num_videos - done) / rate)
  logging.info("evaluate | %.1fs sampling, %.1fs scoring (%.1f%% of the sampling time)",
               seconds["sampling"], seconds["scoring"],
               100 * seconds["scoring"] / max(seconds["sampling"], 1e-9))
  frame_shape = frames.shape[2:]
  if not kept_samples:  # no figure video here (a shard's share, --num_figure_videos=0): empty
    kept_samples = np.zeros((0, min(keep_samples, num_samples), n_future) + frame_shape, np.float32)
    kept_best = np.zeros((0, n_future) + frame_shape, np.float32)
  real = np.concatenate(real_acts) if i3d is not None else None
  fake = np.concatenate(fake_acts) if i3d is not None else None
  return Scores(best={k: np.concatenate(v) for k, v in best.items()},
                best_index={k: np.concatenate(v) for k, v in best_index.items()},
                sample_mean={k: np.concatenate(v) for k, v in sample_mean.items()},
                prior_std=np.concatenate(prior_std), kept_samples=np.asarray(kept_samples),
                kept_best=np.asarray(kept_best),
                fvd=metrics.frechet_distance(real, fake)
                if i3d is not None and fvd_distance else None,
                real_activations=real, fake_activations=fake,
                seconds={k: round(v, 3) for k, v in seconds.items()})


def summary(scores: Scores, **fields) -> Dict:
  """metrics.json content: per metric `per_frame_mean`, `per_frame_ci95`, `mean`, `ci95` of the
  best sample, and the same of the mean over samples under `mean_over_samples`."""
  out = {name: metrics.mean_and_ci95(curve) for name, curve in scores.best.items()}
  out["mean_over_samples"] = {name: metrics.mean_and_ci95(curve)
                              for name, curve in scores.sample_mean.items()}
  out["num_videos"] = int(next(iter(scores.best.values())).shape[0])
  out.update(fields)
  return out


def write_per_video_csv(path: str, scores: Scores):
  """One row per test video: each metric's time mean for its best sample, and that sample's index."""
  names = list(scores.best)
  lines = ["video," + ",".join(f"{n},{n}_best_sample" for n in names)]
  for v in range(scores.best[names[0]].shape[0]):
    cells = [f"{scores.best[n][v].mean():.6f},{int(scores.best_index[n][v])}" for n in names]
    lines.append(f"{v}," + ",".join(cells))
  media.write_file_atomic(path, "\n".join(lines) + "\n")


def write_json(path: str, values: Dict):
  media.write_file_atomic(path, json.dumps(values, indent=2, sort_keys=True))


def shared_trajectory_videos(positions: np.ndarray, digit_images: np.ndarray, count: int,
                             seed: int = 0, image_size: int = 64) -> np.ndarray:
  """(count, T, H, W, 1) videos that all follow `positions` (T, D, 2) with random other digits.

  The paper's Fig. 6 averages the prior's std over test sequences that share one trajectory: the
  digits change, the wall hits stay where they are.
  """
  rng = np.random.default_rng(seed)
  t, d = positions.shape[:2]
  size = digit_images.shape[-1]
  videos = np.zeros((count, t, image_size, image_size, 1), np.float32)
  for k in range(count):
    for j in range(d):
      digit = digit_images[rng.integers(digit_images.shape[0])]
      for i in range(t):
        y, x = positions[i, j]
        videos[k, i, y:y + size, x:x + size, 0] += digit
  return np.minimum(videos, 1.0)


def evaluation_fields(config: SVGConfig, step: int, checkpoint: str, num_samples: int, n_past: int,
                      n_future: int, bn_mode: str) -> Dict:
  return {"model": config.model, "dataset": config.dataset, "checkpoint_step": step,
          "checkpoint": checkpoint, "num_samples": num_samples if config.model != "det" else 1,
          "n_past": n_past, "n_future": n_future, "train_n_future": config.n_future,
          "batchnorm": bn_mode,
          "ssim_definition": "tf.image.ssim(max_val=1.0): 11x11 Gaussian window, sigma 1.5",
          "psnr_definition": "tf.image.psnr(max_val=1.0) per frame (the whole frame's MSE); "
                             "psnr_srvp, when asked: SRVP's, per channel then averaged",
          "selection": "per video and per metric, the sample with the best mean over predicted frames",
          "interval": "95%: 1.96 * std / sqrt(num_videos) over videos"}


def plot_comparison(curves: Dict[str, Dict], out_dir: str):
  """The paper's Fig. 7/8: per-frame SSIM and PSNR of several evaluations, 95% bands."""
  first = next(iter(curves.values()))
  paths = []
  for metric in ("ssim", "psnr"):
    paths += figures.plot_metric_curves(
        {label: c[metric] for label, c in curves.items() if metric in c}, metric,
        first_frame=first["n_past"] + 1, train_horizon=first["n_past"] + first["train_n_future"],
        out_prefix=os.path.join(out_dir, f"{metric}_per_frame"))
  return paths


@dataclasses.dataclass
class Results:
  """Everything an evaluation's outputs are written from, per video, in test-set order.

  One unsharded run computes it for all videos (`compute_results`) and writes it
  (`write_outputs`); a shard computes it for its share and saves it; a merge joins the shards'
  (svg_tf/evaluation_shards.py) and writes what the unsharded run would have.
  """
  scores: Scores  # per video; kept_* for the figure videos among them
  fields: Dict  # metrics.json's descriptive fields: evaluation_fields, test_set, label
  video_index: np.ndarray  # (V,) int64: each row's index in the full test set
  total_videos: int  # videos in the full test set (after --max_videos)
  seed: int
  num_figure_videos: int
  figure_frames: np.ndarray  # (K, n_past + n_future, H, W, C): ground truth of the kept videos
  reconstructions: np.ndarray  # (K, n_future, H, W, C): their posterior reconstructions
  # SM-MNIST: prior_std_given (V, T-1), wall_hits (V, T, digits) per video; model_positions,
  # true_positions (K, n_future, digits, 2) of the kept videos; shared_std (32, T-1), Fig. 6's
  # shared-trajectory videos (computed with video 0).
  wall: Optional[Dict[str, np.ndarray]] = None


def compute_results(model: SVG, videos, n_past: int, n_future: int, checkpoint: str,
                    checkpoint_step: int, num_samples: int = 100, reference_ssim: bool = False,
                    bn_mode: Optional[str] = None, seed: int = 1, chunk_size: int = 256,
                    videos_per_batch: int = 1, num_figure_videos: int = 4,
                    lpips_path: Optional[str] = None, i3d_path: Optional[str] = None,
                    digit_images: Optional[np.ndarray] = None, strategy=None, label: str = "",
                    srvp_psnr: bool = False, num_shards: int = 1, shard_index: int = 0) -> Results:
  """The per-video part of `evaluate`: samples and scores the videos j with j % num_shards ==
  shard_index (all of them by default). Arguments as `evaluate`'s."""
  config = model.config
  if config.model == "det":
    num_samples = 1
  bn_mode = bn_mode or config.generation_bn
  if videos.frames.shape[1] < n_past + n_future:
    raise ValueError(f"the test videos have {videos.frames.shape[1]} frames; n_past + n_future = "
                     f"{n_past + n_future}")
  total = videos.frames.shape[0]
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard_index {shard_index} is not in [0, {num_shards})")
  if shard_index >= total:
    raise ValueError(f"{num_shards} shards of {total} test videos: shard {shard_index} would "
                     "score none (use at most as many shards as videos)")
  index = np.arange(shard_index, total, num_shards, dtype=np.int64)
  sharded = num_shards > 1
  frames = videos.frames[index] if sharded else videos.frames
  # Only action-conditioned models see actions.
  actions = None
  if config.action_dim:
    actions = videos.actions[index] if sharded and videos.actions is not None else videos.actions
  sampler = Sampler(model, n_past, n_future, chunk_size, strategy, bn_mode)
  share = (f" (shard {shard_index} of {num_shards}: videos {shard_index}, "
           f"{shard_index + num_shards}, ... of {total})" if sharded else "")
  logging.info("evaluating %s (step %d) on %d videos%s, %d -> %d frames, %d samples each",
               checkpoint, checkpoint_step, frames.shape[0], share, n_past, n_future, num_samples)
  if sharded and bn_mode == "batch":
    logging.warning("generation_bn=batch: BatchNorm statistics come from the rows that share a "
                    "batch, which sharding changes; merged numbers may differ from an unsharded "
                    "run's (recorded in the shard and in the merged metrics.json)")
  lpips = metrics.load_lpips(lpips_path) if lpips_path else None
  i3d = metrics.load_i3d(i3d_path) if i3d_path else None
  # The figure videos are the test set's first num_figure_videos: a prefix of every shard's rows.
  keep = int(np.sum(index < num_figure_videos))
  scores = score(sampler, frames, num_samples, seed, videos_per_batch, reference_ssim,
                 keep=keep, lpips=lpips, i3d=i3d, actions=actions, srvp_psnr=srvp_psnr,
                 fvd_distance=not sharded)
  fields = evaluation_fields(config, checkpoint_step, checkpoint, num_samples, n_past, n_future,
                             bn_mode)
  fields.update(label=label, test_set=videos.description)
  kept = scores.kept_best.shape[0]
  length = n_past + n_future
  if kept:  # one batch of all the figure videos, as unsharded, whichever shard holds them
    figure_videos = min(num_figure_videos, total)
    all_actions = videos.actions if actions is not None else None
    reconstructions = rows_as_unsharded(
        lambda first, last: model.reconstruct(
            videos.frames[first:last, :length], n_past, bn_mode=bn_mode,
            actions=None if all_actions is None else all_actions[first:last, :length]).numpy(),
        index[:kept], figure_videos, figure_videos)
  else:
    reconstructions = np.zeros((0, n_future) + frames.shape[2:], np.float32)
  results = Results(scores=scores, fields=fields, video_index=index, total_videos=total,
                    seed=seed, num_figure_videos=num_figure_videos,
                    figure_frames=frames[:kept, :length], reconstructions=reconstructions)
  if getattr(videos, "wall_hits", None) is not None:
    results.wall = _wall_hit_data(model, videos, index, frames, digit_images, scores, n_past,
                                  n_future, bn_mode)
  return results


def write_outputs(results: Results, out_dir: str, extra_fields: Optional[Dict] = None) -> Dict:
  """The files of an evaluation from its per-video results: metrics.json, per_video.csv,
  per_video_curves.npz, figures and TensorBoard events; returns metrics.json's content.

  extra_fields: added to metrics.json (a merge records its shard count there).
  """
  scores, fields = results.scores, results.fields
  n_past, n_future = fields["n_past"], fields["n_future"]
  checkpoint_step, label = fields["checkpoint_step"], fields["label"]
  tf.io.gfile.makedirs(out_dir)
  result = summary(scores, **fields)
  result.update(extra_fields or {})
  kept = scores.kept_best.shape[0]
  if "lpips" not in scores.best:
    result["lpips"] = {"note": metrics.LPIPS_UNAVAILABLE_NOTE}
  if scores.real_activations is None:
    result["fvd"] = {"note": metrics.FVD_UNAVAILABLE_NOTE}
  else:
    fvd = scores.fvd
    if fvd is None:  # a merge: the distance over all videos' activations
      fvd = metrics.frechet_distance(scores.real_activations, scores.fake_activations)
    result["fvd"] = {"value": fvd, "frames": "context + predicted, one random sample per "
                     "video (SRVP's convention)"}
  write_json(os.path.join(out_dir, "metrics.json"), result)
  write_per_video_csv(os.path.join(out_dir, "per_video.csv"), scores)

  # Figures: per-frame curves, sample grids, and for SM-MNIST the prior's std and displacements.
  plot_comparison({label or "model": result}, out_dir)
  length = n_past + n_future
  frames, reconstructions = results.figure_frames, results.reconstructions
  panels = []
  for k in range(kept):
    context = frames[k, :n_past]
    with_context = lambda future: np.concatenate([context, future])
    rows = {"posterior": with_context(reconstructions[k]),
            "best SSIM": with_context(scores.kept_best[k])}
    for s in range(scores.kept_samples.shape[1]):
      rows[f"random {s + 1}"] = with_context(scores.kept_samples[k, s])
    panels.append((frames[k, :length], rows))
  figures.save_sample_figures(out_dir, panels, n_past, max_videos=kept)
  curves = {f"best_{k}": v for k, v in scores.best.items()}
  curves.update({f"mean_{k}": v for k, v in scores.sample_mean.items()})
  curves["prior_std_sampled"] = scores.prior_std
  if results.wall is not None:
    result["prior_std_given_true_frames"] = _wall_hit_figures(results.wall, out_dir, curves)
    write_json(os.path.join(out_dir, "metrics.json"), result)
  write_npz(os.path.join(out_dir, "per_video_curves.npz"), curves)
  write_summaries(out_dir, result, checkpoint_step, {
      "ground_truth": frames[:kept, :length],
      "reconstruction": np.concatenate([frames[:kept, :n_past], reconstructions], axis=1),
      "samples": np.concatenate([np.repeat(frames[:kept, None, :n_past],
                                           scores.kept_samples.shape[1], axis=1),
                                 scores.kept_samples], axis=2)})
  logging.info("wrote %s", out_dir)
  return result


def evaluate(model: SVG, videos, out_dir: str, n_past: int, n_future: int, checkpoint: str,
             checkpoint_step: int, num_samples: int = 100, reference_ssim: bool = False,
             bn_mode: Optional[str] = None, seed: int = 1, chunk_size: int = 256,
             videos_per_batch: int = 1, num_figure_videos: int = 4, lpips_path: Optional[str] = None,
             i3d_path: Optional[str] = None, digit_images: Optional[np.ndarray] = None,
             strategy=None, label: str = "", srvp_psnr: bool = False) -> Dict:
  """Scores `model` on a test set; writes metrics.json, per_video.csv, curves and figures.

  Data enters here, already loaded (evaluate.py reads it with `pipelines.inputs.test_videos`):
  videos: `frames` (V, T, H, W, C) in [0, 1], `actions` (V, T, A) or None, `description`; for
    SM-MNIST also `positions`, `wall_hits` and `digit_indices`, which add the paper's Fig. 6
    measurement and the displacement figure; those need `digit_images` (the MNIST test digits
    that `digit_indices` points into).
  checkpoint, checkpoint_step: where the weights came from, for metrics.json.
  `compute_results` then `write_outputs`: a sharded evaluation runs the same two halves apart.
  """
  tf.io.gfile.makedirs(out_dir)  # before sampling: an unwritable out_dir fails at once
  results = compute_results(
      model, videos, n_past, n_future, checkpoint, checkpoint_step, num_samples=num_samples,
      reference_ssim=reference_ssim, bn_mode=bn_mode, seed=seed, chunk_size=chunk_size,
      videos_per_batch=videos_per_batch, num_figure_videos=num_figure_videos,
      lpips_path=lpips_path, i3d_path=i3d_path, digit_images=digit_images, strategy=strategy,
      label=label, srvp_psnr=srvp_psnr)
  return write_outputs(results, out_dir)


def write_summaries(out_dir: str, result: Dict, checkpoint_step: int,
                    panels: Dict[str, np.ndarray]):
  """TensorBoard event files in out_dir, so an evaluation shows beside its training run:

    eval/<metric>, eval/<metric>_ci95            the best sample's mean, at the checkpoint's step
    eval/mean_over_samples/<metric>              one random draw's mean, at the checkpoint's step
    eval/<metric>_per_frame                      the per-frame curve, step = frame number (1-based)
    eval/samples                                 ground truth, posterior reconstruction, samples
  """
  metric_names = [k for k in ("ssim", "psnr", "ssim_reference", "psnr_srvp", "lpips")
                  if "mean" in result.get(k, {})]
  first_frame = result["n_past"] + 1
  with tf.summary.create_file_writer(out_dir).as_default():
    for name in metric_names:
      tf.summary.scalar(f"eval/{name}", result[name]["mean"], step=checkpoint_step)
      tf.summary.scalar(f"eval/{name}_ci95", result[name]["ci95"], step=checkpoint_step)
      tf.summary.scalar(f"eval/mean_over_samples/{name}",
                        result["mean_over_samples"][name]["mean"], step=checkpoint_step)
      for t, value in enumerate(result[name]["per_frame_mean"]):
        tf.summary.scalar(f"eval/{name}_per_frame", value, step=first_frame + t)
    if len(panels["ground_truth"]):
      tf.summary.image("eval/samples", previews.timeline_image(panels, result["n_past"])[None],
                       step=checkpoint_step)


def _wall_hit_data(model, videos, index, frames, digit_images, scores, n_past, n_future,
                   bn_mode) -> Dict[str, np.ndarray]:
  """SM-MNIST, per video of `index` (rows of `frames`): the learned prior's std fed the true
  frames and the wall hits; for the kept videos the digits' positions in sample 0 and in truth;
  with video 0 (the first shard) the std over Fig. 6's 32 videos sharing its trajectory."""
  if digit_images is None:
    raise ValueError("SM-MNIST test videos come with digit_images (the MNIST test digits)")
  # Step k is the std of z_{k+1}, the latent of frame k+1; a digit that hits a wall at frame t
  # moves at random from t+1 on.
  length = n_past + n_future
  kept = scores.kept_samples.shape[0]
  kept_index = index[:kept]
  digits = videos.positions.shape[2]
  batch = 64  # prior_std_given's batches of the whole test set, whichever shard asks
  std = rows_as_unsharded(
      lambda first, last: model.prior_std_given(videos.frames[first:last, :length],
                                                bn_mode).numpy(),
      index, len(videos.frames), batch)
  wall = {"prior_std_given": std,  # (V, length-1)
          "wall_hits": videos.wall_hits[index, :length]}  # (V, length, digits)
  if index[0] == 0:
    shared = shared_trajectory_videos(videos.positions[0, :length], digit_images, count=32)
    wall["shared_std"] = prior_std_given(model, shared, bn_mode)  # (32, length-1): frames 2..
  wall["model_positions"] = np.stack([
      figures.estimate_digit_positions(s, digit_images[videos.digit_indices[k]])
      for k, s in zip(kept_index, scores.kept_samples[:, 0])]) if kept else np.zeros(
          (0, n_future, digits, 2), np.int32)
  wall["true_positions"] = videos.positions[kept_index, n_past:length]
  return wall


def _wall_hit_figures(wall: Dict[str, np.ndarray], out_dir: str, curves: Dict) -> Dict:
  """SM-MNIST: the paper's Fig. 6 (the learned prior fed the true frames, against wall hits) and
  the displacement distribution of the samples; returns metrics.json's wall-hit ratios."""
  std, hits = wall["prior_std_given"], wall["wall_hits"]
  curves.update(prior_std_given=std, wall_hits=hits)
  figures.plot_prior_std(wall["shared_std"], os.path.join(out_dir, "prior_std"),
                         wall_hits=hits[0, 1:], first_frame=2,
                         title="learned prior fed 32 test videos sharing one trajectory")
  if len(wall["model_positions"]):
    figures.plot_displacement_distribution(
        figures.displacements(wall["model_positions"]),
        figures.displacements(wall["true_positions"]), os.path.join(out_dir, "displacements"))
  return wall_hit_ratios(std, hits)


def wall_hit_ratios(std: np.ndarray, wall_hits: np.ndarray) -> Dict:
  """The paper's Fig. 6 as numbers: the learned prior's std (fed the true frames) at the steps
  whose latent follows a wall hit, against all other steps.

  Args:
    std: (V, T-1) from `SVG.prior_std_given`: step k is the std of z_{k+1}, the latent that
      explains frame k+1 given frames 0..k.
    wall_hits: (V, T, digits) bool: a digit hits a wall at that frame (its new random velocity
      shows from the next frame on).
  Returns:
    metrics.json's `prior_std_given_true_frames`: after_wall_hit (steps whose previous frame has
    a hit: z_{k+1} for a hit at frame k) and at_wall_hit (steps whose own frame has it).
  """
  return {
      "after_wall_hit": figures.prior_std_wall_ratio(std, wall_hits[:, :-1]),
      "at_wall_hit": figures.prior_std_wall_ratio(std, wall_hits[:, 1:]),
      "definition": "std of the learned prior p(z_t | x_1..t-1) fed the test videos' true "
                    "frames, averaged over z; after_wall_hit: steps t whose frame t-1 has a "
                    "digit hitting a wall (its new random velocity shows in frame t) against "
                    "all other steps; at_wall_hit: steps t whose frame t has the hit"}


def rows_as_unsharded(fn, index: np.ndarray, total: int, batch_size: int) -> np.ndarray:
  """fn(first, last) (the rows [first, last) of a set of `total`) over the batches an unsharded
  run computes, [0, batch_size), [batch_size, 2 batch_size), ..., only those that hold rows of
  `index` (ascending); returns index's rows.

  CPU kernels (oneDNN, Eigen) round a row differently by its batch's size and its place in it,
  so a shard reproduces the unsharded numbers bit for bit only in the unsharded batches.
  """
  out = []
  for first in range(0, total, batch_size):
    last = min(first + batch_size, total)
    rows = index[(index >= first) & (index < last)]
    if len(rows):
      out.append(fn(first, last)[rows - first])
  return np.concatenate(out)


def prior_std_given(model: SVG, frames: np.ndarray, bn_mode: Optional[str] = None,
                    batch_size: int = 64) -> np.ndarray:
  """`SVG.prior_std_given` over many videos, in batches: (V, T) frames -> (V, T-1)."""
  return np.concatenate([model.prior_std_given(frames[i:i + batch_size], bn_mode).numpy()
                         for i in range(0, len(frames), batch_size)])


def write_npz(path: str, arrays: Dict[str, np.ndarray]):
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  media.write_file_atomic(path, buffer.getvalue())
