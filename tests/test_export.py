"""The TF Serving export: one rollout for every caller, the version layout, the signatures' contract.

The exported model is a tiny SVG-LP whose frame predictor weights are scaled up so that the latent
visibly changes the frames (fresh N(0, 0.02) weights let z's effect vanish), with BatchNorm moving
statistics set from one batch. It is exported once per session (`export.export_saved_model`, what
`export.py` calls; the command itself is run in test_export_cli_writes_the_tf_serving_layout).
"""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from typing import NamedTuple

import numpy as np
import pytest
import tensorflow as tf

from svg_tf import config as config_lib
from svg_tf import export, media
from svg_tf.frame_nets import BN_BATCH, BN_MOVING, BN_TRAIN
from svg_tf.model import SVG, mean_prior_std
from svg_tf.serving import local_server
from tests.conftest import ROOT

TINY = dict(base_filters=4, g_dim=8, rnn_size=16, z_dim=3, batch_size=4, n_past=2, n_future=3,
            bn_momentum=0.0)
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def moving_squares(videos: int, frames: int, seed: int, channels: int = 1) -> np.ndarray:
  """(videos, frames, 64, 64, channels) float32: a bright square moving in a random direction."""
  rng = np.random.default_rng(seed)
  out = np.zeros((videos, frames, 64, 64, channels), np.float32)
  for v in range(videos):
    pos, vel = rng.integers(8, 40, 2), rng.integers(-4, 5, 2)
    for t in range(frames):
      y, x = np.clip(pos + t * vel, 0, 52)
      out[v, t, y:y + 12, x:x + 12] = 1.0
  return out


def sensitised_model(config: config_lib.SVGConfig) -> SVG:
  """A fresh model whose latents matter: predictor weights x25, BatchNorm statistics of one batch."""
  model = SVG(config)
  for layer in (model.frame_predictor.embed, model.frame_predictor.out):
    layer.kernel.assign(layer.kernel * 25.0)
  frames = moving_squares(4, 5, seed=0, channels=config.channels)
  noise = np.random.default_rng(1).standard_normal((4, 4, config.latent_dim)).astype(np.float32)
  actions = np.zeros((4, 5, config.action_dim), np.float32) if config.action_dim else None
  model.compute_losses(frames, noise if config.latent_dim else None, bn_mode=BN_TRAIN,
                       actions=actions)
  return model  # bn_momentum=0: the moving statistics are now that batch's


class Exported(NamedTuple):
  model: SVG  # the in-process model
  export_dir: str  # EXPORT_DIR; the model is EXPORT_DIR/svg/1
  version_dir: str


_SESSION = {}


def exported_model(tmp_path_factory) -> Exported:
  """The sensitised tiny SVG-LP and its export; once per session (tests/test_serving.py shares it)."""
  if "exported" not in _SESSION:
    model = sensitised_model(config_lib.preset("smmnist", **TINY))
    export_dir = str(tmp_path_factory.mktemp("export"))
    path = export.export_saved_model(model, export_dir, "svg")
    _SESSION["exported"] = Exported(model, export_dir, path)
  return _SESSION["exported"]


