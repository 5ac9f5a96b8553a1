"""Distributed training of SVG: the strategy, one replica step, and the checkpointed outer loop.

Split as in the TF Model Garden's Orbit: `Trainer` knows what one step is (under `strategy.run`);
`train` decides when to log, summarise, checkpoint and stop. Everything that holds variables is
created under `strategy.scope()`.

Equivalence across replicas and machines: the loss is divided by the global batch, gradients are
summed over replicas, BatchNorm statistics are synchronised (TimeBatchNorm), and the latent noise is
drawn for the global batch from a per-step stateless seed. Noise column i belongs to position i of
the global batch as one input pipeline would order it; with W input pipelines (one per worker),
pipeline w holds positions w, w+W, w+2W, ... (the order of tf.data's `shard`, and of the SM-MNIST
stream), its local replicas taking consecutive per-replica batches. So N replicas on any number of
machines with global batch B compute the update of one replica with batch B, up to float summation
order (tests/test_training.py checks 2 local replicas, tests/reliability/ 2 worker processes).

What a run survives (tests/reliability/):
  * Preemption: SIGTERM asks the loop to stop after the current step. Every worker learns of it in
    that step's all-reduce, so all of them save the same step; `train` then returns with
    preempted=True (train.py exits with PREEMPTED_EXIT_CODE) and rerunning the command resumes.
  * SIGKILL at any moment: tf.train.CheckpointManager writes a checkpoint under a temporary name,
    renames it, and only then points the `checkpoint` state file at it (an atomic rename too), so
    the newest checkpoint named there is always complete. Leftovers of an interrupted save are
    removed at the next start.
  * Non-finite steps: a step whose input is not finite or outside [0, 1], or whose loss or gradients
    are not finite, on any replica, is not applied: weights, Adam's moments and Adam's iteration
    count stay, BatchNorm's moving statistics are put back. It still counts as a step: the global
    step is the number of batches taken, which keeps the data stream and the noise seeds aligned
    with it, while Adam's `iterations` counts applied updates only. `max_bad_steps` in a row stop
    training with NonFiniteError; checkpoints due during bad steps wait for the next good one, and
    none is ever written with non-finite weights.
  * An unwritable run directory is refused before the model is built; a failed save (a full disk)
    raises CheckpointSaveError and leaves the previous checkpoint as it was.

Exact resume: the checkpoint holds the weights, BatchNorm statistics, Adam's state and the global
step; step k draws its noise from the seed (seed, k - 1), and the generated SM-MNIST stream restarts
exactly at sequence step * batch_size. With deterministic ops (train.py --deterministic) a stopped
and resumed run repeats the losses of an uninterrupted one bit for bit. The shuffled TFRecord
streams (SM-MNIST --data_dir, BAIR, KTH) are not restored element for element: they restart from a
seed derived from (seed, step) (pipelines/inputs.py), so a resumed run draws other windows than the
uninterrupted run would have.

Several machines (MultiWorkerMirroredStrategy): the chief writes config.json, checkpoints,
summaries, sample GIFs and losses.jsonl; the other workers save their (collective) checkpoints into
a temporary folder that is deleted after each save, and write nothing else. Every worker restores
from <model_dir>/checkpoints, so model_dir must be one shared folder (GCS, NFS); workers that
restore different steps stop with an error instead of training apart.
"""

import dataclasses
import json
import math
import os
import signal
import threading
import time
import uuid
from typing import Callable, Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from svg_tf import media, previews
from svg_tf.config import SVGConfig
from svg_tf.model import SVG, sample_noise

InputFn = Callable[[tf.distribute.InputContext, int], tf.data.Dataset]

STRATEGIES = ("auto", "multi_worker")
PREEMPTED_EXIT_CODE = 42  # tf.distribute's PreemptionCheckpointHandler's default restart code
LOSSES_FILE = "losses.jsonl"


class RunDirError(OSError):
  """The run directory cannot be written, or the workers do not share it (before any step)."""


class CheckpointSaveError(OSError):
  """A checkpoint could not be saved; the message names the previous one, which is intact."""


class NonFiniteError(FloatingPointError):
  """Training stopped on non-finite steps or weights; the last good checkpoint is kept."""


