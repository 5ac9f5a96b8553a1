"""The training loop: when to log, summarise, checkpoint, draw previews and stop.

`train` runs `Trainer.train_step` (svg_tf/trainer.py) until `config.train_steps`, resuming from
the newest checkpoint of the run directory. What a run survives (tests/reliability/):

  * Preemption: SIGTERM asks the loop to stop after the current step. Every worker learns of it in
    that step's all-reduce, so all of them save the same step; `train` then returns with
    preempted=True (train.py exits with PREEMPTED_EXIT_CODE) and rerunning the command resumes.
    Ctrl-C (SIGINT) does the same (train.py exits with INTERRUPTED_EXIT_CODE, 130); a second
    Ctrl-C stops at once (KeyboardInterrupt), losing only the steps since the last checkpoint.
  * Two runs in one directory: the chief holds <model_dir>/run.lock (run_dir.RunLock) while it
    trains; a second run is refused naming the holder, a lock left by a dead process is taken over.
  * A mistake never locks a directory: config.json is written only after the first step ran, so
    a command that fails before (a batch the replicas cannot share, data that does not fit) can
    be corrected and rerun.
  * A checkpoint that cannot be read (truncated, corrupted) is skipped for the newest intact one,
    with a warning naming it (checkpoints.restore_newest_intact).
  * SIGKILL at any moment: checkpoints and the run's files are written atomically
    (svg_tf/checkpoints.py, svg_tf/run_dir.py); the next start cleans up what a kill left.
  * Non-finite steps are skipped by the trainer; `max_bad_steps` in a row stop training with
    NonFiniteError; checkpoints due during bad steps wait for the next good one, and none is ever
    written with non-finite weights.
  * An unwritable run directory is refused before the model is built; a failed save (a full disk)
    raises CheckpointSaveError and leaves the previous checkpoint as it was.

Exact resume: the checkpoint holds the weights, BatchNorm statistics, Adam's state and the global
step; the noise of step k comes from the seed (seed, k - 1), and the generated SM-MNIST stream
restarts exactly at sequence step * batch_size. With deterministic ops (train.py --deterministic)
a stopped and resumed run repeats the losses of an uninterrupted one bit for bit. The shuffled
TFRecord streams (SM-MNIST --data_dir, BAIR, KTH) are not restored element for element: they
restart from a seed derived from (seed, step) (pipelines/inputs.py), so a resumed run draws other
windows than the uninterrupted run would have.

Several machines (MultiWorkerMirroredStrategy): the chief writes config.json, checkpoints,
summaries, sample GIFs and losses.jsonl; the other workers write nothing that stays. Every worker
restores from <model_dir>/checkpoints, so model_dir must be one shared folder (GCS, NFS); workers
that restore different steps stop with an error instead of training apart.
"""

import math
import os
import signal
import threading
import time
from typing import Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from svg_tf import command_line, previews, run_dir, strategies
from svg_tf.checkpoints import CheckpointSaveError, Checkpoints, NonFiniteError
from svg_tf.config import LoopOptions, SVGConfig
from svg_tf.trainer import InputFn, Trainer

PREEMPTED_EXIT_CODE = 42  # tf.distribute's PreemptionCheckpointHandler's default restart code
INTERRUPTED_EXIT_CODE = command_line.INTERRUPTED_EXIT_CODE  # Ctrl-C: 128 + SIGINT


class _StopSignals:
  """Turns `signals` into a request to stop after the current step, for the duration of a `with`.

  The handler only records the signal (logging from a handler can deadlock); a second SIGINT
  (Ctrl-C pressed again) raises KeyboardInterrupt at once instead. Handlers can only be installed
  from the main thread; elsewhere the signals keep their previous behaviour.
  """

  def __init__(self, signals: Sequence[int]):
    self.signals = tuple(signals)
    self.received = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.received is None:
      self.received = signum
    elif signum == signal.SIGINT:
      raise KeyboardInterrupt

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for s in self.signals:
        self._previous[s] = signal.signal(s, self._handle)
    elif self.signals:
      logging.warning("not in the main thread: signals %s keep their default behaviour",
                      self.signals)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)


