"""Where bench results go: one JSON file per measurement under bench/results/, with the machine.

Every bench prints its result as one JSON line; with --out=NAME it also writes
bench/results/NAME.json (or --out=PATH.json anywhere):

  {"bench": "train_step", "command": [...], "machine": {...}, "result": {...}}

`machine` holds the CPU model, the core count, the thread settings TensorFlow was given and the
versions of the packages that did the work, so a number can be read against where it came from.
The README's speed figures are rendered from these files by bench/report.py, and
tests/test_readme_numbers.py checks that the README says what the files say.
"""

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from typing import Any, Dict, Optional

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
PACKAGES = ("tensorflow", "keras", "tensorflow-probability", "numpy", "torch")


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def machine() -> Dict[str, Any]:
  threads = {"TF_NUM_INTRAOP_THREADS": os.environ.get("TF_NUM_INTRAOP_THREADS"),
             "TF_NUM_INTEROP_THREADS": os.environ.get("TF_NUM_INTEROP_THREADS"),
             "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
  if "tensorflow" in sys.modules:
    tf = sys.modules["tensorflow"]
    threads["tf_intra_op"] = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    threads["tf_inter_op"] = tf.config.threading.get_inter_op_parallelism_threads() or "default"
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads,
          "python": platform.python_version(), "packages": versions,
          "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def revision() -> Optional[str]:
  """The git revision of the code that ran (with "+changes" when the tree differs from it)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                         text=True, check=True).stdout.strip()
    dirty = subprocess.run(  # the records themselves are rewritten by a run of benches
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
         ":(exclude)bench/results"], cwd=root, capture_output=True, text=True,
        check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None
  return rev + ("+changes" if dirty else "")


def path_of(out: str) -> str:
  """--out=NAME means bench/results/NAME.json; a path ending in .json is taken as it is."""
  return out if out.endswith(".json") else os.path.join(RESULTS_DIR, f"{out}.json")


def save(bench: str, result: Dict[str, Any], out: Optional[str]) -> None:
  """Prints the result as one JSON line; writes the record to `out` when it is given."""
  print(json.dumps(result))
  if out:
    path = path_of(out)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record = {"bench": bench, "command": sys.argv, "revision": revision(), "machine": machine(),
              "result": result}
    with open(path + ".tmp", "w") as f:
      json.dump(record, f, indent=2)
      f.write("\n")
    os.replace(path + ".tmp", path)


def load(name: str) -> Dict[str, Any]:
  with open(path_of(name)) as f:
    return json.load(f)
