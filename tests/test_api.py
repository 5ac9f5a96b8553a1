"""The public API, `svg_tf.load`, and svg_tf's one noise scheme: one seed, one future everywhere.

For the same weights, context and seed, sample s of a video must be the same frames whether it
comes from `svg_tf.load(run_dir)`, `svg_tf.load(export)`, TF Serving's signature (here through the
local stand-in server and the gRPC client) or evaluate.py's sampler, whatever the batch, the
chunking, the number of samples drawn or the number of replicas.
"""

import json
import shutil

import keras
import numpy as np
import pytest

import svg_tf
from svg_tf import checkpoints, config as config_lib, evaluation, export, strategies
from svg_tf.serving.client import Client
from svg_tf.serving.local_server import LocalServer
from tests.test_export import TINY, moving_squares, sensitised_model, write_run

SEED = 11


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """A sensitised tiny SVG-LP (its latents visibly change the frames) as a run and an export."""
  keras.utils.set_random_seed(5)
  model = sensitised_model(config_lib.preset("smmnist", **TINY))
  run_dir = str(tmp_path_factory.mktemp("run"))
  write_run(run_dir, model)
  export_dir = str(tmp_path_factory.mktemp("export"))
  version_dir = export.export_run(run_dir, export_dir, "svg")
  return run_dir, export_dir, version_dir


def test_one_seed_gives_one_future_from_every_entry_point(saved):
  run_dir, export_dir, version_dir = saved
  context = moving_squares(3, 2, seed=21)  # 3 videos, n_past = 2
  # svg_tf.load(run_dir), uint8 input: 3 videos x 4 samples.
  from_run = svg_tf.load(run_dir).sample(np.round(context * 255).astype(np.uint8), 3,
                                         num_samples=4, seed=SEED)
  assert from_run.shape == (3, 4, 3, 64, 64, 1)
  # The export, through its model folder (newest version): video 1 alone, 2 samples.
  from_export = svg_tf.load(f"{export_dir}/svg").sample(context[1:2], 3, num_samples=2, seed=SEED)
  np.testing.assert_allclose(from_export[0], from_run[1, :2], atol=1e-5)
  # TF Serving's signature over gRPC: the videos in reverse order, 3 samples.
  with LocalServer(f"{export_dir}/svg", "svg") as server:
    with Client(server.grpc_address, "svg") as client:
      served = client.sample(context[::-1], 3, num_samples=3, seed=SEED)
  np.testing.assert_allclose(served[::-1], from_run[:, :3], atol=1e-5)
  # evaluate.py's sampler: chunks of 5 (video, sample) rows on one device, and 2 replicas.
  run = checkpoints.restore_run(run_dir)
  chunked, _ = evaluation.Sampler(run.model, 2, 3, chunk_size=5).sample(context, 4, seed=SEED)
  np.testing.assert_allclose(chunked, from_run, atol=1e-5)
  two = strategies.make_strategy(cpu_replicas=2)
  mirrored = checkpoints.restore_run(run_dir, two).model
  replicated, _ = evaluation.Sampler(mirrored, 2, 3, chunk_size=6, strategy=two).sample(
      context, 4, seed=SEED)
  np.testing.assert_allclose(replicated, from_run, atol=1e-5)
  # The comparisons can fail: samples differ from each other and from another seed's by far more
  # than the 1e-5 allowed above.
  assert np.abs(from_run[:, 0] - from_run[:, 1]).max() > 1e-3
  other = svg_tf.load(run_dir).sample(context, 3, num_samples=4, seed=SEED + 1)
  assert np.abs(other - from_run).max() > 1e-3


def test_mean_future_and_prior_std_agree_between_run_and_export(saved):
  run_dir, _, version_dir = saved
  context = moving_squares(2, 3, seed=22)
  from_run, from_export = svg_tf.load(run_dir), svg_tf.load(version_dir)
  np.testing.assert_allclose(from_run.mean_future(context, 4), from_export.mean_future(context, 4),
                             atol=1e-5)
  std = from_run.prior_std(context, 4)
  np.testing.assert_allclose(std, from_export.prior_std(context, 4), atol=1e-6)
  per_dim = from_export.prior_std(context, 4, per_dim=True)
  assert per_dim.shape == (2, 4, 3)
  np.testing.assert_allclose(per_dim.mean(axis=-1), std, atol=1e-6)


