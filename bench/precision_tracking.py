"""Does mixed_bfloat16 train like float32? Same seed, same data, same initial weights; prints JSON.

Trains the full-size SM-MNIST SVG-LP for --steps steps in each precision on the same generated
sequences and latent noise, and reports both loss curves and their relative gap over windows.

  python bench/precision_tracking.py --steps=40 --batch_size=16
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
from svg_tf.trainer import Trainer  # noqa: E402

flags.DEFINE_integer("steps", 40, "Training steps per precision.")
flags.DEFINE_integer("batch_size", 16, "Global batch.")
flags.DEFINE_integer("window", 10, "Steps averaged per reported window.")
flags.DEFINE_string("out", None, "Also write the result to bench/results/OUT.json (or to OUT if "
                    "it ends in .json), with the machine it ran on.")
FLAGS = flags.FLAGS


def losses_for(precision):
  config = config_lib.preset("smmnist", batch_size=FLAGS.batch_size, precision=precision)
  trainer = Trainer(config)
  iterator = iter(trainer.distribute(inputs.train_input_fn(config)))
  out = {"loss": [], "mse": [], "kl": []}
  for _ in range(FLAGS.steps):
    values = trainer.train_step(iterator)
    for k in out:
      out[k].append(float(values[k]))
  del iterator
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  runs = {p: losses_for(p) for p in ("float32", "mixed_bfloat16")}
  w = FLAGS.window
  windows = []
  for start in range(0, FLAGS.steps, w):
    a = np.mean(runs["float32"]["loss"][start:start + w])
    b = np.mean(runs["mixed_bfloat16"]["loss"][start:start + w])
    windows.append({"steps": f"{start + 1}-{min(start + w, FLAGS.steps)}", "float32": round(a, 5),
                    "mixed_bfloat16": round(b, 5), "relative_gap": round(abs(b - a) / a, 4)})
  record.save("precision_tracking", {
      "batch": FLAGS.batch_size, "steps": FLAGS.steps, "windows": windows,
      "largest_relative_gap": max(w["relative_gap"] for w in windows),
      "loss_float32": [round(v, 5) for v in runs["float32"]["loss"]],
      "loss_mixed_bfloat16": [round(v, 5) for v in runs["mixed_bfloat16"]["loss"]]}, FLAGS.out)


if __name__ == "__main__":
  app.run(main)
