"""LocalServer: a stand-in for TF Serving's Predict API over an exported SVG model, on 127.0.0.1.

`LocalServer` answers TF Serving's Predict API (gRPC PredictionService from tensorflow-serving-api
and REST `/v1/models/NAME[/versions/N]:predict`) for an exported model on 127.0.0.1, where no
TF Serving binary can be installed (tests, development). It follows TF Serving's contract: the
newest integer version under the model base path is loaded and its warm-up file replayed; gRPC
requests may leave out inputs that have SignatureDef defaults, REST requests must name every input
("instances": a list of objects with every input; "inputs": an object with every input); wrong
dtypes, unknown inputs, signatures, models or versions give TF Serving's status codes (HTTP 400 /
404 for REST), and the response formats are TF Serving's ("predictions": one entry per row, an
object per row when there are several outputs; "outputs": the tensor, or an object of tensors).
JSON numbers are converted as TF Serving's parser converts them: for an int32 input only JSON
integers within int32's range (a seed of 4294967303 is refused, not taken as 7), for a float input
only numbers within float32's range, and never true/false (HTTP 400 naming the input). A REST
request must give its Content-Length: a missing one is answered 411, a malformed one 400, one over
`max_body_bytes` 413 before any of the body is read, and a client that sends nothing for
`read_timeout_s` seconds is dropped (answered 408 if it stalls within its body), so a stalled
request holds no thread.
Not provided: Classify/Regress/MultiInference, GetModelMetadata, model config files, batching,
version policies other than "latest", and TF Serving's exact wording of its own error messages
(the model's own errors pass through unchanged).

  with LocalServer("exports/svg", "svg") as server:   # EXPORT_DIR/MODEL_NAME; free ports
    client = Client(server.grpc_address, "svg")        # or Client(server.rest_address, ..., "rest")
"""

import http.server
import json
import os
import re
import threading
from concurrent import futures
from typing import Dict, List, Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc

from svg_tf.serving.client import MAX_MESSAGE, ServingError

# A REST body this large holds about 1,000 BAIR context frames as JSON text (~20 bytes a value),
# and Python's parse of it several times its size; larger requests belong on gRPC.
MAX_BODY_BYTES = 256 * 2**20
READ_TIMEOUT_S = 30.0
_HTTP_STATUS = {"OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
                "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
                "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
                "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
                "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401}


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
    max_body_bytes: REST bodies over this size are refused (413) unread.
    read_timeout_s: a REST client that sends nothing for this long is dropped (408).
  """

  def __init__(self, model_base_path: str, model_name: str = "svg", grpc_port: int = 0,
               rest_port: int = 0, host: str = "127.0.0.1", max_body_bytes: int = MAX_BODY_BYTES,
               read_timeout_s: float = READ_TIMEOUT_S):
    self.model_name, self.host = model_name, host
    self.max_body_bytes, self.read_timeout_s = max_body_bytes, read_timeout_s
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
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", MAX_MESSAGE)])
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


def _leaf_types(value) -> set:
  """The Python types of a parsed JSON value's leaves (nested lists walked, each list's items
  typed at C speed)."""
  if not isinstance(value, list):
    return {type(value)}
  types = set(map(type, value))
  if list in types:
    types.discard(list)
    for item in value:
      if isinstance(item, list):
        types |= _leaf_types(item)
  return types


def _json_array(value, dtype, what: str, may_hold_booleans: bool = True) -> np.ndarray:
  """A parsed JSON value as a numpy array of the signature's dtype, refused where TF Serving's
  parser refuses it and numpy would silently wrap, round or convert: true/false for a number, a
  non-integer or an integer outside the dtype's range for an integer input, a number outside
  float32's range for a float input.

  may_hold_booleans: False when the request body holds no `true`/`false` at all, which spares
  walking a large float input's leaves (numpy would take true as 1.0 among numbers).
  """
  def refuse(message):
    raise ServingError("INVALID_ARGUMENT", f"{what}: {message}")

  types = _leaf_types(value) if dtype.is_integer or may_hold_booleans else set()
  if bool in types:
    refuse(f"JSON true/false is not of expected type: {dtype.name}")
  if dtype.is_integer and not types <= {int}:
    refuse(f"JSON value is not an integer ({dtype.name})")
  try:
    array = np.asarray(value)
  except ValueError as err:
    refuse(str(err))
  if dtype.is_integer:
    if array.size and (array.min() < dtype.min or array.max() > dtype.max):
      bad = array.max() if array.max() > dtype.max else array.min()
      refuse(f"JSON integer {bad} is outside {dtype.name}'s range [{dtype.min}, {dtype.max}]")
    return array.astype(dtype.as_numpy_dtype)
  if not dtype.is_floating:
    refuse(f"{dtype.name} inputs are not supported here")
  if array.dtype.kind not in "iuf":
    refuse("not a dense numeric tensor")
  with np.errstate(over="ignore"):
    values = array.astype(dtype.as_numpy_dtype)
  overflow = np.isinf(values) & np.isfinite(array)
  if overflow.any():
    refuse(f"JSON number {array[overflow][0]} is outside {dtype.name}'s range (magnitude at "
           f"most {float(np.finfo(values.dtype).max):.8g})")
  return values


def _parse_rest_request(body: bytes, server: LocalServer):
  """(signature name, inputs, "row"|"columnar") from a TF Serving predict JSON body."""
  try:
    doc = json.loads(body)
  except ValueError as err:
    raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: {err}") from None
  booleans = b"true" in body or b"false" in body
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
    inputs = {k: _json_array(values[k], infos[k], k, booleans) for k in infos}
    return signature_name, inputs, "columnar"
  instances = doc["instances"]
  if not isinstance(instances, list) or not instances:
    raise ServingError("INVALID_ARGUMENT", "Expecting 'instances' to be a non-empty list")
  columns = {k: [] for k in infos}
  for i, instance in enumerate(instances):
    if not isinstance(instance, dict) or set(instance) != set(infos):
      raise ServingError("INVALID_ARGUMENT", f"Failed to process element: {i} of 'instances' "
                         f"list. keys must be equal to: {','.join(sorted(infos))}")
    for k in infos:
      columns[k].append(_json_array(instance[k], infos[k], f"element {i} key {k}", booleans))
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


class _Refusal(Exception):
  """A REST request refused at the HTTP level, before its body is parsed."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status, self.message = status, message


