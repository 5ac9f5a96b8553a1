"""SVG as a SavedModel that TF Serving serves over REST and gRPC, with no svg_tf code on the server.

`export_run(model_dir, export_dir, "svg")` restores the newest checkpoint of a train.py run and
writes TF Serving's layout, one integer folder per version:

  EXPORT_DIR/svg/<version>/saved_model.pb, variables/
  EXPORT_DIR/svg/<version>/assets.extra/tf_serving_warmup_requests   (PredictionLog records)
  EXPORT_DIR/svg/<version>/assets.extra/svg_export.json              (config, caps; for people)

A version is written under a hidden temporary name in EXPORT_DIR/svg/ and renamed into place
(atomic on a local disk), so a server watching the folder never loads half a version; TF Serving
ignores non-integer folder names. An existing version is never overwritten. A killed export
leaves its temporary folder behind; the next export into EXPORT_DIR/svg/ removes it once the
owner written in it (host and PID) no longer runs.

Signatures (method tensorflow/serving/predict; every input is named, "[...]" are shapes):

  serving_default  context     float32 [batch, n_context, H, W, C] in [0, 1],
                               1 <= n_context <= max_num_context
                   num_future  int32 scalar, 1..max_num_future
                   num_samples int32 scalar, 1..max_num_samples
                   seed        int32 scalar; optional over gRPC (default -1)
                   actions     float32 [batch, >= n_context + num_future - 1, action_dim]
                               (action-conditioned models only)
                -> frames      float32 [batch, num_samples, num_future, H, W, C] in [0, 1]
  mean_future      context, num_future (, actions)
                -> frames      float32 [batch, num_future, H, W, C]: every latent at the mean of its
                               distribution (context: posterior means; then the learned prior's
                               mean (lp), 0 (fp)); det: its only prediction
  prior_std        context, num_future (, actions)
                -> prior_std   float32 [batch, num_future]: the learned prior's standard deviation
                               at each generated step, averaged over z (the paper's Fig. 6), along
                               the mean_future trajectory; 1 for fp, 0 for det
                   prior_std_per_dim float32 [batch, num_future, z_dim] (z_dim 0 for det)

Scalar inputs may also be vectors holding one value per video, all equal: the REST row format
("instances") sends each input once per instance. The context length and num_future are dynamic
(graph loops, `SVG.predict_future`); BatchNorm uses its moving statistics in every signature.

Sampling: z comes from the posterior during the context (as in training) and from the learned
prior (lp) or N(0, I) (fp) after it; the deterministic model (det) returns num_samples copies of
its prediction.

Seed: the standard-normal noise of sample s is `tf.random.stateless_normal([n_context - 1 +
num_future, z_dim], seed=[seed, s], alg="philox")`, the same for every video of the request
(`svg_tf.model.latent_noise`: svg_tf's one noise scheme, also evaluate.py's and
`svg_tf.load(...).sample`'s, so a seed gives the same futures everywhere). So a video's samples for a seed do not depend on the other videos in the request or
on num_samples (sample s is the same when more are asked for), and a longer num_future extends
the same futures. A negative seed draws a fresh random seed on the server (different samples on
every call). A SavedModel input cannot be optional, but its SignatureDef can carry a default that
TF Serving uses when a gRPC request leaves the input out: seed defaults to -1 (random). TF
Serving's REST API requires every input, and Python's `loaded.signatures[...]` too.

Caps (checked in the graph; `Limits`, recorded in svg_export.json): num_samples <= 100 (the
paper's best-of-100 protocol), num_future <= 100, at most 100 context frames per video, and at
most 10,000 frames per request counted as the model handles them: every sample runs over the
whole context again (its rows repeat the context), so serving_default counts videos x num_samples
x (n_context + num_future), mean_future and prior_std videos x (n_context + num_future). 10,000
BAIR frames are 0.5 GB of float32 output. (Before the context was capped and counted, one
request of 1,000 context frames x 100 samples x 100 future frames, inside every other cap, took
30 s and grew a server from 0.9 to 8.7 GB.) Older exports, whose svg_export.json lacks
max_num_context, cap neither the context nor its frames.

Bad requests (wrong rank, frame size or channels, values outside [0, 1], too many context frames,
num_samples or num_future out of range, too many frames, actions of the wrong shape, one context
frame with skip_rule=reference) fail with INVALID_ARGUMENT naming the problem before any frame is
generated; the server keeps serving. Wrong dtypes are refused by TF Serving itself
(INVALID_ARGUMENT).
"""

