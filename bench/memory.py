"""Peak resident memory of whole processes: training, the PyTorch yardstick, evaluate's sampler.

Each case runs in a fresh process of its own, started by this script (which never imports
TensorFlow or torch itself, so that nothing of it is inherited), and prints one JSON line:

  train_float32, train_mixed_bfloat16  svg_tf.trainer.Trainer for the full SM-MNIST SVG-LP model
      (the smmnist preset, batch 16, torch_lstm_bias as bench/train_step.py), then --steps calls
      of `Trainer.train_step` (train.py's step) on random frames of the training shape (16 x 15 x
      64 x 64 x 1) from a repeated tf.data batch, as bench/train_step.py times them.
  yardstick_train  ../shared/bench/torch_svg_ref.py's own main() (--dataset smmnist --batch 16
      --threads 2, --steps after 3 warm-up steps: the same work) in the yardstick's venv, with a
      probe that reads this process's memory when each step's loss is first called.
  yardstick_train_plain  ../shared/bench/yardstick.sh itself, as the issue measured it, without
      the probe: a check that the probe's reads change nothing of note.
  sampler_float32  svg_tf.evaluation.Sampler on the full SM-MNIST model at evaluate.py's defaults:
      chunk_size 256, 5 -> 20 frames, 8 videos x 100 samples per call (--videos_per_batch and
      --num_samples) = 800 rows in chunks of 256, 256, 256 and 32; two calls, the first one's
      frames alive during the second as in evaluate's loop.
  train_float32_lean  train_float32 under LEAN_ENV below: an opt-in environment, no code change.
  train_py_float32  train.py itself for --steps steps (SM-MNIST generated on the fly, progress
      lines, summaries, a checkpoint and a preview GIF at the last step): the whole program a user
      runs. Measured from outside only (no phases), with the RSS when each log line appeared.
  sampler_context  the sampler's first stage alone: encoding a chunk's n_past context frames
      (n_past x chunk_size images at once, and the skip features of all of them).
  smmnist_digits  what train.py holds on top of the Trainer for SM-MNIST: the MNIST digits
      (pipelines/mnist_digits.load_digits, train and test) its generator draws from.

Peak memory is the kernel's high-water mark of the process's resident set (VmHWM in
/proc/PID/status). The probed cases read it at phase boundaries and reset it there (writing 5 to
/proc/self/clear_refs), so each phase has its own peak (python start-up, import, build, trace,
first step, later steps); the process's peak is the largest of them, and of getrusage's ru_maxrss
from os.wait4, which covers the time from the last reset to exit. ru_maxrss alone also counts what
a forking parent held: this parent holds only the Python interpreter (tens of MiB). The parent
also polls each child's /proc status every 0.1 s as a cross-check. The baseline is the process's
RSS after its imports and after building the model (and the optimizer, input iterator or sampler),
before the first step. After the last step the probed cases also report glibc's heap counters
(mallinfo2: bytes in use, free bytes the heap keeps) and the RSS after malloc_trim(0).

Each training case runs --repeats times (default 3) and reports the run with the median peak,
with every run's peak: the peak moves from run to run (by tens of MiB for svg_tf, in TensorFlow's
case with the order in which independent ops happened to run; by up to ~100 for the yardstick). The TensorFlow cases also report, per phase, the bytes of tensors
that TensorFlow's CPU allocator held (tf.config.experimental.get_memory_info("CPU:0"): the most
during the phase and at its end), which splits the step's growth into tensors and the rest, and
each step's loss.

--knobs runs train_float32 once under each of a list of environment settings (glibc malloc
tunables, oneDNN's allocator, jemalloc or tcmalloc when installed, oneDNN off, one inter-op
thread, a combination), with each run's losses compared with the default's: which settings lower
the peak, at what cost in step time, and without changing a number.

  python bench/memory.py --out=memory                  # every case, one after another
  python bench/memory.py --cases=train_float32 --steps=4
  python bench/memory.py --knobs --steps=6 --out=memory_knobs
  python bench/memory.py --cases=sampler_context --out=memory_sampler_context
  python bench/memory.py --cases=sampler_float32,sampler_context --chunk_size=64 \\
      --out=memory_sampler_chunk64
"""