def write_run(model_dir: str, model: SVG, root=None):
  """A train.py-like run directory: config.json and checkpoints/ckpt-1 of `root` (default: the
  model) saved as `model`."""
  media.write_file_atomic(os.path.join(model_dir, "config.json"), model.config.to_json())
  tf.train.CheckpointManager(tf.train.Checkpoint(model=root or model),
                             os.path.join(model_dir, "checkpoints"), 1).save(checkpoint_number=1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  return exported_model(tmp_path_factory)


@pytest.fixture(scope="module")
def functions(exported):
  """The in-process computations of the export."""
  return export.ServingFunctions(exported.model)


@pytest.fixture(scope="module")
def loaded(exported):
  return tf.saved_model.load(exported.version_dir)


def sample_request(context, num_future=3, num_samples=2, seed=11):
  return dict(context=tf.constant(context, tf.float32), num_future=tf.constant(num_future),
              num_samples=tf.constant(num_samples), seed=tf.constant(seed))


# --------------------------------------------------------------------------------- the rollout
def reference_generate(model: SVG, context, n_future: int, noise, bn_mode: str, actions=None,
                       latents=None):
  """The sampling loop written out with static Python loops (the implementation before export).

  latents (n_past - 1 + n_future, batch, z): given z for every step instead of samples.
  """
  c = model.config
  bn = {"moving": BN_MOVING, "batch": BN_BATCH}[bn_mode]
  x = tf.transpose(tf.constant(context), [1, 0, 2, 3, 4])
  n_past, batch = x.shape[0], x.shape[1]
  a = None if actions is None else tf.transpose(tf.constant(actions), [1, 0, 2])
  h, skips = model.encoder(x, bn_mode=bn)
  pred = model.frame_predictor.zero_state(batch)
  prior = model.prior.zero_state(batch) if model.prior is not None else None
  if n_past > 1:
    parts = [h[:-1]]
    if latents is not None:
      parts.append(latents[:n_past - 1])
    elif c.model != "det":
      q, _ = model.posterior.sequence(h[1:])
      parts.append(q.mean() + noise[:n_past - 1] * q.stddev())
    if a is not None:
      parts.append(a[:n_past - 1])
    _, pred = model.frame_predictor.sequence(tf.concat(parts, -1), pred)
    if prior is not None:
      _, prior = model.prior.sequence(h[:-1], prior)
  source = {"last_context": n_past - 1, "reference": n_past - 2, "previous_frame": n_past - 1}
  skip = [s[source[c.skip_rule]:source[c.skip_rule] + 1] for s in skips]
  h_t, frames, stds = h[-1], [], []
  for t in range(n_past, n_past + n_future):
    parts = [h_t]
    if latents is not None:
      parts.append(latents[t - 1])
    elif c.model == "lp":
      p, prior = model.prior.step(h_t, prior)
      parts.append(p.mean() + noise[t - 1] * p.stddev())
      stds.append(tf.reduce_mean(p.stddev(), -1))
    elif c.model == "fp":
      parts.append(noise[t - 1])
    if a is not None:
      parts.append(a[t - 1])
    g, pred = model.frame_predictor.step(tf.concat(parts, -1), pred)
    x_hat = model.decoder(g[None], skip, skip_index=[0], bn_mode=bn)
    frames.append(x_hat[0])
    h_next, features = model.encoder(x_hat, bn_mode=bn)
    h_t = h_next[0]
    if c.skip_rule == "previous_frame":
      skip = features
  return tf.stack(frames, 1).numpy(), (tf.stack(stds, 1).numpy() if stds else None)


@pytest.mark.parametrize("kind,rule,action_dim,bn_mode,arch", [
    ("lp", "last_context", 0, "batch", "dcgan"), ("lp", "reference", 0, "batch", "dcgan"),
    ("lp", "previous_frame", 2, "batch", "dcgan"), ("fp", "last_context", 0, "moving", "dcgan"),
    ("det", "previous_frame", 0, "batch", "dcgan"), ("lp", "reference", 0, "moving", "dcgan"),
    ("lp", "last_context", 0, "moving", "vgg"), ("lp", "previous_frame", 0, "moving", "vgg")])
def test_one_dynamic_rollout_equals_the_written_out_loop(kind, rule, action_dim, bn_mode, arch):
  """generate (eager, static sizes) and the same call traced with dynamic context length and
  num_future give the frames of a plain Python loop over time. On moving statistics the rollout
  runs with BatchNorm folded into the convolutions and the skip features' part of the decoder
  computed once; the written-out loop does neither."""
  config = config_lib.preset("smmnist", **dict(TINY, n_past=3), model=kind, skip_rule=rule,
                             action_dim=action_dim, arch=arch)
  model = sensitised_model(config)
  rng = np.random.default_rng(3)
  context = moving_squares(2, 3, seed=4)
  n_future, z = 4, max(config.latent_dim, 1)
  noise = rng.standard_normal((2 + n_future, 2, z)).astype(np.float32)
  actions = rng.standard_normal((2, 7, action_dim)).astype(np.float32) if action_dim else None
  expected, expected_std = reference_generate(model, context, n_future, noise[..., :config.latent_dim]
                                              if config.latent_dim else None, bn_mode, actions)
  latent = noise if config.latent_dim else None
  eager, std = model.predict_future(context, n_future, latent, bn_mode=bn_mode, actions=actions)
  std = mean_prior_std(std)
  np.testing.assert_allclose(eager, expected, atol=2e-5)
  if expected_std is not None:
    np.testing.assert_allclose(std, expected_std, atol=1e-6)
  dynamic = tf.function(
      lambda c, n, z, a: model.predict_future(c, n, z if config.latent_dim else None,
                                              bn_mode=bn_mode, actions=a if action_dim else None
                                              ).frames,
      input_signature=[tf.TensorSpec([None, None, 64, 64, 1]), tf.TensorSpec([], tf.int32),
                       tf.TensorSpec([None, None, z]), tf.TensorSpec([None, None, max(action_dim, 1)])])
  no_actions = np.zeros((2, 7, 1), np.float32)
  traced = dynamic(context, n_future, noise, actions if action_dim else no_actions)
  np.testing.assert_allclose(traced, expected, atol=2e-5)
  if kind != "det" and bn_mode == "batch":  # the latent matters, so the comparison can fail
    other = model.predict_future(context, n_future, latent + 1.0, bn_mode=bn_mode,
                                 actions=actions).frames
    assert np.abs(other - expected).max() > 1e-3


def test_reconstruction_uses_the_posterior_means_of_the_true_frames():
  """reconstruct: z_t is the posterior mean given the true x_1..x_t at every step, while the
  generated frames are fed back after the context."""
  model = sensitised_model(config_lib.preset("smmnist", **TINY))
  model.posterior.mu_net.kernel.assign(model.posterior.mu_net.kernel * 25.0)  # z follows the frames
  frames = moving_squares(2, 5, seed=5)
  h_all, _ = model.encoder(tf.transpose(frames, [1, 0, 2, 3, 4]), bn_mode=BN_BATCH)
  means = model.posterior.sequence(h_all[1:])[0].mean()  # (4, batch, z)
  expected, _ = reference_generate(model, frames[:, :2], 3, None, "batch", latents=means)
  rebuilt = model.reconstruct(frames, 2, bn_mode="batch").numpy()
  np.testing.assert_allclose(rebuilt, expected, atol=2e-5)
  changed = frames.copy()
  changed[:, 3] = 1.0 - changed[:, 3]  # x_3: its posterior mean drives the frame predicted at t=3
  moved = model.reconstruct(changed, 2, bn_mode="batch").numpy()
  np.testing.assert_allclose(moved[:, 0], rebuilt[:, 0], atol=1e-6)  # x_2 does not see x_3
  assert np.abs(moved[:, 1:] - rebuilt[:, 1:]).max() > 2e-5  # 100x float noise; fresh weights


# ------------------------------------------------------------------------------ layout, versions
def _export_cli(*args):
  return subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), *args], cwd=ROOT,
                        env=ENV, capture_output=True, text=True, timeout=300)


