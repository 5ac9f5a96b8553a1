"""Scores trained SVG models with the paper's protocol and draws its figures.

  python evaluate.py --model_dir=runs/smmnist_lp --data_dir=data/smmnist_test --num_samples=100 --out=eval/lp
  python evaluate.py --model_dir=runs/smmnist_lp --model_dir=runs/smmnist_det --out=eval/both
  python evaluate.py --compare=eval/lp/metrics.json --compare=eval/det/metrics.json --out=eval/plots
  python evaluate.py --model_dir=runs/smmnist_lp --num_shards=4 --shard_index=$I --out=eval/lp  # I=0..3
  python evaluate.py --merge=eval/lp --out=eval/lp

For every test video: condition on n_past frames, draw num_samples futures (SVG-LP: learned prior,
SVG-FP: N(0, I), deterministic: one future), score predicted frames only (SSIM and PSNR per
frame), keep each metric's best sample by its mean over time, report means and 95% intervals over
videos. Writes OUT/metrics.json, OUT/per_video.csv and the figures (PNG and PDF); with several
models, one sub-folder per model and the comparison plots in OUT. With --num_shards=N a run scores
only the videos j with j % N == --shard_index and saves them as OUT/shard-0000i-of-0000N.npz;
--merge joins the N files into the outputs one unsharded run writes (svg_tf/evaluation_shards.py).
Exit status: 0 done; 1 a user error, one line `error: ...` (a bad flag, a missing run directory
or checkpoint, an --out that cannot be written, a --compare file that is not a metrics.json, a
shard missing, duplicated, damaged or of another run).
"""

import json
import os

from absl import flags, logging

from svg_tf import command_line, evaluation_shards
from svg_tf.command_line import UserError

FLAGS = flags.FLAGS

# SRVP's evaluation horizons (longer than training, to show generalisation).
HORIZONS = {"smmnist": (5, 20), "kth": (10, 30), "bair": (2, 28)}

flags.DEFINE_multi_string("model_dir", [], "train.py run directory; repeat for several models")
flags.DEFINE_multi_string("compare", [], "metrics.json files of earlier evaluations to plot too")
flags.DEFINE_string("out", None, "Output folder")
flags.DEFINE_string("data_dir", None, "smmnist: test TFRecords of `python -m pipelines.smmnist "
                    "--split=test --seed=42 ...` (default: the same seeded set generated here); "
                    "bair: the folder holding softmotion30_44k/ (its 256 test videos); kth: the "
                    "TFRecords of `python -m pipelines.kth` (1000 seeded test clips); videos: "
                    "the TFRecords of `python -m pipelines.videos` (256 seeded test clips); "
                    "--data_source=tfds: a tensorflow-datasets data_dir")
flags.DEFINE_enum("data_source", "native", ["native", "tfds"], "native files or prepared "
                  "tensorflow-datasets (see train.py)")
flags.DEFINE_bool("skip_bad_records", False, "BAIR: skip and count bad records instead of failing")
flags.DEFINE_integer("num_samples", 100, "Futures drawn per test video (1 for the deterministic model)")
flags.DEFINE_integer("max_videos", None, "Score only the first K test videos")
flags.DEFINE_integer("n_past", None, "Context frames (default per dataset: smmnist 5, kth 10, "
                     "bair 2; videos: the run's)")
flags.DEFINE_integer("n_future", None, "Predicted frames (default: smmnist 20, kth 30, bair 28; "
                     "videos: the run's)")
flags.DEFINE_enum("ssim", "tf", ["tf", "reference"], "tf: tf.image.ssim only; reference: also the "
                  "reference's SSIM (7x7 uniform window, data_range 2), reported as ssim_reference")
flags.DEFINE_enum("psnr", "tf", ["tf", "srvp"], "tf: tf.image.psnr (the whole frame's MSE) only; "
                  "srvp: also SRVP's (each channel's PSNR, averaged; its own best sample), "
                  "reported as psnr_srvp: what SRVP's tables used on RGB data (BAIR)")
flags.DEFINE_enum("generation_bn", None, ["moving", "batch"], "BatchNorm statistics when sampling "
                  "(default: the run's config, moving unless trained otherwise)")
flags.DEFINE_integer("seed", 1, "Seed of the sampled latents: sample s of every video uses the "
                     "noise of (seed, s), as svg_tf.load(...).sample and the SavedModel do")
flags.DEFINE_integer("chunk_size", 256, "(video, sample) rows per sampling call (bounds memory)")
flags.DEFINE_integer("videos_per_batch", 1, "Test videos sampled and scored together (1: every "
                     "call holds one video's samples, so --num_shards merges bit for bit; "
                     "CPU kernels round a row by its batch)")
