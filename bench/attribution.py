"""Where a step's time goes, and which part of the gap to a speed target is this CPU's; prints JSON.

Profiles a workload (a training step, or one sampling call) with TensorFlow's profiler and sums
its op time by kind. Then it times every convolution and matmul the step ran alone, at the
step's own shapes and dtypes, on this machine: that is the best this CPU and its kernel library
(oneDNN) do for that op, the op's measured peak. The sum of those times is the step's floor,
what it would take if every other op, and all the scheduling between them, were free.

Against a speed target (a ratio to a yardstick record), the time above the target splits into
  - this CPU's part: how far the floor alone is above the target time (the kernels are already
    at their measured peak; only less work would close it), and
  - svg_tf's part: the step's time above max(floor, target) (the other ops, the kernels running
    slower in the step than alone, and the scheduling).

  python bench/attribution.py --work=train --dataset=smmnist --precision=mixed_bfloat16 \\
      --out=attribution_train_smmnist_b16_mixed_bfloat16
"""

import collections
import glob
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402
import record  # noqa: E402  (bench/record.py)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from svg_tf import config as config_lib  # noqa: E402
from svg_tf.evaluation import Sampler  # noqa: E402
from svg_tf.model import SVG  # noqa: E402
from svg_tf.trainer import Trainer  # noqa: E402

# The yardstick's generation horizons (torch_svg_ref.py: gen_n_past, gen_n_future), as bench/sample.py.
HORIZONS = {"smmnist": (5, 25), "bair": (2, 28), "kth": (10, 30)}
# The targets: ratios to the yardstick's default call pattern.
TARGETS = {("train", "float32"): 2.0, ("train", "mixed_bfloat16"): 3.5,
           ("sample", "float32"): 1.8, ("sample", "mixed_bfloat16"): 3.0}

flags.DEFINE_enum("work", "train", ["train", "sample"], "A training step or a sampling call.")
flags.DEFINE_enum("dataset", "smmnist", sorted(config_lib.PRESETS), "Preset.")
flags.DEFINE_integer("batch_size", None, "Batch (default: 16 for SM-MNIST, 8 otherwise).")
flags.DEFINE_enum("precision", "float32", list(config_lib.PRECISIONS), "Keras dtype policy.")
flags.DEFINE_integer("steps", 5, "Timed steps, then as many profiled ones.")
flags.DEFINE_integer("warmup", 2, "Untimed steps first (the first traces the graph).")
flags.DEFINE_string("yardstick", None, "Yardstick record under bench/results/ (default: the one "
                    "of this work, dataset and batch, as bench/speed.sh names it).")
flags.DEFINE_float("target", None, "Target ratio to the yardstick (default: the issue's).")
flags.DEFINE_string("out", None, "Also write the result to bench/results/OUT.json.")
FLAGS = flags.FLAGS

# Control flow's functions run inlined, their ops named "while_1/body/_148/<name in the body>".
INLINED = re.compile(r"^.*/(body|cond|then|else)/_\d+/")
KERNEL_TYPES = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MatMul")
KINDS = [  # (kind, op types after TensorFlow's "_Mkl"/"_MklNative"/"_" prefixes are removed)
    ("convolution", {"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "FusedConv2D",
                     "DepthwiseConv2dNative"}),
    ("im2col", {"ExtractImagePatches"}),  # svg_tf's bfloat16 kernel gradients on small maps
    ("matmul", {"MatMul", "FusedMatMul", "BatchMatMulV2", "BatchMatMulV3"}),
    ("batch_norm", {"FusedBatchNormV3", "FusedBatchNormGradV3"}),
    ("data_movement", {"Pack", "Unpack", "ConcatV2", "SplitV", "Split", "StridedSlice",
                       "StridedSliceGrad", "Slice", "Tile", "Transpose", "Reshape", "Pad",
                       "GatherV2", "ExpandDims", "Squeeze", "Identity", "Fill", "ZerosLike",
                       "BroadcastTo", "TensorListGetItem", "TensorListSetItem", "TensorListStack",
                       "TensorListFromTensor", "TensorListReserve"}),
    ("reduction", {"Sum", "Mean", "Max", "Min", "All", "Any", "Prod", "BiasAddGrad"}),
    ("cast", {"Cast"}),
    ("variables_and_optimizer", {"ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp",
                                 "AssignSubVariableOp", "ResourceApplyAdam", "VarHandleOp"}),
    ("control_flow", {"Enter", "Exit", "NextIteration", "Switch", "Merge", "LoopCond", "While",
                      "StatelessWhile", "If", "StatelessIf", "PartitionedCall",
                      "StatefulPartitionedCall", "NoOp", "Const", "_Retval", "_Arg"}),
]