def configure_cpu_replicas(num_replicas: int):
  """Splits the CPU into `num_replicas` logical devices (must run before TensorFlow starts)."""
  cpus = tf.config.list_physical_devices("CPU")
  current = tf.config.get_logical_device_configuration(cpus[0]) or []
  if len(current) == num_replicas:
    return
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_replicas)])
  except RuntimeError as err:
    raise RuntimeError(f"--cpu_replicas={num_replicas}: TensorFlow was already initialised with "
                       f"{len(tf.config.list_logical_devices('CPU'))} CPU device(s); set it before "
                       "any TensorFlow op runs") from err


def parse_tf_config(text: Optional[str]) -> Dict[str, object]:
  """Checks a TF_CONFIG for MultiWorkerMirroredStrategy; returns its task type, index and size.

  Raises ValueError with a one-line message for what TF would report later and less clearly: no
  TF_CONFIG, bad JSON, jobs other than chief/worker, a task that is not in the cluster.
  """
  if not text:
    raise ValueError('--strategy=multi_worker needs the environment variable TF_CONFIG, e.g. '
                     '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')
  try:
    tf_config = json.loads(text)
  except json.JSONDecodeError as err:
    raise ValueError(f"TF_CONFIG is not JSON ({err}): {text!r}") from None
  cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
  task = tf_config.get("task") if isinstance(tf_config, dict) else None
  if not isinstance(cluster, dict) or not isinstance(task, dict):
    raise ValueError(f'TF_CONFIG needs "cluster" and "task" objects: {text!r}')
  other = sorted(set(cluster) - {"chief", "worker"})
  if other:
    raise ValueError(f"TF_CONFIG: --strategy=multi_worker trains with chief and worker tasks only, "
                     f"not {', '.join(other)}")
  task_type, index = task.get("type"), task.get("index")
  hosts = cluster.get(task_type)
  if not isinstance(hosts, list) or not isinstance(index, int) or not 0 <= index < len(hosts):
    raise ValueError(f"TF_CONFIG: task {task!r} is not one of the cluster's tasks "
                     f"{json.dumps(cluster)}")
  if len(cluster.get("chief", [])) > 1:
    raise ValueError("TF_CONFIG: a cluster has at most one chief")
  return {"task_type": task_type, "task_index": index,
          "num_workers": sum(len(cluster.get(job, [])) for job in ("chief", "worker"))}


def make_strategy(cpu_replicas: int = 0, kind: str = "auto") -> tf.distribute.Strategy:
  """The distribution strategy of a run (create it before any TensorFlow op runs).

  kind="auto": MirroredStrategy over every local GPU; on a CPU, over `cpu_replicas` logical CPUs if
  > 1, else the default strategy. kind="multi_worker": MultiWorkerMirroredStrategy over the
  machines of TF_CONFIG, each with its GPUs or its CPU (collectives over gRPC: NCCL between GPUs,
  ring all-reduce on CPUs).
  """
  if kind not in STRATEGIES:
    raise ValueError(f"--strategy={kind!r}: must be one of {', '.join(STRATEGIES)}")
  if kind == "multi_worker":
    if cpu_replicas > 1:
      raise ValueError(f"--cpu_replicas={cpu_replicas}: with --strategy=multi_worker each worker "
                       "trains on its GPUs or on one CPU device")
    parse_tf_config(os.environ.get("TF_CONFIG"))
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    if cpu_replicas > 1:
      raise ValueError(f"--cpu_replicas={cpu_replicas}: GPUs are present; they are used instead")
    return tf.distribute.MirroredStrategy()
  if cpu_replicas > 1:
    configure_cpu_replicas(cpu_replicas)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:cpu_replicas]
    return tf.distribute.MirroredStrategy(devices=devices,
                                          cross_device_ops=tf.distribute.ReductionToOneDevice())
  return tf.distribute.get_strategy()


def worker_index(strategy: tf.distribute.Strategy) -> int:
  """This worker's index among the strategy's workers (0 without a cluster); 0 is the chief."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().jobs:
    return 0
  spec = resolver.cluster_spec().as_dict()
  if resolver.task_type == "chief":
    return 0
  return resolver.task_id + (1 if "chief" in spec else 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this worker writes the run's files: the chief task, or else worker 0."""
  return worker_index(strategy) == 0


def _local_replicas(strategy: tf.distribute.Strategy) -> int:
  try:
    return len(strategy.extended.worker_devices)
  except RuntimeError:  # the default strategy has no device list: one replica
    return 1


