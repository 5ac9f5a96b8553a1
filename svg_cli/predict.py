"""Futures of any clip from a trained SVG model.

  python predict.py --model=runs/my_lp --video=clip.mp4 --num_samples=5 --num_future=20 --out=futures
  svg-predict --model=exports/svg --video=frames_folder/ --start=30 --seed=1 --out=futures

--model is what `svg_tf.load` takes: a train.py run directory, an export's version folder or its
model folder. --video is a clip in any form svg_tf/video_files.py reads (.mp4 .avi .mov .mkv
.webm, .gif, .npy/.npz, a folder of PNG/JPEG frames). Its frames are centre-cropped to a square
(--crop=none squashes them), resized to the model's size and converted to its channels; the
model's n_past frames from --start are the context. Writes into --out:

  futures.gif, futures.mp4   the context then each sample, side by side (the real future first,
                             when the clip has frames after the context); context framed green,
                             predictions red, the best sample's (by SSIM) blue
  futures.npz                futures uint8 [num_samples, num_future, H, W, C], context uint8
                             [n_past, H, W, C], real_future (the clip's frames after the context,
                             up to num_future), seed
  predict.json               every step: the clip, its decoding, crop, resize and channels, the
                             context frames, the model, the seed, and with real frames each
                             sample's SSIM/PSNR against them and the best sample

Bad input ends with one line `error: ...` and exit status 1, and nothing is written: the outputs
are made in a temporary folder and moved into --out only when all are complete.
"""

import json
import os
import shutil
import sys
import time
import uuid

from absl import flags, logging

from svg_tf import command_line
from svg_tf import config as config_lib
from svg_tf.command_line import UserError

MAX_COUNT = 1000  # --num_samples and --num_future

flags.DEFINE_string("model", None, "A train.py run directory, an export's version folder or its "
                    "model folder (its newest version)")
flags.DEFINE_string("video", None, "The clip: a video file (.mp4 .avi .mov .mkv .webm), .gif, "
                    ".npy/.npz array, or a folder of PNG/JPEG frames (name order)")
flags.DEFINE_string("out", None, "Output folder (created; files of an earlier run are replaced)")
flags.DEFINE_integer("num_samples", 5, f"Futures to draw, 1..{MAX_COUNT}")
flags.DEFINE_integer("num_future", None, f"Frames per future, 1..{MAX_COUNT} (default: the "
                     "model's training horizon n_future)")
flags.DEFINE_integer("seed", None, "Seed of the samples, 0..2**31-1 (default: a random one, "
                     "recorded in predict.json); the same seed gives the same futures as "
                     "svg_tf.load(...).sample, evaluate.py and TF Serving")
flags.DEFINE_integer("start", 0, "First context frame of the clip (0-based)")
flags.DEFINE_enum("crop", "center", ["center", "none"], "center: the largest centred square of "
                  "each frame; none: squash the whole frame to a square")
flags.DEFINE_enum("precision", None, list(config_lib.PRECISIONS), "Run directories only: compute "
                  "in this precision (mixed_bfloat16 is faster on CPUs with bfloat16 units)")
flags.DEFINE_float("fps", None, "Frame rate of futures.gif and futures.mp4 (default: the clip's, "
                   "at most 25; 8 when it does not say)")
FLAGS = flags.FLAGS


def _check_flags():
  """Flag errors, before TensorFlow starts."""
  for name in ("model", "video", "out"):
    if not FLAGS[name].value:
      raise ValueError(f"--{name} is required")
  if not 1 <= FLAGS.num_samples <= MAX_COUNT:
    raise ValueError(f"--num_samples={FLAGS.num_samples}: must be in 1..{MAX_COUNT}")
  if FLAGS.num_future is not None and not 1 <= FLAGS.num_future <= MAX_COUNT:
    raise ValueError(f"--num_future={FLAGS.num_future}: must be in 1..{MAX_COUNT}")
  if FLAGS.seed is not None and not 0 <= FLAGS.seed <= 2**31 - 1:
    raise ValueError(f"--seed={FLAGS.seed}: must be in 0..2**31-1")
  if FLAGS.start < 0:
    raise ValueError(f"--start={FLAGS.start}: must be 0 or more")
  if FLAGS.fps is not None and not FLAGS.fps > 0:
    raise ValueError(f"--fps={FLAGS.fps}: must be positive")
  if os.path.exists(FLAGS.out) and not os.path.isdir(FLAGS.out):
    raise ValueError(f"--out={FLAGS.out} is a file, not a folder")
  parent = os.path.dirname(os.path.abspath(FLAGS.out))
  if not os.access(parent if not os.path.isdir(FLAGS.out) else FLAGS.out, os.W_OK):
    raise ValueError(f"--out={FLAGS.out}: cannot be written (no write permission in "
                     f"{parent if not os.path.isdir(FLAGS.out) else FLAGS.out})")
  if not os.path.exists(FLAGS.video):
    raise ValueError(f"--video={FLAGS.video}: no such file or folder")


class _Progress:
  """Progress lines with the rate and an ETA, at most one every two seconds (and the last)."""

  def __init__(self):
    self.start = self.last = time.perf_counter()

  def __call__(self, done: int, total: int):
    now = time.perf_counter()
    if now - self.last < 2 and done < total:
      return
    self.last = now
    rate = done / max(now - self.start, 1e-9)
    logging.info("predict | %d/%d frames | %.1f frames/s | ETA %.0fs", done, total, rate,
                 (total - done) / max(rate, 1e-9))