def test_export_cli_writes_the_tf_serving_layout(tmp_path):
  model = sensitised_model(config_lib.preset("smmnist", **TINY))
  model_dir, export_dir = str(tmp_path / "run"), str(tmp_path / "exports")
  write_run(model_dir, model)
  flags = [f"--model_dir={model_dir}", f"--export_dir={export_dir}", "--model_name=svg",
           "--version=3", "--max_num_samples=50", "--max_num_context=7"]
  out = _export_cli(*flags)
  path = os.path.join(export_dir, "svg", "3")
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"exported {path}" in out.stdout
  assert os.listdir(os.path.join(export_dir, "svg")) == ["3"]  # no temporary folder left
  assert {"assets.extra", "saved_model.pb", "variables"} <= set(os.listdir(path))
  extra = os.path.join(path, "assets.extra")
  assert os.path.getsize(os.path.join(extra, "tf_serving_warmup_requests")) > 0
  info = json.load(open(os.path.join(extra, "svg_export.json")))
  assert info["checkpoint_step"] == 1 and info["limits"]["max_num_samples"] == 50
  assert info["limits"]["max_num_context"] == 7
  assert info["config"]["z_dim"] == 3 and info["version"] == 3
  again = _export_cli(*flags)  # the same version again: refused, the first export untouched
  assert again.returncode != 0 and "Traceback" not in again.stderr
  assert re.search(re.escape(path) + " already exists.*next free: 4", again.stderr)
  assert os.listdir(os.path.join(export_dir, "svg")) == ["3"]
  context = moving_squares(2, 2, seed=3)
  serve = tf.saved_model.load(path).signatures["serving_default"]
  expected = export.ServingFunctions(model).sample(context, 3, 2, 11)["frames"]
  np.testing.assert_allclose(serve(**sample_request(context))["frames"], expected,
                             atol=1e-5)  # the checkpoint's weights
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"at most 7 frames per video"):
    serve(**sample_request(moving_squares(1, 8, seed=3)))
  # --precision: the same checkpoint as a bfloat16 graph, float32 in and out.
  out = _export_cli(*flags[:3], "--version=4", "--precision=mixed_bfloat16")
  assert out.returncode == 0, out.stderr[-3000:]
  bf16_path = os.path.join(export_dir, "svg", "4")
  assert export.read_info(bf16_path)["config"]["precision"] == "mixed_bfloat16"
  frames = tf.saved_model.load(bf16_path).signatures["serving_default"](
      **sample_request(context))["frames"]
  assert frames.dtype == tf.float32
  gap = np.abs(frames.numpy() - expected.numpy()).max()
  assert 1e-4 < gap < 0.1, gap  # bfloat16 arithmetic: near float32's frames, not equal to them


