"""Ratios to the PyTorch yardstick as the median of several rounds, each round the yardstick and
svg_tf's runs back to back; prints one JSON line, records it with --out.

One run of the yardstick can differ from the next by 30% on this 2-core machine (the same command
gave 148 and 223 generated frames/s on different days), so a ratio from one pair of runs says
little. Each round here runs the yardstick (default call pattern and --encode_once) and svg_tf in
float32 and mixed_bfloat16, each in a fresh process, in an order that rotates from round to round,
and the record keeps every run and the median of the per-round ratios.

  python bench/paired.py --work=sample --dataset=smmnist --rounds=3 --out=paired_sample_smmnist_b16
  python bench/paired.py --work=train --dataset=smmnist --rounds=3 --out=paired_train_smmnist_b16
"""

import json
import os
import statistics
import subprocess
import sys

from absl import app, flags

import record

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH = {"smmnist": 16, "bair": 8, "kth": 8}

flags.DEFINE_enum("work", "sample", ["sample", "train"], "Sampling or training.")
flags.DEFINE_enum("dataset", "smmnist", sorted(BATCH), "Preset (batch: SM-MNIST 16, others 8).")
flags.DEFINE_integer("rounds", 3, "Rounds of back-to-back runs.")
flags.DEFINE_integer("steps", None, "Timed calls per run (default: each bench's own).")
flags.DEFINE_string("out", None, "Also write the result to bench/results/OUT.json.")
FLAGS = flags.FLAGS


def _last_json(command):
  out = subprocess.run(command, capture_output=True, text=True, check=False)
  if out.returncode:
    raise SystemExit(f"error: {' '.join(command)} failed: {out.stderr.strip().splitlines()[-3:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def _commands():
  """name -> command of each run in a round."""
  batch = BATCH[FLAGS.dataset]
  steps = [] if FLAGS.steps is None else [f"--steps={FLAGS.steps}"]
  yard = [sys.executable, os.path.join(HERE, "yardstick.py"), "--", "--dataset", FLAGS.dataset,
          "--batch", str(batch)] + (["--steps", str(FLAGS.steps)] if FLAGS.steps else [])
  if FLAGS.work == "sample":
    yard.append("--generate")
  script = os.path.join(HERE, "sample.py" if FLAGS.work == "sample" else "train_step.py")
  ours = [sys.executable, script, f"--dataset={FLAGS.dataset}", f"--batch_size={batch}", *steps]
  commands = {"yardstick": yard}
  if FLAGS.work == "sample":
    commands["yardstick_encode_once"] = yard + ["--encode_once"]
  for precision in ("float32", "mixed_bfloat16"):
    commands[precision] = ours + [f"--precision={precision}"]
  return commands


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  commands = _commands()
  names = list(commands)
  rounds = []
  for i in range(FLAGS.rounds):
    order = names[i % len(names):] + names[:i % len(names)]
    fps = {}
    for name in order:
      print(f"paired | round {i + 1}/{FLAGS.rounds} | {name}", file=sys.stderr, flush=True)
      fps[name] = _last_json(commands[name])["frames_per_s"]
    ratios = {p: round(fps[p] / fps["yardstick"], 3) for p in ("float32", "mixed_bfloat16")}
    if "yardstick_encode_once" in fps:
      ratios.update({f"{p}_vs_encode_once": round(fps[p] / fps["yardstick_encode_once"], 3)
                     for p in ("float32", "mixed_bfloat16")})
    rounds.append({"order": order, "frames_per_s": fps, "ratios": ratios})
  medians = {k: round(statistics.median(r["ratios"][k] for r in rounds), 3)
             for k in rounds[0]["ratios"]}
  frames = {k: round(statistics.median(r["frames_per_s"][k] for r in rounds), 2) for k in names}
  record.save("paired", {"work": FLAGS.work, "dataset": FLAGS.dataset,
                         "batch": BATCH[FLAGS.dataset], "rounds": rounds,
                         "median_ratios": medians, "median_frames_per_s": frames}, FLAGS.out)


if __name__ == "__main__":
  app.run(main)
