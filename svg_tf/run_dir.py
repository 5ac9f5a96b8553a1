"""A run directory's own files: config.json and losses.jsonl, and the check that it is writable.

  <model_dir>/config.json     every hyperparameter (SVGConfig), written on the first run; a rerun
                              with another model or data setup is refused
  <model_dir>/losses.jsonl    one line per step of the saved run (LossLog)
  <model_dir>/checkpoints/    see svg_tf/checkpoints.py

Everything is written by the chief only, atomically (svg_tf.media.write_file_atomic), so it works
on GCS and survives a kill at any moment.
"""

import json
import math
import os
import uuid
from typing import Dict

import tensorflow as tf

from svg_tf import media
from svg_tf.config import SVGConfig

CONFIG_FILE = "config.json"
LOSSES_FILE = "losses.jsonl"


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


def write_or_check_config(config: SVGConfig, model_dir: str, write: bool = True):
  """Saves config.json on the first run; on later runs refuses a different model or data setup.

  train_steps may change (to extend a run); anything else must match the saved value. With
  write=False (workers other than the chief) it only checks.
  """
  path = os.path.join(model_dir, CONFIG_FILE)
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      saved = json.load(f)
    current = config.to_dict()
    diffs = [f"--{k}={current.get(k)!r} (saved: {saved[k]!r})" for k in sorted(saved)
             if k != "train_steps" and saved[k] != current.get(k)]
    if diffs:
      raise ValueError(f"--model_dir={model_dir} holds a run with another configuration: "
                       + ", ".join(diffs) + "; use a new --model_dir")
  if write:
    media.write_file_atomic(path, config.to_json())


def read_config(model_dir: str) -> SVGConfig:
  """The SVGConfig of a train.py run directory; FileNotFoundError naming it if there is none."""
  path = os.path.join(model_dir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{model_dir}: no {CONFIG_FILE} (not a train.py run directory)")
  with tf.io.gfile.GFile(path) as f:
    return SVGConfig.from_dict(json.load(f))


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