class Trainer:
  """The SVG model, its Adam optimiser and one distributed training step."""

  LOGGED = ("loss", "mse", "kl")

  def __init__(self, config: SVGConfig, strategy: Optional[tf.distribute.Strategy] = None,
               jit_compile: bool = False):
    self.config = config
    self.strategy = strategy or tf.distribute.get_strategy()
    if config.batch_size % self.strategy.num_replicas_in_sync:
      raise ValueError(f"--batch_size={config.batch_size}: must be divisible by the "
                       f"{self.strategy.num_replicas_in_sync} replicas")
    self.local_replicas = _local_replicas(self.strategy)
    self.num_workers = self.strategy.num_replicas_in_sync // self.local_replicas
    # Global Keras state: the dtype policy of new layers, and the seed of weight initialisers.
    keras.mixed_precision.set_global_policy(config.precision)
    keras.utils.set_random_seed(config.seed)
    with self.strategy.scope():
      self.model = SVG(config)
      self.optimizer = keras.optimizers.Adam(learning_rate=config.lr, beta_1=config.beta1,
                                             beta_2=config.beta2, epsilon=config.adam_epsilon)
      # A Keras 3 optimizer first built inside a replicated step fails under MirroredStrategy
      # ("You must feed a value for placeholder tensor"): build it here, inside the scope.
      self.optimizer.build(self.model.trainable_variables)
      # Batches taken, skipped steps included: the stream position and the noise seed of a step.
      self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    # What the forward pass updates (BatchNorm moving statistics): put back on a skipped step.
    self._forward_state = list(self.model.non_trainable_variables)
    self._grads_fn = tf.function(self._replica_grads, jit_compile=True) if jit_compile else (
        self._replica_grads)

  @property
  def step(self) -> int:
    """The global step: batches taken so far, skipped ones included."""
    return int(self.global_step.numpy())

  def _global_positions(self, local_batch):
    """Positions in the global batch of this replica's examples (see the module doc)."""
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    pipeline, local = replica // self.local_replicas, replica % self.local_replicas
    return pipeline + self.num_workers * (local * local_batch + tf.range(local_batch))

  def _replica_grads(self, batch, seed, stop):
    """One replica's gradients and its vote on the step.

    batch: frames (local batch, T, H, W, C), or for an action-conditioned model the pair (frames,
    actions (local batch, T, action_dim)). Returns (gradients, [loss, mse, kl] summed over this
    replica's examples / global batch, followed by 1.0 flags for: bad input, non-finite loss or
    gradients, stop requested).
    """
    c = self.config
    frames, actions = batch if isinstance(batch, (tuple, list)) else (batch, None)
    local_batch = tf.shape(frames)[0]
    noise = None
    if c.latent_dim:
      noise = sample_noise(seed, c.seq_len - 1, c.batch_size, c.latent_dim)  # (T-1, B, z)
      noise = tf.gather(noise, self._global_positions(local_batch), axis=1)
    # Garbage in (NaN, or pixels outside [0, 1]: frames not divided by 255?) is never trained on.
    good_input = tf.reduce_all(tf.math.is_finite(frames)) & (tf.reduce_min(frames) >= 0.0) & (
        tf.reduce_max(frames) <= 1.0)
    if actions is not None:
      good_input &= tf.reduce_all(tf.math.is_finite(actions))
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      terms = self.model.compute_losses(frames, noise, actions=actions)
      loss = tf.nn.compute_average_loss(terms["loss"], global_batch_size=c.batch_size)
    grads = tape.gradient(loss, variables)
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
                           + [tf.reduce_all(tf.math.is_finite(terms["loss"]))])
    flags = [tf.logical_not(good_input), tf.logical_not(finite), stop]
    stats = tf.stack([tf.reduce_sum(terms[k]) / c.batch_size for k in self.LOGGED]
                     + [tf.cast(f, tf.float32) for f in flags])
    return grads, stats

  def _apply(self, grads):
    self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))

  @tf.function
  def train_step(self, iterator, stop_requested=False) -> Dict[str, tf.Tensor]:
    """Takes one global batch from a distributed iterator and applies one update if it is good.

    Args:
      iterator: over `distribute(input_fn)`.
      stop_requested: this worker's wish to stop after this step (a bool tensor, to avoid
        retracing); the result says whether any worker asked.
    Returns:
      loss, mse (summed over steps) and kl (summed over steps and z): global batch means;
      applied: whether the update was applied; bad_input: whether some replica's batch was not
      finite or outside [0, 1] (the step is then skipped); stop: whether any worker asked to stop.
    """
    batch = next(iterator)
    seed = tf.stack([tf.constant(self.config.seed, tf.int64), self.global_step.read_value()])
    before = [tf.identity(v.value) for v in self._forward_state]
    grads, stats = self.strategy.run(self._grads_fn, args=(batch, seed,
                                                           tf.convert_to_tensor(stop_requested)))
    # One all-reduce gives every replica of every worker the same losses and the same decision.
    totals = self.strategy.reduce(tf.distribute.ReduceOp.SUM, stats, axis=None)
    good = tf.reduce_all(totals[3:5] == 0.0)

    def apply():
      self.strategy.run(self._apply, args=(grads,))
      return tf.constant(True)

    def skip():
      for variable, value in zip(self._forward_state, before):
        variable.assign(value)
      return tf.constant(False)

    # The cond sits in cross-replica context: a replica-context cond may not hold the optimizer's
    # merge_call (as in Keras' LossScaleOptimizer).
    applied = tf.cond(good, apply, skip)
    with tf.control_dependencies([applied]):
      self.global_step.assign_add(1)
    result = {k: totals[i] for i, k in enumerate(self.LOGGED)}
    result.update(applied=applied, bad_input=totals[3] > 0, stop=totals[5] > 0)
    return result

  def distribute(self, input_fn: InputFn) -> tf.distribute.DistributedDataset:
    """Per-replica batches from `input_fn(input_context, start_index)`; the stream resumes at the
    sequence after the last one taken (start_index = global step * global batch)."""
    start = self.step * self.config.batch_size
    return self.strategy.distribute_datasets_from_function(lambda ctx: input_fn(ctx, start))

  def weights_finite(self) -> bool:
    """Whether every weight, BatchNorm statistic and optimizer variable is finite."""
    return bool(self._all_finite())

  @tf.function
  def _all_finite(self):  # one graph, not ~200 eager ops (~30 ms on a tiny model)
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v))
                          for v in self.model.variables + list(self.optimizer.variables)
                          if tf.as_dtype(v.dtype).is_floating])

  def steps_of_all_workers(self) -> np.ndarray:
    """The global step of every replica of every worker (one all-gather)."""
    @tf.function
    def gather():
      per_replica = self.strategy.run(lambda: tf.reshape(self.global_step.read_value(), [1]))
      return self.strategy.gather(per_replica, axis=0)
    return gather().numpy()


