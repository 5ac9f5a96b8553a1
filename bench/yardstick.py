"""The PyTorch yardstick (../shared/bench/torch_svg_ref.py, an independent port of the reference
SVG-LP step) run through ../shared/bench/yardstick.sh, its JSON line recorded like every bench's.

  python bench/yardstick.py --out=yardstick_train_smmnist_b16 -- --dataset smmnist --batch 16
  python bench/yardstick.py --out=yardstick_generate_smmnist_b16 -- --dataset smmnist --batch 16 --generate

Everything after `--` goes to torch_svg_ref.py (its --threads is 2, as yardstick.sh sets).
"""

import json
import os
import subprocess
import sys

import record

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "shared", "bench", "yardstick.sh")


def main(argv):
  out = None
  if "--" in argv:
    cut = argv.index("--")
    own, passed = argv[:cut], argv[cut + 1:]
  else:
    own, passed = [], argv
  for arg in own:
    if arg.startswith("--out="):
      out = arg.split("=", 1)[1]
    else:
      sys.exit(f"error: unknown flag {arg} (pass the yardstick's own flags after --)")
  result = subprocess.run(["bash", SCRIPT, *passed], capture_output=True, text=True, check=False)
  if result.returncode != 0:
    sys.exit(f"error: {SCRIPT} failed: {result.stderr.strip().splitlines()[-1:]}")
  record.save("yardstick", json.loads(result.stdout.strip().splitlines()[-1]), out)


if __name__ == "__main__":
  main(sys.argv[1:])