flags.DEFINE_integer("num_figure_videos", 4, "Test videos drawn in the sample figures")
flags.DEFINE_string("lpips_path", None, "Optional LPIPS SavedModel (see svg_tf/metrics.py)")
flags.DEFINE_string("i3d_path", None, "Optional I3D SavedModel for FVD (see svg_tf/metrics.py)")
flags.DEFINE_string("mnist_path", None, "SM-MNIST digits: a Keras-format mnist.npz")
flags.DEFINE_enum("smmnist_variant", None, ["svg", "srvp"], "SM-MNIST test set: svg (the SVG "
                  "reference's generator) or srvp (SRVP's own test set: what SRVP's table, and its "
                  "SVG-LP row, were scored on); default: the run's")
flags.DEFINE_integer("cpu_replicas", 0, "Without GPUs: sample on N logical CPU devices")
flags.DEFINE_integer("num_shards", 1, "Split the test videos over N runs (machines, job-array "
                     "tasks): video j goes to shard j % N; a shard writes OUT/shard-...npz, "
                     "--merge writes the results")
flags.DEFINE_integer("shard_index", 0, "This run's shard, in [0, --num_shards)")
flags.DEFINE_multi_string("merge", [], "Folder of shard files (repeatable): join them into the "
                          "outputs of one unsharded run, in --out; needs no --model_dir")


def _check_flags():
  """Every flag that can be checked before TensorFlow starts; UserError naming the first bad one."""
  if not FLAGS.out:
    raise UserError("--out is required (the folder for metrics.json and the figures)")
  if not FLAGS.model_dir and not FLAGS.compare and not FLAGS.merge:
    raise UserError("nothing to do: pass --model_dir=DIR (repeatable), --compare=FILE and/or "
                    "--merge=DIR")
  _check_shard_flags()
  for name in ("num_samples", "chunk_size", "videos_per_batch", "max_videos", "n_past",
               "n_future"):
    value = FLAGS[name].value
    if value is not None and value < 1:  # None: the default; 0 is not silently the default
      raise UserError(f"--{name}={value}: must be at least 1")
  if FLAGS.num_figure_videos < 0:
    raise UserError(f"--num_figure_videos={FLAGS.num_figure_videos}: must be 0 or more")
  if not 0 <= FLAGS.seed <= 2**31 - 1:
    raise UserError(f"--seed={FLAGS.seed}: must be in [0, 2**31 - 1]")
  for model_dir in FLAGS.model_dir:
    if not os.path.isdir(model_dir) and "://" not in model_dir:
      raise UserError(f"--model_dir={model_dir}: no such folder")
  for path in FLAGS.compare:
    _read_compare(path)  # before any model is sampled
  command_line.check_output_dir(FLAGS.out, "out")


def _check_shard_flags():
  """--num_shards, --shard_index and --merge; the shard files' names and descriptions too
  (a missing, duplicated or mismatched shard), all before TensorFlow starts."""
  if FLAGS.num_shards < 1:
    raise UserError(f"--num_shards={FLAGS.num_shards}: must be at least 1")
  if not 0 <= FLAGS.shard_index < FLAGS.num_shards:
    raise UserError(f"--shard_index={FLAGS.shard_index}: must be in [0, {FLAGS.num_shards}) "
                    f"(--num_shards={FLAGS.num_shards})")
  if FLAGS.merge:
    if FLAGS.model_dir:
      raise UserError("--merge with --model_dir: a merge reads shard files, not a model; run "
                      "the shards with --model_dir, then --merge alone")
    if FLAGS.num_shards > 1 or FLAGS.shard_index:
      raise UserError("--merge with --num_shards/--shard_index: the shard files say how many "
                      "shards there are")
    try:
      evaluation_shards.check_shards(FLAGS.merge)
    except evaluation_shards.ShardError as err:
      raise UserError(str(err)) from None
  if FLAGS.num_shards > 1:
    if not FLAGS.model_dir:
      raise UserError(f"--num_shards={FLAGS.num_shards}: sharding needs --model_dir (the run "
                      "to score)")
    if len(FLAGS.model_dir) > 1:
      raise UserError(f"--num_shards={FLAGS.num_shards} with {len(FLAGS.model_dir)} "
                      "--model_dir: shard one model at a time")
    if FLAGS.compare:
      raise UserError(f"--num_shards={FLAGS.num_shards} with --compare: a shard writes no "
                      "metrics; pass --compare to the --merge run")


def _read_compare(path: str) -> dict:
  """A metrics.json of an earlier evaluation; UserError naming the file when it is not one."""
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, UnicodeDecodeError) as err:
    raise UserError(f"--compare={path}: cannot be read ({err.strerror or err})") from None
  except ValueError as err:
    raise UserError(f"--compare={path}: not JSON ({err})") from None
  if not isinstance(saved, dict) or not all(
      isinstance(saved.get(k), dict) for k in ("ssim", "psnr")):
    raise UserError(f"--compare={path}: not a metrics.json written by evaluate.py (no ssim and "
                    "psnr curves)")
  return saved


