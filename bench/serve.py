"""Latency and memory of serving requests through the exported SavedModel, printed as one JSON line.

One request = --videos videos x --num_samples futures of --num_future frames after --n_context
context frames (default 1 x 100 x 28 after 2: BAIR's protocol), through `serving_default` (or
--signature=mean_future) of the SavedModel loaded with tf.saved_model.load (what TF Serving runs,
without the network). Prints p50/p95 latency over --requests timed requests after --warmup
untimed ones (the warm-up file's requests are replayed first, as TF Serving does), generated
frames/s at the median, and memory: the process's peak RSS (VmHWM, over load,
warm-up and requests) and its RSS before and after the timed requests.

--largest times instead the largest requests the export's caps (its svg_export.json) allow, each
in a process of its own so that one request's peak does not hide another's. For the default caps
(10,000 frames counted as videos x samples x (context + future); 100 samples, 100 future and 100
context frames at most): 1 video x 100 samples x (n_past + 100 - n_past), the most samples;
100 videos x 1 sample x (50 + 50), the most videos; 1 video x 50 samples x (100 + 100), the
longest rollouts; and mean_future over 50 videos x (100 + 100). One timed request each unless
--requests says otherwise: a full-size BAIR request at the cap takes minutes on 2 cores.

  python bench/serve.py --model_dir=runs/bair_lp              # export a trained run, then time it
  python bench/serve.py --export_dir=exports/svg              # time an existing export (newest)
  python bench/serve.py --preset=bair                         # untrained full-size BAIR model
  python bench/serve.py --preset=bair --largest               # the largest requests, peak memory
  python bench/serve.py --preset=smmnist --tiny --requests=3  # a quick check
  python bench/serve.py --preset=smmnist --tiny --largest     # a quick check of --largest
  python bench/serve.py --preset=bair --precision=mixed_bfloat16  # a bfloat16 graph

With --preset or --model_dir, the same request is also timed through the in-process sampler that
evaluate.py uses (svg_tf.evaluation.Sampler, one chunk of videos x samples rows) on the model that
was exported, so the served speed reads against it (`served_over_in_process`).
"""

import dataclasses
import json
import os
import resource
import statistics
import subprocess
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
from svg_tf import checkpoints, export  # noqa: E402
from svg_tf.evaluation import Sampler  # noqa: E402
from svg_tf.model import SVG  # noqa: E402
from svg_tf.serving import local_server  # noqa: E402

flags.DEFINE_string("model_dir", None, "A train.py run directory to export and time")
flags.DEFINE_string("export_dir", None, "An export to time: a version folder, or a model base "
                    "path (EXPORT_DIR/MODEL_NAME) whose newest version is used")
flags.DEFINE_enum("preset", None, sorted(config_lib.PRESETS), "Export an untrained full-size "
                  "model of this dataset preset and time it")
flags.DEFINE_enum("precision", None, list(config_lib.PRECISIONS), "With --preset or --model_dir: "
                  "the exported graph's compute dtype (svg-export --precision; default the "
                  "run's, float32 for a preset)")
flags.DEFINE_bool("tiny", False, "With --preset: a tiny model (base_filters 4, g_dim 8, rnn 16, "
                  "z 3) for a quick check")
flags.DEFINE_enum("model", "lp", list(config_lib.MODELS), "With --preset: lp, fp or det")
flags.DEFINE_enum("signature", "serving_default", ["serving_default", "mean_future"],
                  "The signature to time (mean_future ignores --num_samples)")
flags.DEFINE_integer("videos", 1, "Videos per request")
flags.DEFINE_integer("num_samples", 100, "Samples per request")
flags.DEFINE_integer("num_future", 28, "Generated frames per sample")
flags.DEFINE_integer("n_context", 2, "Context frames")
flags.DEFINE_bool("largest", False, "Time the largest requests the export's caps allow, each in "
                  "its own process, instead of the one request above")
flags.DEFINE_integer("requests", 10, "Timed requests (with --largest: per request shape, "
                     "default 1)")
flags.DEFINE_integer("warmup", 1, "Untimed requests after the warm-up file's (with --largest: "
                     "default 0)")
flags.DEFINE_string("out", None, "Also write the result to bench/results/OUT.json (or to OUT if "
                    "it ends in .json), with the machine it ran on.")
FLAGS = flags.FLAGS


