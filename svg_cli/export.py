"""Exports a trained SVG run as a SavedModel in TF Serving's layout (svg_tf/export.py has the contract).

  python export.py --model_dir=runs/smmnist_lp --export_dir=exports --model_name=svg
  docker run -p 8500:8500 -p 8501:8501 -v "$PWD/exports/svg:/models/svg" -e MODEL_NAME=svg \
      tensorflow/serving:2.21.0

Writes EXPORT_DIR/MODEL_NAME/<version>/ (default version: the next integer) through a temporary
folder renamed into place; an existing version is never overwritten.
Exit status: 0 exported; 1 a user error, one line `error: ...`.
"""

import os

from absl import flags

from svg_tf import command_line
from svg_tf.command_line import UserError

flags.DEFINE_string("model_dir", None, "train.py run directory (config.json + checkpoints/)")
flags.DEFINE_string("export_dir", None, "Base folder of exports; the model goes to "
                    "EXPORT_DIR/MODEL_NAME/<version>")
flags.DEFINE_string("model_name", "svg", "Model name: the folder under --export_dir and the name "
                    "clients use (/v1/models/NAME:predict): letters, digits, '_', '.', '-', "
                    "starting with a letter or digit")
flags.DEFINE_integer("version", None, "Version folder (an integer); default: one more than the "
                     "highest existing version, 1 for the first")
flags.DEFINE_integer("max_num_samples", 100, "Cap on num_samples per request")
flags.DEFINE_integer("max_num_future", 100, "Cap on num_future per request")
flags.DEFINE_integer("max_frames", 10_000, "Cap on the frames one request handles: videos x "
                     "num_samples x (n_context + num_future), since every sample runs over the "
                     "context again (mean_future, prior_std: videos x (n_context + num_future))")
flags.DEFINE_integer("max_num_context", 100, "Cap on context frames per video in a request")
flags.DEFINE_enum("precision", None, ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Compute dtype of the exported conv nets (default: the run's); inputs and "
                  "outputs stay float32. mixed_bfloat16: faster on CPUs with bfloat16 units")
FLAGS = flags.FLAGS


def main(argv):
  del argv  # command_line.run refuses positional arguments
  for name in ("model_dir", "export_dir"):
    if not FLAGS[name].value:
      raise UserError(f"--{name} is required")
  if not os.path.isdir(FLAGS.model_dir) and "://" not in FLAGS.model_dir:
    raise UserError(f"--model_dir={FLAGS.model_dir}: no such folder")
  if os.path.exists(FLAGS.export_dir) and not os.path.isdir(FLAGS.export_dir):
    raise UserError(f"--export_dir={FLAGS.export_dir}: is a file, not a folder")
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from svg_tf import checkpoints, export, run_dir
  # pylint: enable=g-import-not-at-top
  try:  # TensorFlow starts here, once the flags parsed
    limits = export.Limits(FLAGS.max_num_samples, FLAGS.max_num_future, FLAGS.max_frames,
                           FLAGS.max_num_context)
    path = export.export_run(FLAGS.model_dir, FLAGS.export_dir, FLAGS.model_name, FLAGS.version,
                             limits, precision=FLAGS.precision)
  except (ValueError, OSError, run_dir.RunDirError, checkpoints.CheckpointReadError) as err:
    # ValueError: a bad flag or IncompleteCheckpointError; OSError: FileNotFoundError (no
    # checkpoint), FileExistsError (the version exists), an export folder that cannot be written.
    raise UserError(str(err)) from None
  except tf.errors.OpError as err:  # e.g. a file where a folder of the export must go
    raise UserError(f"--export_dir={FLAGS.export_dir}: cannot be written "
                    f"({type(err).__name__}: {run_dir.first_line(err)})") from None
  print(f"exported {path}")


def run():
  """The `svg-export` console command."""
  command_line.run(main)


if __name__ == "__main__":
  run()
