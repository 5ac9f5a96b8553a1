"""The paper's evaluation protocol, made explicit: best of N sampled futures per test video.

For every test video the model sees `n_past` context frames and draws `num_samples` futures of
`n_future` frames; only predicted frames are scored, with SSIM (`tf.image.ssim`, max_val 1) and
PSNR (`tf.image.psnr`, max_val 1) per frame; for each metric separately the best sample is the one
with the best mean over time; results are means over videos with 95% intervals (SRVP's
convention, see ../shared/reference/anchors.md section 2).

Sampling runs as one `tf.function` over chunks of (video, sample) rows in the batch dimension.
The latent noise of row (video v, sample s) depends only on (seed, v, s), and BatchNorm uses its
moving statistics by default, so results do not depend on the chunk size or batch composition.
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

from pipelines.inputs import TestVideos
from svg_tf import media, metrics
from svg_tf.config import SVGConfig
from svg_tf.model import SVG


def load_model(model_dir: str, strategy: Optional[tf.distribute.Strategy] = None):
  """(model, config, checkpoint step, checkpoint path) of the newest checkpoint in model_dir."""
  path = os.path.join(model_dir, "config.json")
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"--model_dir={model_dir}: no config.json (not a train.py run directory)")
  with tf.io.gfile.GFile(path) as f:
    config = SVGConfig.from_dict(json.load(f))
  checkpoint = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  if checkpoint is None:
    raise FileNotFoundError(f"--model_dir={model_dir}: no checkpoint in {model_dir}/checkpoints")
  import keras  # pylint: disable=g-import-not-at-top
  keras.mixed_precision.set_global_policy(config.precision)
  with (strategy or tf.distribute.get_strategy()).scope():
    model = SVG(config)
  from svg_tf import training  # pylint: disable=g-import-not-at-top
  training.restore_objects(checkpoint, partial=True, model=model)  # refuses incomplete ones
  step = int(checkpoint.rsplit("-", 1)[-1])
  return model, config, step, checkpoint


class Sampler:
  """Draws futures for many (video, sample) rows, chunk by chunk, in one traced function."""

  def __init__(self, model: SVG, n_past: int, n_future: int, chunk_size: int = 256,
               strategy: Optional[tf.distribute.Strategy] = None, bn_mode: Optional[str] = None):
    c = model.config
    self.model, self.n_past, self.n_future = model, n_past, n_future
    self.strategy = strategy or tf.distribute.get_strategy()
    replicas = self.strategy.num_replicas_in_sync
    self.chunk_size = max(replicas, chunk_size - chunk_size % replicas)
    self.z_dim = max(c.latent_dim, 1)
    self.action_dim = c.action_dim
    shape = [None, n_past, c.image_size, c.image_size, c.channels]
    signature = [tf.TensorSpec(shape, tf.float32),
                 tf.TensorSpec([n_past - 1 + n_future, None, self.z_dim], tf.float32),
                 tf.TensorSpec([None, n_past - 1 + n_future, max(c.action_dim, 1)], tf.float32)]

    def generate(context, noise, actions):
      return model.generate(context, n_future, noise if c.latent_dim else None, bn_mode=bn_mode,
                            return_prior_std=True, actions=actions if c.action_dim else None)

    self._generate = tf.function(generate, input_signature=signature)
    self._replicated = tf.function(lambda c, n, a: self.strategy.run(generate, args=(c, n, a)))

  def noise(self, seed: int, video_ids: np.ndarray, num_samples: int) -> np.ndarray:
    """(steps, rows, z) standard normal; row (v, s) from np.random.default_rng([seed, v, s])."""
    steps = self.n_past - 1 + self.n_future
    rows = [np.random.default_rng([seed, int(v), s]).standard_normal((steps, self.z_dim))
            for v in video_ids for s in range(num_samples)]
    return np.stack(rows, axis=1).astype(np.float32)

  def _run_chunk(self, context, noise, actions):
    replicas = self.strategy.num_replicas_in_sync
    if replicas == 1:
      frames, std = self._generate(context, noise, actions)
      return frames.numpy(), std.numpy()
    rows = context.shape[0]
    pad = (-rows) % replicas
    if pad:  # equal slices per replica; the padding rows are dropped below
      context = np.concatenate([context, np.repeat(context[-1:], pad, axis=0)])
      noise = np.concatenate([noise, np.repeat(noise[:, -1:], pad, axis=1)], axis=1)
      actions = np.concatenate([actions, np.repeat(actions[-1:], pad, axis=0)])
    per = (rows + pad) // replicas
    def split(rows_first):  # replica r gets rows [r * per, (r + 1) * per)
      return self.strategy.experimental_distribute_values_from_function(
          lambda ctx: rows_first[ctx.replica_id_in_sync_group * per:][:per])
    noise_dist = self.strategy.experimental_distribute_values_from_function(
        lambda ctx: noise[:, ctx.replica_id_in_sync_group * per:][:, :per])
    frames, std = self._replicated(split(context), noise_dist, split(actions))
    frames = self.strategy.gather(frames, axis=0).numpy()[:rows]
    std = self.strategy.gather(std, axis=0).numpy()[:rows]
    return frames, std

  def sample(self, context: np.ndarray, num_samples: int, seed: int,
             video_ids: Optional[np.ndarray] = None, actions: Optional[np.ndarray] = None):
    """context (V, n_past, H, W, C) -> frames (V, S, n_future, H, W, C), prior std (V, S, n_future).

    actions (V, >= n_past + n_future - 1, action_dim): required by action-conditioned models.
    """
    v = context.shape[0]
    video_ids = np.arange(v) if video_ids is None else np.asarray(video_ids)
    rows_context = np.repeat(context.astype(np.float32), num_samples, axis=0)  # video-major rows
    noise = self.noise(seed, video_ids, num_samples)
    steps = self.n_past - 1 + self.n_future
    if self.action_dim:
      if actions is None or actions.shape[1] < steps:
        raise ValueError(f"this model is action-conditioned: sampling needs actions for {steps} "
                         f"steps, got {None if actions is None else actions.shape}")
      rows_actions = np.repeat(np.asarray(actions, np.float32)[:, :steps], num_samples, axis=0)
    else:
      rows_actions = np.zeros((rows_context.shape[0], steps, 1), np.float32)  # unused placeholder
    frames, stds = [], []
    for start in range(0, rows_context.shape[0], self.chunk_size):
      stop = start + self.chunk_size
      f, s = self._run_chunk(rows_context[start:stop], noise[:, start:stop],
                             rows_actions[start:stop])
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


def score(sampler: Sampler, videos: TestVideos, num_samples: int, seed: int = 1,
          videos_per_batch: int = 8, reference_ssim: bool = False, keep: int = 4,
          keep_samples: int = 3, lpips=None, i3d=None) -> Scores:
  """Best-of-N SSIM/PSNR per test video (and the reference's SSIM if asked), with progress lines.

  lpips: optional metrics.load_lpips callable, scored best-of-N like the others (lower is better).
  i3d: optional metrics.load_i3d callable: FVD as SRVP computes it, context plus predicted frames
  of one sample per video (sample 0, a random draw) against the real videos; activations are
  collected here and the distance is `Scores.fvd`.
  """
  n_past, n_future = sampler.n_past, sampler.n_future
  num_videos = videos.frames.shape[0]
  if videos.frames.shape[1] < n_past + n_future:
    raise ValueError(f"test videos have {videos.frames.shape[1]} frames; n_past + n_future = "
                     f"{n_past + n_future}")
  scorers = {"ssim": metrics.ssim_per_frame, "psnr": metrics.psnr_per_frame}
  if reference_ssim:
    scorers["ssim_reference"] = metrics.reference_ssim_per_frame
  if lpips is not None:
    scorers["lpips"] = lpips
  best = {k: [] for k in scorers}
  sample_mean = {k: [] for k in scorers}
  real_acts, fake_acts = [], []
  best_index = {k: [] for k in scorers}
  prior_std, kept_samples, kept_best = [], [], []
  started = time.perf_counter()
  for start in range(0, num_videos, videos_per_batch):
    batch = videos.frames[start:start + videos_per_batch]
    context, truth = batch[:, :n_past], batch[:, n_past:n_past + n_future]
    ids = np.arange(start, start + batch.shape[0])
    batch_actions = None if videos.actions is None else videos.actions[start:start + videos_per_batch]
    samples, std = sampler.sample(context, num_samples, seed, ids,
                                  actions=batch_actions)  # (B, S, T, H, W, C)
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
    done = start + batch.shape[0]
    rate = done / max(time.perf_counter() - started, 1e-9)
    logging.info("evaluate | %d/%d videos | %d samples each | %.2f videos/s | ETA %.0fs", done,
                 num_videos, num_samples, rate, (num_videos - done) / rate)
  return Scores(best={k: np.concatenate(v) for k, v in best.items()},
                best_index={k: np.concatenate(v) for k, v in best_index.items()},
                sample_mean={k: np.concatenate(v) for k, v in sample_mean.items()},
                prior_std=np.concatenate(prior_std), kept_samples=np.asarray(kept_samples),
                kept_best=np.asarray(kept_best),
                fvd=metrics.frechet_distance(np.concatenate(real_acts), np.concatenate(fake_acts))
                if i3d is not None else None)


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
          "psnr_definition": "tf.image.psnr(max_val=1.0) per frame",
          "selection": "per video and per metric, the sample with the best mean over predicted frames",
          "interval": "95%: 1.96 * std / sqrt(num_videos) over videos"}




def plot_comparison(curves: Dict[str, Dict], out_dir: str):
  """The paper's Fig. 7/8: per-frame SSIM and PSNR of several evaluations, 95% bands."""
  from svg_tf import figures  # pylint: disable=g-import-not-at-top  (matplotlib only when drawing)
  first = next(iter(curves.values()))
  paths = []
  for metric in ("ssim", "psnr"):
    paths += figures.plot_metric_curves(
        {label: c[metric] for label, c in curves.items() if metric in c}, metric,
        first_frame=first["n_past"] + 1, train_horizon=first["n_past"] + first["train_n_future"],
        out_prefix=os.path.join(out_dir, f"{metric}_per_frame"))
  return paths


def evaluate_run(model_dir: str, out_dir: str, horizons: Dict, n_past: Optional[int] = None,
                 n_future: Optional[int] = None, data_dir: Optional[str] = None,
                 num_samples: int = 100, max_videos: Optional[int] = None,
                 reference_ssim: bool = False, bn_mode: Optional[str] = None, seed: int = 1,
                 chunk_size: int = 256, videos_per_batch: int = 8, num_figure_videos: int = 4,
                 lpips_path: Optional[str] = None, i3d_path: Optional[str] = None,
                 mnist_path: Optional[str] = None, strategy=None, label: str = "",
                 skip_bad_records: bool = False, data_source: str = "native") -> Dict:
  """Scores the newest checkpoint of `model_dir`, writes metrics.json, per_video.csv and figures."""
  from pipelines import inputs, mnist_digits  # pylint: disable=g-import-not-at-top
  from svg_tf import figures  # pylint: disable=g-import-not-at-top

  model, config, step, checkpoint = load_model(model_dir, strategy)
  default_past, default_future = horizons[config.dataset]
  n_past, n_future = n_past or default_past, n_future or default_future
  if config.model == "det":
    num_samples = 1
  bn_mode = bn_mode or config.generation_bn
  tf.io.gfile.makedirs(out_dir)
  videos = inputs.test_videos(config, n_past + n_future, data_dir, max_videos, mnist_path,
                              skip_bad_records=skip_bad_records, source=data_source)
  if not config.action_dim:
    videos.actions = None  # BAIR's actions reach only action-conditioned models
  sampler = Sampler(model, n_past, n_future, chunk_size, strategy, bn_mode)
  logging.info("evaluating %s (step %d) on %d videos, %d -> %d frames, %d samples each", model_dir,
               step, videos.frames.shape[0], n_past, n_future, num_samples)
  lpips = metrics.load_lpips(lpips_path) if lpips_path else None
  i3d = metrics.load_i3d(i3d_path) if i3d_path else None
  scores = score(sampler, videos, num_samples, seed, videos_per_batch, reference_ssim,
                 keep=num_figure_videos, lpips=lpips, i3d=i3d)
  result = summary(scores, label=label, **evaluation_fields(config, step, checkpoint, num_samples,
                                                            n_past, n_future, bn_mode))
  result["test_set"] = videos.description
  kept = scores.kept_best.shape[0]
  if lpips is None:
    result["lpips"] = {"note": metrics.LPIPS_UNAVAILABLE_NOTE}
  if i3d is None:
    result["fvd"] = {"note": metrics.FVD_UNAVAILABLE_NOTE}
  else:
    result["fvd"] = {"value": scores.fvd, "frames": "context + predicted, one random sample per "
                     "video (SRVP's convention)"}
  write_json(os.path.join(out_dir, "metrics.json"), result)
  write_per_video_csv(os.path.join(out_dir, "per_video.csv"), scores)

  # Figures: per-frame curves, sample grids, and for SM-MNIST the prior's std and displacements.
  plot_comparison({label or "model": result}, out_dir)
  kept_actions = None
  if config.action_dim:
    kept_actions = videos.actions[:kept, :n_past + n_future]
  reconstructions = model.reconstruct(videos.frames[:kept, :n_past + n_future], n_past,
                                      bn_mode=bn_mode, actions=kept_actions).numpy()
  panels = []
  for k in range(kept):
    context = videos.frames[k, :n_past]
    with_context = lambda future: np.concatenate([context, future])
    rows = {"posterior": with_context(reconstructions[k]), "best SSIM": with_context(scores.kept_best[k])}
    for s in range(scores.kept_samples.shape[1]):
      rows[f"random {s + 1}"] = with_context(scores.kept_samples[k, s])
    panels.append((videos.frames[k, :n_past + n_future], rows))
  figures.save_sample_figures(out_dir, panels, n_past, max_videos=kept)
  curves = {f"best_{k}": v for k, v in scores.best.items()}
  curves.update({f"mean_{k}": v for k, v in scores.sample_mean.items()})
  curves["prior_std_sampled"] = scores.prior_std
  if videos.wall_hits is not None:
    # The paper's Fig. 6: the learned prior fed the true frames. Step k is the std of z_{k+1},
    # the latent of frame k+1; a digit that hits a wall at frame t moves at random from t+1 on.
    length = n_past + n_future
    std = prior_std_given(model, videos.frames[:, :length], bn_mode)  # (V, length-1)
    hits = videos.wall_hits[:, :length]  # (V, length, digits)
    result["prior_std_given_true_frames"] = {
        "after_wall_hit": figures.prior_std_wall_ratio(std, hits[:, :-1]),
        "at_wall_hit": figures.prior_std_wall_ratio(std, hits[:, 1:]),
        "definition": "std of the learned prior p(z_t | x_1..t-1) fed the test videos' true "
                      "frames, averaged over z; after_wall_hit: steps t whose frame t-1 has a "
                      "digit hitting a wall (its new random velocity shows in frame t) against "
                      "all other steps; at_wall_hit: steps t whose frame t has the hit"}
    curves.update(prior_std_given=std, wall_hits=hits)
    digits = mnist_digits.load_digits("test", mnist_path).images
    shared = shared_trajectory_videos(videos.positions[0, :length], digits, count=32)
    shared_std = prior_std_given(model, shared, bn_mode)  # (32, length-1): frames 2..length
    figures.plot_prior_std(shared_std, os.path.join(out_dir, "prior_std"),
                           wall_hits=videos.wall_hits[0, 1:length], first_frame=2,
                           title="learned prior fed 32 test videos sharing one trajectory")
    model_pos = np.stack([figures.estimate_digit_positions(s, digits[videos.digit_indices[k]])
                          for k, s in enumerate(scores.kept_samples[:, 0])])
    figures.plot_displacement_distribution(
        figures.displacements(model_pos),
        figures.displacements(videos.positions[:kept, n_past:n_past + n_future]),
        os.path.join(out_dir, "displacements"))
    write_json(os.path.join(out_dir, "metrics.json"), result)
  write_npz(os.path.join(out_dir, "per_video_curves.npz"), curves)
  logging.info("wrote %s", out_dir)
  return result


def prior_std_given(model: SVG, frames: np.ndarray, bn_mode: Optional[str] = None,
                    batch_size: int = 64) -> np.ndarray:
  """`SVG.prior_std_given` over many videos, in batches: (V, T) frames -> (V, T-1)."""
  return np.concatenate([model.prior_std_given(frames[i:i + batch_size], bn_mode).numpy()
                         for i in range(0, len(frames), batch_size)])


def write_npz(path: str, arrays: Dict[str, np.ndarray]):
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  media.write_file_atomic(path, buffer.getvalue())
