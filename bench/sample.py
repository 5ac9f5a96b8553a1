"""Sampling speed of the full-size model, printed as one JSON line.

Counts generated frames as the PyTorch yardstick's --generate does (batch x n_future per call),
after warm-up, for the batched sampler that evaluate.py uses. Compare with
`python ../shared/bench/torch_svg_ref.py --dataset smmnist --batch 16 --threads 2 --generate`.

  python bench/sample.py --dataset=smmnist --batch_size=16 [--precision=mixed_bfloat16]
  python bench/sample.py --dataset=smmnist --batch_size=256      # evaluate.py's chunk of rows
  python bench/sample.py --dataset=smmnist --evaluate            # evaluate.py's whole loop

--evaluate times instead what evaluate.py does per test video (svg_tf.evaluation.score with its
defaults: one video's --num_samples samples per sampling call, chunks of --chunk_size rows, then
best-of-N SSIM and PSNR): --videos random test videos after one untimed video, reporting the
whole throughput (videos x samples per second) and how the time splits between sampling and
scoring. Weights are untrained: the work does not depend on them.
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402
import record  # noqa: E402  (bench/record.py)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from svg_tf import config as config_lib  # noqa: E402
from svg_tf import evaluation  # noqa: E402
from svg_tf.evaluation import Sampler  # noqa: E402
from svg_tf.model import SVG  # noqa: E402

# The yardstick's generation horizons (torch_svg_ref.py: gen_n_past, gen_n_future).
HORIZONS = {"smmnist": (5, 25), "bair": (2, 28), "kth": (10, 30)}

flags.DEFINE_enum("dataset", "smmnist", sorted(config_lib.PRESETS), "Preset to time.")
flags.DEFINE_integer("batch_size", 16, "Sequences generated per call.")
flags.DEFINE_enum("precision", "float32", list(config_lib.PRECISIONS), "Keras dtype policy.")
flags.DEFINE_integer("steps", 10, "Timed calls after warm-up.")
flags.DEFINE_integer("warmup", 2, "Untimed calls (the first traces the graph).")
flags.DEFINE_enum("generation_bn", "moving", ["moving", "batch"], "BatchNorm statistics when "
                  "sampling: moving (svg_tf's default) or batch (the reference's, and the "
                  "yardstick's).")
flags.DEFINE_bool("evaluate", False, "Time evaluate.py's per-video loop instead (see above).")
flags.DEFINE_integer("videos", 4, "--evaluate: timed test videos.")
flags.DEFINE_integer("num_samples", 100, "--evaluate: samples per video.")
flags.DEFINE_integer("chunk_size", 256, "--evaluate: rows per sampling call at most.")
flags.DEFINE_string("out", None, "Also write the result to bench/results/OUT.json (or to OUT if "
                    "it ends in .json), with the machine it ran on.")
FLAGS = flags.FLAGS


def time_evaluation(model: SVG, n_past: int, n_future: int):
  """evaluate.py's loop over --videos random videos: (result fields)."""
  config = model.config
  sampler = Sampler(model, n_past, n_future, chunk_size=FLAGS.chunk_size,
                    bn_mode=FLAGS.generation_bn)
  shape = (FLAGS.videos + 1, n_past + n_future, config.image_size, config.image_size,
           config.channels)
  frames = np.random.RandomState(0).rand(*shape).astype(np.float32)
  evaluation.score(sampler, frames[:1], FLAGS.num_samples, keep=0)  # traces
  start = time.perf_counter()
  scores = evaluation.score(sampler, frames[1:], FLAGS.num_samples, keep=0)
  whole = time.perf_counter() - start
  sampling, scoring = scores.seconds["sampling"], scores.seconds["scoring"]
  rows = FLAGS.videos * FLAGS.num_samples
  return {
      "videos": FLAGS.videos, "num_samples": FLAGS.num_samples, "chunk_size": FLAGS.chunk_size,
      "rows_per_call": min(FLAGS.num_samples, FLAGS.chunk_size),
      "whole_s": round(whole, 2), "sampling_s": round(sampling, 2), "scoring_s": round(scoring, 2),
      "scoring_over_sampling": round(scoring / sampling, 4),
      "videos_x_samples_per_s": round(rows / whole, 2),
      "frames_per_s": round(rows * n_future / sampling, 2)}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = config_lib.preset(FLAGS.dataset, precision=FLAGS.precision, torch_lstm_bias=True)
  keras.mixed_precision.set_global_policy(config.precision)
  model = SVG(config)
  n_past, n_future = HORIZONS[FLAGS.dataset]
  if FLAGS.evaluate:
    record.save("sample", {
        "framework": "tensorflow", "mode": "evaluate", "precision": FLAGS.precision,
        "generation_bn": FLAGS.generation_bn,
        "dataset": FLAGS.dataset, "n_past": n_past, "n_future": n_future,
        **time_evaluation(model, n_past, n_future), "tensorflow": tf.__version__}, FLAGS.out)
    return
  sampler = Sampler(model, n_past, n_future, chunk_size=FLAGS.batch_size,
                    bn_mode=FLAGS.generation_bn)
  shape = (FLAGS.batch_size, n_past, config.image_size, config.image_size, config.channels)
  context = np.random.RandomState(0).rand(*shape).astype(np.float32)
  times = []
  for i in range(FLAGS.warmup + FLAGS.steps):
    start = time.perf_counter()
    sampler.sample(context, 1, seed=i)
    if i >= FLAGS.warmup:
      times.append(time.perf_counter() - start)
  median = statistics.median(times)
  record.save("sample", {
      "framework": "tensorflow", "mode": "generate", "precision": FLAGS.precision,
      "generation_bn": FLAGS.generation_bn,
      "dataset": FLAGS.dataset, "batch": FLAGS.batch_size, "n_past": n_past, "n_future": n_future,
      "step_ms_median": round(1000 * median, 2),
      "frames_per_s": round(FLAGS.batch_size * n_future / median, 2),
      "step_ms_min": round(1000 * min(times), 2), "tensorflow": tf.__version__,
  }, FLAGS.out)


if __name__ == "__main__":
  app.run(main)