def test_export_cli_refuses_a_checkpoint_without_every_variable(tmp_path):
  """A variable missing from the checkpoint would be served at its random initial value."""
  model = SVG(config_lib.preset("smmnist", **TINY))
  model_dir, export_dir = str(tmp_path / "run"), str(tmp_path / "exports")
  write_run(model_dir, model, root=tf.train.Checkpoint(decoder=model.decoder))  # decoder only
  out = _export_cli(f"--model_dir={model_dir}", f"--export_dir={export_dir}")
  assert out.returncode != 0
  assert "has no value for part of the model" in out.stderr and "train again" in out.stderr
  assert "Traceback" not in out.stderr
  assert not os.path.exists(os.path.join(export_dir, "svg", "1"))


class _FakeArchive:
  """Stands in for the ExportArchive where only the folder handling is under test; keeps the
  owner that the export wrote in its temporary folder."""

  def write_out(self, path, verbose=False):
    with open(os.path.join(path, ".owner")) as f:
      self.owner = json.load(f)
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
      f.write(b"fake")


def test_versions_increment_are_never_overwritten_and_a_failed_export_leaves_nothing(
    tmp_path, monkeypatch):
  model = SVG(config_lib.preset("smmnist", **TINY))
  monkeypatch.setattr(export, "build_archive", lambda model, limits: _FakeArchive())
  export_dir = str(tmp_path / "exports")
  root = os.path.join(export_dir, "svg")
  first = export.export_saved_model(model, export_dir, "svg", version=7)
  assert first == os.path.join(root, "7")
  assert os.path.getsize(os.path.join(first, "assets.extra", "tf_serving_warmup_requests")) > 0
  stamp = os.path.getmtime(os.path.join(first, "saved_model.pb"))
  with pytest.raises(FileExistsError, match=re.escape(first) + " already exists.*next free: 8"):
    export.export_saved_model(model, export_dir, "svg", version=7)
  assert os.path.getmtime(os.path.join(first, "saved_model.pb")) == stamp

  def broken(*unused):
    raise RuntimeError("disk full")

  with monkeypatch.context() as patch:
    patch.setattr(export, "warmup_records", broken)  # fails after the SavedModel is written
    with pytest.raises(RuntimeError, match="disk full"):
      export.export_saved_model(model, export_dir, "svg")
  assert sorted(os.listdir(root)) == ["7"]  # no half version, no temporary folder
  second = export.export_saved_model(model, export_dir, "svg")
  assert second == os.path.join(root, "8") and sorted(os.listdir(root)) == ["7", "8"]
  os.makedirs(os.path.join(root, "notes"))  # TF Serving ignores non-integer folders; so do we
  assert export.versions(root) == [7, 8]
  assert export.export_saved_model(model, export_dir, "svg") == os.path.join(root, "9")