def _version_dir(workdir: str):
  """(The SavedModel to time, exported into `workdir` when asked to; the in-process model it was
  exported from, or None for --export_dir)."""
  if FLAGS.export_dir:
    if FLAGS.precision:
      raise ValueError("--precision needs --preset or --model_dir (an export's graph is fixed)")
    if os.path.exists(os.path.join(FLAGS.export_dir, "saved_model.pb")):
      return FLAGS.export_dir, None
    return local_server.latest_version_dir(FLAGS.export_dir), None
  if FLAGS.model_dir:
    model = checkpoints.restore_run(FLAGS.model_dir, precision=FLAGS.precision).model
    return export.export_run(FLAGS.model_dir, workdir, "svg", precision=FLAGS.precision), model
  tiny = dict(base_filters=4, g_dim=8, rnn_size=16, z_dim=3) if FLAGS.tiny else {}
  model = SVG(config_lib.preset(FLAGS.preset, model=FLAGS.model,
                                precision=FLAGS.precision or "float32", **tiny))
  return export.export_saved_model(model, workdir, "svg"), model


def _time_in_process(model: SVG, context: np.ndarray, samples: int, num_future: int,
                     actions) -> dict:
  """The request's frames/s through evaluate.py's sampler, one chunk of all its rows."""
  sampler = Sampler(model, context.shape[1], num_future, chunk_size=context.shape[0] * samples)
  for _ in range(FLAGS.warmup + 1):  # the first call traces
    sampler.sample(context, samples, seed=0, actions=actions)
  times = []
  for _ in range(FLAGS.requests):
    start = time.perf_counter()
    sampler.sample(context, samples, seed=0, actions=actions)
    times.append(time.perf_counter() - start)
  p50 = statistics.median(times)
  return {"in_process_p50_ms": round(1000 * p50, 1),
          "in_process_frames_per_s": round(context.shape[0] * samples * num_future / p50, 1)}


def _rss_mib() -> float:
  """This process's resident memory now (Linux's /proc; None elsewhere)."""
  try:
    with open("/proc/self/statm") as f:
      return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
  except OSError:
    return None


