"""Distribution strategies: which devices and machines a run uses, and who writes its files.

One replica per local GPU (MirroredStrategy), or per logical CPU device with `cpu_replicas`, or
one process per machine of TF_CONFIG (MultiWorkerMirroredStrategy). Create the strategy before any
TensorFlow op runs (logical CPU devices can only be configured then).
"""

import json
import os
from typing import Dict, Optional

import tensorflow as tf

STRATEGIES = ("auto", "multi_worker")


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
  if cpu_replicas < 0:
    raise ValueError(f"--cpu_replicas={cpu_replicas}: must be 0 or more")
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


def local_replicas(strategy: tf.distribute.Strategy) -> int:
  try:
    return len(strategy.extended.worker_devices)
  except RuntimeError:  # the default strategy has no device list: one replica
    return 1