@dataclasses.dataclass
class LoopOptions:
  """How often the outer loop logs, summarises and saves (all in steps), and when it stops."""
  log_every: int = 50
  summary_every: int = 50
  image_every: int = 1000
  checkpoint_every: int = 1000
  max_checkpoints: int = 3
  max_bad_steps: int = 10  # consecutive skipped (non-finite) steps that stop training
  stop_signals: Sequence[int] = (signal.SIGTERM,)  # save and return after the current step


def check_writable(model_dir: str):
  """Creates `model_dir` and a probe file in it; raises RunDirError naming the path if it cannot."""
  probe = os.path.join(model_dir, f".write-probe-{uuid.uuid4().hex}")
  try:
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("svg_tf write probe\n")
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as err:
    detail = (getattr(err, "message", None) or str(err)).strip().splitlines()[0]
    raise RunDirError(f"--model_dir={model_dir} is not writable ({type(err).__name__}: {detail}); "
                      "choose another --model_dir") from None


def write_or_check_config(config: SVGConfig, model_dir: str, write: bool = True):
  """Saves config.json on the first run; on later runs refuses a different model or data setup.

  train_steps may change (to extend a run); anything else must match the saved value. With
  write=False (workers other than the chief) it only checks.
  """
  path = os.path.join(model_dir, "config.json")
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


def _first_line(err: BaseException) -> str:
  text = (getattr(err, "message", None) or str(err)).strip()
  return text.splitlines()[0] if text else type(err).__name__


