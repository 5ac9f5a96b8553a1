"""Do bfloat16 samples track float32's? One trained small model, sampled in both; prints JSON.

Trains a small SM-MNIST SVG-LP in float32 (--steps, --base_filters), copies its weights into the
same model built for mixed_bfloat16 (variables are float32 in both), and draws the same samples
(same test videos, seed and noise) in each precision on moving statistics, as evaluate.py does.
Reports how far the bfloat16 frames are from the float32 ones, step by step (the rollout feeds
each frame back, so rounding differences can grow), and what the evaluation would report from
each: best-of-N SSIM and PSNR against the true futures.

  python bench/sample_tracking.py --out=sample_tracking_smmnist
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402
import record  # noqa: E402  (bench/record.py)
import numpy as np  # noqa: E402

from pipelines import inputs  # noqa: E402
from svg_tf import config as config_lib  # noqa: E402
from svg_tf import metrics  # noqa: E402
from svg_tf.evaluation import Sampler  # noqa: E402
from svg_tf.model import SVG  # noqa: E402
from svg_tf.trainer import Trainer  # noqa: E402

flags.DEFINE_integer("steps", 600, "Training steps (float32).")
flags.DEFINE_integer("base_filters", 16, "Width of the first conv stage (the paper's is 64).")
flags.DEFINE_integer("videos", 16, "Test videos sampled.")
flags.DEFINE_integer("num_samples", 20, "Samples per video.")
flags.DEFINE_string("out", None, "Also write the result to bench/results/OUT.json.")
FLAGS = flags.FLAGS
N_PAST, N_FUTURE = 5, 20  # evaluate.py's SM-MNIST horizons


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = config_lib.preset("smmnist", batch_size=16, base_filters=FLAGS.base_filters)
  trainer = Trainer(config)
  iterator = iter(trainer.distribute(inputs.train_input_fn(config)))
  for step in range(FLAGS.steps):
    loss = float(trainer.train_step(iterator)["loss"])
    if step % 100 == 99:
      print(f"sample_tracking | step {step + 1}/{FLAGS.steps} | loss {loss:.4f}", flush=True)
  bf16 = SVG(config.replace(precision="mixed_bfloat16"))
  source = {v.path: v for v in trainer.model.weights}
  for v in bf16.weights:
    v.assign(source[v.path])
  test = inputs.test_videos(config, N_PAST + N_FUTURE, max_videos=FLAGS.videos).frames
  frames = {}
  for precision, model in (("float32", trainer.model), ("mixed_bfloat16", bf16)):
    sampler = Sampler(model, N_PAST, N_FUTURE, chunk_size=256)
    frames[precision] = sampler.sample(test[:, :N_PAST], FLAGS.num_samples, seed=1)[0]
  f32, b16 = frames["float32"], frames["mixed_bfloat16"]
  gap = np.abs(b16 - f32)  # (videos, samples, time, h, w, c)
  truth = np.broadcast_to(test[:, None, N_PAST:], f32.shape)
  scores = {}
  for precision, x in frames.items():
    ssim = metrics.ssim_per_frame(x, truth).max(axis=1)  # best sample per video and frame
    psnr = metrics.psnr_per_frame(x, truth).max(axis=1)
    scores[precision] = {"best_ssim": round(float(ssim.mean()), 4),
                         "best_psnr": round(float(psnr.mean()), 3)}
  between = metrics.psnr_per_frame(b16, f32)  # bfloat16 against float32, per frame
  record.save("sample_tracking", {
      "steps": FLAGS.steps, "base_filters": FLAGS.base_filters, "final_loss": round(loss, 5),
      "videos": FLAGS.videos, "num_samples": FLAGS.num_samples, "n_past": N_PAST,
      "n_future": N_FUTURE, "mean_abs_gap_per_step": [round(float(g), 5) for g in
                                                       gap.mean(axis=(0, 1, 3, 4, 5))],
      "max_abs_gap": round(float(gap.max()), 4), "mean_abs_gap": round(float(gap.mean()), 5),
      "psnr_bf16_vs_f32_first_step": round(float(between[:, :, 0].mean()), 2),
      "psnr_bf16_vs_f32_last_step": round(float(between[:, :, -1].mean()), 2),
      "evaluation": scores}, FLAGS.out)


if __name__ == "__main__":
  app.run(main)