import argparse
import contextlib
import ctypes
import ctypes.util
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record  # noqa: E402  (bench/record.py; stdlib only, as this script's top level must be)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_BENCH = os.path.join(os.path.dirname(ROOT), "shared", "bench")
YARDSTICK_SH = os.path.join(SHARED_BENCH, "yardstick.sh")
YARDSTICK_VENV = os.environ.get("YARDSTICK_VENV", "/tmp/yardstick-venv")
MARK = "MEMORY_RESULT "
MIB = 2 ** 20

# An opt-in environment for training with less memory (no code change; the same losses, which
# --knobs checks): one op at a time, and tensors from malloc with a fixed mmap threshold, so that
# what a step frees goes back to the system instead of staying in oneDNN's pool.
LEAN_ENV = {"TF_NUM_INTEROP_THREADS": "1", "TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1",
            "MALLOC_MMAP_THRESHOLD_": "131072"}
TRAIN_CASES = {"train_float32": ("float32", {}), "train_mixed_bfloat16": ("mixed_bfloat16", {}),
               "train_float32_lean": ("float32", LEAN_ENV)}
CASES = tuple(TRAIN_CASES) + ("yardstick_train", "yardstick_train_plain", "sampler_float32",
                              "train_py_float32", "smmnist_digits", "sampler_context")
DEFAULT_CASES = CASES[:-1]  # sampler_context on request (--cases)
# evaluate.py's defaults for SM-MNIST (svg_cli/evaluate.py).
EVAL = dict(n_past=5, n_future=20, chunk_size=256, videos_per_batch=8, num_samples=100)


def _allocator_libraries():
  """LD_PRELOAD values of the malloc replacements installed here (none is by default)."""
  found = {}
  for name, files in (("jemalloc", ("libjemalloc.so.2", "libjemalloc.so")),
                      ("tcmalloc", ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"))):
    paths = [os.path.join(d, f) for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                                          "/usr/lib", "/usr/local/lib") for f in files]
    found.update({name: p for p in reversed(paths) if os.path.exists(p)})  # the first wins
  return found


def knob_settings():
  """(label, environment additions) for --knobs; LD_PRELOAD ones only where the library exists."""
  system = {"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1"}  # tensors from malloc, not oneDNN's BFC pool
  knobs = [
      ("default", {}),
      ("MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"}),
      # A fixed mmap threshold: glibc's dynamic one climbs to 32 MiB once a large block is freed,
      # after which large blocks come from the heap and what is freed stays resident.
      ("MALLOC_MMAP_THRESHOLD_=131072", {"MALLOC_MMAP_THRESHOLD_": "131072"}),
      ("TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1", system),
      ("TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 MALLOC_MMAP_THRESHOLD_=131072",
       dict(system, MALLOC_MMAP_THRESHOLD_="131072")),
  ]
  for name, path in sorted(_allocator_libraries().items()):
    knobs.append((f"TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 LD_PRELOAD={name}",
                  dict(system, LD_PRELOAD=path)))
  one = {"TF_NUM_INTEROP_THREADS": "1"}  # one op at a time (intra-op threads unchanged)
  knobs += [
      ("TF_ENABLE_ONEDNN_OPTS=0", {"TF_ENABLE_ONEDNN_OPTS": "0"}),  # other kernels: not the numbers
      ("TF_NUM_INTEROP_THREADS=1", one),
      ("TF_NUM_INTEROP_THREADS=1 TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 MALLOC_MMAP_THRESHOLD_=131072",
       dict(one, **system, MALLOC_MMAP_THRESHOLD_="131072")),
  ]
  return knobs


# ----------------------------------------------------------------------------- in the child
def _status(pid="self"):
  """VmRSS and VmHWM of a process, KiB (None when it has gone)."""
  values = {}
  try:
    with open(f"/proc/{pid}/status") as f:
      for line in f:
        if line.startswith(("VmRSS:", "VmHWM:")):
          values[line.split(":")[0]] = int(line.split()[1])
  except (OSError, ValueError, IndexError):
    return None
  return values if len(values) == 2 else None


