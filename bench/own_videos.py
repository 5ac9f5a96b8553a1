"""The README's "Your own videos" path, timed: convert a folder of mp4 clips, train, evaluate,
predict a clip the model never saw, with the installed console commands; prints JSON.

The clips are synthetic stand-ins for a phone's (moving shapes, pipelines/fixtures/videos.py),
320x240 at 25 fps; every command is the README's, run from a scratch folder.

  python bench/own_videos.py --out=own_videos
"""

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402
import record  # noqa: E402  (bench/record.py)

from pipelines.fixtures import videos as fixture  # noqa: E402

flags.DEFINE_integer("clips", 24, "Clips in the folder (half of them one folder down).")
flags.DEFINE_integer("frames", 100, "Frames per clip.")
flags.DEFINE_integer("train_steps", 300, "svg-train --train_steps.")
flags.DEFINE_string("out", None, "Also write the result to bench/results/OUT.json (or to OUT if "
                    "it ends in .json), with the machine it ran on.")
FLAGS = flags.FLAGS

BIN = os.path.dirname(sys.executable)  # the environment's console commands
MODEL = ["--base_filters=16", "--g_dim=64", "--rnn_size=128", "--z_dim=8", "--n_past=5",
         "--n_future=5"]


def main(argv):
  del argv
  work = tempfile.mkdtemp(prefix="own_videos_")
  for i in range(FLAGS.clips):
    folder = os.path.join(work, "my_videos", "garden" if i % 2 else "")
    os.makedirs(folder, exist_ok=True)
    fixture.write_video(os.path.join(folder, f"clip_{i:02d}.mp4"),
                        fixture.moving_shapes(FLAGS.frames, 240, 320, seed=i), fps=25)
  fixture.write_video(os.path.join(work, "new_clip.mp4"), fixture.moving_shapes(40, 240, 320,
                                                                                seed=99), fps=25)
  steps = {
      "convert": [sys.executable, "-m", "pipelines.videos", "--src=my_videos",
                  "--out=data/my_videos"],
      "train": [os.path.join(BIN, "svg-train"), "--dataset=videos", "--data_dir=data/my_videos",
                "--model_dir=runs/my_videos", "--batch_size=8",
                f"--train_steps={FLAGS.train_steps}", *MODEL, "--log_every=50",
                "--checkpoint_every=100", "--image_every=100"],
      "evaluate": [os.path.join(BIN, "svg-evaluate"), "--model_dir=runs/my_videos",
                   "--data_dir=data/my_videos", "--num_samples=20", "--max_videos=32",
                   "--out=eval/my_videos"],
      "predict": [os.path.join(BIN, "svg-predict"), "--model=runs/my_videos",
                  "--video=new_clip.mp4", "--num_samples=5", "--num_future=20", "--seed=1",
                  "--out=futures"],
  }
  seconds = {}
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  for name, cmd in steps.items():
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    seconds[name] = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
      sys.exit(f"error: {name} failed: {done.stderr[-2000:]}")
  info = {s: json.load(open(os.path.join(work, "data", "my_videos", s, "dataset_info.json")))
          for s in ("train", "test")}
  losses = [json.loads(line) for line in open(os.path.join(work, "runs", "my_videos",
                                                           "losses.jsonl"))]
  metrics = json.load(open(os.path.join(work, "eval", "my_videos", "metrics.json")))
  predicted = json.load(open(os.path.join(work, "futures", "predict.json")))
  window = lambda rows: round(sum(r["loss"] for r in rows) / len(rows), 4)
  record.save("own_videos", {
      "clips": FLAGS.clips, "frames_per_clip": FLAGS.frames, "clip_size": [320, 240],
      "train_videos": info["train"]["num_examples"], "test_videos": info["test"]["num_examples"],
      "seconds": seconds, "train_steps": FLAGS.train_steps,
      "train_frames_per_s_whole_command": round(FLAGS.train_steps * 8 * 10 / seconds["train"], 1),
      "loss_first_50_steps": window(losses[:50]), "loss_last_50_steps": window(losses[-50:]),
      "eval_ssim": [round(metrics["ssim"]["mean"], 4), round(metrics["ssim"]["ci95"], 4)],
      "eval_psnr": [round(metrics["psnr"]["mean"], 2), round(metrics["psnr"]["ci95"], 2)],
      "eval_videos": metrics["num_videos"],
      "predict_best_ssim": round(max(predicted["scores"]["ssim"]), 4),
  }, FLAGS.out)


if __name__ == "__main__":
  app.run(main)
