"""A client of an exported SVG model served by TF Serving, over gRPC or REST.

The export (svg_tf/export.py, `python export.py`) is served by the real TF Serving with
`docker run -p 8500:8500 -p 8501:8501 -v "$PWD/exports/svg:/models/svg" -e MODEL_NAME=svg
tensorflow/serving:2.21.0` (gRPC on 8500, REST on 8501). Then:

  client = Client("localhost:8500", "svg")                       # gRPC (PredictionService)
  client = Client("localhost:8501", "svg", protocol="rest")      # REST, columnar JSON
  client = Client("localhost:8501", "svg", protocol="rest", rest_format="row")
  frames = client.sample(context, num_future=28, num_samples=10, seed=1)
  # context (batch, n_context, H, W, C) float32 in [0, 1] -> (batch, 10, 28, H, W, C)

gRPC sends tensors as raw bytes; REST sends JSON text, about 10x larger and much slower to parse
for the hundreds of frames a request returns, so prefer gRPC beyond small requests.

This module imports nothing of the local stand-in server (svg_tf/serving/local_server.py).
"""

import json
import urllib.error
import urllib.request
from typing import Dict, Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

SIGNATURE_OUTPUTS = {"serving_default": ("frames",), "mean_future": ("frames",),
                     "prior_std": ("prior_std", "prior_std_per_dim")}
MAX_MESSAGE = -1  # gRPC message size: unlimited (TF Serving's server allows 2 GB)
_INT32_MIN, _INT32_MAX = -2**31, 2**31 - 1  # num_future, num_samples and seed are int32 inputs
_HTTP_CODE = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429:
              "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
              504: "DEADLINE_EXCEEDED"}


def _int32(value, name: str, meaning: str = "") -> np.int32:
  """`value` as an int32 input; ValueError naming it where numpy would raise OverflowError, or
  silently take a bool or truncate a float. The server checks the value's own range."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not (
      _INT32_MIN <= value <= _INT32_MAX):
    raise ValueError(f"{name} must be an integer in [{_INT32_MIN}, {_INT32_MAX}] (int32)"
                     f"{meaning}; got {value!r}")
  return np.int32(value)


class ServingError(Exception):
  """A request the server refused: `code` is the gRPC status name (e.g. INVALID_ARGUMENT)."""

  def __init__(self, code: str, message: str):
    super().__init__(f"{code}: {message}")
    self.code, self.message = code, message


class Client:
  """Predict requests to a served SVG export (TF Serving, or local_server.LocalServer).

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
          ("grpc.max_send_message_length", MAX_MESSAGE),
          ("grpc.max_receive_message_length", MAX_MESSAGE)])
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
    gRPC; over REST, which needs every input, this client draws it); a negative seed also asks
    the server for a random one. Raises ValueError for a count or seed that is not an int32."""
    inputs = self._inputs(context, num_future, actions)
    inputs["num_samples"] = _int32(num_samples, "num_samples")
    if seed is None and self.protocol == "rest":
      seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    if seed is not None:
      inputs["seed"] = _int32(seed, "seed", " (negative: a random seed), or None")
    return self.predict(inputs, "serving_default")["frames"]

  def mean_future(self, context, num_future: int, actions=None) -> np.ndarray:
    """mean_future: (batch, num_future, H, W, C) with every latent at its distribution's mean."""
    return self.predict(self._inputs(context, num_future, actions), "mean_future")["frames"]

  def prior_std(self, context, num_future: int, actions=None) -> Dict[str, np.ndarray]:
    """prior_std: {"prior_std": (batch, num_future), "prior_std_per_dim": (..., z_dim)}."""
    return self.predict(self._inputs(context, num_future, actions), "prior_std")

  @staticmethod
  def _inputs(context, num_future, actions):
    inputs = {"context": np.asarray(context, np.float32),
              "num_future": _int32(num_future, "num_future")}
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