def _mib(kib):
  return None if kib is None else round(kib / 1024, 1)


class Phases:
  """Peak and end RSS of consecutive phases of this process (VmHWM reset at each boundary)."""

  def __init__(self):
    self.rows = []
    self.peak_kib = 0
    self.start = time.perf_counter()
    self.resets = self._reset()  # peaks per phase if the kernel lets us reset them
    self.tf = None  # once set, each phase also reports TensorFlow's CPU allocator counters

  @staticmethod
  def _reset():
    try:
      with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
      return True
    except OSError:
      return False

  def rss_mib(self):
    return _mib(_status()["VmRSS"])

  def mark(self, phase, **extra):
    """Ends `phase`: records its peak (cumulative if resets are refused) and the RSS now."""
    s = _status()
    self.peak_kib = max(self.peak_kib, s["VmHWM"])
    now = time.perf_counter()
    row = dict(phase=phase, peak_mib=_mib(s["VmHWM"]), rss_end_mib=_mib(s["VmRSS"]),
               seconds=round(now - self.start, 1), **extra)
    if self.tf is not None:
      row.update(self._tensor_bytes())
    self.rows.append(row)
    self.start = now
    if self.resets:
      self._reset()

  def _tensor_bytes(self):
    """Bytes of tensors held by TensorFlow's CPU allocator: the most during the phase, and now.

    With oneDNN (the default on x86) the allocator is MklCPUAllocator: blocks of 4 KiB and more
    come from a BFC pool, which keeps what it has grown to; these counters cover those blocks
    (both read 0 when TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 sends every block to malloc)."""
    try:
      info = self.tf.config.experimental.get_memory_info("CPU:0")
      self.tf.config.experimental.reset_memory_stats("CPU:0")
    except (ValueError, RuntimeError, AttributeError):
      return {}
    return dict(tensors_peak_mib=round(info["peak"] / MIB, 1),
                tensors_end_mib=round(info["current"] / MIB, 1))

  def result(self, baseline_phase):
    return dict(peak_mib=_mib(self.peak_kib), phases=self.rows,
                baseline_mib=next(r["rss_end_mib"] for r in self.rows
                                  if r["phase"] == baseline_phase),
                phase_peaks="per phase" if self.resets else "cumulative")


def _malloc_report():
  """glibc heap counters now, then the RSS after malloc_trim(0) (what freeing gives back)."""
  libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
  out = {}

  class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

  if hasattr(libc, "mallinfo2"):
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    out.update(
        heap_mib=round(info.arena / MIB, 1),  # sbrk'd and arena heap (main + thread arenas)
        mmapped_mib=round(info.hblkhd / MIB, 1),  # blocks mmapped one by one
        in_use_mib=round((info.uordblks + info.hblkhd) / MIB, 1),
        free_in_heap_mib=round(info.fordblks / MIB, 1))  # freed, kept by malloc
  if hasattr(libc, "malloc_trim"):
    before = _status()["VmRSS"]
    libc.malloc_trim(0)
    after = _status()["VmRSS"]
    out.update(rss_before_trim_mib=_mib(before), rss_after_trim_mib=_mib(after),
               trim_returned_mib=_mib(before - after))
  return out


def _tensorflow_child(*svg_modules):
  """The first phases of a TensorFlow child: start-up, `import tensorflow`, then Keras, tfp and
  the named svg_tf modules as one phase. Returns (phases, numpy, tensorflow, the modules)."""
  phases = Phases()
  phases.mark("python start-up")
  import numpy as np
  import tensorflow as tf
  phases.tf = tf
  phases.mark("import tensorflow")
  sys.path.insert(0, ROOT)
  import keras  # noqa: F401
  import tensorflow_probability  # noqa: F401
  modules = [importlib.import_module(name) for name in svg_modules]
  phases.mark("import keras, tfp, svg_tf")
  return phases, np, tf, modules


