"""The command line: samples of a served SVG model for a video, as a GIF.

  python -m svg_tf.serving --server=localhost:8500 --model_name=svg --video=clip.gif \\
      --num_samples=5 --num_future=20 --out=samples.gif

reads a clip (a video file, .gif, .npy, .npz or a folder of frames: svg_tf/video_files.py),
sends its first --n_context frames (all by default) to TF Serving (or svg_tf/serving/local_server.py's LocalServer) through
svg_tf/serving/client.py's Client, and writes a GIF of the context followed by each sample, one
tile per sample. A refused request ends with one line naming the server's reason.
"""

from absl import flags

from svg_tf import command_line, media, video_files
from svg_tf.command_line import UserError
from svg_tf.serving.client import Client, ServingError


def main(argv):
  del argv  # command_line.run refuses positional arguments
  f = flags.FLAGS
  if f.n_context < 0:
    raise UserError(f"--n_context={f.n_context}: must be 0 (all frames) or more")
  for name in ("num_future", "num_samples"):
    if f[name].value < 1:
      raise UserError(f"--{name}={f[name].value}: must be at least 1")
  if f.timeout <= 0:
    raise UserError(f"--timeout={f.timeout}: must be positive")
  try:
    clip = video_files.read_clip(f.video, f.image_size or None, f.channels or None, f.crop)
  except (ValueError, OSError) as err:
    raise UserError(f"--video={f.video}: {err}") from None
  video = clip.frames.astype("float32") / 255.0
  context = video[:f.n_context] if f.n_context else video
  with Client(f.server, f.model_name, f.protocol, f.rest_format, f.version, f.timeout) as client:
    try:
      samples = client.sample(context[None], f.num_future, f.num_samples, f.seed)[0]
    except ServingError as err:  # a bad video or flag value: one line, no traceback
      raise UserError(f"the server refused the request: {err}") from None
    except ValueError as err:  # the client's own checks (e.g. a seed out of range)
      raise UserError(str(err)) from None
  try:
    media.samples_gif(f.out, context, samples)
  except OSError as err:
    raise UserError(f"--out={f.out}: cannot be written ({err.strerror or err})") from None
  print(f"wrote {f.out}: {samples.shape[0]} sample(s) of {samples.shape[1]} frames after "
        f"{context.shape[0]} context frame(s)")


def _define_flags():
  flags.DEFINE_string("server", None, "host:port of TF Serving (gRPC 8500, REST 8501)")
  flags.DEFINE_string("model_name", "svg", "Served model name")
  flags.DEFINE_enum("protocol", "grpc", ["grpc", "rest"], "PredictionService over gRPC, or REST")
  flags.DEFINE_enum("rest_format", "columnar", ["columnar", "row"], "REST JSON: inputs or instances")
  flags.DEFINE_integer("version", None, "Model version (default: the newest served)")
  flags.DEFINE_string("video", None, "Context clip: a video file (.mp4 .avi .mov .mkv .webm), "
                      ".gif, .npy/.npz (T, H, W[, C]) or a folder of PNG/JPEG frames")
  flags.DEFINE_integer("n_context", 0, "Context frames taken from the start of the video (0: "
                       "all; an export takes at most its max_num_context, 100 by default)")
  flags.DEFINE_integer("num_future", 10, "Frames to generate")
  flags.DEFINE_integer("num_samples", 3, "Futures to draw")
  flags.DEFINE_integer("seed", None, "Seed of the samples (default: random)")
  flags.DEFINE_integer("image_size", 0, "Crop and resize frames to this size first (0: as in "
                       "the file)")
  flags.DEFINE_enum("crop", "center", list(video_files.CROPS), "With --image_size: centre-crop "
                    "frames to a square first, or squash them (none)")
  flags.DEFINE_integer("channels", 0, "Convert frames to 1 or 3 channels first (0: as in the "
                       "file; video files give 3)")
  flags.DEFINE_float("timeout", 600.0, "Seconds per request")
  flags.DEFINE_string("out", None, "Output GIF: one tile per sample, context framed green")
  flags.mark_flags_as_required(["server", "video", "out"])


def run():
  """The `svg-client` console command."""
  _define_flags()
  command_line.run(main)


if __name__ == "__main__":
  run()