import dataclasses
import json
import os
import re
import socket
import time
import uuid
from typing import Callable, Dict, List, Optional, Tuple

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from svg_tf import checkpoints, media, run_dir
from svg_tf.model import SVG, mean_prior_std

WARMUP_FILE = "tf_serving_warmup_requests"  # TF Serving replays it when it loads a version
INFO_FILE = "svg_export.json"
SIGNATURES = ("serving_default", "mean_future", "prior_std")
RANDOM_SEED = -1  # the default of `seed`: a fresh random seed per request
_WARMUP_FUTURE = 2
# TF Serving's REST handler reaches /v1/models/NAME[/versions/N]:predict for NAME matching [^/:]+
# (http_rest_api_handler.cc); the name is also a folder and a URL path segment, hence this
# narrower set (no '/', ':', spaces, '%', '?', '#', or a leading '.').
MODEL_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_TMP_PREFIX = ".tmp-"  # not an integer: TF Serving ignores the folder
_OWNER_FILE = ".owner"  # in a temporary folder: {"host", "pid"} of the export writing it
_UNOWNED_AGE_S = 3600  # a temporary folder without an owner this old is a killed export's


@dataclasses.dataclass(frozen=True)
class Limits:
  """Caps on one request, compiled into the SavedModel. Callers build it positionally: new fields
  go last, with defaults, so that svg_export.json files without them still load."""
  max_num_samples: int = 100  # the paper's protocol draws 100 samples per test video
  max_num_future: int = 100
  max_frames: int = 10_000  # videos x num_samples x (n_context + num_future)
  max_num_context: int = 100  # context frames per video

  def __post_init__(self):
    for field in dataclasses.fields(self):
      if getattr(self, field.name) < 1:
        raise ValueError(f"--{field.name}={getattr(self, field.name)}: must be at least 1")


def _check(condition, *message):
  """An assertion whose failure is an InvalidArgument error carrying `message` (strings, tensors)."""
  return tf.debugging.Assert(condition, list(message), summarize=16)


def _after(checks, value):
  """`value`, computed only once every check in `checks` has passed."""
  with tf.control_dependencies(checks):
    return tf.identity(value)


def _one_value(value, name: str, batch) -> tf.Tensor:
  """A scalar request input, also accepted as one equal value per video (REST row format)."""
  value = _after([_check(tf.rank(value) <= 1, f"{name} must be a scalar (in the REST row format: "
                         "the same value in every instance); got shape", tf.shape(value))], value)
  flat = tf.reshape(value, [-1])
  size = tf.size(flat)
  same = tf.reduce_all(tf.equal(flat, tf.reduce_max(flat)))
  ok = (size >= 1) & ((size == 1) | (size == batch)) & same
  return _after([_check(ok, f"{name} must be one value for the whole request; got", flat)],
                flat[0])