class Checkpoints:
  """The checkpoints of a run: <model_dir>/checkpoints, numbered by global step.

  Every worker restores from there. Under MultiWorkerMirroredStrategy saving is collective, so every
  worker saves at the same steps, but only the chief into that folder; the others into
  <model_dir>/workertemp_<i>, deleted after each save (TF's multi-worker guide).
  """

  def __init__(self, trainer: Trainer, model_dir: str, max_to_keep: int = 3):
    self.trainer = trainer
    self.directory = os.path.join(model_dir, "checkpoints")
    index = worker_index(trainer.strategy)
    self.chief = index == 0
    self.write_dir = self.directory if self.chief else os.path.join(model_dir,
                                                                    f"workertemp_{index}")
    self.checkpoint = tf.train.Checkpoint(model=trainer.model, optimizer=trainer.optimizer,
                                          step=trainer.global_step)
    if self.chief and tf.io.gfile.isdir(self.directory):
      # A save killed midway leaves a <prefix>_temp/ folder, never read: remove them.
      for leftover in tf.io.gfile.glob(os.path.join(self.directory, "*_temp")):
        tf.io.gfile.rmtree(leftover)
      drop_missing_checkpoints(self.directory)  # before the manager reads the list
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.write_dir,
                                              max_to_keep=max_to_keep,
                                              step_counter=trainer.global_step)

  @property
  def latest(self) -> Optional[str]:
    return tf.train.latest_checkpoint(self.directory)

  def restore(self) -> int:
    """Restores the newest checkpoint if there is one; returns the global step."""
    path = self.latest
    if path:
      restore_checkpoint(self.trainer, path)
      logging.info("resumed from step %d (%s)", self.trainer.step, path)
    return self.trainer.step

  def save(self, step: int) -> str:
    """Saves `step`; refuses non-finite weights; a failed write leaves the older checkpoints."""
    if not self.trainer.weights_finite():
      raise NonFiniteError(f"step {step}: the weights are not finite; no checkpoint is written "
                           f"over the good ones (newest: {self.latest or 'none'})")
    try:
      return self.manager.save(checkpoint_number=step)
    except (tf.errors.OpError, OSError) as err:
      for leftover in tf.io.gfile.glob(os.path.join(self.write_dir, f"ckpt-{step}_temp")):
        tf.io.gfile.rmtree(leftover)
      raise CheckpointSaveError(
          f"could not save the checkpoint of step {step} in {self.write_dir} "
          f"({type(err).__name__}: {_first_line(err)}); the previous checkpoint "
          f"({self.latest or 'none'}) is intact: make room and rerun the same command to resume "
          "from it") from err
    finally:
      if not self.chief and tf.io.gfile.exists(self.write_dir):
        tf.io.gfile.rmtree(self.write_dir)


def drop_missing_checkpoints(directory: str) -> list:
  """Removes from <directory>/checkpoint the checkpoints whose index is gone; returns them.

  CheckpointManager lists a new checkpoint, deletes the oldest, then rewrites the list: a process
  killed between the last two steps leaves a listed checkpoint without files. Nothing restores it
  (the newest is complete), but tools that walk the list would fail on it, and a newest entry
  without files would make tf.train.latest_checkpoint return None, i.e. a restart from scratch.
  The list is rewritten atomically and names the newest complete checkpoint as the one to resume.
  """
  state = tf.train.get_checkpoint_state(directory)  # paths made absolute
  if state is None:
    return []
  paths = list(state.all_model_checkpoint_paths)
  if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
    paths.append(state.model_checkpoint_path)
  present = [tf.io.gfile.exists(path + ".index") for path in paths]
  missing = [p for p, ok in zip(paths, present) if not ok]
  if not missing:
    return []
  logging.warning("checkpoints listed in %s/checkpoint without their files (a save or clean-up "
                  "cut short) are dropped from the list: %s", directory, ", ".join(missing))
  for path in missing:  # what a cut-short deletion left (a data file without its index)
    for leftover in tf.io.gfile.glob(path + ".*"):
      tf.io.gfile.remove(leftover)
  kept = [p for p, ok in zip(paths, present) if ok]
  if not kept:
    tf.io.gfile.remove(os.path.join(directory, "checkpoint"))
    return missing
  stamps = list(state.all_model_checkpoint_timestamps)
  tf.compat.v1.train.update_checkpoint_state(
      directory, kept[-1], all_model_checkpoint_paths=kept,
      all_model_checkpoint_timestamps=([t for t, ok in zip(stamps, present) if ok]
                                       if len(stamps) == len(paths) else None),
      last_preserved_timestamp=state.last_preserved_timestamp or None)
  return missing


class IncompleteCheckpointError(ValueError):
  """A checkpoint without values for some of the model's variables (refused, never half-used)."""