def _eta(seconds: float) -> str:
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else (
      f"{seconds // 60}m{seconds % 60:02d}s")


class _Window:
  """The logged terms' means over the applied steps since the last report, and the speed.

  Speed is timed from the end of this process's first step (which includes tracing).
  """

  def __init__(self, step: int, frames_per_step: int):
    self.means = {k: keras.metrics.Mean(name=k) for k in Trainer.LOGGED}
    self.frames_per_step = frames_per_step
    self.applied = self.skipped = self.overflows = 0
    self.start_time, self.start_step = time.perf_counter(), step
    self.timed_since = None  # (time, step) at the end of the first step

  def add(self, step: int, values: Dict[str, float], applied: bool):
    if applied:
      for k, mean in self.means.items():
        mean.update_state(values[k])
      self.applied += 1
    else:
      self.skipped += 1
    if self.timed_since is None:
      self.timed_since = (time.perf_counter(), step)

  def report(self, step: int, train_steps: int) -> Dict[str, float]:
    """Means (nan without applied steps), frames_per_s once timed, and the ETA text; restarts."""
    now = time.perf_counter()
    out = {k: float(m.result()) if self.applied else math.nan for k, m in self.means.items()}
    since_time, since_step = self.timed_since
    timed_steps = step - max(self.start_step, since_step)
    if timed_steps > 0:
      out["frames_per_s"] = timed_steps * self.frames_per_step / max(
          now - max(self.start_time, since_time), 1e-9)
    rate = (step - since_step) / max(now - since_time, 1e-9)
    self.eta = _eta((train_steps - step) / rate) if timed_steps > 0 and rate > 0 else None
    self.last_skipped = self.skipped - self.overflows  # bad steps
    self.last_overflows = self.overflows
    for mean in self.means.values():
      mean.reset_state()
    self.applied = self.skipped = self.overflows = 0
    self.start_time, self.start_step = time.perf_counter(), step
    return out


def train(config: SVGConfig, model_dir: str, input_fn: InputFn,
          strategy: Optional[tf.distribute.Strategy] = None, options: LoopOptions = LoopOptions(),
          preview_frames: Optional[np.ndarray] = None, jit_compile: bool = False,
          preview_actions: Optional[np.ndarray] = None,
          kernels: Optional[str] = None) -> Dict[str, float]:
  """Trains until `config.train_steps`, resuming from the newest checkpoint in `model_dir`.

  Args:
    input_fn: (input_context, start_index) -> dataset of per-replica batches
      (batch, T, H, W, C) float32 in [0, 1], T = n_past + n_future; for an action-conditioned
      config, pairs (frames, actions (batch, T, action_dim)).
    kernels: frame_nets.CPU_KERNELS or STOCK_KERNELS; None: by the replicas' device (Trainer).
    preview_frames: optional (K, T', H, W, C) held-out videos for image summaries and the sample
      GIF (posterior reconstructions and prior samples); preview_actions (K, T', action_dim) their
      actions, for an action-conditioned config.
  Returns:
    the last logged window's means over its applied steps (loss, mse, kl, frames_per_s), the final
    `step`, `skipped_steps` (non-finite steps of this call), `loss_scale_overflows`
    (mixed_float16 steps skipped by the loss scale, not bad steps) and `preempted` (stopped by a signal
    in `options.stop_signals`, after saving).
  Raises:
    RunDirError: model_dir cannot be written (before the model is built), or the workers restored
      different steps from it (it is not one shared folder).
    CheckpointSaveError: a save failed; the previous checkpoint is intact.
    NonFiniteError: `options.max_bad_steps` skipped steps in a row.
    ValueError: another configuration in model_dir, or the data stream ended.
  """
  strategy = strategy or tf.distribute.get_strategy()
  chief = strategies.is_chief(strategy)
  run_dir.check_writable(model_dir)
  lock = run_dir.RunLock(model_dir) if chief else None
  if lock:
    lock.acquire()
  try:
    return _train(config, model_dir, input_fn, strategy, options, preview_frames, jit_compile,
                  preview_actions, chief, kernels)
  finally:
    if lock:
      lock.release()