class ServingFunctions:
  """The exported computations, with request validation; also callable in-process.

  Each method takes request tensors (any rank and size: everything is checked in the graph, so a
  bad request gets a message naming the problem) and returns a dict of named outputs; see the
  module docstring for the contract.
  """

  def __init__(self, model: SVG, limits: Limits = Limits()):
    self.model = model
    self.config = model.config
    self.limits = limits

  # --------------------------------------------------------------------------------- validation
  def _request(self, context, num_future, actions):
    """Checked (context (batch, n_context, H, W, C), num_future, actions or None, batch)."""
    c = self.config
    size, channels = c.image_size, c.channels
    context = tf.convert_to_tensor(context, tf.float32)
    layout = f"[batch, n_context, {size}, {size}, {channels}]"
    context = _after([_check(tf.equal(tf.rank(context), 5), f"context must have rank 5, {layout}; "
                             "got shape", tf.shape(context))], context)
    shape = tf.shape(context)
    min_context = 2 if c.skip_rule == "reference" else 1
    frame_ok = (shape[2] == size) & (shape[3] == size) & (shape[4] == channels)
    in_range = tf.reduce_all((context >= 0.0) & (context <= 1.0))
    context = _after([
        _check(frame_ok, f"context frames must be {size}x{size} with {channels} channel(s), "
               f"{layout}; got shape", shape),
        _check(shape[0] >= 1, "context must hold at least one video; got shape", shape),
        _check(shape[1] >= min_context, f"context must hold at least {min_context} frame(s) per "
               "video" + (" (this model's skip_rule=reference reads x[n_context-2])"
                          if min_context > 1 else "") + "; got shape", shape),
        _check(shape[1] <= self.limits.max_num_context, "context may hold at most "
               f"{self.limits.max_num_context} frames per video (max_num_context); got shape",
               shape),
        _check(in_range, "context values must be in [0, 1] (divide 8-bit pixels by 255); got min",
               tf.reduce_min(context), "max", tf.reduce_max(context)),
    ], context)
    batch, n_context = shape[0], shape[1]
    context = tf.reshape(context, tf.stack([batch, n_context, size, size, channels]))
    num_future = _one_value(tf.convert_to_tensor(num_future, tf.int32), "num_future", batch)
    num_future = _after([_check((num_future >= 1) & (num_future <= self.limits.max_num_future),
                                f"num_future must be in [1, {self.limits.max_num_future}]; got",
                                num_future)], num_future)
    if not c.action_dim:
      if actions is not None:
        raise ValueError("this model takes no actions (action_dim=0)")
      return context, num_future, None, batch
    if actions is None:
      raise ValueError(f"this model is action-conditioned (action_dim={c.action_dim}): pass actions")
    actions = tf.convert_to_tensor(actions, tf.float32)
    needed = n_context + num_future - 1
    actions = _after([_check(tf.equal(tf.rank(actions), 3), "actions must have rank 3, [batch, "
                             f"n_context + num_future - 1, {c.action_dim}]; got shape",
                             tf.shape(actions))], actions)
    a_shape = tf.shape(actions)
    actions = _after([_check((a_shape[0] == batch) & (a_shape[2] == c.action_dim) &
                             (a_shape[1] >= needed), f"actions must be [batch, >= n_context + "
                             f"num_future - 1, {c.action_dim}] = [", batch, needed,
                             f"{c.action_dim}]; got shape", a_shape)], actions)
    actions = tf.reshape(actions[:, :needed], tf.stack([batch, needed, c.action_dim]))
    return context, num_future, actions, batch

  def _frames_cap(self, context, num_future, num_samples=None):
    """The max_frames check. Every sample runs over the whole context again (SVG.sample repeats
    it per sample), so the context frames count once per sample, like the generated ones."""
    videos, n_context = tf.unstack(tf.cast(tf.shape(context)[:2], tf.int64))
    frames = videos * (n_context + tf.cast(num_future, tf.int64))
    count = "videos x (n_context + num_future)"
    if num_samples is not None:
      frames *= tf.cast(num_samples, tf.int64)
      count = "videos x num_samples x (n_context + num_future)"
    return _check(frames <= self.limits.max_frames, "a request may handle at most "
                  f"{self.limits.max_frames} frames ({count}; max_frames); got", frames)

  # -------------------------------------------------------------------------------- signatures
  def sample(self, context, num_future, num_samples, seed, actions=None,
             first_sample=0) -> Dict[str, tf.Tensor]:
    """serving_default: {"frames": (batch, num_samples, num_future, H, W, C)}.

    first_sample (in process only; the SavedModel's signature draws from sample 0): the samples
    first_sample.. of the same seed, so a long request can be cut into parts.
    """
    context, num_future, actions, batch = self._request(context, num_future, actions)
    num_samples = _one_value(tf.convert_to_tensor(num_samples, tf.int32), "num_samples", batch)
    seed = _one_value(tf.convert_to_tensor(seed, tf.int32), "seed", batch)
    num_samples = _after([
        _check((num_samples >= 1) & (num_samples <= self.limits.max_num_samples),
               f"num_samples must be in [1, {self.limits.max_num_samples}]; got", num_samples),
        self._frames_cap(context, num_future, num_samples)], num_samples)
    # A raw op with seeds 0: nondeterministic even when a global TF seed was set at export time.
    fresh = tf.raw_ops.RandomUniformInt(shape=tf.constant([], tf.int32), minval=0,
                                        maxval=tf.int32.max, seed=0, seed2=0)
    seed = tf.where(seed < 0, fresh, seed)
    out = self.model.sample(context, num_future, num_samples, seed, actions, bn_mode="moving",
                            first_sample=first_sample)
    return {"frames": out.frames}

  def _mean_future(self, context, num_future, actions):
    context, num_future, actions, _ = self._request(context, num_future, actions)
    num_future = _after([self._frames_cap(context, num_future)], num_future)
    return self.model.predict_future(context, num_future, None, bn_mode="moving", actions=actions)

  def mean_future(self, context, num_future, actions=None) -> Dict[str, tf.Tensor]:
    """{"frames": (batch, num_future, H, W, C)} with every latent at its distribution's mean."""
    return {"frames": self._mean_future(context, num_future, actions).frames}

  def prior_std(self, context, num_future, actions=None) -> Dict[str, tf.Tensor]:
    """{"prior_std": (batch, num_future), "prior_std_per_dim": (batch, num_future, z_dim)}."""
    std = self._mean_future(context, num_future, actions).prior_std
    return {"prior_std": mean_prior_std(std), "prior_std_per_dim": std}

  # --------------------------------------------------------------------------------- endpoints
  def endpoints(self) -> Dict[str, Tuple[Callable, List[tf.TensorSpec]]]:
    """Signature name -> (function with the input names as arguments, input signature).

    Every input spec has unknown shape, so shape errors reach the graph's checks (and their
    messages) instead of failing in the runtime's argument binding.
    """
    spec = lambda name, dtype=tf.float32: tf.TensorSpec(None, dtype, name=name)
    ints = [spec("num_future", tf.int32)]
    default_seed = tf.constant(RANDOM_SEED, tf.int32)
    if self.config.action_dim:
      def serving_default(context, num_future, num_samples, actions, seed=default_seed):
        return self.sample(context, num_future, num_samples, seed, actions)

      def mean_future(context, num_future, actions):
        return self.mean_future(context, num_future, actions)

      def prior_std(context, num_future, actions):
        return self.prior_std(context, num_future, actions)

      tail = [spec("actions")]
    else:
      def serving_default(context, num_future, num_samples, seed=default_seed):
        return self.sample(context, num_future, num_samples, seed)

      def mean_future(context, num_future):
        return self.mean_future(context, num_future)

      def prior_std(context, num_future):
        return self.prior_std(context, num_future)

      tail = []
    base = [spec("context")] + ints
    sample_specs = base + [spec("num_samples", tf.int32)] + tail + [spec("seed", tf.int32)]
    return {"serving_default": (serving_default, sample_specs),
            "mean_future": (mean_future, base + tail), "prior_std": (prior_std, base + tail)}


