"""Speed of one full-size SVG-LP training step on this machine, printed as one JSON line.

Counts frames as the PyTorch yardstick does (batch x (n_past + n_future) per step), on random
frames, after warm-up. Compare with `python ../shared/bench/torch_svg_ref.py --dataset smmnist
--batch 16 --threads 2`, run alone and back to back with this script.

  python bench/train_step.py --dataset=smmnist --batch_size=16 [--precision=mixed_bfloat16]
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402
import record  # noqa: E402  (bench/record.py)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from svg_tf import config as config_lib  # noqa: E402
from svg_tf.trainer import Trainer  # noqa: E402

flags.DEFINE_enum("dataset", "smmnist", sorted(config_lib.PRESETS), "Preset to time.")
flags.DEFINE_integer("batch_size", 16, "Global batch.")
flags.DEFINE_enum("precision", "float32", list(config_lib.PRECISIONS), "Keras dtype policy.")
flags.DEFINE_integer("steps", 10, "Timed steps after warm-up.")
flags.DEFINE_integer("warmup", 3, "Untimed steps (the first one traces the graph).")
flags.DEFINE_bool("jit_compile", False, "Compile the replica step with XLA.")
flags.DEFINE_bool("torch_lstm_bias", True, "Count parameters as the torch reference does.")
flags.DEFINE_string("out", None, "Also write the result to bench/results/OUT.json (or to OUT if "
                    "it ends in .json), with the machine it ran on.")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = config_lib.preset(FLAGS.dataset, batch_size=FLAGS.batch_size, precision=FLAGS.precision,
                             torch_lstm_bias=FLAGS.torch_lstm_bias)
  trainer = Trainer(config, jit_compile=FLAGS.jit_compile)
  shape = (config.batch_size, config.seq_len, config.image_size, config.image_size, config.channels)
  frames = np.random.RandomState(0).rand(*shape).astype(np.float32)
  iterator = iter(trainer.distribute(lambda ctx, start: tf.data.Dataset.from_tensors(frames).repeat()))
  times = []
  for i in range(FLAGS.warmup + FLAGS.steps):
    start = time.perf_counter()
    float(trainer.train_step(iterator)["loss"])  # blocks until the step is done
    if i >= FLAGS.warmup:
      times.append(time.perf_counter() - start)
  median = statistics.median(times)
  frames_per_step = config.batch_size * config.seq_len
  record.save("train_step", {
      "framework": "tensorflow", "params": sum(trainer.model.parameter_counts().values()),
      "precision": FLAGS.precision, "step_ms_median": round(1000 * median, 2),
      "frames_per_s": round(frames_per_step / median, 2), "dataset": FLAGS.dataset,
      "batch": config.batch_size, "steps": FLAGS.steps, "warmup": FLAGS.warmup,
      "jit_compile": FLAGS.jit_compile, "frames_per_step": frames_per_step,
      "step_ms_min": round(1000 * min(times), 2), "tensorflow": tf.__version__,
  }, FLAGS.out)


if __name__ == "__main__":
  app.run(main)