def base_type(op_type: str) -> str:
  for prefix in ("_MklNative", "_Mkl", "_"):
    if op_type.startswith(prefix):
      return op_type[len(prefix):]
  return op_type


def kind_of(op_type: str) -> str:
  t = base_type(op_type)
  for kind, types in KINDS:
    if t in types:
      return kind
  return "elementwise_and_other"


def build_workload(config):
  """(run one step and block, frames per step)."""
  batch = config.batch_size
  if FLAGS.work == "train":
    trainer = Trainer(config)
    shape = (batch, config.seq_len, config.image_size, config.image_size, config.channels)
    frames = np.random.RandomState(0).rand(*shape).astype(np.float32)
    iterator = iter(trainer.distribute(
        lambda ctx, start: tf.data.Dataset.from_tensors(frames).repeat()))
    return (lambda: float(trainer.train_step(iterator)["loss"]), batch * config.seq_len,
            [trainer.train_step])
  keras.mixed_precision.set_global_policy(config.precision)
  n_past, n_future = HORIZONS[FLAGS.dataset]
  sampler = Sampler(SVG(config), n_past, n_future, chunk_size=batch)
  shape = (batch, n_past, config.image_size, config.image_size, config.channels)
  context = np.random.RandomState(0).rand(*shape).astype(np.float32)
  # The sampler's function takes any batch; the same code traced at this batch names its ops
  # the same way and gives them static shapes.
  static = tf.function(sampler._generate.python_function)
  static.get_concrete_function(
      tf.TensorSpec(shape, tf.float32), tf.TensorSpec([batch], tf.int32),
      tf.TensorSpec([], tf.int32), tf.TensorSpec([batch, n_past - 1 + n_future, 1], tf.float32))
  return lambda: sampler.sample(context, 1, seed=0), batch * n_future, [static]


def graph_ops(functions) -> dict:
  """Every op of the traced functions and the functions they call, by name."""
  ops, seen = {}, set()

  def walk(graph):
    if id(graph) in seen:
      return
    seen.add(id(graph))
    for op in graph.get_operations():
      ops.setdefault(op.name, op)
    for f in getattr(graph, "_functions", {}).values():
      if getattr(f, "graph", None) is not None:
        walk(f.graph)

  for fn in functions:
    for concrete in fn._list_all_concrete_functions():
      walk(concrete.graph)
  return ops


def kernel_of(op, depth: int = 4):
  """The convolution or matmul a (possibly fused) op's name stands for: the op itself, or the
  nearest one among its inputs (a fused op takes the name of its last part, a bias add or an
  activation)."""
  frontier = [op]
  for _ in range(depth):
    for candidate in frontier:
      if candidate.type in KERNEL_TYPES:
        return candidate
    frontier = [t.op for c in frontier for t in c.inputs]
  return None


def kernel_spec(op):
  """(hashable key, spec) of a convolution or matmul: its type, shapes, dtype and attributes."""
  dtype = op.outputs[0].dtype
  if op.type == "MatMul":
    a, b = (tuple(t.shape.as_list()) for t in op.inputs)
    attrs = {"transpose_a": op.get_attr("transpose_a"), "transpose_b": op.get_attr("transpose_b")}
    m = a[1] if attrs["transpose_a"] else a[0]
    k = a[0] if attrs["transpose_a"] else a[1]
    n = b[0] if attrs["transpose_b"] else b[1]
    spec = {"type": "MatMul", "a": a, "b": b, "attrs": attrs}
  else:
    attrs = {name: op.get_attr(name) for name in ("strides", "padding", "data_format", "dilations")}
    attrs["explicit_paddings"] = list(op.get_attr("explicit_paddings"))
    if op.type == "Conv2D":
      x, w = (tuple(t.shape.as_list()) for t in op.inputs)
      dy = tuple(op.outputs[0].shape.as_list())
    elif op.type == "Conv2DBackpropInput":
      x = tuple(op.outputs[0].shape.as_list())
      w, dy = (tuple(t.shape.as_list()) for t in op.inputs[1:])
    else:  # Conv2DBackpropFilter
      x, dy = tuple(op.inputs[0].shape.as_list()), tuple(op.inputs[2].shape.as_list())
      w = tuple(op.outputs[0].shape.as_list())
    spec = {"type": op.type, "x": x, "w": w, "dy": dy, "attrs": attrs}
  if any(d is None for k in ("a", "b", "x", "w", "dy") if k in spec for d in spec[k]):
    return None, None
  spec["flops"] = (2 * m * n * k if op.type == "MatMul"
                   else 2 * int(np.prod(spec["dy"][:3])) * int(np.prod(spec["w"])))
  spec["dtype"] = dtype.name
  key = (spec["type"], dtype.name, repr(sorted((k, repr(v)) for k, v in spec.items()
                                               if k not in ("flops", "dtype", "type"))))
  return key, spec