def build_archive(model: SVG, limits: Limits = Limits()) -> keras.export.ExportArchive:
  """A keras ExportArchive tracking `model` with the three signatures."""
  functions = ServingFunctions(model, limits)
  archive = keras.export.ExportArchive()
  archive.track(model)
  for name, (fn, specs) in functions.endpoints().items():
    archive.add_endpoint(name, fn, input_signature=specs)
  return archive


def warmup_inputs(config) -> Dict[str, Dict[str, np.ndarray]]:
  """Small requests per signature (1 video, 2 context frames, 2 future frames, 1 sample)."""
  context = np.full((1, 2, config.image_size, config.image_size, config.channels), 0.5, np.float32)
  base = {"context": context, "num_future": np.int32(_WARMUP_FUTURE)}
  if config.action_dim:
    base["actions"] = np.zeros((1, 1 + _WARMUP_FUTURE, config.action_dim), np.float32)
  return {"serving_default": dict(base, num_samples=np.int32(1), seed=np.int32(0)),
          "mean_future": base, "prior_std": base}


def warmup_records(config, model_name: str) -> List[bytes]:
  """Serialized tensorflow_serving PredictionLog records, one Predict request per signature."""
  records = []
  for signature, inputs in warmup_inputs(config).items():
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
    for key, value in inputs.items():
      request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    records.append(log.SerializeToString())
  return records