def child_train(args):
  """svg_tf.trainer.Trainer, then args.steps training steps; the result dict."""
  phases, np, tf, (config_lib, trainer_lib) = _tensorflow_child("svg_tf.config", "svg_tf.trainer")
  Trainer = trainer_lib.Trainer  # pylint: disable=invalid-name
  config = config_lib.preset("smmnist", batch_size=args.batch, precision=args.precision,
                             torch_lstm_bias=True)
  trainer = Trainer(config)
  shape = (config.batch_size, config.seq_len, config.image_size, config.image_size, config.channels)
  frames = np.random.RandomState(0).rand(*shape).astype(np.float32)
  iterator = iter(trainer.distribute(
      lambda ctx, start: tf.data.Dataset.from_tensors(frames).repeat()))
  phases.mark("build (Trainer, Adam, iterator)")
  trainer.train_step.get_concrete_function(iterator)
  phases.mark("trace train_step")
  rss_after_step, seconds, losses = [], [], []
  for step in range(1, args.steps + 1):
    start = time.perf_counter()
    losses.append(float(trainer.train_step(iterator)["loss"]))  # blocks until the step is done
    seconds.append(time.perf_counter() - start)
    rss_after_step.append(phases.rss_mib())
    if step == 1:
      phases.mark("step 1")
  phases.mark(f"steps 2-{args.steps}")
  result = phases.result("build (Trainer, Adam, iterator)")
  result.update(
      rss_after_step_mib=rss_after_step, malloc=_malloc_report(), framework="tensorflow",
      step_s_median_after_first=round(sorted(seconds[1:])[len(seconds[1:]) // 2], 2),
      losses=losses,  # an environment setting that changed a number would show here
      precision=args.precision, batch=config.batch_size, frames_shape=list(shape),
      steps=args.steps, params=sum(trainer.model.parameter_counts().values()),
      traces=trainer.train_step.experimental_get_tracing_count(), tensorflow=tf.__version__,
      intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads() or "default",
      inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads() or "default")
  return result


def child_torch_train(args):
  """torch_svg_ref.py's main() (the yardstick's training run), probed at each loss call."""
  phases = Phases()
  phases.mark("python start-up")
  import torch
  phases.mark("import torch")
  sys.path.insert(0, SHARED_BENCH)
  import torch_svg_ref as ref
  phases.mark("import torch_svg_ref")
  calls = []
  loss = ref.SVGLP.loss

  def probed_loss(self, *a, **kw):
    # Called at the start of each step's forward pass: the model, Adam and the batch exist.
    calls.append(phases.rss_mib())
    if len(calls) == 1:
      phases.mark("build (model, Adam, first batch)")
    elif len(calls) == 2:
      phases.mark("step 1")
    return loss(self, *a, **kw)

  ref.SVGLP.loss = probed_loss
  sys.argv = [ref.__file__, "--dataset", "smmnist", "--batch", str(args.batch), "--threads", "2",
              "--warmup", "3", "--steps", str(args.steps - 3)]
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    ref.main()
  phases.mark(f"steps 2-{args.steps}")
  yard = json.loads(printed.getvalue().strip().splitlines()[-1])
  result = phases.result("build (model, Adam, first batch)")
  result.update(
      rss_after_step_mib=calls[1:], malloc=_malloc_report(), framework="torch",
      precision="float32", batch=args.batch, steps=args.steps, params=yard["params"],
      yardstick_step_ms_median=yard["step_ms_median"], torch=torch.__version__,
      threads=torch.get_num_threads())
  return result


def child_sampler(args):
  """evaluate.py's Sampler on the full SM-MNIST model: two calls of 8 videos x 100 samples."""
  phases, np, tf, (config_lib, evaluation, model_lib) = _tensorflow_child(
      "svg_tf.config", "svg_tf.evaluation", "svg_tf.model")
  import keras  # loaded above
  Sampler, SVG = evaluation.Sampler, model_lib.SVG  # pylint: disable=invalid-name
  config = config_lib.preset("smmnist")
  keras.mixed_precision.set_global_policy(config.precision)
  model = SVG(config)
  sampler = Sampler(model, EVAL["n_past"], EVAL["n_future"], chunk_size=args.chunk_size)
  rng = np.random.RandomState(0)
  shape = (EVAL["videos_per_batch"], EVAL["n_past"], config.image_size, config.image_size,
           config.channels)
  phases.mark("build (model, Sampler)")
  frames = None
  for call in (1, 2):
    context = rng.rand(*shape).astype(np.float32)
    frames, _ = sampler.sample(context, EVAL["num_samples"], seed=call)  # the last call's alive
    phases.mark(f"call {call}" + (" (traces)" if call == 1 else ""))
  result = phases.result("build (model, Sampler)")
  rows = EVAL["videos_per_batch"] * EVAL["num_samples"]
  result.update(
      malloc=_malloc_report(), framework="tensorflow", precision=config.precision,
      chunk_size=sampler.chunk_size, rows_per_call=rows, n_past=EVAL["n_past"],
      n_future=EVAL["n_future"], output_mib=round(frames.nbytes / MIB, 1),
      chunks=[min(sampler.chunk_size, rows - s) for s in range(0, rows, sampler.chunk_size)],
      tensorflow=tf.__version__)
  return result


def child_sampler_context(args):
  """The first thing a sampler chunk does: encode its rows' n_past context frames, all at once."""
  phases, np, tf, (config_lib, frame_nets, model_lib) = _tensorflow_child(
      "svg_tf.config", "svg_tf.frame_nets", "svg_tf.model")
  import keras  # loaded above
  SVG = model_lib.SVG  # pylint: disable=invalid-name
  config = config_lib.preset("smmnist")
  keras.mixed_precision.set_global_policy(config.precision)
  model = SVG(config)
  shape = (EVAL["n_past"], args.chunk_size, config.image_size, config.image_size, config.channels)
  x = tf.constant(np.random.RandomState(0).rand(*shape).astype(np.float32))  # time-major
  encode = tf.function(lambda x: model.encoder(x, bn_mode=frame_nets.BN_MOVING))
  phases.mark("build (model, context)")
  h, skips = encode(x)
  skips_mib = round(sum(s.numpy().nbytes for s in skips) / MIB, 1)
  phases.mark("encode the context")
  result = phases.result("build (model, context)")
  result.update(framework="tensorflow", precision=config.precision, chunk_size=args.chunk_size,
                n_past=EVAL["n_past"], images_encoded=EVAL["n_past"] * args.chunk_size,
                skips_mib=skips_mib, tensorflow=tf.__version__)
  return result


def child_digits(args):
  """What train.py holds for generating SM-MNIST: the MNIST digits its generator draws from."""
  phases = Phases()
  phases.mark("python start-up")
  sys.path.insert(0, ROOT)
  from pipelines import mnist_digits  # imports TensorFlow
  phases.mark("import pipelines.mnist_digits (and tensorflow)")
  sizes = {}
  for split in ("train", "test"):
    digits = mnist_digits.load_digits(split)  # cached: train.py keeps them for the whole run
    sizes[split] = dict(shape=list(digits.images.shape), dtype=str(digits.images.dtype),
                        mib=round(digits.images.nbytes / MIB, 1),
                        as_uint8_mib=round(digits.images.size / MIB, 1))
    phases.mark(f"load_digits({split!r})")
  result = phases.result("import pipelines.mnist_digits (and tensorflow)")
  result.update(digits=sizes, source=digits.source)
  return result


CHILDREN = {"train": child_train, "torch_train": child_torch_train, "sampler": child_sampler,
            "digits": child_digits, "sampler_context": child_sampler_context}


# ----------------------------------------------------------------------------- in the parent
def measure(command, env_extra=None, log_lines=False):
  """Runs `command` in a fresh process; its stdout, rc, ru_maxrss and the polled peaks; with
  `log_lines`, also the process's RSS and peak so far when each of its stderr lines appeared."""
  env = dict(os.environ, **(env_extra or {}))
  with tempfile.NamedTemporaryFile("w+") as out, tempfile.NamedTemporaryFile("w+") as err:
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=ROOT)
    polled_hwm = polled_rss = 0
    lines, pending = [], ""
    with open(err.name) as follow:
      while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
          break
        s = _status(proc.pid)
        if s:
          polled_hwm, polled_rss = max(polled_hwm, s["VmHWM"]), max(polled_rss, s["VmRSS"])
          if log_lines:
            pending += follow.read()
            *done, pending = pending.split("\n")
            lines += [dict(line=line[-120:], rss_mib=_mib(s["VmRSS"]), peak_so_far_mib=_mib(
                s["VmHWM"]), seconds=round(time.perf_counter() - start, 1)) for line in done]
        time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    seconds = time.perf_counter() - start
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read(), err.read()
  return dict(stdout=stdout, stderr=stderr, rc=proc.returncode, seconds=round(seconds, 1),
              ru_maxrss_mib=_mib(usage.ru_maxrss), polled_hwm_mib=_mib(polled_hwm),
              polled_rss_mib=_mib(polled_rss), log_lines=lines)


def _ensure_yardstick_venv():
  """yardstick.sh makes its venv on first use; `--help` makes it and exits."""
  if not os.path.exists(os.path.join(YARDSTICK_VENV, "bin", "python")):
    subprocess.run(["bash", YARDSTICK_SH, "--help"], check=True, stdout=subprocess.DEVNULL)
  return os.path.join(YARDSTICK_VENV, "bin", "python")


def run_case(case, args, env_extra=None):
  """One case in its own process: its result dict (peak_mib, baseline_mib, phases, ...)."""
  me = os.path.abspath(__file__)
  steps = f"--steps={args.steps}"
  if case in TRAIN_CASES:
    precision, case_env = TRAIN_CASES[case]
    env_extra = dict(case_env, **(env_extra or {}))
    command = [sys.executable, me, "--child=train", f"--precision={precision}", steps,
               f"--batch={args.batch}"]
  elif case == "yardstick_train":
    command = [_ensure_yardstick_venv(), me, "--child=torch_train", steps, f"--batch={args.batch}"]
  elif case == "yardstick_train_plain":
    _ensure_yardstick_venv()
    command = ["bash", YARDSTICK_SH, "--dataset", "smmnist", "--batch", str(args.batch),
               "--warmup", "3", "--steps", str(args.steps - 3)]
  elif case == "sampler_context":
    command = [sys.executable, me, "--child=sampler_context", f"--chunk_size={args.chunk_size}"]
  elif case == "smmnist_digits":
    command = [sys.executable, me, "--child=digits"]
  elif case == "sampler_float32":
    command = [sys.executable, me, "--child=sampler", f"--chunk_size={args.chunk_size}"]
  elif case == "train_py_float32":
    workdir = tempfile.mkdtemp(prefix="memory_train_py_")
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--dataset=smmnist", "--model=lp",
               f"--batch_size={args.batch}", f"--train_steps={args.steps}", "--log_every=1",
               f"--summary_every={args.steps}", f"--image_every={args.steps}",
               f"--checkpoint_every={args.steps}", f"--model_dir={workdir}/run"]
  else:
    raise ValueError(case)
  print(f"memory | {case}{' ' + json.dumps(env_extra) if env_extra else ''} ...", file=sys.stderr,
        flush=True)
  m = measure(command, env_extra, log_lines=case == "train_py_float32")
  if m["rc"]:
    raise SystemExit(f"error: {case} failed (exit {m['rc']}):\n"
                     + "\n".join(m["stderr"].strip().splitlines()[-15:]))
  if case == "train_py_float32":
    shutil.rmtree(workdir, ignore_errors=True)
  lines = m["stdout"].strip().splitlines()
  if case in ("yardstick_train_plain", "train_py_float32"):
    result = {"peak_mib": max(m["ru_maxrss_mib"], m["polled_hwm_mib"]), "baseline_mib": None,
              "phases": None}
    if case == "yardstick_train_plain":
      yard = json.loads(lines[-1])
      result.update(framework="torch", params=yard["params"], batch=yard["batch"],
                    steps=yard["steps"] + yard["warmup"],
                    yardstick_step_ms_median=yard["step_ms_median"])
    else:
      # Its log lines with the RSS and the peak so far when each appeared (polled every 0.1 s).
      result.update(framework="tensorflow", precision="float32", batch=args.batch,
                    steps=args.steps, log_lines=m["log_lines"])
  else:
    result = json.loads(next(l for l in reversed(lines) if l.startswith(MARK))[len(MARK):])
    # The child's phases cover it up to its last mark; ru_maxrss the rest (see the docstring).
    result["peak_mib"] = max(result["peak_mib"], m["ru_maxrss_mib"])
  result.update(case=case, command=[os.path.relpath(c, ROOT) if c.startswith(ROOT) else c
                                    for c in command],
                env=env_extra or {}, seconds=m["seconds"], ru_maxrss_mib=m["ru_maxrss_mib"],
                polled_peak_mib=m["polled_hwm_mib"])
  print(f"memory | {case}: peak {result['peak_mib']} MiB, baseline {result['baseline_mib']} MiB "
        f"({m['seconds']} s)", file=sys.stderr, flush=True)
  return result