def test_an_export_removes_the_temporary_folders_of_killed_exports_only(tmp_path, monkeypatch):
  archive = _FakeArchive()
  monkeypatch.setattr(export, "build_archive", lambda model, limits: archive)
  root = tmp_path / "exports" / "svg"
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()  # reaped: its PID runs no more
  owners = {".tmp-killed": {"host": socket.gethostname(), "pid": dead.pid},
            ".tmp-running": {"host": socket.gethostname(), "pid": os.getpid()},
            ".tmp-elsewhere": {"host": "another-host", "pid": dead.pid}}
  for name, owner in owners.items():
    (root / name).mkdir(parents=True)
    (root / name / ".owner").write_text(json.dumps(owner))
  for name in (".tmp-unowned-old", ".tmp-unowned-new"):
    (root / name).mkdir()
  two_hours_ago = time.time() - 7200
  os.utime(root / ".tmp-unowned-old", (two_hours_ago, two_hours_ago))
  model = SVG(config_lib.preset("smmnist", **TINY))
  path = export.export_saved_model(model, str(tmp_path / "exports"), "svg")
  assert sorted(os.listdir(root)) == [".tmp-elsewhere", ".tmp-running", ".tmp-unowned-new", "1"]
  assert archive.owner == {"host": socket.gethostname(), "pid": os.getpid()}  # written first
  assert ".owner" not in os.listdir(path)  # not part of the version


def test_model_names_that_tf_servings_rest_path_cannot_reach_are_refused(exported, tmp_path):
  for name in ("my:model", "a/b", ".hidden", "", "two words", "50%"):
    with pytest.raises(ValueError, match=re.escape(f"--model_name={name!r}: must match")):
      export.export_saved_model(exported.model, str(tmp_path), name)
  assert os.listdir(tmp_path) == []
  for name in ("svg", "svg-lp_2.v1", "BAIR64"):
    assert re.fullmatch(export.MODEL_NAME_PATTERN, name)


# -------------------------------------------------------------------------- checks without svg_tf
def test_saved_model_cli_lists_every_signature(exported):
  out = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show",
                        "--dir", exported.version_dir, "--all"], env=ENV, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  text = out.stdout
  for name in export.SIGNATURES:
    assert f"signature_def['{name}']" in text
  default = text.split("signature_def['serving_default']")[1]
  for key in ("context", "num_future", "num_samples", "seed"):
    assert f"inputs['{key}']" in default
  assert "outputs['frames']" in default and "shape: (-1, -1, -1, 64, 64, 1)" in default
  assert "outputs['prior_std_per_dim']" in text.split("signature_def['prior_std']")[1]


def test_saved_model_cli_runs_serving_default(exported, functions, tmp_path):
  context = moving_squares(1, 2, seed=6)
  exprs = (f"context={context.tolist()};num_future=3;num_samples=2;seed=5")
  out = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run",
                        "--dir", exported.version_dir, "--tag_set", "serve", "--signature_def",
                        "serving_default", "--input_exprs", exprs, "--outdir", str(tmp_path)],
                       env=ENV, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  frames = np.load(tmp_path / "frames.npy")
  assert frames.shape == (1, 2, 3, 64, 64, 1)
  np.testing.assert_allclose(frames, functions.sample(context, 3, 2, 5)["frames"], atol=1e-5)


FRESH = """
import sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["serving_default"](
    context=tf.constant(np.load(sys.argv[2])), num_future=tf.constant(4),
    num_samples=tf.constant(3), seed=tf.constant(11))
np.save(sys.argv[3], out["frames"].numpy())
print("imported:", sorted({n.split(".")[0] for n in sys.modules} &
                         {"svg_tf", "pipelines", "tensorflow_probability", "tensorflow_serving"}))
"""