def time_alone(spec) -> float:
  """Seconds per call of one kernel alone at its shapes: the median of rounds, each round
  several independent calls in one traced function (as the step runs them, two may overlap)."""
  dtype = tf.as_dtype(spec["dtype"])
  attrs = spec["attrs"]
  if spec["type"] == "MatMul":
    shapes = [spec["a"], spec["b"]]
    call = lambda a, b: tf.raw_ops.MatMul(a=a, b=b, **attrs)  # noqa: E731
  elif spec["type"] == "Conv2D":
    shapes = [spec["x"], spec["w"]]
    call = lambda x, w: tf.raw_ops.Conv2D(input=x, filter=w, **attrs)  # noqa: E731
  elif spec["type"] == "Conv2DBackpropInput":
    shapes = [spec["w"], spec["dy"]]
    call = lambda w, dy: tf.raw_ops.Conv2DBackpropInput(  # noqa: E731
        input_sizes=spec["x"], filter=w, out_backprop=dy, **attrs)
  else:
    shapes = [spec["x"], spec["dy"]]
    call = lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(  # noqa: E731
        input=x, filter_sizes=spec["w"], out_backprop=dy, **attrs)
  rng = np.random.RandomState(0)

  def inputs(copies):
    return [[tf.constant(rng.standard_normal(s).astype(np.float32) * 0.1, dtype=dtype)
             for s in shapes] for _ in range(copies)]

  def rounds(copies, count):
    fn = tf.function(lambda args: [call(*a) for a in args])
    args = inputs(copies)
    fn(args)  # traces
    times = []
    for _ in range(count):
      start = time.perf_counter()
      fn(args)
      times.append((time.perf_counter() - start) / copies)
    return statistics.median(times)

  first = rounds(1, 3)
  copies = int(min(16, max(1, 0.05 / max(first, 1e-6))))
  return rounds(copies, 5) if copies > 1 else first


