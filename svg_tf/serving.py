"""Calling an exported SVG model served by TF Serving, over gRPC or REST; and a local stand-in server.

The export (svg_tf/export.py, `python export.py`) is served by the real TF Serving with
`docker run -p 8500:8500 -p 8501:8501 -v "$PWD/exports/svg:/models/svg" -e MODEL_NAME=svg
tensorflow/serving:2.21.0` (gRPC on 8500, REST on 8501). Then:

  client = Client("localhost:8500", "svg")                       # gRPC (PredictionService)
  client = Client("localhost:8501", "svg", protocol="rest")      # REST, columnar JSON
  client = Client("localhost:8501", "svg", protocol="rest", rest_format="row")
  frames = client.sample(context, num_future=28, num_samples=10, seed=1)
  # context (batch, n_context, H, W, C) float32 in [0, 1] -> (batch, 10, 28, H, W, C)

or from a shell (a GIF of the context followed by each sample):

  python -m svg_tf.serving --server=localhost:8500 --model_name=svg --video=clip.gif \
      --num_samples=5 --num_future=20 --out=samples.gif

gRPC sends tensors as raw bytes; REST sends JSON text, about 10x larger and much slower to parse
for the hundreds of frames a request returns, so prefer gRPC beyond small requests.

`LocalServer` answers TF Serving's Predict API (gRPC PredictionService from tensorflow-serving-api
and REST `/v1/models/NAME[/versions/N]:predict`) for an exported model on 127.0.0.1, where no
TF Serving binary can be installed (tests, development). It follows TF Serving's contract: the
newest integer version under the model base path is loaded and its warm-up file replayed; gRPC
requests may leave out inputs that have SignatureDef defaults, REST requests must name every input
("instances": a list of objects with every input; "inputs": an object with every input); wrong
dtypes, unknown inputs, signatures, models or versions give TF Serving's status codes (HTTP 400 /
404 for REST), and the response formats are TF Serving's ("predictions": one entry per row, an
object per row when there are several outputs; "outputs": the tensor, or an object of tensors).
Not provided: Classify/Regress/MultiInference, GetModelMetadata, model config files, batching,
version policies other than "latest", and TF Serving's exact wording of its own error messages
(the model's own errors pass through unchanged).
"""

import http.server
import json
import os
import re
import threading
import urllib.error
import urllib.request
from concurrent import futures
from typing import Dict, List, Optional

from absl import app, flags
import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc

from svg_tf import media

SIGNATURE_OUTPUTS = {"serving_default": ("frames",), "mean_future": ("frames",),
                     "prior_std": ("prior_std", "prior_std_per_dim")}
_MAX_MESSAGE = -1  # gRPC message size: unlimited (TF Serving's server allows 2 GB)
_HTTP_STATUS = {"OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
                "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
                "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
                "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
                "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401}
_HTTP_CODE = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429:
              "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
              504: "DEADLINE_EXCEEDED"}


class ServingError(Exception):
  """A request the server refused: `code` is the gRPC status name (e.g. INVALID_ARGUMENT)."""

  def __init__(self, code: str, message: str):
    super().__init__(f"{code}: {message}")
    self.code, self.message = code, message