def restore_objects(path: str, partial: bool = False, **objects):
  """Restores `objects` (model=, optimizer=, step=) from the checkpoint `path`.

  Every variable they hold must have a value there: a restore that would leave some at their
  random initial values raises IncompleteCheckpointError instead. (Checkpoints written by svg_tf
  before 2026-11-26 lack the layers Keras kept in Python lists, see frame_nets.hold_by_name.)
  partial: the checkpoint may hold more than `objects` (e.g. the optimizer, when only the model
  is wanted).
  """
  status = tf.train.Checkpoint(**objects).restore(path)
  try:
    status.assert_existing_objects_matched()
  except AssertionError as err:
    detail = str(err).strip().splitlines()[0][:300]
    raise IncompleteCheckpointError(
        f"{path} has no value for part of the model ({detail}). Checkpoints written by svg_tf "
        "before 2026-11-26 missed the encoder/decoder stages and LSTM cells and cannot be used; "
        "train again") from None
  if partial:
    status.expect_partial()


def restore_checkpoint(trainer: Trainer, path: str):
  """Restores the weights, Adam's state and the global step of `path` into the trainer."""
  restore_objects(path, model=trainer.model, optimizer=trainer.optimizer, step=trainer.global_step)


def checkpoint_manager(trainer: Trainer, model_dir: str, max_to_keep: int = 3):
  """The chief's CheckpointManager of a run (for tools that read or extend a run in-process)."""
  return Checkpoints(trainer, model_dir, max_to_keep).manager


def restore_latest(trainer: Trainer, manager: tf.train.CheckpointManager) -> int:
  """Restores the newest checkpoint of `manager` if there is one; returns the global step."""
  if manager.latest_checkpoint:
    restore_checkpoint(trainer, manager.latest_checkpoint)
    logging.info("resumed from step %d (%s)", trainer.step, manager.latest_checkpoint)
  return trainer.step


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


class _StopSignals:
  """Turns `signals` into a request to stop after the current step, for the duration of a `with`.

  The handler only records the signal (logging from a handler can deadlock). Handlers can only be
  installed from the main thread; elsewhere the signals keep their previous behaviour.
  """

  def __init__(self, signals: Sequence[int]):
    self.signals = tuple(signals)
    self.received = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.received is None:
      self.received = signum

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