def profile(run, steps: int):
  """(op events [(name, type, seconds)] of `steps` steps, median profiled step seconds)."""
  logdir = tempfile.mkdtemp(prefix="svg_tf_attribution_")
  try:
    walls = []
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
      start = time.perf_counter()
      run()
      walls.append(time.perf_counter() - start)
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0], "rb") as f:
      space.ParseFromString(f.read())
  finally:
    shutil.rmtree(logdir, ignore_errors=True)
  events = []
  for plane in space.planes:
    if plane.name != "/host:CPU":
      continue
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if not line.name.startswith("tf_Compute"):  # the executor's threads: one event per op
        continue
      for e in line.events:
        name = names[e.metadata_id]
        if ":" in name and "::" not in name:  # "op_name:OpType"; "Class::Method" are not ops
          op_name, op_type = name.rsplit(":", 1)
          events.append((op_name, op_type, e.duration_ps * 1e-12))
  return events, statistics.median(walls)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  batch = FLAGS.batch_size or (16 if FLAGS.dataset == "smmnist" else 8)
  config = config_lib.preset(FLAGS.dataset, batch_size=batch, precision=FLAGS.precision,
                             torch_lstm_bias=True)
  run, frames_per_step, functions = build_workload(config)
  walls = []
  for i in range(FLAGS.warmup + FLAGS.steps):
    start = time.perf_counter()
    run()
    if i >= FLAGS.warmup:
      walls.append(time.perf_counter() - start)
  step_s = statistics.median(walls)
  events, profiled_s = profile(run, FLAGS.steps)
  op_seconds = sum(e[2] for e in events)
  share = lambda s: s / op_seconds  # noqa: E731  a part of the op time, as a part of the step

  by_kind, by_type = collections.Counter(), collections.Counter()
  for _, op_type, seconds in events:
    by_kind[kind_of(op_type)] += seconds
    by_type[op_type] += seconds

  ops = graph_ops(functions)
  specs, calls, in_step = {}, collections.Counter(), collections.Counter()
  unmatched = 0.0
  for name, op_type, seconds in events:
    if kind_of(op_type) not in ("convolution", "matmul"):
      continue
    op = ops.get(name) or ops.get(INLINED.sub("", name))
    kernel = kernel_of(op) if op is not None else None
    key, spec = kernel_spec(kernel) if kernel is not None else (None, None)
    if key is None:
      unmatched += seconds
      continue
    specs[key] = spec
    calls[key] += 1
    in_step[key] += seconds
  print(f"timing {len(specs)} kernels alone", file=sys.stderr)
  kernels = []
  for key, spec in specs.items():
    alone = time_alone(spec)
    per_step = calls[key] / FLAGS.steps
    kernels.append({
        "type": spec["type"], "dtype": spec["dtype"],
        "shapes": {k: spec[k] for k in ("x", "w", "dy", "a", "b") if k in spec},
        "calls_per_step": per_step, "gflop_per_call": round(spec["flops"] / 1e9, 4),
        "alone_ms_per_call": round(1000 * alone, 3),
        "alone_gflop_per_s": round(spec["flops"] / alone / 1e9, 1),
        "in_step_ms_per_step": round(1000 * step_s * share(in_step[key]), 2),
        "alone_ms_per_step": round(1000 * alone * per_step, 2)})
  kernels.sort(key=lambda k: -k["alone_ms_per_step"])
  floor_s = sum(k["alone_ms_per_step"] for k in kernels) / 1000
  kernel_gflop = sum(k["gflop_per_call"] * k["calls_per_step"] for k in kernels)

  work = "generate" if FLAGS.work == "sample" else "train"
  yard_name = FLAGS.yardstick or f"yardstick_{work}_{FLAGS.dataset}_b{batch}"
  yard = record.load(yard_name)["result"]["frames_per_s"]
  target = FLAGS.target or TARGETS[(FLAGS.work, FLAGS.precision)]
  target_s = frames_per_step / (target * yard)
  gap = {
      "target_ratio": target, "yardstick_record": yard_name, "yardstick_frames_per_s": yard,
      "ratio": round(frames_per_step / step_s / yard, 2),
      "floor_ratio": round(frames_per_step / floor_s / yard, 2),
      "target_step_ms": round(1000 * target_s, 1),
      "gap_ms": round(1000 * max(0.0, step_s - target_s), 1),
      "cpu_part_ms": round(1000 * max(0.0, min(step_s, floor_s) - target_s), 1),
      "svg_tf_part_ms": round(1000 * max(0.0, step_s - max(floor_s, target_s)), 1)}
  record.save("attribution", {
      "framework": "tensorflow", "work": FLAGS.work, "dataset": FLAGS.dataset, "batch": batch,
      "precision": FLAGS.precision, "steps": FLAGS.steps, "frames_per_step": frames_per_step,
      "step_ms_median": round(1000 * step_s, 1), "profiled_step_ms_median": round(1000 * profiled_s, 1),
      "frames_per_s": round(frames_per_step / step_s, 2),
      "op_ms_per_step_by_kind": {k: round(1000 * step_s * share(v), 1)
                                 for k, v in by_kind.most_common()},
      "op_ms_per_step_by_type": {k: round(1000 * step_s * share(v), 1)
                                 for k, v in by_type.most_common() if v >= 0.002 * op_seconds},
      "kernels_in_step_ms": round(1000 * step_s * share(sum(in_step.values())), 1),
      "kernels_unmatched_ms": round(1000 * step_s * share(unmatched), 1),
      "floor_ms": round(1000 * floor_s, 1),
      "floor_frames_per_s": round(frames_per_step / floor_s, 1),
      "kernel_gflop_per_step": round(kernel_gflop, 2),
      "kernels_alone_gflop_per_s": round(kernel_gflop / floor_s, 1),
      "gap": gap, "kernels": kernels[:12], "kernel_count": len(kernels),
      "tensorflow": tf.__version__}, FLAGS.out)


if __name__ == "__main__":
  app.run(main)