def _peak_rss_mib() -> float:
  """The most resident memory this process has held: Linux's VmHWM, which starts afresh at exec
  (getrusage's ru_maxrss does not: a child forked from a large process reports at least the
  parent's size); ru_maxrss elsewhere (KiB on Linux, bytes on macOS)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return round(int(line.split()[1]) / 2**10, 1)
  except OSError:
    pass
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _time_requests(path: str, model=None) -> dict:
  """Loads the SavedModel at `path` and times FLAGS' request through it (and through `model`'s
  in-process sampler, when given, for serving_default)."""
  start = time.perf_counter()
  loaded = tf.saved_model.load(path)
  load_s = time.perf_counter() - start
  start = time.perf_counter()
  for request in local_server.read_warmup_requests(path):
    name = request.model_spec.signature_name
    if name == FLAGS.signature:
      loaded.signatures[name](**{k: tf.constant(tf.make_ndarray(v))
                                 for k, v in request.inputs.items()})
  warmup_file_ms = 1000 * (time.perf_counter() - start)
  info = export.read_info(path)
  c = info["config"]
  videos, n_context, num_future = FLAGS.videos, FLAGS.n_context, FLAGS.num_future
  context = np.random.default_rng(0).random(
      (videos, n_context, c["image_size"], c["image_size"], c["channels"])).astype(np.float32)
  inputs = dict(context=tf.constant(context), num_future=tf.constant(num_future))
  samples = 1
  if FLAGS.signature == "serving_default":
    samples = FLAGS.num_samples
    inputs.update(num_samples=tf.constant(samples), seed=tf.constant(0))
  if c["action_dim"]:
    inputs["actions"] = tf.zeros([videos, n_context + num_future - 1, c["action_dim"]])
  serve = loaded.signatures[FLAGS.signature]
  for _ in range(FLAGS.warmup):
    serve(**inputs)
  rss_before = _rss_mib()
  times = []
  for _ in range(FLAGS.requests):
    start = time.perf_counter()
    serve(**inputs)["frames"].numpy()
    times.append(time.perf_counter() - start)
  rss_after = _rss_mib()
  p50 = statistics.median(times)
  in_process = {}
  if model is not None and FLAGS.signature == "serving_default":
    actions = np.zeros((videos, n_context + num_future - 1, c["action_dim"]), np.float32)
    in_process = _time_in_process(model, context, samples, num_future,
                                  actions if c["action_dim"] else None)
    in_process["served_over_in_process"] = round(
        in_process["in_process_p50_ms"] / (1000 * p50), 3)
  return {**in_process,
      "p50_ms": round(1000 * p50, 1),
      "max_ms": round(1000 * max(times), 1),
      "p95_ms": round(1000 * float(np.percentile(times, 95)), 1),
      "min_ms": round(1000 * min(times), 1),
      "frames_per_s": round(videos * samples * num_future / p50, 1),
      "requests": FLAGS.requests, "signature": FLAGS.signature, "videos": videos,
      "num_samples": samples, "num_future": num_future, "n_context": n_context,
      "frames_counted": videos * samples * (n_context + num_future),  # as max_frames counts them
      "peak_rss_mib": _peak_rss_mib(), "rss_before_requests_mib": rss_before,
      "rss_after_requests_mib": rss_after,
      "rss_growth_mib": None if rss_before is None else round(rss_after - rss_before, 1),
      "dataset": c["dataset"], "model": c["model"], "arch": c["arch"],
      "base_filters": c["base_filters"], "precision": c["precision"], "limits": info["limits"],
      "load_s": round(load_s, 1), "warmup_file_ms": round(warmup_file_ms, 1),
      "tensorflow": tf.__version__, "cpu_threads": os.cpu_count(),
      "gpus": len(tf.config.list_physical_devices("GPU")),
  }


def largest_requests(limits: export.Limits, n_past: int):
  """(name, signature, videos, samples, n_context, num_future) of requests at the caps, one for
  each way of spending max_frames (figures in the module docstring for the default caps)."""
  frames = limits.max_frames
  context = min(limits.max_num_context, frames - 1)  # the longest rollout that fits
  future = max(1, min(limits.max_num_future, frames - context))
  first = min(n_past, limits.max_num_context)  # the context the model was trained with
  samples = max(1, min(limits.max_num_samples, frames // (first + 1)))
  half = max(1, min(limits.max_num_context, limits.max_num_future) // 2)
  return [
      ("most_samples", "serving_default", 1, samples, first,
       max(1, min(limits.max_num_future, frames // samples - first))),
      ("most_videos", "serving_default", max(1, frames // (2 * half)), 1, half, half),
      ("longest", "serving_default", 1, max(1, min(limits.max_num_samples,
                                                   frames // (context + future))),
       context, future),
      ("mean_future_most_videos", "mean_future", max(1, frames // (context + future)), 1,
       context, future),
  ]


def _largest(path: str) -> dict:
  """Times each of `largest_requests` in a fresh process of this bench; their results."""
  info = export.read_info(path)
  limits = export.Limits(**info["limits"])  # an older export's lacks max_num_context
  requests = FLAGS.requests if FLAGS["requests"].present else 1
  warmup = FLAGS.warmup if FLAGS["warmup"].present else 0
  results = []
  for name, signature, videos, samples, n_context, num_future in largest_requests(
      limits, info["config"]["n_past"]):
    shape = dict(videos=videos, num_samples=samples, n_context=n_context, num_future=num_future)
    print(f"serve --largest | {name}: {signature} {videos} video(s) x {samples} sample(s) x "
          f"({n_context} + {num_future}) frames", file=sys.stderr, flush=True)
    child = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--export_dir={path}",
         f"--signature={signature}", f"--requests={requests}", f"--warmup={warmup}"]
        + [f"--{k}={v}" for k, v in shape.items()], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    if child.returncode:
      results.append(dict(shape, name=name, signature=signature,
                          error=child.stderr.strip().splitlines()[-3:]))
    else:
      results.append(dict(json.loads(child.stdout.strip().splitlines()[-1]), name=name))
  return {"requests": results, "limits": dataclasses.asdict(limits),
          "dataset": info["config"]["dataset"], "model": info["config"]["model"],
          "base_filters": info["config"]["base_filters"]}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if sum(x is not None for x in (FLAGS.model_dir, FLAGS.export_dir, FLAGS.preset)) != 1:
    raise app.UsageError("give exactly one of --model_dir, --export_dir, --preset")
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    try:
      path, model = _version_dir(workdir)
    except (ValueError, FileNotFoundError) as err:
      raise app.UsageError(str(err))
    export_s = round(time.perf_counter() - start, 1)
    result = _largest(path) if FLAGS.largest else _time_requests(path, model)
  record.save("serve_largest" if FLAGS.largest else "serve", dict(result, export_s=export_s),
              FLAGS.out)


if __name__ == "__main__":
  app.run(main)