# ------------------------------------------------------------------------------------------ client
class Client:
  """Predict requests to a served SVG export (TF Serving or `LocalServer`).

  Args:
    server: "host:port" (TF Serving: gRPC 8500, REST 8501).
    model_name: the served model's name (the folder name under the export dir).
    protocol: "grpc" (tensorflow-serving-api's PredictionService) or "rest".
    rest_format: "columnar" ({"inputs": {...}}) or "row" ({"instances": [...]}, one per video).
    version: a specific version; None: the newest the server has.
    timeout: seconds per request.
  """

  def __init__(self, server: str, model_name: str = "svg", protocol: str = "grpc",
               rest_format: str = "columnar", version: Optional[int] = None,
               timeout: float = 600.0):
    if protocol not in ("grpc", "rest"):
      raise ValueError(f"protocol={protocol!r}: must be grpc or rest")
    if rest_format not in ("columnar", "row"):
      raise ValueError(f"rest_format={rest_format!r}: must be columnar or row")
    self.server, self.model_name, self.protocol = server, model_name, protocol
    self.rest_format, self.version, self.timeout = rest_format, version, timeout
    self._channel = self._stub = None
    if protocol == "grpc":
      self._channel = grpc.insecure_channel(server, options=[
          ("grpc.max_send_message_length", _MAX_MESSAGE),
          ("grpc.max_receive_message_length", _MAX_MESSAGE)])
      self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

  def close(self):
    if self._channel is not None:
      self._channel.close()

  def __enter__(self):
    return self

  def __exit__(self, *unused):
    self.close()

  # ------------------------------------------------------------------------------- signatures
  def sample(self, context, num_future: int, num_samples: int = 1, seed: Optional[int] = None,
             actions=None) -> np.ndarray:
    """serving_default: context (batch, n_context, H, W, C) in [0, 1] ->
    (batch, num_samples, num_future, H, W, C). seed None: a random seed (the server draws it over
    gRPC; over REST, which needs every input, this client draws it)."""
    inputs = self._inputs(context, num_future, actions)
    inputs["num_samples"] = np.int32(num_samples)
    if seed is None and self.protocol == "rest":
      seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    if seed is not None:
      inputs["seed"] = np.int32(seed)
    return self.predict(inputs, "serving_default")["frames"]

  def mean_future(self, context, num_future: int, actions=None) -> np.ndarray:
    """mean_future: (batch, num_future, H, W, C) with every latent at its distribution's mean."""
    return self.predict(self._inputs(context, num_future, actions), "mean_future")["frames"]

  def prior_std(self, context, num_future: int, actions=None) -> Dict[str, np.ndarray]:
    """prior_std: {"prior_std": (batch, num_future), "prior_std_per_dim": (..., z_dim)}."""
    return self.predict(self._inputs(context, num_future, actions), "prior_std")

  @staticmethod
  def _inputs(context, num_future, actions):
    inputs = {"context": np.asarray(context, np.float32), "num_future": np.int32(num_future)}
    if actions is not None:
      inputs["actions"] = np.asarray(actions, np.float32)
    return inputs

  # ---------------------------------------------------------------------------------- transport
  def predict(self, inputs: Dict[str, np.ndarray],
              signature_name: str = "serving_default") -> Dict[str, np.ndarray]:
    """One Predict call: named numpy inputs -> named numpy outputs; raises ServingError."""
    if self.protocol == "grpc":
      return self._predict_grpc(inputs, signature_name)
    return self._predict_rest(inputs, signature_name)

  def _predict_grpc(self, inputs, signature_name):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = self.model_name
    request.model_spec.signature_name = signature_name
    if self.version is not None:
      request.model_spec.version.value = self.version
    for key, value in inputs.items():
      request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    try:
      response = self._stub.Predict(request, timeout=self.timeout)
    except grpc.RpcError as err:
      raise ServingError(err.code().name, err.details()) from None
    return {key: tf.make_ndarray(value) for key, value in response.outputs.items()}

  def _predict_rest(self, inputs, signature_name):
    version = f"/versions/{self.version}" if self.version is not None else ""
    url = f"http://{self.server}/v1/models/{self.model_name}{version}:predict"
    body = {"signature_name": signature_name}
    if self.rest_format == "columnar":
      body["inputs"] = {key: np.asarray(value).tolist() for key, value in inputs.items()}
    else:  # one instance per video; scalar inputs repeated in each
      batch = np.asarray(inputs["context"]).shape[0]
      body["instances"] = [{key: (np.asarray(value)[i].tolist() if np.ndim(value) else
                                  np.asarray(value).item()) for key, value in inputs.items()}
                           for i in range(batch)]
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
      with urllib.request.urlopen(request, timeout=self.timeout) as response:
        answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
      text = err.read().decode(errors="replace")
      try:
        message = json.loads(text)["error"]
      except (ValueError, KeyError, TypeError):
        message = text
      raise ServingError(_HTTP_CODE.get(err.code, f"HTTP_{err.code}"), message) from None
    names = SIGNATURE_OUTPUTS.get(signature_name, ("outputs",))
    if "outputs" in answer:
      values = answer["outputs"]
      values = values if isinstance(values, dict) else {names[0]: values}
      return {key: np.asarray(value, np.float32) for key, value in values.items()}
    rows = answer["predictions"]
    if rows and isinstance(rows[0], dict):
      return {key: np.asarray([row[key] for row in rows], np.float32) for key in rows[0]}
    return {names[0]: np.asarray(rows, np.float32)}


