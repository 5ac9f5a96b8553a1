"""This machine's limit: peak convolution throughput in float32 and bfloat16, measured in one run,
and each recorded bench's fraction of it; prints JSON.

A result then reads as "x% of this machine's limit" as well as a ratio to the yardstick. The work
of a frame is counted from the model's graph (TensorFlow's profiler, floating-point operations of
the teacher-forced forward pass of the preset at batch 1, divided by its frames): a generated
frame is one such forward pass (one encoder and one decoder pass, the LSTMs), a training frame
three (forward, and the backward pass's two products per layer). Peak: the fastest of a few large
convolutions of the shapes the models use, timed after warm-up.

  python bench/roofline.py --out=roofline
"""

import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402
import record  # noqa: E402  (bench/record.py)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from svg_tf import config as config_lib  # noqa: E402
from svg_tf.model import SVG  # noqa: E402

flags.DEFINE_integer("repeats", 10, "Timed calls per convolution shape, after 3 warm-up calls.")
flags.DEFINE_string("out", None, "Also write the result to bench/results/OUT.json.")
FLAGS = flags.FLAGS

# (batch, height, width, in, out, kernel, stride): large versions of the models' convolutions.
SHAPES = [(64, 32, 32, 128, 128, 3, 1), (64, 16, 16, 256, 256, 3, 1), (128, 8, 8, 512, 512, 3, 1),
          (64, 32, 32, 64, 128, 4, 2), (64, 16, 16, 128, 256, 4, 2)]


def conv_peak(dtype) -> dict:
  """GFLOP/s of the fastest shape (median of the timed calls) and every shape's."""
  per_shape = []
  for n, h, w, cin, cout, k, s in SHAPES:
    x = tf.cast(tf.random.normal([n, h, w, cin]), dtype)
    kernel = tf.cast(tf.random.normal([k, k, cin, cout]) * 0.05, dtype)
    conv = tf.function(lambda x, kernel, s=s: tf.nn.conv2d(x, kernel, s, "SAME"))
    times = []
    for i in range(3 + FLAGS.repeats):
      start = time.perf_counter()
      conv(x, kernel).numpy()
      if i >= 3:
        times.append(time.perf_counter() - start)
    flops = 2 * n * (h // s) * (w // s) * k * k * cin * cout
    per_shape.append({"shape": [n, h, w, cin, cout, k, s],
                      "gflop_per_s": round(flops / float(np.median(times)) / 1e9, 1)})
  return {"gflop_per_s": max(p["gflop_per_s"] for p in per_shape), "shapes": per_shape}


def forward_flops_per_frame(dataset: str) -> float:
  """Floating-point operations of the teacher-forced forward pass per frame (batch 1)."""
  config = config_lib.preset(dataset)
  model = SVG(config)
  frames = tf.TensorSpec([1, config.seq_len, config.image_size, config.image_size,
                          config.channels], tf.float32)
  noise = tf.TensorSpec([config.seq_len - 1, 1, config.z_dim], tf.float32)
  graph = tf.function(lambda f, z: model.compute_losses(f, z, bn_mode="moving")["loss"]
                      ).get_concrete_function(frames, noise).graph
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  profile = tf.compat.v1.profiler.profile(graph, options=options)
  return profile.total_float_ops / config.seq_len


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  peaks = {"float32": conv_peak(tf.float32), "mixed_bfloat16": conv_peak(tf.bfloat16)}
  work = {}
  fractions = []
  for path in sorted(glob.glob(os.path.join(record.RESULTS_DIR, "*.json"))):
    with open(path) as f:
      saved = json.load(f)
    r = saved.get("result", {})
    if saved.get("bench") not in ("train_step", "sample") or "frames_per_s" not in r:
      continue
    dataset, precision = r.get("dataset", "smmnist"), r.get("precision", "float32")
    if dataset not in work:
      work[dataset] = forward_flops_per_frame(dataset)
    passes = 3 if saved["bench"] == "train_step" else 1
    gflop = r["frames_per_s"] * passes * work[dataset] / 1e9
    fractions.append({
        "record": os.path.basename(path), "bench": saved["bench"], "dataset": dataset,
        "precision": precision, "jit_compile": r.get("jit_compile", False),
        "frames_per_s": r["frames_per_s"], "gflop_per_s": round(gflop, 1),
        "fraction_of_peak": round(gflop / peaks[precision]["gflop_per_s"], 3),
        "limit_frames_per_s": round(peaks[precision]["gflop_per_s"] * 1e9 /
                                    (passes * work[dataset]), 1)})
  record.save("roofline", {
      "peaks": peaks, "forward_gflop_per_frame": {k: round(v / 1e9, 4) for k, v in work.items()},
      "training_frame_passes": 3, "generated_frame_passes": 1, "benches": fractions,
      "tensorflow": tf.__version__}, FLAGS.out)


if __name__ == "__main__":
  app.run(main)