def train(config: SVGConfig, model_dir: str, input_fn: InputFn,
          strategy: Optional[tf.distribute.Strategy] = None, options: LoopOptions = LoopOptions(),
          preview_frames: Optional[np.ndarray] = None, jit_compile: bool = False,
          preview_actions: Optional[np.ndarray] = None) -> Dict[str, float]:
  """Trains until `config.train_steps`, resuming from the newest checkpoint in `model_dir`.

  Args:
    input_fn: (input_context, start_index) -> dataset of per-replica batches
      (batch, T, H, W, C) float32 in [0, 1], T = n_past + n_future; for an action-conditioned
      config, pairs (frames, actions (batch, T, action_dim)).
    preview_frames: optional (K, T', H, W, C) held-out videos for image summaries and the sample
      GIF (posterior reconstructions and prior samples); preview_actions (K, T', action_dim) their
      actions, for an action-conditioned config.
  Returns:
    the last logged window's means over its applied steps (loss, mse, kl, frames_per_s), the final
    `step`, `skipped_steps` (non-finite steps of this call) and `preempted` (stopped by a signal
    in `options.stop_signals`, after saving).
  Raises:
    RunDirError: model_dir cannot be written (before the model is built), or the workers restored
      different steps from it (it is not one shared folder).
    CheckpointSaveError: a save failed; the previous checkpoint is intact.
    NonFiniteError: `options.max_bad_steps` skipped steps in a row.
    ValueError: another configuration in model_dir, or the data stream ended.
  """
  if options.max_bad_steps < 1:
    raise ValueError(f"--max_bad_steps={options.max_bad_steps}: must be at least 1")
  strategy = strategy or tf.distribute.get_strategy()
  chief = is_chief(strategy)
  check_writable(model_dir)
  write_or_check_config(config, model_dir, write=chief)
  trainer = Trainer(config, strategy, jit_compile=jit_compile)
  checkpoints = Checkpoints(trainer, model_dir, options.max_checkpoints)
  step = checkpoints.restore()
  if trainer.num_workers > 1:
    steps = trainer.steps_of_all_workers()
    if (steps != step).any():
      raise RunDirError(f"the workers restored different steps {sorted(set(steps.tolist()))} from "
                        f"{checkpoints.directory}: every worker must read the same --model_dir "
                        "(a shared file system such as GCS or NFS)")
  result: Dict[str, float] = {"step": step}
  if step >= config.train_steps:
    logging.info("step %d >= --train_steps=%d: nothing to train", step, config.train_steps)
    return result

  losses = LossLog(model_dir, step, enabled=chief)
  iterator = iter(trainer.distribute(input_fn))
  writer = (tf.summary.create_file_writer(os.path.join(model_dir, "train")) if chief
            else tf.summary.create_noop_writer())
  frames_per_step = config.batch_size * config.seq_len
  window = {k: 0.0 for k in Trainer.LOGGED}
  window_steps, window_skipped = 0, 0
  window_start, window_start_step = time.perf_counter(), step
  timed_since, timed_from_step = None, step
  bad_in_a_row, skipped, save_pending, preempted = 0, 0, False, False
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
      step += 1
      losses.add(step, values, applied)
      if applied:
        bad_in_a_row = 0
        for k in window:
          window[k] += values[k]
        window_steps += 1
      else:
        bad_in_a_row += 1
        skipped += 1
        window_skipped += 1
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
      if timed_since is None:  # the first step includes tracing: speed is timed from its end
        timed_since, timed_from_step = time.perf_counter(), step
      done = step == config.train_steps
      if step % options.log_every == 0 or step % options.summary_every == 0 or done:
        now = time.perf_counter()
        means = {k: v / window_steps if window_steps else math.nan for k, v in window.items()}
        timed_steps = step - max(window_start_step, timed_from_step)
        elapsed = now - max(window_start, timed_since)
        if timed_steps > 0:
          means["frames_per_s"] = timed_steps * frames_per_step / max(elapsed, 1e-9)
        if step % options.summary_every == 0 or done:
          with writer.as_default(step=step):
            for k, v in means.items():
              tf.summary.scalar(k, v)
            tf.summary.scalar("skipped_steps", window_skipped)
        if step % options.log_every == 0 or done:
          rate = (step - timed_from_step) / max(now - timed_since, 1e-9)
          speed = (f"{means['frames_per_s']:.1f} frames/s | ETA "
                   f"{_eta((config.train_steps - step) / rate)}" if timed_steps > 0 and rate > 0
                   else "timing after the first step")
          if window_skipped:
            speed += f" | skipped {window_skipped}"
          logging.info("train | step %d/%d | loss %.5f | mse %.5f | kl %.3f | %s", step,
                       config.train_steps, means["loss"], means["mse"], means["kl"], speed)
        result = dict(means, step=step)
        window = {k: 0.0 for k in Trainer.LOGGED}
        window_steps, window_skipped = 0, 0
        window_start, window_start_step = time.perf_counter(), step
      if step % options.checkpoint_every == 0 or done or preempted or save_pending:
        if bad_in_a_row and not (done or preempted):
          if not save_pending:
            logging.warning("checkpoint of step %d postponed to the next applied step", step)
          save_pending = True
        else:
          try:  # before the checkpoint: a resumed run drops lines beyond its step
            losses.flush()
          except (tf.errors.OpError, OSError) as err:
            raise CheckpointSaveError(
                f"could not write {losses.path} before the checkpoint of step {step} "
                f"({type(err).__name__}: {_first_line(err)}); the previous checkpoint "
                f"({checkpoints.latest or 'none'}) and losses.jsonl are intact: make room and "
                "rerun the same command to resume") from err
          path = checkpoints.save(step)
          save_pending = False
          logging.info("saved checkpoint %s", path)
      if chief and preview_frames is not None and (step % options.image_every == 0 or done):
        panels = previews.make_panels(trainer.model, preview_frames, config.n_past,
                                      seed=(config.seed, step), actions=preview_actions)
        with writer.as_default(step=step):
          tf.summary.image("samples", previews.timeline_image(panels, config.n_past)[None],
                           max_outputs=1)
        gif = os.path.join(model_dir, "samples", f"step_{step:07d}.gif")
        previews.save_panels_gif(gif, panels, config.n_past)
        logging.info("wrote %s", gif)
      if preempted:
        logging.warning("stop requested (%s): checkpoint of step %d saved; rerun the same "
                        "command to resume", "signal %d" % stop.received if stop.received
                        else "by another worker", step)
        break
  writer.flush()
  del iterator  # a live iterator over a numpy_function stream can hang interpreter exit
  result.update(step=step, skipped_steps=skipped, preempted=preempted)
  return result