# ------------------------------------------------------------------------------ local stand-in
def latest_version_dir(model_base_path: str) -> str:
  """The newest integer version folder under a TF Serving model base path."""
  names = [n for n in os.listdir(model_base_path) if n.isdigit()
           and os.path.isdir(os.path.join(model_base_path, n))]
  if not names:
    raise FileNotFoundError(f"{model_base_path}: no integer version folder")
  return os.path.join(model_base_path, str(max(int(n) for n in names)))


def read_warmup_requests(version_dir: str) -> List:
  """The PredictRequests of <version>/assets.extra/tf_serving_warmup_requests."""
  path = os.path.join(version_dir, "assets.extra", "tf_serving_warmup_requests")
  requests = []
  for record in tf.data.TFRecordDataset(path):
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    if log.WhichOneof("log_type") != "predict_log":
      raise ValueError(f"{path}: only predict_log warm-up records are supported")
    requests.append(log.predict_log.request)
  return requests


class LocalServer:
  """TF Serving's Predict API for one exported model on `host` (see the module docstring).

  Args:
    model_base_path: EXPORT_DIR/MODEL_NAME, holding integer version folders.
    model_name: the name requests must use.
    grpc_port, rest_port: 0 picks free ports (see `grpc_address`, `rest_address`).
  """

  def __init__(self, model_base_path: str, model_name: str = "svg", grpc_port: int = 0,
               rest_port: int = 0, host: str = "127.0.0.1"):
    self.model_name, self.host = model_name, host
    self.version_dir = latest_version_dir(model_base_path)
    self.version = int(os.path.basename(self.version_dir))
    with open(os.path.join(self.version_dir, "saved_model.pb"), "rb") as f:
      saved = saved_model_pb2.SavedModel.FromString(f.read())
    self.signature_defs = dict(saved.meta_graphs[0].signature_def)
    self._loaded = tf.saved_model.load(self.version_dir)
    self.warmup_replayed = 0
    for request in read_warmup_requests(self.version_dir):  # as TF Serving does on load
      self.predict(_request_arrays(request), request.model_spec.signature_name, model_name)
      self.warmup_replayed += 1
    self._grpc_port, self._rest_port = grpc_port, rest_port
    self._grpc = self._http = None

  @property
  def grpc_address(self) -> str:
    return f"{self.host}:{self._grpc_port}"

  @property
  def rest_address(self) -> str:
    return f"{self.host}:{self._rest_port}"

  def start(self) -> "LocalServer":
    self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
        ("grpc.max_send_message_length", _MAX_MESSAGE),
        ("grpc.max_receive_message_length", _MAX_MESSAGE)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionServicer(self), self._grpc)
    self._grpc_port = self._grpc.add_insecure_port(f"{self.host}:{self._grpc_port}")
    self._grpc.start()
    self._http = http.server.ThreadingHTTPServer((self.host, self._rest_port), _rest_handler(self))
    self._rest_port = self._http.server_address[1]
    threading.Thread(target=self._http.serve_forever, daemon=True).start()
    return self

  def stop(self):
    if self._grpc is not None:
      self._grpc.stop(grace=None)
    if self._http is not None:
      self._http.shutdown()
      self._http.server_close()

  def __enter__(self):
    return self.start()

  def __exit__(self, *unused):
    self.stop()

  def check_servable(self, model_name: str, version: Optional[int] = None):
    """NOT_FOUND unless the request names this model (and, if any, its loaded version)."""
    if model_name != self.model_name or (version is not None and version != self.version):
      spec = f"Specific({model_name}, {version})" if version is not None else f"Latest({model_name})"
      raise ServingError("NOT_FOUND", f"Servable not found for request: {spec}")

  def predict(self, inputs: Dict[str, np.ndarray], signature_name: str, model_name: str,
              version: Optional[int] = None,
              output_filter: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
    """Runs one Predict request with TF Serving's checks; raises ServingError."""
    signature_name = signature_name or "serving_default"
    self.check_servable(model_name, version)
    if signature_name not in self.signature_defs:
      raise ServingError("FAILED_PRECONDITION",
                         f'Serving signature key "{signature_name}" not found.')
    signature = self.signature_defs[signature_name]
    expected = dict(signature.inputs)
    extra = sorted(set(inputs) - set(expected))
    missing = sorted(set(expected) - set(inputs) - set(signature.defaults))
    if extra or missing:
      raise ServingError("INVALID_ARGUMENT", f"input size does not match signature: "
                         f"{len(inputs)}!={len(expected)} len({{{','.join(sorted(inputs))}}}) != "
                         f"len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(extra)}}}."
                         f" Missing but required: {{{','.join(missing)}}}.")
    feeds = {}
    for index, (key, info) in enumerate(sorted(expected.items())):
      dtype = tf.dtypes.as_dtype(info.dtype)
      if key not in inputs:
        feeds[key] = tf.constant(tf.make_ndarray(signature.defaults[key]), dtype)
        continue
      value = np.asarray(inputs[key])
      if tf.dtypes.as_dtype(value.dtype) != dtype:
        raise ServingError("INVALID_ARGUMENT", f"Expects arg[{index}] ({key}) to be "
                           f"{dtype.name} but {tf.dtypes.as_dtype(value.dtype).name} is provided")
      feeds[key] = tf.constant(value, dtype)
    try:
      outputs = self._loaded.signatures[signature_name](**feeds)
    except tf.errors.OpError as err:  # TensorFlow's error codes are gRPC's
      code = next((c.name for c in grpc.StatusCode if c.value[0] == err.error_code), "UNKNOWN")
      raise ServingError(code, err.message) from None
    names = list(output_filter or outputs)
    unknown = [n for n in names if n not in outputs]
    if unknown:
      raise ServingError("INVALID_ARGUMENT", f"output tensor alias not found in signature: "
                         f"{unknown[0]} Outputs expected to be in the set "
                         f"{{{','.join(sorted(outputs))}}}.")
    return {name: outputs[name].numpy() for name in names}


def _request_arrays(request) -> Dict[str, np.ndarray]:
  return {key: tf.make_ndarray(value) for key, value in request.inputs.items()}


class _PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """tensorflow-serving-api's PredictionService, Predict only, over a LocalServer's model."""

  def __init__(self, server: LocalServer):
    self._server = server

  def Predict(self, request, context):  # pylint: disable=invalid-name
    spec = request.model_spec
    try:
      outputs = self._server.predict(
          _request_arrays(request), spec.signature_name, spec.name,
          spec.version.value if spec.HasField("version") else None,
          list(request.output_filter) or None)
    except ServingError as err:
      context.abort(getattr(grpc.StatusCode, err.code, grpc.StatusCode.UNKNOWN), err.message)
    response = predict_pb2.PredictResponse()
    response.model_spec.name = spec.name
    response.model_spec.signature_name = spec.signature_name or "serving_default"
    response.model_spec.version.value = self._server.version
    for key, value in outputs.items():
      response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    return response


_PREDICT_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")
_STATUS_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?$")


def _json_array(value, dtype, what: str) -> np.ndarray:
  """A JSON value as a numpy array of the signature's dtype (integers only for integer inputs)."""
  try:
    array = np.asarray(value)
  except ValueError as err:
    raise ServingError("INVALID_ARGUMENT", f"{what}: {err}") from None
  if array.dtype == object or array.dtype.kind not in "iufb":
    raise ServingError("INVALID_ARGUMENT", f"{what}: not a dense numeric tensor")
  if dtype.is_integer and array.dtype.kind == "f":
    raise ServingError("INVALID_ARGUMENT", f"{what}: JSON value is not an integer ({dtype.name})")
  return array.astype(dtype.as_numpy_dtype)


def _parse_rest_request(body: bytes, server: LocalServer):
  """(signature name, inputs, "row"|"columnar") from a TF Serving predict JSON body."""
  try:
    doc = json.loads(body)
  except ValueError as err:
    raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: {err}") from None
  if not isinstance(doc, dict):
    raise ServingError("INVALID_ARGUMENT", "JSON Value: Is not object")
  signature_name = doc.get("signature_name", "serving_default")
  if signature_name not in server.signature_defs:
    raise ServingError("FAILED_PRECONDITION",
                       f'Serving signature key "{signature_name}" not found.')
  infos = {k: tf.dtypes.as_dtype(v.dtype) for k, v in server.signature_defs[signature_name]
           .inputs.items()}
  if ("instances" in doc) == ("inputs" in doc):
    raise ServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key" if
                       "inputs" not in doc else "expecting only one of 'inputs' or 'instances'")
  if "inputs" in doc:
    values = doc["inputs"]
    if not isinstance(values, dict):
      raise ServingError("INVALID_ARGUMENT", "inputs is a plain value/list, but expecting an "
                         "object as multiple input tensors required as per tensorinfo_map")
    for name in sorted(infos):
      if name not in values:
        raise ServingError("INVALID_ARGUMENT", f"Missing named input: {name} in 'inputs' object.")
    return signature_name, {k: _json_array(values[k], infos[k], k) for k in infos}, "columnar"
  instances = doc["instances"]
  if not isinstance(instances, list) or not instances:
    raise ServingError("INVALID_ARGUMENT", "Expecting 'instances' to be a non-empty list")
  columns = {k: [] for k in infos}
  for i, instance in enumerate(instances):
    if not isinstance(instance, dict) or set(instance) != set(infos):
      raise ServingError("INVALID_ARGUMENT", f"Failed to process element: {i} of 'instances' "
                         f"list. keys must be equal to: {','.join(sorted(infos))}")
    for k in infos:
      columns[k].append(_json_array(instance[k], infos[k], f"element {i} key {k}"))
  inputs = {}
  for k, items in columns.items():
    if any(item.shape != items[0].shape for item in items):
      raise ServingError("INVALID_ARGUMENT", f"Failed to process key: {k} of 'instances' list. "
                         "Error: every instance must have the same shape")
    inputs[k] = np.stack(items)
  return signature_name, inputs, "row"


