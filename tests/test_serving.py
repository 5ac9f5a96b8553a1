"""The serving client against TF Serving's Predict API: gRPC, REST (row and columnar), the CLI.

No TF Serving binary can be installed here, so `local_server.LocalServer` stands in for it on
127.0.0.1: tensorflow-serving-api's PredictionService servicer and TF Serving's REST contract
over the exported SavedModel (see svg_tf/serving/local_server.py for how faithful it is). The
client is used as applications import it, `svg_tf.serving.Client`.
"""

import json
import os
import subprocess
import sys
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