def versions(model_root: str) -> List[int]:
  """The integer version folders under EXPORT_DIR/MODEL_NAME, sorted."""
  if not tf.io.gfile.isdir(model_root):
    return []
  names = [n.rstrip("/") for n in tf.io.gfile.listdir(model_root)]
  return sorted(int(n) for n in names if n.isdigit())


def find_version(path: str) -> Optional[str]:
  """`path` if it is an exported version (it holds saved_model.pb), else its newest integer
  version folder that is one (a model folder, as TF Serving reads it), else None."""
  if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
    return path
  for version in reversed(versions(path)):
    candidate = os.path.join(path, str(version))
    if tf.io.gfile.exists(os.path.join(candidate, "saved_model.pb")):
      return candidate
  return None


def read_info(version_dir: str) -> Dict:
  """assets.extra/svg_export.json of an exported version: config, limits, signatures, source."""
  path = os.path.join(version_dir, "assets.extra", INFO_FILE)
  if not tf.io.gfile.exists(path):
    raise ValueError(f"{version_dir}: no assets.extra/{INFO_FILE}, so not a SavedModel written "
                     "by svg_tf's export.py")
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _owner(tmp: str) -> Optional[Dict]:
  """The {"host", "pid"} written in a temporary export folder; None if missing or unreadable."""
  try:
    with tf.io.gfile.GFile(os.path.join(tmp, _OWNER_FILE)) as f:
      owner = json.loads(f.read())
  except (ValueError, tf.errors.OpError):
    return None
  return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None


def remove_leftovers(model_root: str) -> List[str]:
  """Removes the temporary folders that killed exports left in EXPORT_DIR/MODEL_NAME; returns them.

  A folder is removed when its owner ran on this host and its PID no longer runs, or when it has
  no readable owner and has not changed for an hour (an export killed before writing one, or
  written before owners were). A live export's folder always has a running owner or is fresh; a
  folder owned on another host is kept (its PID cannot be checked here) and logged.
  """
  removed = []
  for name in tf.io.gfile.listdir(model_root):
    name = name.rstrip("/")
    if not name.startswith(_TMP_PREFIX):
      continue
    path = os.path.join(model_root, name)
    owner = _owner(path)
    try:
      if owner is None:
        age_s = time.time() - tf.io.gfile.stat(path).mtime_nsec / 1e9
        if age_s < _UNOWNED_AGE_S:
          continue
        why = f"no owner written, unchanged for {age_s / 3600:.1f} h"
      elif owner.get("host") != socket.gethostname():
        logging.info("export | kept %s: written by PID %s on %s, which cannot be checked from "
                     "here; delete it if that export no longer runs", path, owner["pid"],
                     owner.get("host"))
        continue
      elif run_dir.process_runs(owner["pid"]):
        continue
      else:
        why = f"its export, PID {owner['pid']} on this host, no longer runs"
      tf.io.gfile.rmtree(path)
    except tf.errors.NotFoundError:  # removed meanwhile (its export finished, or another cleaner)
      continue
    logging.info("export | removed %s, left by a killed export (%s)", path, why)
    removed.append(path)
  return removed