def _train(config, model_dir, input_fn, strategy, options, preview_frames, jit_compile,
           preview_actions, chief, kernels) -> Dict[str, float]:
  # config.json is written only once a step has run: a mistake (a batch the replicas cannot share,
  # data that does not fit) never leaves a run directory that refuses the corrected command.
  run_dir.write_or_check_config(config, model_dir, write=False)
  trainer = Trainer(config, strategy, jit_compile=jit_compile, kernels=kernels)
  checkpoints = Checkpoints(model_dir, strategy, options.max_checkpoints, model=trainer.model,
                            optimizer=trainer.optimizer, step=trainer.global_step)
  resumed = checkpoints.restore()
  step = trainer.step
  if resumed:
    logging.info("resumed from step %d (%s)", step, resumed)
  if trainer.num_workers > 1:
    steps = trainer.steps_of_all_workers()
    if (steps != step).any():
      raise run_dir.RunDirError(
          f"the workers restored different steps {sorted(set(steps.tolist()))} from "
          f"{checkpoints.directory}: every worker must read the same --model_dir (a shared file "
          "system such as GCS or NFS)")
  result: Dict[str, float] = {"step": step}
  if step >= config.train_steps:
    logging.info("step %d >= --train_steps=%d: nothing to train", step, config.train_steps)
    return result

  losses = run_dir.LossLog(model_dir, step, enabled=chief)
  iterator = iter(trainer.distribute(input_fn))
  writer = (tf.summary.create_file_writer(os.path.join(model_dir, "train")) if chief
            else tf.summary.create_noop_writer())
  window = _Window(step, config.batch_size * config.seq_len)
  bad_in_a_row, skipped, overflows, save_pending, preempted = 0, 0, 0, False, False
  config_written = False
  logging.info("training %s on %s for steps %d..%d, global batch %d on %d replica(s) of %d "
               "worker(s); outputs in %s", config.model, config.dataset, step + 1,
               config.train_steps, config.batch_size, trainer.strategy.num_replicas_in_sync,
               trainer.num_workers, model_dir)
  with _StopSignals(options.stop_signals) as stop:
    while step < config.train_steps:
      try:
        out = trainer.train_step(iterator, tf.constant(stop.received is not None))
      except tf.errors.OutOfRangeError:
        raise ValueError(f"the training data ran out at step {step + 1}: the input stream is empty "
                         "(every record skipped as bad?) or not repeated") from None
      values = {k: float(out[k]) for k in Trainer.LOGGED}
      applied, preempted = bool(out["applied"]), bool(out["stop"])
      overflow = bool(out["overflow"])  # mixed_float16: the loss scale was too high
      if chief and not config_written:
        run_dir.write_or_check_config(config, model_dir, write=True)
        config_written = True
      step += 1
      losses.add(step, values, applied)
      window.add(step, values, applied)
      if applied:
        bad_in_a_row = 0
      elif overflow:  # expected now and then: not a bad step
        window.overflows += 1
        overflows += 1
        logging.log_first_n(logging.INFO, "train | step %d | float16 gradients overflowed: "
                            "update skipped, loss scale halved to %g (reported as 'loss scale "
                            "overflows' in the progress lines)", 3, step, trainer.loss_scale)
      else:
        bad_in_a_row += 1
        skipped += 1
        why = ("input frames not finite or outside [0, 1]" if bool(out["bad_input"])
               else "non-finite loss or gradients")
        logging.warning("train | step %d/%d | %s (loss %s): update skipped, %d in a row "
                        "(--max_bad_steps=%d)", step, config.train_steps, why, values["loss"],
                        bad_in_a_row, options.max_bad_steps)
        if bad_in_a_row >= options.max_bad_steps:
          raise NonFiniteError(
              f"training stopped at step {step}: {bad_in_a_row} steps in a row skipped, the last "
              f"for {why}; the last good checkpoint is kept ({checkpoints.latest or 'none'}). "
              "Rerunning resumes from it with the same data and noise: lower --lr, or check the "
              "data, first")
      done = step == config.train_steps
      log = step % options.log_every == 0 or done
      summarise = step % options.summary_every == 0 or done
      if log or summarise:
        means = window.report(step, config.train_steps)
        if summarise:
          with writer.as_default(step=step):
            for k, v in means.items():
              tf.summary.scalar(k, v)
            tf.summary.scalar("skipped_steps", window.last_skipped)
            if trainer.loss_scaled:
              tf.summary.scalar("loss_scale", trainer.loss_scale)
        if log:
          speed = (f"{means['frames_per_s']:.1f} frames/s | ETA {window.eta}" if window.eta
                   else "timing after the first step")
          if window.last_skipped:
            speed += f" | skipped {window.last_skipped}"
          if window.last_overflows:
            speed += f" | loss scale overflows {window.last_overflows}"
          if trainer.loss_scaled:
            speed += f" | loss scale {trainer.loss_scale:g}"
          logging.info("train | step %d/%d | loss %.5f | mse %.5f | kl %.3f | %s", step,
                       config.train_steps, means["loss"], means["mse"], means["kl"], speed)
        result = dict(means, step=step)
      if step % options.checkpoint_every == 0 or done or preempted or save_pending:
        if bad_in_a_row and not (done or preempted):
          if not save_pending:
            logging.warning("checkpoint of step %d postponed to the next applied step", step)
          save_pending = True
        else:
          _save(checkpoints, losses, step)
          save_pending = False
      if chief and preview_frames is not None and (step % options.image_every == 0 or done):
        _write_preview(trainer.model, model_dir, writer, step, preview_frames, preview_actions)
      if preempted:
        logging.warning("stop requested (%s): checkpoint of step %d saved; rerun the same "
                        "command to resume", "signal %d" % stop.received if stop.received
                        else "by another worker", step)
        break
  writer.flush()
  del iterator  # a live iterator over a numpy_function stream can hang interpreter exit
  result.update(step=step, skipped_steps=skipped, loss_scale_overflows=overflows,
                preempted=preempted,
                stop_signal=stop.received)
  return result