def run_repeated(case, args):
  """run_case `args.repeats` times: the run with the median peak, with every run's peak and
  baseline (the peak moves from run to run, see the module docstring)."""
  runs = [run_case(case, args) for _ in range(args.repeats)]
  median = sorted(runs, key=lambda r: r["peak_mib"])[(len(runs) - 1) // 2]
  return dict(median, repeats=len(runs), peak_mib_runs=[r["peak_mib"] for r in runs],
              baseline_mib_runs=[r["baseline_mib"] for r in runs])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                      help=f"comma-separated, from {', '.join(CASES)}")
  parser.add_argument("--knobs", action="store_true",
                      help="train_float32 under each environment setting instead")
  parser.add_argument("--steps", type=int, default=13,
                      help="training steps per training case (the yardstick: 3 warm-up + 10)")
  parser.add_argument("--repeats", type=int, default=3,
                      help="runs of each training case but train_py (the median peak is reported)")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--chunk_size", type=int, default=EVAL["chunk_size"])
  parser.add_argument("--out", default=None, help="also write bench/results/OUT.json")
  parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
  parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(MARK + json.dumps(CHILDREN[args.child](args)), flush=True)
    return
  if args.steps < 4:
    parser.error("--steps must be at least 4 (the yardstick warms up for 3)")
  if args.knobs:
    runs = [dict(run_case("train_float32", args, env), knob=label)
            for label, env in knob_settings()]
    default = runs[0]
    for r in runs:
      r["peak_vs_default"] = round(r["peak_mib"] / default["peak_mib"], 3)
      r["same_losses_as_default"] = r["losses"] == default["losses"]
    missing = sorted({"jemalloc", "tcmalloc"} - set(_allocator_libraries()))
    record.save("memory_knobs", {"case": "train_float32", "steps": args.steps,
                                 "batch": args.batch, "runs": runs,
                                 "allocators_not_installed": missing}, args.out)
    return
  cases = [c for c in args.cases.split(",") if c]
  unknown = sorted(set(cases) - set(CASES))
  if unknown:
    parser.error(f"unknown cases {unknown}")
  repeated = tuple(TRAIN_CASES) + ("yardstick_train",)
  results = {case: run_repeated(case, args) if case in repeated else run_case(case, args)
             for case in cases}
  summary = {"cases": results, "steps": args.steps, "batch": args.batch}
  if "yardstick_train" in results:
    yard = results["yardstick_train"]["peak_mib"]
    summary["yardstick_peak_mib"] = yard
    summary["ratio_to_yardstick"] = {
        c: round(r["peak_mib"] / yard, 3) for c, r in results.items()
        if c.startswith(("train_", "yardstick_train_plain"))}
  record.save("memory", summary, args.out)


if __name__ == "__main__":
  main()