def test_a_process_with_only_tensorflow_reproduces_the_frames(exported, functions, tmp_path):
  context = moving_squares(2, 2, seed=7)
  np.save(tmp_path / "context.npy", context)
  out = subprocess.run([sys.executable, "-c", FRESH, exported.version_dir,
                        str(tmp_path / "context.npy"), str(tmp_path / "frames.npy")], cwd=tmp_path,
                       env=ENV, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "imported: []" in out.stdout
  expected = functions.sample(context, 4, 3, 11)["frames"].numpy()
  np.testing.assert_allclose(np.load(tmp_path / "frames.npy"), expected, atol=1e-5)
  assert np.abs(expected[:, 0] - expected[:, 1]).max() > 1e-3  # samples differ: the seed matters


# ------------------------------------------------------------------------------------ semantics
def test_a_videos_samples_do_not_depend_on_the_rest_of_the_request(loaded):
  serve = loaded.signatures["serving_default"]
  videos = moving_squares(3, 2, seed=8)
  together = serve(**sample_request(videos, num_future=3, num_samples=4))["frames"].numpy()
  assert together.shape == (3, 4, 3, 64, 64, 1)
  alone = serve(**sample_request(videos[1:2], num_future=3, num_samples=4))["frames"].numpy()
  np.testing.assert_allclose(alone[0], together[1], atol=1e-5)
  reversed_ = serve(**sample_request(videos[::-1], num_future=3, num_samples=4))["frames"].numpy()
  np.testing.assert_allclose(reversed_[::-1], together, atol=1e-5)
  fewer = serve(**sample_request(videos, num_future=2, num_samples=2))["frames"].numpy()
  np.testing.assert_allclose(fewer, together[:, :2, :2], atol=1e-5)  # samples and steps: prefixes
  assert np.abs(together[:, 0] - together[:, 1]).max() > 1e-3
  other_seed = serve(**sample_request(videos, num_future=3, num_samples=4, seed=12))["frames"]
  assert np.abs(other_seed.numpy() - together).max() > 1e-3
  random_a = serve(**sample_request(videos[:1], num_samples=2, seed=-1))["frames"].numpy()
  random_b = serve(**sample_request(videos[:1], num_samples=2, seed=-1))["frames"].numpy()
  assert np.abs(random_a - random_b).max() > 1e-3  # a negative seed draws a fresh one


def test_any_context_length_and_the_row_format_scalars(loaded):
  serve = loaded.signatures["serving_default"]
  for n_context in (1, 2, 4):
    frames = serve(**sample_request(moving_squares(2, n_context, seed=9)))["frames"]
    assert frames.shape == (2, 2, 3, 64, 64, 1)
  videos = moving_squares(2, 2, seed=10)
  scalars = serve(**sample_request(videos))["frames"].numpy()
  per_video = serve(context=tf.constant(videos), num_future=tf.constant([3, 3]),
                    num_samples=tf.constant([2, 2]), seed=tf.constant([11, 11]))["frames"]
  np.testing.assert_allclose(per_video, scalars, atol=1e-6)


BAD_REQUESTS = [
    (dict(context=np.zeros((2, 64, 64, 1))), "context must have rank 5"),
    (dict(context=np.zeros((1, 2, 32, 32, 1))), r"must be 64x64 with 1 channel.*got shape\] \[1 2 32 32 1\]"),
    (dict(context=np.zeros((1, 2, 64, 64, 3))), "with 1 channel"),
    (dict(context=np.zeros((0, 2, 64, 64, 1))), "at least one video"),
    (dict(context=np.zeros((1, 0, 64, 64, 1))), "at least 1 frame"),
    (dict(context=np.full((1, 2, 64, 64, 1), 255.0)), r"must be in \[0, 1\].*max\] \[255\]"),
    (dict(num_samples=0), r"num_samples must be in \[1, 100\]; got\] \[0\]"),
    (dict(num_samples=101), r"num_samples must be in \[1, 100\]; got\] \[101\]"),
    (dict(num_future=0), r"num_future must be in \[1, 100\]; got\] \[0\]"),
    (dict(num_future=101), r"num_future must be in \[1, 100\]"),
    (dict(context=np.zeros((40, 2, 64, 64, 1)), num_samples=100, num_future=3),
     r"at most 10000 frames .*got\] \[20000\]"),
    # 7,500 generated frames, but each of the 2,500 samples runs over 2 context frames as well
    (dict(context=np.zeros((25, 2, 64, 64, 1)), num_samples=100, num_future=3),
     r"at most 10000 frames \(videos x num_samples x \(n_context \+ num_future\); max_frames\); "
     r"got\] \[12500\]"),
    (dict(context=np.zeros((1, 101, 64, 64, 1))),
     r"at most 100 frames per video \(max_num_context\); got shape\] \[1 101 64 64 1\]"),
    (dict(num_future=[3, 4]), "num_future must be one value for the whole request"),
    (dict(num_samples=[[1]]), "num_samples must be a scalar"),
]


def test_bad_requests_fail_with_invalid_argument_and_the_model_keeps_serving(loaded):
  serve = loaded.signatures["serving_default"]
  good = dict(context=moving_squares(1, 2, seed=11), num_future=3, num_samples=2, seed=1)
  for changes, message in BAD_REQUESTS:
    request = dict(good, **changes)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
      serve(context=tf.constant(request["context"], tf.float32),
            num_future=tf.constant(request["num_future"]),
            num_samples=tf.constant(request["num_samples"]), seed=tf.constant(request["seed"]))
  with pytest.raises(tf.errors.InvalidArgumentError, match="num_future must be in"):
    loaded.signatures["mean_future"](context=tf.constant(good["context"]),
                                     num_future=tf.constant(-2))
  with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor but is "
                     "a double"):  # the runtime checks dtypes against the signature's
    serve(context=tf.constant(good["context"], tf.float64), num_future=tf.constant(3),
          num_samples=tf.constant(1), seed=tf.constant(1))
  frames = serve(**sample_request(good["context"]))["frames"]  # still serving
  assert frames.shape == (1, 2, 3, 64, 64, 1)