def predict() -> str:
  """Everything after the flags; returns the summary line."""
  # TensorFlow starts here, once the flags are known to be good.
  # pylint: disable=g-import-not-at-top
  import numpy as np
  import svg_tf
  from svg_tf import media, metrics, video_files
  # pylint: enable=g-import-not-at-top

  started = time.perf_counter()
  try:
    predictor = svg_tf.load(FLAGS.model, precision=FLAGS.precision)
  except (OSError, ValueError) as err:
    raise ValueError(_naming("model", err)) from None
  config = predictor.config
  n_past = config.n_past
  num_future = FLAGS.num_future or config.n_future
  needed = FLAGS.start + n_past
  try:
    clip = video_files.read_clip(FLAGS.video, config.image_size, config.channels, FLAGS.crop,
                                 max_frames=needed + num_future)
  except (OSError, ValueError) as err:
    raise ValueError(_naming("video", err)) from None
  if len(clip.frames) < needed:
    raise ValueError(f"--video={FLAGS.video} has {len(clip.frames)} frames; --start={FLAGS.start} "
                     f"plus the model's {n_past} context frames need {needed}")
  context = clip.frames[FLAGS.start:needed]
  truth = clip.frames[needed:needed + num_future]
  seed = FLAGS.seed if FLAGS.seed is not None else int(np.random.default_rng().integers(2**31))
  logging.info("predict | %s | %d context frames (%d..%d of %s) | %d samples x %d frames | seed "
               "%d", predictor, n_past, FLAGS.start, needed - 1, FLAGS.video, FLAGS.num_samples,
               num_future, seed)
  sampling = time.perf_counter()
  futures = predictor.sample(context[None], num_future, FLAGS.num_samples, seed,
                             progress=_Progress())[0]  # float32 [S, F, H, W, C]
  sampling = time.perf_counter() - sampling

  scores, best = None, None
  if len(truth):
    real = truth.astype(np.float32) / 255.0
    compared = futures[:, :len(truth)]
    ssim = metrics.ssim_per_frame(compared, np.broadcast_to(real, compared.shape))  # [S, R]
    psnr = metrics.psnr_per_frame(compared, np.broadcast_to(real, compared.shape))
    best = int(np.argmax(ssim.mean(axis=1)))
    scores = {"frames_compared": len(truth),
              "ssim": ssim.mean(axis=1).round(6).tolist(),
              "psnr": psnr.mean(axis=1).round(4).tolist(),
              "ssim_per_frame": ssim.round(6).tolist(), "psnr_per_frame": psnr.round(4).tolist(),
              "best_sample": {"ssim": best, "psnr": int(np.argmax(psnr.mean(axis=1)))},
              "definitions": "tf.image.ssim and tf.image.psnr (max_val 1) per frame, averaged "
                             "over the frames compared"}

  fps = FLAGS.fps or min(clip.fps or 8.0, 25.0)
  grid = media.futures_grid(context, futures, truth, best)
  info = {
      "model": {"path": os.path.abspath(FLAGS.model), "loaded": predictor.source,
                "kind": config.model, "dataset": config.dataset, "n_past": n_past,
                "image_size": config.image_size, "channels": config.channels,
                "precision": FLAGS.precision or config.precision},
      "clip": clip.steps,
      "context": {"start": FLAGS.start, "frames": [FLAGS.start, needed - 1],
                  "note": "0-based indices of the decoded frames used as context"},
      "future": {"num_future": num_future, "real_frames_after_context": int(len(truth))},
      "samples": {"num_samples": FLAGS.num_samples, "seed": seed,
                  "noise": "sample s: stateless_normal(seed=[seed, s], philox), as everywhere in "
                           "svg_tf"},
      "scores": scores,
      "outputs": {"futures.gif": "context then each sample side by side (real future first)",
                  "futures.mp4": "the same, H.264", "futures.npz": "futures, context, "
                  "real_future uint8; seed", "fps": fps},
      "seconds": {"sampling": round(sampling, 2),
                  "total": round(time.perf_counter() - started, 2)},
  }
  staging = f"{os.path.abspath(FLAGS.out).rstrip(os.sep)}.tmp-{uuid.uuid4().hex}"
  os.makedirs(staging)
  try:
    media.save_gif(os.path.join(staging, "futures.gif"), grid, fps=fps)
    media.save_mp4(os.path.join(staging, "futures.mp4"), grid, fps=fps)
    np.savez_compressed(os.path.join(staging, "futures.npz"), futures=media.to_uint8(futures),
                        context=context, real_future=truth, seed=np.int64(seed))
    with open(os.path.join(staging, "predict.json"), "w") as f:
      json.dump(info, f, indent=2)
    os.makedirs(FLAGS.out, exist_ok=True)
    for name in sorted(os.listdir(staging)):  # each move is atomic; all are written already
      os.replace(os.path.join(staging, name), os.path.join(FLAGS.out, name))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  line = (f"wrote {os.path.abspath(FLAGS.out)}: {FLAGS.num_samples} sample(s) of {num_future} "
          f"frames after frames {FLAGS.start}..{needed - 1} of {FLAGS.video} (seed {seed})")
  if scores:
    line += (f"; best SSIM {max(scores['ssim']):.4f} (sample {best}) over {len(truth)} real "
             "frame(s)")
  return line


def _naming(flag: str, err: Exception) -> str:
  """The error's message, led by --flag=value unless it names that value already."""
  value = FLAGS[flag].value
  return str(err) if value in str(err) else f"--{flag}={value}: {err}"


def main(argv):
  del argv  # command_line.run refuses positional arguments
  try:
    _check_flags()
    print(predict())
  except ValueError as err:
    raise UserError(str(err)) from None
  return 0


def run():
  """The `svg-predict` console command."""
  command_line.run(main)


if __name__ == "__main__":
  run()
