"""A run directory's own files: config.json and losses.jsonl, and the check that it is writable.

  <model_dir>/config.json     every hyperparameter (SVGConfig), written on the first run; a rerun
                              with another model or data setup is refused
  <model_dir>/losses.jsonl    one line per step of the saved run (LossLog)
  <model_dir>/run.lock        who is training in it now (RunLock): host, PID, start time
  <model_dir>/checkpoints/    see svg_tf/checkpoints.py

Everything is written by the chief only, atomically (svg_tf.media.write_file_atomic), so it works
on GCS and survives a kill at any moment.
"""

import datetime
import json
import math
import os
import socket
import uuid
from typing import Any, Dict, Optional

from absl import logging

import tensorflow as tf

from svg_tf import media
from svg_tf.config import SVGConfig

CONFIG_FILE = "config.json"
LOSSES_FILE = "losses.jsonl"
LOCK_FILE = "run.lock"


class RunDirError(OSError):
  """The run directory cannot be written, or the workers do not share it (before any step)."""


def first_line(err: BaseException) -> str:
  """The first line of an exception's message (TensorFlow's errors run over many lines)."""
  text = (getattr(err, "message", None) or str(err)).strip()
  return text.splitlines()[0] if text else type(err).__name__


def check_writable(model_dir: str):
  """Creates `model_dir` and a probe file in it; raises RunDirError naming the path if it cannot."""
  probe = os.path.join(model_dir, f".write-probe-{uuid.uuid4().hex}")
  try:
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("svg_tf write probe\n")
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as err:
    raise RunDirError(f"--model_dir={model_dir} is not writable ({type(err).__name__}: "
                      f"{first_line(err)}); choose another --model_dir") from None


MAY_CHANGE = ("train_steps", "grad_accum_steps")  # between runs in one directory


def write_or_check_config(config: SVGConfig, model_dir: str, write: bool = True):
  """Saves config.json on the first run; on later runs refuses a different model or data setup.

  train_steps (to extend a run) and grad_accum_steps (to fit memory) may change; anything else
  must match the saved value. With write=False (workers other than the chief) it only checks.
  """
  path = os.path.join(model_dir, CONFIG_FILE)
  if tf.io.gfile.exists(path):
    saved = _read_config_dict(model_dir)
    current = config.to_dict()
    diffs = [f"--{k}={current.get(k)!r} (saved: {saved[k]!r})" for k in sorted(saved)
             if k not in MAY_CHANGE and saved[k] != current.get(k)]
    if diffs:
      raise ValueError(f"--model_dir={model_dir} holds a run with another configuration: "
                       + ", ".join(diffs) + "; use a new --model_dir")
  if write:
    media.write_file_atomic(path, config.to_json())