def _save(checkpoints: Checkpoints, losses: run_dir.LossLog, step: int):
  """losses.jsonl, then the checkpoint of `step` (a resumed run drops lines beyond its step)."""
  try:
    losses.flush()
  except (tf.errors.OpError, OSError) as err:
    raise CheckpointSaveError(
        f"could not write {losses.path} before the checkpoint of step {step} "
        f"({type(err).__name__}: {run_dir.first_line(err)}); the previous checkpoint "
        f"({checkpoints.latest or 'none'}) and losses.jsonl are intact: make room and "
        "rerun the same command to resume") from err
  logging.info("saved checkpoint %s", checkpoints.save(step))


def _write_preview(model, model_dir: str, writer, step: int, frames: np.ndarray,
                   actions: Optional[np.ndarray]):
  """The sample panels of held-out videos: a TensorBoard image and samples/step_NNNNNNN.gif."""
  n_past = model.config.n_past
  panels = previews.make_panels(model, frames, n_past, seed=step, actions=actions)
  with writer.as_default(step=step):
    tf.summary.image("samples", previews.timeline_image(panels, n_past)[None], max_outputs=1)
  gif = os.path.join(model_dir, "samples", f"step_{step:07d}.gif")
  previews.save_panels_gif(gif, panels, n_past)
  logging.info("wrote %s", gif)
