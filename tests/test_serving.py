"""The serving client against TF Serving's Predict API: gRPC, REST (row and columnar), the CLI.

No TF Serving binary can be installed here, so `local_server.LocalServer` stands in for it on
127.0.0.1: tensorflow-serving-api's PredictionService servicer and TF Serving's REST contract
over the exported SavedModel (see svg_tf/serving/local_server.py for how faithful it is). The
client is used as applications import it, `svg_tf.serving.Client`.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from svg_tf import export, media, serving
from svg_tf.serving import local_server
from tests.conftest import ROOT
from tests.test_export import ENV, exported_model, moving_squares


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  return exported_model(tmp_path_factory)


@pytest.fixture(scope="module")
def server(exported):
  with local_server.LocalServer(os.path.join(exported.export_dir, "svg"), "svg") as local:
    yield local


@pytest.fixture(scope="module")
def functions(exported):
  return export.ServingFunctions(exported.model)


def post(server, path, body):
  """(HTTP status, decoded JSON answer) of a raw REST call."""
  request = urllib.request.Request(f"http://{server.rest_address}{path}", method="POST",
                                   data=json.dumps(body).encode())
  try:
    with urllib.request.urlopen(request, timeout=120) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as err:
    return err.code, json.loads(err.read())


def test_the_server_loads_the_newest_version_and_replays_the_warmup_file(server, tmp_path):
  assert server.version == 1 and server.warmup_replayed == len(export.SIGNATURES)
  for name in ("1", "2", "10", "notes", "11.tmp"):  # integers compared as numbers; others ignored
    os.makedirs(tmp_path / name)
  (tmp_path / "12").write_text("a file, not a version folder")
  assert local_server.latest_version_dir(str(tmp_path)) == str(tmp_path / "10")


@pytest.mark.parametrize("protocol,rest_format", [("grpc", "columnar"), ("rest", "columnar"),
                                                  ("rest", "row")])
def test_clients_return_the_models_frames(server, functions, protocol, rest_format):
  address = server.grpc_address if protocol == "grpc" else server.rest_address
  context = moving_squares(2, 2, seed=20)
  with serving.Client(address, "svg", protocol, rest_format) as client:
    frames = client.sample(context, num_future=3, num_samples=2, seed=4)
    mean = client.mean_future(context, 3)
    std = client.prior_std(context, 3)
  assert frames.shape == (2, 2, 3, 64, 64, 1) and frames.dtype == np.float32
  np.testing.assert_allclose(frames, functions.sample(context, 3, 2, 4)["frames"], atol=1e-5)
  np.testing.assert_allclose(mean, functions.mean_future(context, 3)["frames"], atol=1e-5)
  expected = functions.prior_std(context, 3)
  assert set(std) == {"prior_std", "prior_std_per_dim"}
  np.testing.assert_allclose(std["prior_std_per_dim"], expected["prior_std_per_dim"], atol=1e-6)


def test_grpc_requests_may_leave_out_the_seed(server):
  context = moving_squares(1, 2, seed=21)
  with serving.Client(server.grpc_address, "svg") as client:
    first = client.predict({"context": context, "num_future": np.int32(2),
                            "num_samples": np.int32(2)})["frames"]  # SignatureDef default -1
    second = client.sample(context, 2, 2)
  assert first.shape == second.shape == (1, 2, 2, 64, 64, 1)
  assert np.abs(first - second).max() > 1e-3  # a fresh random seed each time


def test_rest_json_follows_tf_serving(server):
  context = moving_squares(2, 2, seed=22).tolist()
  path = "/v1/models/svg:predict"
  status, columnar = post(server, path, {"inputs": {"context": context, "num_future": 2,
                                                   "num_samples": 1, "seed": 3}})
  assert status == 200 and np.asarray(columnar["outputs"]).shape == (2, 1, 2, 64, 64, 1)
  status, rows = post(server, "/v1/models/svg/versions/1:predict", {"instances": [
      {"context": c, "num_future": 2, "num_samples": 1, "seed": 3} for c in context]})
  assert status == 200 and len(rows["predictions"]) == 2  # one entry per instance
  np.testing.assert_allclose(rows["predictions"], columnar["outputs"], atol=1e-6)
  status, std = post(server, path, {"signature_name": "prior_std", "instances": [
      {"context": c, "num_future": 2} for c in context]})
  assert status == 200 and set(std["predictions"][0]) == {"prior_std", "prior_std_per_dim"}
  status, answer = post(server, path, {"inputs": {"context": context, "num_future": 2,
                                                  "num_samples": 1}})
  assert status == 400 and "Missing named input: seed" in answer["error"]  # REST needs all


def test_bad_requests_are_refused_and_the_server_keeps_serving(server):
  context = moving_squares(1, 2, seed=23)
  grpc_client = serving.Client(server.grpc_address, "svg")
  rest_client = serving.Client(server.rest_address, "svg", "rest")
  cases = [
      (grpc_client, dict(context=context, num_future=np.int32(2), num_samples=np.int32(0),
                         seed=np.int32(1)), "INVALID_ARGUMENT", r"num_samples must be in \[1, 100\]"),
      (grpc_client, dict(context=context.astype(np.float64), num_future=np.int32(2),
                         num_samples=np.int32(1), seed=np.int32(1)), "INVALID_ARGUMENT",
       "to be float32 but float64"),
      (grpc_client, dict(context=context[:, :, :32], num_future=np.int32(2),
                         num_samples=np.int32(1)), "INVALID_ARGUMENT", "must be 64x64"),
      (grpc_client, dict(context=context, num_future=np.int32(2), num_samples=np.int32(1),
                         speed=np.int32(1)), "INVALID_ARGUMENT", "Sent extra: {speed}"),
      (grpc_client, dict(context=np.zeros((1, 101, 64, 64, 1), np.float32), num_future=np.int32(2),
                         num_samples=np.int32(1)), "INVALID_ARGUMENT",
       r"at most 100 frames per video \(max_num_context\)"),
      (rest_client, dict(context=context, num_future=np.int32(0), num_samples=np.int32(1),
                         seed=np.int32(1)), "INVALID_ARGUMENT", r"num_future must be in \[1, 100\]"),
      (rest_client, dict(context=context[0], num_future=np.int32(2), num_samples=np.int32(1),
                         seed=np.int32(1)), "INVALID_ARGUMENT", "context must have rank 5"),
      (rest_client, dict(context=context, num_future=np.float32(2.5), num_samples=np.int32(1),
                         seed=np.int32(1)), "INVALID_ARGUMENT", "not an integer"),
  ]
  for client, inputs, code, message in cases:
    with pytest.raises(serving.ServingError, match=message) as caught:
      client.predict(inputs)
    assert caught.value.code == code
  with pytest.raises(serving.ServingError, match="not found") as caught:
    serving.Client(server.grpc_address, "svg").predict({"context": context}, "sample")
  assert caught.value.code == "FAILED_PRECONDITION"
  with pytest.raises(serving.ServingError, match="Servable not found") as caught:
    serving.Client(server.rest_address, "other", "rest").mean_future(context, 2)
  assert caught.value.code == "NOT_FOUND"
  assert grpc_client.sample(context, 2, 1, seed=1).shape == (1, 1, 2, 64, 64, 1)  # still serving
  assert rest_client.sample(context, 2, 1, seed=1).shape == (1, 1, 2, 64, 64, 1)
  grpc_client.close()


def test_rest_json_numbers_are_refused_where_tf_serving_refuses_them(server):
  """numpy would wrap an int64 into int32, take true as 1 and a float32 overflow as inf."""
  context = np.full((1, 2, 64, 64, 1), 0.5).tolist()
  with_true, too_big = json.loads(json.dumps(context)), json.loads(json.dumps(context))
  with_true[0][1][5][5][0], too_big[0][1][5][5][0] = True, 1e39
  good = {"context": context, "num_future": 2, "num_samples": 1, "seed": 3}
  cases = [
      ({"inputs": dict(good, seed=4294967303)},  # 2**32 + 7: not seed 7
       "seed: JSON integer 4294967303 is outside int32's range [-2147483648, 2147483647]"),
      ({"instances": [dict(good, context=context[0], num_samples=2**32 + 2)]},
       "element 0 key num_samples: JSON integer 4294967298 is outside int32's range"),
      ({"inputs": dict(good, num_future=True)},
       "num_future: JSON true/false is not of expected type: int32"),
      ({"inputs": dict(good, context=with_true)},
       "context: JSON true/false is not of expected type: float32"),
      ({"inputs": dict(good, context=too_big)},
       "context: JSON number 1e+39 is outside float32's range"),
  ]
  for body, message in cases:
    status, answer = post(server, "/v1/models/svg:predict", body)
    assert status == 400 and message in answer["error"], (status, answer)
  assert post(server, "/v1/models/svg:predict", {"inputs": good})[0] == 200


def raw_post(server, headers):
  """(HTTP status, decoded JSON answer) of a POST of these headers alone, no body sent."""
  connection = http.client.HTTPConnection(server.rest_address, timeout=20)
  try:
    connection.putrequest("POST", "/v1/models/svg:predict")
    for key, value in headers.items():
      connection.putheader(key, value)
    connection.endheaders()
    response = connection.getresponse()
    return response.status, json.loads(response.read())
  finally:
    connection.close()


def test_rest_bodies_need_a_valid_content_length_within_the_limit(server):
  start = time.monotonic()
  status, answer = raw_post(server, {"Content-Length": "2000000000"})
  assert status == 413 and "over this server's limit of 268435456 bytes" in answer["error"]
  assert time.monotonic() - start < 10  # answered without waiting for the body
  for length in ("-5", "abc", "1e3"):
    status, answer = raw_post(server, {"Content-Length": length})
    assert status == 400 and f"Content-Length {length!r}" in answer["error"]
  assert raw_post(server, {})[0] == 411


def test_a_rest_client_that_stops_sending_is_dropped(exported):
  with local_server.LocalServer(os.path.join(exported.export_dir, "svg"), "svg",
                                read_timeout_s=1) as local:
    host, port = local.rest_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as stalled:
      stalled.sendall(b"POST /v1/models/svg:predict HTTP/1.1\r\nHost: test\r\n"
                      b"Content-Length: 1000\r\n\r\n{\"inputs\": ")  # then nothing
      start, answer = time.monotonic(), b""
      while chunk := stalled.recv(65536):  # until the server closes the connection
        answer += chunk
    assert time.monotonic() - start < 10
    assert answer.split(b"\r\n")[0].split()[1] == b"408"
    with serving.Client(local.rest_address, "svg", "rest") as client:  # still serving
      assert client.mean_future(moving_squares(1, 2, seed=26), 2).shape == (1, 2, 64, 64, 1)


def test_the_client_refuses_counts_and_seeds_that_are_not_int32(server):
  context = moving_squares(1, 2, seed=27)
  with serving.Client(server.grpc_address, "svg") as client:
    for changes, message in [
        (dict(seed=2**31), r"seed must be an integer in \[-2147483648, 2147483647\] \(int32\) "
         r"\(negative: a random seed\), or None; got 2147483648"),
        (dict(seed=True), "seed must be an integer"),
        (dict(num_samples=2**32 + 2), r"num_samples must be an integer in \[-2147483648, "),
        (dict(num_future=1.5), "num_future must be an integer"),
    ]:
      with pytest.raises(ValueError, match=message):
        client.sample(context, **dict(dict(num_future=2, num_samples=1, seed=1), **changes))


def test_the_client_loads_without_the_stand_in_server():
  code = ("import sys\n"
          "import svg_tf.serving.client\n"
          "import svg_tf.serving\n"
          "assert svg_tf.serving.Client is svg_tf.serving.client.Client\n"
          "assert svg_tf.serving.ServingError is svg_tf.serving.client.ServingError\n"
          "loaded = sorted(m for m in sys.modules if m.startswith('svg_tf'))\n"
          "assert 'svg_tf.serving.local_server' not in sys.modules, loaded\n"
          "assert 'svg_tf.serving.__main__' not in sys.modules, loaded\n"
          "print('loaded:', ' '.join(loaded))\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=300)  # a fresh interpreter: nothing imported yet
  assert result.returncode == 0, result.stderr[-3000:]
  assert "loaded:" in result.stdout and "svg_tf.serving.client" in result.stdout  # checks ran


def test_cli_writes_a_gif_of_the_samples(server, tmp_path):
  video = tmp_path / "clip.gif"
  media.save_gif(str(video), moving_squares(1, 3, seed=24)[0])
  out = tmp_path / "samples.gif"
  result = subprocess.run(
      [sys.executable, "-m", "svg_tf.serving", f"--server={server.grpc_address}",
       "--model_name=svg", f"--video={video}", "--n_context=2", "--num_samples=3",
       "--num_future=4", "--seed=1", f"--out={out}"], cwd=ROOT, env=ENV, capture_output=True,
      text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "3 sample(s) of 4 frames after 2 context frame(s)" in result.stdout
  with Image.open(out) as gif:
    assert gif.size == (3 * 64 + 4 * 2, 64 + 2 * 2)  # three tiles in a row, 2-pixel padding
    assert gif.n_frames >= 2
  refused = subprocess.run(
      [sys.executable, "-m", "svg_tf.serving", f"--server={server.grpc_address}",
       f"--video={video}", "--num_samples=500", f"--out={tmp_path / 'no.gif'}"], cwd=ROOT,
      env=ENV, capture_output=True, text=True, timeout=300)
  assert refused.returncode != 0 and "num_samples must be in [1, 100]" in refused.stderr
  assert "Traceback" not in refused.stderr and not (tmp_path / "no.gif").exists()