def read_config(model_dir: str) -> SVGConfig:
  """The SVGConfig of a train.py run directory; FileNotFoundError naming it if there is none,
  RunDirError naming the file if it is corrupt."""
  path = os.path.join(model_dir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{model_dir}: no {CONFIG_FILE} (not a train.py run directory)")
  values = _read_config_dict(model_dir)
  try:
    return SVGConfig.from_dict(values)
  except (TypeError, ValueError) as err:
    raise _corrupt(path, f"it does not describe a valid configuration ({err})") from None


def _corrupt(path: str, why: str) -> "RunDirError":
  return RunDirError(f"{path} is corrupt: {why}. It says which model the run's checkpoints "
                     "hold: restore it from a copy, or, if the run has no checkpoints worth "
                     "keeping, delete the run directory (or use a new --model_dir)")


def _read_config_dict(model_dir: str) -> Dict[str, Any]:
  """config.json as a dict with SVGConfig's keys; RunDirError naming it when it is not one."""
  path = os.path.join(model_dir, CONFIG_FILE)
  try:
    with tf.io.gfile.GFile(path) as f:
      values = json.loads(f.read())
  except (ValueError, UnicodeDecodeError) as err:
    raise _corrupt(path, f"not JSON ({err})") from None
  if not isinstance(values, dict):
    raise _corrupt(path, f"a JSON {type(values).__name__}, not an object")
  required = {"dataset", "model", "arch", "image_size", "channels", "batch_size", "seed"}
  missing = sorted(required - set(values))
  if missing:
    raise _corrupt(path, "it holds no configuration" if not values else
                   f"it lacks {', '.join(missing)}")
  return values


def process_runs(pid: int) -> bool:
  """Whether a process with this PID runs on this host (a lock or folder's owner is alive)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's process: it exists
    return True
  return True


class RunLock:
  """run.lock: one train.py at a time in a run directory (two would both write its files).

  The holder's host, PID and start time are in the file. A second run is refused with a RunDirError
  naming the holder; a lock whose PID no longer runs on this host (a killed run) is taken over
  with a warning. A local lock is created atomically (O_EXCL); on remote file systems (gs://...)
  the lock is written, then read back, which narrows the race but cannot close it.
  """

  def __init__(self, model_dir: str):
    self.path = os.path.join(model_dir, LOCK_FILE)
    self.holder = {"host": socket.gethostname(), "pid": os.getpid(),
                   "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    self.held = False

  def _read(self) -> Optional[Dict[str, Any]]:
    try:
      with tf.io.gfile.GFile(self.path) as f:
        return json.loads(f.read())
    except tf.errors.NotFoundError:
      return None
    except (ValueError, tf.errors.OpError):
      return {}  # unreadable: treated as a stale lock of unknown origin

  def acquire(self):
    old = self._read()
    if old is not None:
      same_host = old.get("host") == self.holder["host"]
      if same_host and isinstance(old.get("pid"), int) and process_runs(old["pid"]):
        raise RunDirError(
            f"{os.path.dirname(self.path)} is in use by another train.py (PID {old['pid']} on "
            f"{old['host']}, since {old.get('started')}): wait for it or stop it; if no such "
            f"process runs, delete {self.path}")
      if not same_host and old:
        raise RunDirError(
            f"{os.path.dirname(self.path)} is in use by a train.py on {old.get('host')} (PID "
            f"{old.get('pid')}, since {old.get('started')}); if it no longer runs there, delete "
            f"{self.path}")
      logging.warning("taking over %s, left by a train.py that no longer runs (%s)", self.path,
                      old or "unreadable")
      tf.io.gfile.remove(self.path)
    text = json.dumps(self.holder) + "\n"
    if "://" in self.path:
      media.write_file_atomic(self.path, text)
      if self._read() != self.holder:
        raise RunDirError(f"{self.path} was taken by another train.py at the same moment")
    else:
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        raise RunDirError(f"{self.path} was taken by another train.py at the same moment: "
                          f"{self._read()}") from None
      with os.fdopen(fd, "w") as f:
        f.write(text)
    self.held = True

  def release(self):
    if self.held and self._read() == self.holder:
      tf.io.gfile.remove(self.path)
    self.held = False


class LossLog:
  """losses.jsonl: one JSON line per step of the saved run, {"step", "loss", "mse", "kl",
  "applied"} (null for a non-finite value), written by the chief only.

  Lines reach the file (rewritten atomically, so it works on GCS) just before each checkpoint, and
  a resumed run first drops the lines after its checkpoint's step: whatever was killed when, the
  file holds each step of the restored run once, in order.
  """

  def __init__(self, model_dir: str, step: int, enabled: bool = True):
    self.path = os.path.join(model_dir, LOSSES_FILE)
    self.enabled = enabled
    self.text, self.pending = "", []
    if enabled and tf.io.gfile.exists(self.path):
      with tf.io.gfile.GFile(self.path) as f:
        old = f.read()
      kept = [line for line in old.splitlines(keepends=True)
              if line.endswith("\n") and json.loads(line)["step"] <= step]
      self.text = "".join(kept)
      if self.text != old:
        media.write_file_atomic(self.path, self.text)

  def add(self, step: int, values: Dict[str, float], applied: bool):
    if self.enabled:
      entry = {"step": step, **{k: v if math.isfinite(v) else None for k, v in values.items()},
               "applied": applied}
      self.pending.append(json.dumps(entry) + "\n")

  def flush(self):
    if self.enabled and self.pending:
      self.text += "".join(self.pending)
      self.pending = []
      media.write_file_atomic(self.path, self.text)


def read_losses(model_dir: str) -> list:
  """The entries of a run's losses.jsonl, in step order."""
  with tf.io.gfile.GFile(os.path.join(model_dir, LOSSES_FILE)) as f:
    return [json.loads(line) for line in f]