def test_mean_future_and_prior_std_count_the_context_in_the_frame_cap(exported):
  functions = export.ServingFunctions(exported.model, export.Limits(max_frames=12))
  context = moving_squares(2, 4, seed=12)
  assert functions.mean_future(context, 2)["frames"].shape == (2, 2, 64, 64, 1)  # 2 x (4 + 2)
  for signature in (functions.mean_future, functions.prior_std):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"at most 12 frames \(videos x "
                       r"\(n_context \+ num_future\); max_frames\); got\W+14"):
      signature(context, 3)  # 6 future frames, 14 counted


def test_warmup_records_parse_and_replay_through_the_signatures(exported, loaded):
  requests = local_server.read_warmup_requests(exported.version_dir)
  assert [r.model_spec.signature_name for r in requests] == list(export.SIGNATURES)
  assert all(r.model_spec.name == "svg" for r in requests)
  shapes = {}
  for request in requests:
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
    shapes[request.model_spec.signature_name] = {k: tuple(v.shape) for k, v in outputs.items()}
  assert shapes == {"serving_default": {"frames": (1, 1, 2, 64, 64, 1)},
                    "mean_future": {"frames": (1, 2, 64, 64, 1)},
                    "prior_std": {"prior_std": (1, 2), "prior_std_per_dim": (1, 2, 3)}}


