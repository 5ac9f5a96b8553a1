"""Do mixed_bfloat16 and mixed_float16 train like float32? Same seed, same data, same initial
weights; prints JSON.

Trains the SM-MNIST SVG-LP (full size unless --base_filters) for --steps steps in float32 and in
each of --precisions on the same generated sequences and latent noise, and reports the loss
curves and their relative gaps over windows. float16 convolutions are emulated on CPUs (slow):
compare it at a small width.

  python bench/precision_tracking.py --steps=40 --batch_size=16
  python bench/precision_tracking.py --precisions=mixed_float16 --base_filters=16 --steps=40
"""

import os
import sys
import time

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
flags.DEFINE_list("precisions", ["mixed_bfloat16"], "Precisions compared with float32.")
flags.DEFINE_integer("base_filters", 64, "Width of the first conv stage (64: the paper's).")
flags.DEFINE_string("out", None, "Also write the result to bench/results/OUT.json (or to OUT if "
                    "it ends in .json), with the machine it ran on.")
FLAGS = flags.FLAGS


def losses_for(precision):
  config = config_lib.preset("smmnist", batch_size=FLAGS.batch_size, precision=precision,
                             base_filters=FLAGS.base_filters)
  trainer = Trainer(config)
  iterator = iter(trainer.distribute(inputs.train_input_fn(config)))
  out = {"loss": [], "mse": [], "kl": []}
  started = time.perf_counter()
  for step in range(FLAGS.steps):
    values = trainer.train_step(iterator)
    if step % 5 == 4 or step == 0:
      print(f"precision_tracking | {precision} | step {step + 1}/{FLAGS.steps} | loss "
            f"{float(values['loss']):.5f} | {time.perf_counter() - started:.0f}s", flush=True)
    for k in out:
      out[k].append(float(values[k]))
    out.setdefault("applied", []).append(bool(values["applied"]))
  if trainer.loss_scaled:
    out["final_loss_scale"] = trainer.loss_scale
  del iterator
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  precisions = [p for p in FLAGS.precisions if p != "float32"]
  runs = {p: losses_for(p) for p in ["float32"] + precisions}
  w = FLAGS.window
  windows = []
  for start in range(0, FLAGS.steps, w):
    # Window means over the steps each run applied (a float16 step skipped for a loss-scale
    # overflow has a loss but no update).
    means = {p: float(np.mean([v for v, ok in zip(r["loss"][start:start + w],
                                                  r["applied"][start:start + w]) if ok] or [np.nan]))
             for p, r in runs.items()}
    entry = {"steps": f"{start + 1}-{min(start + w, FLAGS.steps)}"}
    entry.update({p: round(m, 5) for p, m in means.items()})
    gaps = {p: round(abs(means[p] - means["float32"]) / means["float32"], 4) for p in precisions}
    entry.update({f"relative_gap_{p}": g for p, g in gaps.items()})
    entry["relative_gap"] = max(gaps.values())
    windows.append(entry)
  result = {"batch": FLAGS.batch_size, "steps": FLAGS.steps, "base_filters": FLAGS.base_filters,
            "precisions": precisions, "windows": windows,
            "largest_relative_gap": max(e["relative_gap"] for e in windows)}
  for p in ["float32"] + precisions:
    if p != "float32":
      result[f"largest_relative_gap_{p}"] = max(e[f"relative_gap_{p}"] for e in windows)
    result[f"loss_{p}"] = [round(v, 5) for v in runs[p]["loss"]]
    result[f"skipped_{p}"] = sum(not a for a in runs[p]["applied"])
    if "final_loss_scale" in runs[p]:
      result[f"final_loss_scale_{p}"] = runs[p]["final_loss_scale"]
  record.save("precision_tracking", result, FLAGS.out)


if __name__ == "__main__":
  app.run(main)
