"""Latency of one serving request through the exported SavedModel, printed as one JSON line.

One request = 1 video, --num_samples futures of --num_future frames after --n_context context
frames (default 1 x 100 x 28 after 2: BAIR's protocol), through `serving_default` of the SavedModel
loaded with tf.saved_model.load (what TF Serving runs, without the network). Prints p50/p95
latency over --requests timed requests after --warmup untimed ones (the warm-up file's requests
are replayed first, as TF Serving does), and generated frames/s at the median.

  python bench/serve.py --model_dir=runs/bair_lp              # export a trained run, then time it
  python bench/serve.py --export_dir=exports/svg              # time an existing export (newest)
  python bench/serve.py --preset=bair                         # untrained full-size BAIR model
  python bench/serve.py --preset=smmnist --tiny --requests=3  # a quick check
"""

import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402
import record  # noqa: E402  (bench/record.py)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from svg_tf import config as config_lib  # noqa: E402
from svg_tf import export  # noqa: E402
from svg_tf.model import SVG  # noqa: E402
from svg_tf.serving import local_server  # noqa: E402

flags.DEFINE_string("model_dir", None, "A train.py run directory to export and time")
flags.DEFINE_string("export_dir", None, "An export to time: a version folder, or a model base "
                    "path (EXPORT_DIR/MODEL_NAME) whose newest version is used")
flags.DEFINE_enum("preset", None, sorted(config_lib.PRESETS), "Export an untrained full-size "
                  "model of this dataset preset and time it")
flags.DEFINE_bool("tiny", False, "With --preset: a tiny model (base_filters 4, g_dim 8, rnn 16, "
                  "z 3) for a quick check")
flags.DEFINE_enum("model", "lp", list(config_lib.MODELS), "With --preset: lp, fp or det")
flags.DEFINE_integer("num_samples", 100, "Samples per request")
flags.DEFINE_integer("num_future", 28, "Generated frames per sample")
flags.DEFINE_integer("n_context", 2, "Context frames")
flags.DEFINE_integer("requests", 10, "Timed requests")
flags.DEFINE_integer("warmup", 1, "Untimed requests after the warm-up file's")
flags.DEFINE_string("out", None, "Also write the result to bench/results/OUT.json (or to OUT if "
                    "it ends in .json), with the machine it ran on.")
FLAGS = flags.FLAGS


def _version_dir(workdir: str) -> str:
  """The SavedModel to time, exported into `workdir` when asked to."""
  if FLAGS.export_dir:
    if os.path.exists(os.path.join(FLAGS.export_dir, "saved_model.pb")):
      return FLAGS.export_dir
    return local_server.latest_version_dir(FLAGS.export_dir)
  if FLAGS.model_dir:
    return export.export_run(FLAGS.model_dir, workdir, "svg")
  tiny = dict(base_filters=4, g_dim=8, rnn_size=16, z_dim=3) if FLAGS.tiny else {}
  return export.export_saved_model(SVG(config_lib.preset(FLAGS.preset, model=FLAGS.model, **tiny)),
                                   workdir, "svg")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if sum(x is not None for x in (FLAGS.model_dir, FLAGS.export_dir, FLAGS.preset)) != 1:
    raise app.UsageError("give exactly one of --model_dir, --export_dir, --preset")
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    try:
      path = _version_dir(workdir)
    except (ValueError, FileNotFoundError) as err:
      raise app.UsageError(str(err))
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    serve = tf.saved_model.load(path).signatures["serving_default"]
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    for request in local_server.read_warmup_requests(path):
      if request.model_spec.signature_name == "serving_default":
        serve(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
    warmup_file_ms = 1000 * (time.perf_counter() - start)
    info = json.load(open(os.path.join(path, "assets.extra", export.INFO_FILE)))
    c = info["config"]
    context = np.random.default_rng(0).random(
        (1, FLAGS.n_context, c["image_size"], c["image_size"], c["channels"])).astype(np.float32)
    inputs = dict(context=tf.constant(context), num_future=tf.constant(FLAGS.num_future),
                  num_samples=tf.constant(FLAGS.num_samples), seed=tf.constant(0))
    if c["action_dim"]:
      inputs["actions"] = tf.zeros([1, FLAGS.n_context + FLAGS.num_future - 1, c["action_dim"]])
    times = []
    for i in range(FLAGS.warmup + FLAGS.requests):
      start = time.perf_counter()
      serve(**inputs)["frames"].numpy()
      if i >= FLAGS.warmup:
        times.append(time.perf_counter() - start)
  p50 = statistics.median(times)
  record.save("serve", {
      "p50_ms": round(1000 * p50, 1),
      "max_ms": round(1000 * max(times), 1),
      "p95_ms": round(1000 * float(np.percentile(times, 95)), 1),
      "min_ms": round(1000 * min(times), 1),
      "frames_per_s": round(FLAGS.num_samples * FLAGS.num_future / p50, 1),
      "requests": FLAGS.requests, "videos": 1, "num_samples": FLAGS.num_samples,
      "num_future": FLAGS.num_future, "n_context": FLAGS.n_context,
      "dataset": c["dataset"], "model": c["model"], "arch": c["arch"],
      "base_filters": c["base_filters"], "precision": c["precision"],
      "export_s": round(export_s, 1), "load_s": round(load_s, 1),
      "warmup_file_ms": round(warmup_file_ms, 1), "tensorflow": tf.__version__,
      "cpu_threads": os.cpu_count(), "gpus": len(tf.config.list_physical_devices("GPU")),
  }, FLAGS.out)


if __name__ == "__main__":
  app.run(main)