def _rest_response(outputs: Dict[str, np.ndarray], fmt: str) -> Dict:
  if fmt == "columnar":
    if len(outputs) == 1:
      return {"outputs": next(iter(outputs.values())).tolist()}
    return {"outputs": {k: v.tolist() for k, v in outputs.items()}}
  sizes = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
  if None in sizes.values() or len(set(sizes.values())) > 1:
    raise ServingError("INVALID_ARGUMENT", f"Tensor name: outputs have inconsistent batch "
                       f"sizes {sizes}")
  batch = next(iter(sizes.values()))
  if len(outputs) == 1:
    return {"predictions": next(iter(outputs.values())).tolist()}
  return {"predictions": [{k: v[i].tolist() for k, v in outputs.items()} for i in range(batch)]}


def _rest_handler(server: LocalServer):
  class Handler(http.server.BaseHTTPRequestHandler):
    """POST /v1/models/NAME[/versions/N]:predict and GET /v1/models/NAME (status)."""

    def log_message(self, *unused):  # quiet
      pass

    def _send(self, status: int, payload: Dict):
      data = json.dumps(payload).encode()
      self.send_response(status)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def _error(self, err: ServingError):
      self._send(_HTTP_STATUS.get(err.code, 500), {"error": err.message})

    def do_GET(self):  # pylint: disable=invalid-name
      match = _STATUS_PATH.match(self.path)
      if not match or match.group(1) != server.model_name:
        return self._error(ServingError("NOT_FOUND", f"Could not find any versions of model "
                                        f"{match.group(1) if match else self.path}"))
      self._send(200, {"model_version_status": [{
          "version": str(server.version), "state": "AVAILABLE",
          "status": {"error_code": "OK", "error_message": ""}}]})

    def do_POST(self):  # pylint: disable=invalid-name
      match = _PREDICT_PATH.match(self.path)
      if not match:
        return self._error(ServingError("INVALID_ARGUMENT", f"Malformed request: POST {self.path}"))
      try:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        version = int(match.group(2)) if match.group(2) else None
        server.check_servable(match.group(1), version)
        signature_name, inputs, fmt = _parse_rest_request(body, server)
        outputs = server.predict(inputs, signature_name, match.group(1), version)
        self._send(200, _rest_response(outputs, fmt))
      except ServingError as err:
        self._error(err)
      except Exception as err:  # pylint: disable=broad-except  (answer, and keep serving)
        self._error(ServingError("INTERNAL", f"{type(err).__name__}: {err}"))

  return Handler