def test_load_tells_what_the_model_is_and_refuses_what_is_not_a_model(saved, tmp_path):
  run_dir, export_dir, version_dir = saved
  for path in (run_dir, version_dir, f"{export_dir}/svg"):
    predictor = svg_tf.load(path)
    c = predictor.config
    assert (c.model, c.n_past, c.image_size, c.channels, c.z_dim) == ("lp", 2, 64, 1, 3)
    assert "svg-lp smmnist 64x64x1" in repr(predictor)
  assert svg_tf.load(f"{export_dir}/svg").source == version_dir
  with pytest.raises(ValueError, match="neither a train.py run directory"):
    svg_tf.load(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="no such folder"):
    svg_tf.load(str(tmp_path / "missing"))


@pytest.mark.parametrize("call, message", [
    (lambda p, c: p.sample(c[0], 2), r"\[batch, n_context, H, W, C\].*add a batch axis"),
    (lambda p, c: p.sample(c.astype(np.int64), 2), "uint8 .* or float in \\[0, 1\\]"),
    (lambda p, c: p.sample(c * 2, 2), r"context values must be in \[0, 1\]"),
    (lambda p, c: p.sample(c, 2, seed=-1), r"seed must be an integer in \[0, 2147483647\]"),
    (lambda p, c: p.sample(c, 2, seed=2**31), "seed must be an integer"),
    (lambda p, c: p.sample(c, 0), "num_future must be a positive integer"),
    (lambda p, c: p.sample(c, 2, num_samples=1.5), "num_samples must be a positive integer"),
    (lambda p, c: p.sample(c[:, :, :32], 2), "context frames must be 64x64 with 1 channel"),
    (lambda p, c: p.sample(c, 2, actions=np.zeros((1, 3, 4))), "takes no actions"),
])
def test_bad_requests_are_one_clear_value_error(saved, call, message):
  predictor = svg_tf.load(saved[2])
  with pytest.raises(ValueError, match=message):
    call(predictor, moving_squares(1, 2, seed=23))


def test_an_exports_predictor_cuts_work_as_its_frame_cap_counts_it():
  """Groups of videos count the context once per sample, as max_frames does, so that the
  Predictor of an export never sends a request the export refuses."""
  model = sensitised_model(config_lib.preset("smmnist", **TINY))
  functions = export.ServingFunctions(model, export.Limits(max_frames=12))
  signatures = {name: fn for name, (fn, _) in functions.endpoints().items()}  # run eagerly
  predictor = svg_tf.Predictor(model.config, signatures, "an export with max_frames=12", 12)
  context = moving_squares(3, 2, seed=25)
  frames = predictor.sample(context, 2, num_samples=2, seed=SEED)  # 2 x (2 + 2) = 8 a video
  uncut = export.ServingFunctions(model).sample(context, 2, 2, SEED)["frames"]
  np.testing.assert_allclose(frames, uncut, atol=1e-5)
  assert predictor.mean_future(context, 3).shape == (3, 3, 64, 64, 1)  # 2 + 3 = 5 a video


def test_an_export_from_before_the_context_cap_still_loads(saved, tmp_path):
  old = str(tmp_path / "1")
  shutil.copytree(saved[2], old)
  info_path = f"{old}/assets.extra/{export.INFO_FILE}"
  with open(info_path) as f:
    info = json.load(f)
  del info["limits"]["max_num_context"]
  with open(info_path, "w") as f:
    json.dump(info, f)
  frames = svg_tf.load(old).sample(moving_squares(1, 2, seed=26), 2, num_samples=2, seed=SEED)
  assert frames.shape == (1, 2, 2, 64, 64, 1)


def test_deterministic_model_returns_copies_of_its_one_future():
  model = sensitised_model(config_lib.preset("smmnist", **TINY, model="det"))
  predictor = svg_tf.Predictor.from_model(model)
  context = moving_squares(2, 2, seed=24)
  frames = predictor.sample(context, 3, num_samples=3, seed=5)
  np.testing.assert_allclose(frames, np.repeat(predictor.mean_future(context, 3)[:, None], 3,
                                               axis=1), atol=1e-6)
  np.testing.assert_array_equal(predictor.prior_std(context, 3), 0.0)
