"""Input speed of the BAIR and KTH training pipelines against what the training step consumes.

Times the exact `tf.data` pipeline train.py uses (pipelines.inputs.train_input_fn: read, parse,
window, shuffle, batch) for the dataset's preset, then, unless --model_steps=0, one full-size
training step of the same preset and batch on random frames (as bench/train_step.py). Prints one
JSON line: input frames/s, the step's frames/s and their ratio (the target is >= 10: the input
must never be what a run waits for).

  python bench/input_pipeline.py --dataset=bair --data_dir=/data/bair     # the real download
  python bench/input_pipeline.py --dataset=kth --data_dir=/data/kth_tfrecords
  python bench/input_pipeline.py --dataset=bair                          # synthetic native files

Without --data_dir, files in the dataset's native format are written to a temporary folder
(pipelines.fixtures: BAIR records of random pixels; KTH AVIs converted with pipelines.kth), so
the numbers measure the pipeline, not a particular disk. Run it alone: the machine's cores are
shared by the input threads and the step.
"""

import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags, logging  # noqa: E402
import record  # noqa: E402  (bench/record.py)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from svg_tf import config as config_lib  # noqa: E402

flags.DEFINE_enum("dataset", "bair", ["bair", "kth"], "Dataset (its train.py preset).")
flags.DEFINE_string("data_dir", None, "bair: folder holding softmotion30_44k/; kth: the output "
                    "of `python -m pipelines.kth`. Default: synthetic files in the native format.")
flags.DEFINE_integer("batch_size", 16, "Global batch, as train.py --batch_size.")
flags.DEFINE_integer("batches", 300, "Timed batches of input.")
flags.DEFINE_integer("warmup_batches", 20, "Untimed batches first (fills buffers).")
flags.DEFINE_integer("model_steps", 3, "Timed full-size training steps (0: skip the model).")
flags.DEFINE_integer("synthetic_videos", 512, "Synthetic data: BAIR trajectories / KTH videos "
                     "(KTH: at most 100, 70 frames each).")
flags.DEFINE_string("out", None, "Also write the result to bench/results/OUT.json (or to OUT if "
                    "it ends in .json), with the machine it ran on.")
FLAGS = flags.FLAGS


def synthetic_data(dataset: str, count: int, folder: str) -> str:
  """Writes native-format files into `folder`; returns the --data_dir train.py would take."""
  if dataset == "bair":
    from pipelines.fixtures import bair as bair_fixture
    per_file = min(count, 256)  # the real files hold 256 trajectories each
    for split, files in (("train", max(1, count // per_file)), ("test", 1)):
      bair_fixture.write_bair_tfrecords(folder, split, files, per_file if split == "train" else 8)
    return folder
  from pipelines import kth
  from pipelines.fixtures import kth as kth_fixture
  count = min(count, 100)
  persons = list(range(1, 1 + max(1, count // 6))) + [21]
  raw = os.path.join(folder, "raw")
  kth_fixture.write_kth_raw(raw, persons=persons, actions=kth.ACTIONS, scenarios=(1,),
                            num_frames=kth_fixture.MAX_FRAMES)
  converted = os.path.join(folder, "converted")
  kth.convert(raw, converted)
  return converted


def time_input(config, data_dir: str):
  from pipelines import inputs
  input_fn = inputs.train_input_fn(config, data_dir=data_dir)
  iterator = iter(input_fn(tf.distribute.InputContext(), 0))
  for _ in range(FLAGS.warmup_batches):
    next(iterator)
  start = time.perf_counter()
  for _ in range(FLAGS.batches):
    batch = next(iterator)
  batch.numpy()
  seconds = time.perf_counter() - start
  return FLAGS.batches * config.batch_size * config.seq_len / seconds


def time_model(config):
  from svg_tf.trainer import Trainer
  trainer = Trainer(config)
  shape = (config.batch_size, config.seq_len, config.image_size, config.image_size, config.channels)
  frames = np.random.RandomState(0).rand(*shape).astype(np.float32)
  iterator = iter(trainer.distribute(lambda ctx, s: tf.data.Dataset.from_tensors(frames).repeat()))
  float(trainer.train_step(iterator)["loss"])  # traces
  times = []
  for _ in range(FLAGS.model_steps):
    start = time.perf_counter()
    float(trainer.train_step(iterator)["loss"])
    times.append(time.perf_counter() - start)
  return config.batch_size * config.seq_len / statistics.median(times)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = config_lib.preset(FLAGS.dataset, batch_size=FLAGS.batch_size)
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = FLAGS.data_dir
    if not data_dir:
      logging.info("writing synthetic %s files in %s", FLAGS.dataset, tmp)
      data_dir = synthetic_data(FLAGS.dataset, FLAGS.synthetic_videos, tmp)
    input_fps = time_input(config, data_dir)
  result = {
      "dataset": FLAGS.dataset, "data": FLAGS.data_dir or "synthetic native-format files",
      "batch": config.batch_size, "frames_per_window": config.seq_len,
      "image": [config.image_size, config.image_size, config.channels],
      "input_frames_per_s": round(input_fps, 1), "batches_timed": FLAGS.batches,
      "cpus": os.cpu_count(), "tensorflow": tf.__version__,
  }
  if FLAGS.model_steps:
    model_fps = time_model(config)
    result.update(train_step_frames_per_s=round(model_fps, 2),
                  input_over_step=round(input_fps / model_fps, 1), target_ratio=10)
  record.save("input_pipeline", result, FLAGS.out)


if __name__ == "__main__":
  app.run(main)
