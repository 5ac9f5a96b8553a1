"""Exports a trained SVG run as a SavedModel in TF Serving's layout (svg_tf/export.py has the contract).

  python export.py --model_dir=runs/smmnist_lp --export_dir=exports --model_name=svg
  docker run -p 8500:8500 -p 8501:8501 -v "$PWD/exports/svg:/models/svg" -e MODEL_NAME=svg \
      tensorflow/serving:2.21.0

Writes EXPORT_DIR/MODEL_NAME/<version>/ (default version: the next integer) through a temporary
folder renamed into place; an existing version is never overwritten.
"""

from absl import app, flags

flags.DEFINE_string("model_dir", None, "train.py run directory (config.json + checkpoints/)")
flags.DEFINE_string("export_dir", None, "Base folder of exports; the model goes to "
                    "EXPORT_DIR/MODEL_NAME/<version>")
flags.DEFINE_string("model_name", "svg", "Model name: the folder under --export_dir and the name "
                    "clients use (/v1/models/NAME:predict)")
flags.DEFINE_integer("version", None, "Version folder (an integer); default: one more than the "
                     "highest existing version, 1 for the first")
flags.DEFINE_integer("max_num_samples", 100, "Cap on num_samples per request")
flags.DEFINE_integer("max_num_future", 100, "Cap on num_future per request")
flags.DEFINE_integer("max_frames", 10_000, "Cap on generated frames per request "
                     "(videos x num_samples x num_future)")
flags.mark_flags_as_required(["model_dir", "export_dir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from svg_tf import export  # TensorFlow starts here, once the flags parsed
  try:
    limits = export.Limits(FLAGS.max_num_samples, FLAGS.max_num_future, FLAGS.max_frames)
    path = export.export_run(FLAGS.model_dir, FLAGS.export_dir, FLAGS.model_name, FLAGS.version,
                             limits)
  except (ValueError, FileNotFoundError, FileExistsError) as err:
    raise app.UsageError(str(err))
  print(f"exported {path}")


def run():
  """The `svg-export` console command."""
  app.run(main)


if __name__ == "__main__":
  run()