def export_saved_model(model: SVG, export_dir: str, model_name: str = "svg",
                       version: Optional[int] = None, limits: Limits = Limits(),
                       info: Optional[Dict] = None) -> str:
  """Writes `model` as EXPORT_DIR/MODEL_NAME/<version>/ (default: the next integer); returns it.

  First removes what killed exports left in EXPORT_DIR/MODEL_NAME (`remove_leftovers`).
  Raises FileExistsError naming the folder if the version exists (nothing is overwritten), and
  ValueError for a model name outside MODEL_NAME_PATTERN.
  """
  if not re.fullmatch(MODEL_NAME_PATTERN, model_name or ""):
    raise ValueError(f"--model_name={model_name!r}: must match {MODEL_NAME_PATTERN} (letters, "
                     "digits, '_', '.', '-'; no '/' or ':'), so that TF Serving's REST path "
                     "/v1/models/NAME:predict reaches it")
  root = os.path.join(export_dir, model_name)
  existing = versions(root)
  if version is None:
    version = existing[-1] + 1 if existing else 1
  if version < 0:
    raise ValueError(f"--version={version}: must be a non-negative integer")
  final = os.path.join(root, str(version))

  def refuse():
    raise FileExistsError(f"{final} already exists: an exported version is never overwritten; "
                          f"choose another --version or leave it out (next free: "
                          f"{max(versions(root) + [version]) + 1})")

  if tf.io.gfile.exists(final):
    refuse()
  tf.io.gfile.makedirs(root)
  remove_leftovers(root)
  tmp = os.path.join(root, f"{_TMP_PREFIX}{uuid.uuid4().hex}")
  started = time.perf_counter()
  logging.info("export | 1/2 | tracing the signatures %s and writing the SavedModel (the long "
               "step: about a minute for a full-size model on 2 CPU cores)", ", ".join(SIGNATURES))
  try:
    tf.io.gfile.makedirs(tmp)
    with tf.io.gfile.GFile(os.path.join(tmp, _OWNER_FILE), "w") as f:  # first: see remove_leftovers
      f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    build_archive(model, limits).write_out(tmp, verbose=False)
    logging.info("export | 2/2 | SavedModel written in %.0fs; warm-up requests and "
                 "svg_export.json", time.perf_counter() - started)
    extra = os.path.join(tmp, "assets.extra")
    tf.io.gfile.makedirs(extra)
    with tf.io.TFRecordWriter(os.path.join(extra, WARMUP_FILE)) as writer:
      for record in warmup_records(model.config, model_name):
        writer.write(record)
    details = dict(info or {}, config=model.config.to_dict(), limits=dataclasses.asdict(limits),
                   signatures=list(SIGNATURES), model_name=model_name, version=version)
    media.write_file_atomic(os.path.join(extra, INFO_FILE), json.dumps(details, indent=2))
    tf.io.gfile.remove(os.path.join(tmp, _OWNER_FILE))  # not part of the version
    if tf.io.gfile.exists(final):  # another export took this version meanwhile
      refuse()
    tf.io.gfile.rename(tmp, final, overwrite=False)
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.rmtree(tmp)
  logging.info("export | done in %.0fs | %s", time.perf_counter() - started, final)
  return final


def export_run(model_dir: str, export_dir: str, model_name: str = "svg",
               version: Optional[int] = None, limits: Limits = Limits(),
               precision: Optional[str] = None) -> str:
  """Exports the newest checkpoint of the train.py run in `model_dir`; returns the version folder.

  precision: the compute dtype of the exported graph's conv nets (default: the run's); inputs and
  outputs are float32 whatever it is, and the weights are float32 in every precision, so e.g. a
  run trained in mixed_float16 on a GPU exports as float32 or mixed_bfloat16 for CPU servers.
  Raises checkpoints.IncompleteCheckpointError, exporting nothing, when the checkpoint lacks some
  of the model's variables (they would be served at their random initial values).
  """
  run = checkpoints.restore_run(model_dir, precision=precision)
  return export_saved_model(run.model, export_dir, model_name, version, limits,
                            info={"model_dir": model_dir, "checkpoint": run.checkpoint,
                                  "checkpoint_step": run.step})
