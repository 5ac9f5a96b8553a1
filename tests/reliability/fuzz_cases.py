"""The cases of tests/reliability/test_fuzz.py, one family per process.

  python -m tests.reliability.fuzz_cases FAMILY --seed=S --cases=N --workdir=DIR

runs N seeded cases of FAMILY and prints one JSON line per case ({"case", "what", "outcome":
"ok"|"clean error"|"BAD", "detail"}), then {"done": N, "peak_rss_mb": ...}. A case is BAD when it
ends in an exception that is not a clean refusal (a TypeError, an IndexError, TensorFlow's
UnknownError wrapping a Python exception, a 500, ...): the bug the fuzzing is for. A crash or a
hang shows as a process that dies or never prints "done" (the test's timeout).

Families:
  tfrecords  mutated and truncated TFRecord files into every reader: SM-MNIST shards, BAIR's
             native files, converted video shards (KTH and people's videos share that format),
             with and without skip_bad_records
  videos     random and mutated bytes as every clip format svg_tf/video_files.py reads
  server     random and mutated REST bodies and headers, and random gRPC requests, into the
             stand-in TF Serving (svg_tf/serving/local_server.py) over a tiny exported model
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import sys
import traceback

import numpy as np

# ------------------------------------------------------------------------------------ mutations


def mutate(data: bytes, rng: np.random.Generator) -> (bytes, str):
  """`data` damaged one of the ways disks, copies and attackers damage files; and how."""
  kind = rng.choice(["flip", "truncate", "insert", "zero", "duplicate", "noise"])
  n = len(data)
  if n == 0 or kind == "noise":
    return rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes(), "noise"
  at = int(rng.integers(0, n))
  if kind == "flip":
    out = bytearray(data)
    for i in rng.integers(0, n, int(rng.integers(1, 9))):
      out[i] ^= int(rng.integers(1, 256))
    return bytes(out), "flip"
  if kind == "truncate":
    return data[:at], f"truncate at {at}/{n}"
  if kind == "insert":
    chunk = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    return data[:at] + chunk + data[at:], f"insert {len(chunk)} at {at}"
  if kind == "zero":
    end = min(n, at + int(rng.integers(1, 256)))
    return data[:at] + bytes(end - at) + data[end:], f"zero {at}..{end}"
  end = min(n, at + int(rng.integers(1, 512)))
  return data[:end] + data[at:end] + data[end:], f"duplicate {at}..{end}"


def _read(path):
  with open(path, "rb") as f:
    return f.read()


def _write(path, data):
  with open(path, "wb") as f:
    f.write(data)


def peak_rss_mb() -> float:
  """This process's peak resident memory: VmHWM starts afresh at exec, unlike ru_maxrss, which a
  child forked from a large process (pytest with TensorFlow) inherits."""
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


def _first_line(err: BaseException) -> str:
  text = str(getattr(err, "message", None) or err).strip()
  return (text.splitlines() or [type(err).__name__])[0][:200]


# ------------------------------------------------------------------------------------ tfrecords


def tfrecords_family(rng, cases, workdir):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from pipelines import bair, smmnist, tfrecord, videos  # pylint: disable=g-import-not-at-top
  from pipelines.fixtures import bair as bair_fixture  # pylint: disable=g-import-not-at-top

  clean = (ValueError, OSError, tf.errors.InvalidArgumentError, tf.errors.DataLossError,
           tf.errors.NotFoundError, tf.errors.FailedPreconditionError, tf.errors.OutOfRangeError)
  base = os.path.join(workdir, "base")
  mnist = os.path.join(workdir, "mnist.npz")
  images = ((np.random.RandomState(0).rand(32, 28, 28) > 0.7) * 255).astype(np.uint8)
  np.savez(mnist, x_train=images, y_train=np.arange(32) % 10, x_test=images[:8],
           y_test=np.arange(8) % 10)
  smmnist.write_tfrecords(os.path.join(base, "smmnist"), "train", num_sequences=6, seq_len=4,
                          seed=0, mnist_path=mnist, examples_per_shard=3)
  bair_fixture.write_bair_tfrecords(os.path.join(base, "bair"), "train", num_files=2,
                                    records_per_file=2)
  clips = os.path.join(workdir, "clips")
  os.makedirs(clips)
  for i in range(4):
    np.save(os.path.join(clips, f"clip{i}.npy"),
            np.random.RandomState(i).randint(0, 256, (12, 16, 16, 3)).astype(np.uint8))
  videos.convert(clips, os.path.join(base, "videos"), image_size=64, channels=1,
                 test_fraction=0.0, min_frames=4, workers=1)

  def read_smmnist(folder, skip):
    return sum(1 for _ in smmnist.tfrecord_dataset(folder, skip_bad_records=skip))

  def read_bair(folder, skip):
    files = bair.split_files(folder, "train")
    return sum(1 for _ in bair.record_dataset(files, skip_bad_records=skip))

  def read_videos(folder, skip):
    return sum(1 for _ in tfrecord.video_dataset(os.path.join(folder, "train"), False,
                                                 skip_bad_records=skip))

  readers = {"smmnist": read_smmnist, "bair": read_bair, "videos": read_videos}
  for case in range(cases):
    name = sorted(readers)[case % len(readers)]
    folder = os.path.join(workdir, f"case{case}")
    shutil.copytree(os.path.join(base, name), folder)
    files = sorted(os.path.join(root, f) for root, _, fs in os.walk(folder) for f in fs
                   if ".tfrecord" in f)
    target = files[int(rng.integers(0, len(files)))]
    data, how = mutate(_read(target), rng)
    _write(target, data)
    skip = bool(rng.integers(0, 2))
    what = f"{name} {os.path.basename(target)} {how} skip_bad_records={skip}"
    try:
      yield case, what, "ok", f"{readers[name](folder, skip)} records"
    except clean as err:
      yield case, what, "clean error", f"{type(err).__name__}: {_first_line(err)}"
    except Exception as err:  # pylint: disable=broad-except
      yield case, what, "BAD", f"{type(err).__name__}: {_first_line(err)}"
    shutil.rmtree(folder)


# --------------------------------------------------------------------------------------- videos


def videos_family(rng, cases, workdir):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from pipelines.fixtures import videos as video_fixture  # pylint: disable=g-import-not-at-top
  from svg_tf import video_files  # pylint: disable=g-import-not-at-top

  frames = video_fixture.moving_shapes(6, 24, 32)
  base = os.path.join(workdir, "base")
  os.makedirs(base)
  video_fixture.write_video(os.path.join(base, "clip.mp4"), frames)
  video_fixture.write_video(os.path.join(base, "clip.avi"), frames)
  Image.fromarray(frames[0]).save(os.path.join(base, "clip.gif"), save_all=True,
                                  append_images=[Image.fromarray(f) for f in frames[1:]])
  np.save(os.path.join(base, "clip.npy"), frames)
  np.savez_compressed(os.path.join(base, "clip.npz"), frames=frames)
  Image.fromarray(frames[0]).save(os.path.join(base, "frame.png"))
  Image.fromarray(frames[0]).save(os.path.join(base, "frame.jpg"))
  names = sorted(os.listdir(base))
  for case in range(cases):
    name = names[case % len(names)]
    data, how = mutate(_read(os.path.join(base, name)), rng)
    if name.startswith("frame"):  # a folder of frames, one of them damaged
      path = os.path.join(workdir, f"case{case}")
      os.makedirs(path)
      shutil.copy(os.path.join(base, name), os.path.join(path, "a" + name))
      _write(os.path.join(path, "b" + name), data)
    else:
      path = os.path.join(workdir, f"case{case}{os.path.splitext(name)[1]}")
      _write(path, data)
    what = f"{name} {how}"
    try:
      clip = video_files.read_clip(path, 32, [None, 1, 3][case % 3], max_frames=50)
      ok = (clip.frames.dtype == np.uint8 and clip.frames.ndim == 4 and
            clip.frames.shape[1:3] == (32, 32) and len(clip.frames) >= 1)
      yield case, what, "ok" if ok else "BAD", f"frames {clip.frames.shape} {clip.frames.dtype}"
    except video_files.VideoReadError as err:
      yield case, what, "clean error", _first_line(err)
    except Exception as err:  # pylint: disable=broad-except
      yield case, what, "BAD", f"{type(err).__name__}: {_first_line(err)}"
    if os.path.isdir(path):
      shutil.rmtree(path)
    else:
      os.remove(path)


# --------------------------------------------------------------------------------------- server


def _http(address, method, path, body: bytes, headers=None, timeout=30.0):
  """(status, parsed JSON or None) of one raw HTTP request."""
  host, port = address.rsplit(":", 1)
  conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
  try:
    conn.putrequest(method, path, skip_accept_encoding=True)
    for key, value in (headers or {"Content-Length": str(len(body))}).items():
      conn.putheader(key, value)
    conn.endheaders()
    conn.send(body)
    response = conn.getresponse()
    payload = response.read()
  finally:
    conn.close()
  try:
    return response.status, json.loads(payload)
  except ValueError:
    return response.status, None


def _random_json(rng, depth=0):
  kind = int(rng.integers(0, 8 if depth < 3 else 5))
  if kind == 0:
    return None
  if kind == 1:
    return bool(rng.integers(0, 2))
  if kind == 2:
    return int(rng.choice([0, 1, -1, 7, 2**31, 2**32 + 2, -2**63, 10**30]))
  if kind == 3:
    return float(rng.choice([0.5, -1.0, 1e300, 3.4e39, float("nan")]))
  if kind == 4:
    return str(rng.choice(["", "svg", "serving_default", "\u2603", "x" * 100]))
  if kind in (5, 6):
    return [_random_json(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))]
  keys = ["instances", "inputs", "signature_name", "context", "num_future", "num_samples", "seed"]
  return {str(rng.choice(keys)): _random_json(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))}


def server_family(rng, cases, workdir):
  import grpc  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top
  from svg_tf import config as config_lib, export  # pylint: disable=g-import-not-at-top
  from svg_tf.model import SVG  # pylint: disable=g-import-not-at-top
  from svg_tf.serving.local_server import LocalServer  # pylint: disable=g-import-not-at-top

  config = config_lib.preset("smmnist", base_filters=4, g_dim=8, rnn_size=16, z_dim=3, n_past=2,
                             n_future=2)
  export.export_saved_model(SVG(config), os.path.join(workdir, "exports"), "svg")
  valid_inputs = {"context": np.full((1, 2, 64, 64, 1), 0.5).tolist(), "num_future": 2,
                  "num_samples": 2, "seed": 3}
  valid = json.dumps({"inputs": valid_inputs}).encode()
  rest_ok = {200, 400, 404, 405, 408, 411, 413}
  grpc_ok = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
             grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED}
  dtypes = [np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_]
  # A short read timeout: requests whose Content-Length promises more than they send are
  # dropped after it (the default, 30 s, would make those cases slow).
  with LocalServer(os.path.join(workdir, "exports", "svg"), "svg", read_timeout_s=1.0) as server:
    channel = grpc.insecure_channel(server.grpc_address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for case in range(cases):
      kind = ["rest-mutated", "rest-random", "rest-headers", "grpc"][case % 4]
      path = "/v1/models/svg:predict"
      try:
        if kind == "rest-mutated":
          body, how = mutate(valid, rng)
          status, _ = _http(server.rest_address, "POST", path, body)
          what, outcome = f"{kind} {how}", status in rest_ok
          detail = f"HTTP {status}"
        elif kind == "rest-random":
          doc = _random_json(rng)
          if rng.integers(0, 2):  # a valid body with one input replaced
            key = str(rng.choice(list(valid_inputs)))
            value = (_random_json(rng) if key == "context" or rng.integers(0, 2) else
                     int(rng.choice([-1, 0, 1, 3, 101, 2**31 - 1, 2**31, -2**31 - 1])))
            doc = {"inputs": dict(valid_inputs, **{key: value})}
          body = json.dumps(doc).encode()
          status, _ = _http(server.rest_address, "POST", path, body)
          what, outcome, detail = f"{kind} {body[:120]!r}", status in rest_ok, f"HTTP {status}"
        elif kind == "rest-headers":
          length = str(rng.choice(["-5", "abc", "1e3", str(len(valid) + 10), "99999999999", ""]))
          status, _ = _http(server.rest_address, "POST", path, valid[:len(valid) // 2],
                            headers={"Content-Length": length}, timeout=60)
          what, outcome, detail = f"{kind} Content-Length {length!r}", status in rest_ok, (
              f"HTTP {status}")
        elif kind == "grpc" and rng.integers(0, 2):  # well-typed: reaches the model's checks
          request = predict_pb2.PredictRequest()
          request.model_spec.name = "svg"
          shape = (int(rng.integers(0, 3)), int(rng.integers(0, 4)), 64,
                   int(rng.choice([64, 64, 32])), int(rng.choice([1, 1, 3])))
          low = float(rng.choice([0.0, 0.0, -0.5]))
          inputs = {"context": rng.uniform(low, 1.0, shape).astype(np.float32),
                    "num_future": np.int32(rng.integers(-1, 6)),
                    "num_samples": np.int32(rng.integers(-1, 5)),
                    "seed": np.int32(rng.integers(-2**31, 2**31 - 1))}
          for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
          try:
            stub.Predict(request, timeout=60)
            code = grpc.StatusCode.OK
          except grpc.RpcError as err:
            code = err.code()
          what = f"grpc well-typed context {shape} " + " ".join(
              f"{k}={int(v)}" for k, v in inputs.items() if k != "context")
          outcome, detail = code in grpc_ok, code.name
        else:
          request = predict_pb2.PredictRequest()
          request.model_spec.name = str(rng.choice(["svg", "svg", "other", ""]))
          request.model_spec.signature_name = str(rng.choice(
              ["", "serving_default", "mean_future", "prior_std", "nope"]))
          for name in rng.choice(["context", "num_future", "num_samples", "seed", "extra"],
                                 int(rng.integers(0, 6))):
            shape = tuple(int(d) for d in rng.integers(0, 4, int(rng.integers(0, 6))))
            if name == "context" and rng.integers(0, 2):
              shape = (1, int(rng.integers(1, 4)), 64, 64, 1)
            dtype = dtypes[int(rng.integers(0, len(dtypes)))]
            value = (rng.standard_normal(shape) * 10 ** float(rng.integers(0, 12))).astype(dtype)
            request.inputs[str(name)].CopyFrom(tf.make_tensor_proto(value))
          try:
            stub.Predict(request, timeout=60)
            code = grpc.StatusCode.OK
          except grpc.RpcError as err:
            code = err.code()
          what = f"grpc {sorted(request.inputs)} {request.model_spec.signature_name!r}"
          outcome, detail = code in grpc_ok, code.name
      except (ConnectionError, socket.timeout, http.client.HTTPException) as err:
        what, outcome, detail = kind, False, f"{type(err).__name__}: {err}"
      answered = detail in ("HTTP 200", "OK")
      yield case, what, ("ok" if answered else "clean error") if outcome else "BAD", detail
    status, answer = _http(server.rest_address, "POST", path, valid)  # still serving
    yield cases, "a valid request after all", "ok" if status == 200 else "BAD", f"HTTP {status}"
    channel.close()


FAMILIES = {"tfrecords": tfrecords_family, "videos": videos_family, "server": server_family}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("family", choices=sorted(FAMILIES))
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--cases", type=int, default=100)
  parser.add_argument("--workdir", required=True)
  args = parser.parse_args()
  rng = np.random.default_rng(args.seed)
  done = 0
  for case, what, outcome, detail in FAMILIES[args.family](rng, args.cases, args.workdir):
    peak = peak_rss_mb()
    print(json.dumps({"case": case, "what": what, "outcome": outcome, "detail": detail,
                      "peak_rss_mb": round(peak)}), flush=True)
    done += 1
  print(json.dumps({"done": done, "peak_rss_mb": round(peak_rss_mb())}), flush=True)


if __name__ == "__main__":
  try:
    main()
  except Exception:  # pylint: disable=broad-except  (set-up failed: say so, exit 2)
    traceback.print_exc()
    sys.exit(2)