def test_mean_future_and_prior_std(exported, loaded, functions):
  context = moving_squares(2, 2, seed=12)
  model = functions.model
  mean = loaded.signatures["mean_future"](context=tf.constant(context),
                                          num_future=tf.constant(4))["frames"].numpy()
  zeros = np.zeros((1 + 4, 2, 3), np.float32)  # z = mean + 0 * std at every step
  expected, expected_std = model.predict_future(context, 4, zeros, bn_mode="moving")
  expected_std = mean_prior_std(expected_std)
  np.testing.assert_allclose(mean, expected, atol=1e-5)
  std = loaded.signatures["prior_std"](context=tf.constant(context), num_future=tf.constant(4))
  assert std["prior_std"].shape == (2, 4) and std["prior_std_per_dim"].shape == (2, 4, 3)
  np.testing.assert_allclose(std["prior_std"], expected_std, atol=1e-6)
  np.testing.assert_allclose(std["prior_std"], std["prior_std_per_dim"].numpy().mean(-1), atol=1e-6)
  sampled = loaded.signatures["serving_default"](**sample_request(context, 4, 2))["frames"]
  assert np.abs(sampled.numpy()[:, 0] - mean).max() > 1e-3  # the mean is not a sample


def test_fp_and_det_semantics():
  context = moving_squares(2, 2, seed=13)
  fp = export.ServingFunctions(sensitised_model(config_lib.preset("smmnist", **TINY, model="fp")))
  std = fp.prior_std(context, 3)
  np.testing.assert_allclose(std["prior_std"], 1.0)
  assert std["prior_std_per_dim"].shape == (2, 3, 3)
  np.testing.assert_allclose(fp.mean_future(context, 3)["frames"],
                             fp.model.predict_future(context, 3, np.zeros((4, 2, 3), np.float32),
                                                     bn_mode="moving").frames, atol=1e-6)
  det = export.ServingFunctions(sensitised_model(config_lib.preset("smmnist", **TINY, model="det")))
  std = det.prior_std(context, 3)
  np.testing.assert_allclose(std["prior_std"], 0.0)
  assert std["prior_std_per_dim"].shape == (2, 3, 0)
  frames = det.sample(context, 3, 4, 1)["frames"].numpy()
  assert frames.shape == (2, 4, 3, 64, 64, 1)
  np.testing.assert_allclose(frames, np.repeat(det.mean_future(context, 3)["frames"].numpy()[:, None],
                                               4, axis=1), atol=1e-6)


def test_reference_skip_rule_needs_two_context_frames():
  model = sensitised_model(config_lib.preset("smmnist", **TINY, skip_rule="reference"))
  functions = export.ServingFunctions(model)
  with pytest.raises(tf.errors.InvalidArgumentError, match="at least 2 frame.*skip_rule=reference"):
    functions.sample(moving_squares(1, 1, seed=14), 2, 1, 0)
  with pytest.raises(ValueError, match="at least 2 context frames"):
    model.predict_future(moving_squares(1, 1, seed=14), 2, np.zeros((2, 1, 3), np.float32))
  assert functions.sample(moving_squares(1, 2, seed=14), 2, 1, 0)["frames"].shape[2] == 2


def test_an_action_conditioned_model_exports_an_actions_input(tmp_path):
  config = config_lib.preset("smmnist", **TINY, action_dim=2)
  path = export.export_saved_model(sensitised_model(config), str(tmp_path), "svg")
  loaded = tf.saved_model.load(path)
  serve = loaded.signatures["serving_default"]
  assert set(serve.structured_input_signature[1]) == {"context", "num_future", "num_samples",
                                                      "seed", "actions"}
  context = moving_squares(2, 2, seed=15)
  actions = np.zeros((2, 4, 2), np.float32)
  base = serve(**sample_request(context), actions=tf.constant(actions))["frames"].numpy()
  assert base.shape == (2, 2, 3, 64, 64, 1)
  pushed = actions.copy()
  pushed[:, 2] = 5.0  # a_2 drives x_3, the second generated frame
  moved = serve(**sample_request(context), actions=tf.constant(pushed))["frames"].numpy()
  np.testing.assert_allclose(moved[:, :, 0], base[:, :, 0], atol=1e-6)
  assert np.abs(moved[:, :, 1:] - base[:, :, 1:]).max() > 1e-4
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"actions must be \[batch, >= n_context"):
    serve(**sample_request(context), actions=tf.constant(actions[:, :3]))
  mean = loaded.signatures["mean_future"](context=tf.constant(context), num_future=tf.constant(3),
                                          actions=tf.constant(actions))["frames"]
  assert mean.shape == (2, 3, 64, 64, 1)