def _rest_handler(server: LocalServer):
  class Handler(http.server.BaseHTTPRequestHandler):
    """POST /v1/models/NAME[/versions/N]:predict and GET /v1/models/NAME (status)."""

    timeout = server.read_timeout_s  # set on each connection's socket: a stalled read raises

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

    def _read_body(self) -> bytes:
      """The request body, read only when its Content-Length is given and within the limit."""
      text = self.headers.get("Content-Length")
      if text is None:
        raise _Refusal(411, "a POST must give its Content-Length (chunked bodies are not read)")
      if not re.fullmatch(r"\s*[0-9]+\s*", text):
        raise _Refusal(400, f"Content-Length {text!r} is not a non-negative integer")
      length = int(text)
      if length > server.max_body_bytes:
        raise _Refusal(413, f"a request body of {length} bytes is over this server's limit of "
                       f"{server.max_body_bytes} bytes; send large requests over gRPC")
      try:
        body = self.rfile.read(length)
      except TimeoutError:
        raise _Refusal(408, f"the client sent nothing for {server.read_timeout_s} s") from None
      if len(body) < length:
        raise _Refusal(400, f"the body ended after {len(body)} of its {length} bytes")
      return body

    def do_POST(self):  # pylint: disable=invalid-name
      match = _PREDICT_PATH.match(self.path)
      if not match:
        return self._error(ServingError("INVALID_ARGUMENT", f"Malformed request: POST {self.path}"))
      try:
        body = self._read_body()
      except _Refusal as refusal:  # the body (or its rest) is left unread: close the connection
        self.close_connection = True
        return self._send(refusal.status, {"error": refusal.message})
      try:
        version = int(match.group(2)) if match.group(2) else None
        server.check_servable(match.group(1), version)
        signature_name, inputs, fmt = _parse_rest_request(body, server)
        outputs = server.predict(inputs, signature_name, match.group(1), version)
        status, payload = 200, _rest_response(outputs, fmt)
      except ServingError as err:
        status, payload = _HTTP_STATUS.get(err.code, 500), {"error": err.message}
      except Exception as err:  # pylint: disable=broad-except  (answer, and keep serving)
        status, payload = 500, {"error": f"{type(err).__name__}: {err}"}
      self._send(status, payload)  # a client too slow to take it times out and is dropped

  return Handler