def main(argv):
  del argv  # command_line.run refuses positional arguments
  _check_flags()

  # TensorFlow starts here, once the flags are known to be good (--cpu_replicas needs that).
  # pylint: disable=g-import-not-at-top
  from pipelines import inputs
  from svg_tf import checkpoints, evaluation, run_dir, strategies
  # pylint: enable=g-import-not-at-top

  try:
    strategy = strategies.make_strategy(FLAGS.cpu_replicas)
  except ValueError as err:
    raise UserError(str(err)) from None
  curves = {}
  for path in FLAGS.compare:
    saved = _read_compare(path)
    curves[saved.get("label", os.path.basename(os.path.dirname(os.path.abspath(path))))] = saved
  if FLAGS.merge:
    try:
      result = evaluation_shards.write_merged(FLAGS.merge, FLAGS.out)
    except evaluation_shards.ShardError as err:  # a shard file damaged inside
      raise UserError(str(err)) from None
    curves[result["label"] or "merged"] = result
    _log_result(result["label"] or "merged", result)
  several = len(FLAGS.model_dir) > 1
  sharded = FLAGS.num_shards > 1
  for model_dir in FLAGS.model_dir:
    label = os.path.basename(os.path.normpath(model_dir))
    try:
      run = checkpoints.restore_run(model_dir, strategy)
    except (FileNotFoundError, ValueError, run_dir.RunDirError,
            checkpoints.CheckpointReadError) as err:  # ValueError: IncompleteCheckpointError
      raise UserError(f"--model_dir={model_dir}: {err}") from None
    config = run.model.config
    if FLAGS.smmnist_variant:  # score on the other SM-MNIST (e.g. SRVP's test set)
      config = config.replace(smmnist_variant=FLAGS.smmnist_variant)
    default_past, default_future = HORIZONS.get(config.dataset, (config.n_past, config.n_future))
    n_past = default_past if FLAGS.n_past is None else FLAGS.n_past
    n_future = default_future if FLAGS.n_future is None else FLAGS.n_future
    if config.skip_rule == "reference" and n_past < 2:
      raise UserError(f"--n_past={n_past}: {model_dir} was trained with skip_rule=reference, "
                      "which reads x[n_past-2]: it needs at least 2")
    try:
      videos = inputs.test_videos(config, n_past + n_future, FLAGS.data_dir, FLAGS.max_videos,
                                  FLAGS.mnist_path, skip_bad_records=FLAGS.skip_bad_records,
                                  source=FLAGS.data_source)
    except (ValueError, FileNotFoundError) as err:  # a bad --data_dir: one line
      raise UserError(str(err)) from None
    settings = dict(
        n_past=n_past, n_future=n_future, checkpoint=run.checkpoint, checkpoint_step=run.step,
        num_samples=FLAGS.num_samples, reference_ssim=FLAGS.ssim == "reference",
        bn_mode=FLAGS.generation_bn, seed=FLAGS.seed, chunk_size=FLAGS.chunk_size,
        videos_per_batch=FLAGS.videos_per_batch, num_figure_videos=FLAGS.num_figure_videos,
        lpips_path=FLAGS.lpips_path, i3d_path=FLAGS.i3d_path,
        digit_images=videos.digit_images, srvp_psnr=FLAGS.psnr == "srvp",
        strategy=strategy, label=label)
    if sharded:
      if FLAGS.shard_index >= len(videos.frames):
        raise UserError(f"--num_shards={FLAGS.num_shards}: more shards than the "
                        f"{len(videos.frames)} test videos (shard {FLAGS.shard_index} would "
                        "score none)")
      results = evaluation.compute_results(run.model, videos, num_shards=FLAGS.num_shards,
                                           shard_index=FLAGS.shard_index, **settings)
      path = evaluation_shards.save_shard(results, FLAGS.out, FLAGS.shard_index,
                                          FLAGS.num_shards)
      logging.info("shard %d of %d: %d of %d videos scored; wrote %s (merge the %d shards with "
                   "evaluate.py --merge=DIR --out=DIR)", FLAGS.shard_index, FLAGS.num_shards,
                   len(results.video_index), results.total_videos, path, FLAGS.num_shards)
      continue
    curves[label] = evaluation.evaluate(
        run.model, videos, os.path.join(FLAGS.out, label) if several else FLAGS.out, **settings)
    _log_result(label, curves[label])
  if len(curves) > 1 or not (FLAGS.model_dir or FLAGS.merge):  # a merge alone plotted its own
    for path in evaluation.plot_comparison(curves, FLAGS.out):
      logging.info("wrote %s", path)
  print(f"results in {os.path.abspath(FLAGS.out)}")


def _log_result(label: str, result: dict):
  logging.info("%s: SSIM %.4f +- %.4f, PSNR %.2f +- %.2f dB over %d videos", label,
               result["ssim"]["mean"], result["ssim"]["ci95"], result["psnr"]["mean"],
               result["psnr"]["ci95"], result["num_videos"])


def run():
  """The `svg-evaluate` console command."""
  command_line.run(main)


if __name__ == "__main__":
  run()