# ------------------------------------------------------------------------------------------- CLI
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  f = flags.FLAGS
  try:
    video = media.fit_frames(media.read_video(f.video), f.image_size, f.channels)
  except (ValueError, OSError) as err:
    raise app.UsageError(str(err))
  context = video[:f.n_context] if f.n_context else video
  with Client(f.server, f.model_name, f.protocol, f.rest_format, f.version, f.timeout) as client:
    try:
      samples = client.sample(context[None], f.num_future, f.num_samples, f.seed)[0]
    except ServingError as err:  # a bad video or flag value: one line, no traceback
      raise SystemExit(f"error: the server refused the request: {err}")
  media.samples_gif(f.out, context, samples)
  print(f"wrote {f.out}: {samples.shape[0]} sample(s) of {samples.shape[1]} frames after "
        f"{context.shape[0]} context frame(s)")


def _define_flags():
  flags.DEFINE_string("server", None, "host:port of TF Serving (gRPC 8500, REST 8501)")
  flags.DEFINE_string("model_name", "svg", "Served model name")
  flags.DEFINE_enum("protocol", "grpc", ["grpc", "rest"], "PredictionService over gRPC, or REST")
  flags.DEFINE_enum("rest_format", "columnar", ["columnar", "row"], "REST JSON: inputs or instances")
  flags.DEFINE_integer("version", None, "Model version (default: the newest served)")
  flags.DEFINE_string("video", None, "Context video: .gif, .npy or .npz (T, H, W[, C])")
  flags.DEFINE_integer("n_context", 0, "Context frames taken from the start of the video (0: all)")
  flags.DEFINE_integer("num_future", 10, "Frames to generate")
  flags.DEFINE_integer("num_samples", 3, "Futures to draw")
  flags.DEFINE_integer("seed", None, "Seed of the samples (default: random)")
  flags.DEFINE_integer("image_size", 0, "Resize frames to this size first (0: as in the file)")
  flags.DEFINE_integer("channels", 0, "Convert frames to 1 or 3 channels first (0: as in the file)")
  flags.DEFINE_float("timeout", 600.0, "Seconds per request")
  flags.DEFINE_string("out", None, "Output GIF: one tile per sample, context framed green")
  flags.mark_flags_as_required(["server", "video", "out"])


if __name__ == "__main__":
  _define_flags()
  app.run(main)
