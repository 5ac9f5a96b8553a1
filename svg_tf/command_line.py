"""What every svg_tf command line shares: a user's mistake is one line, and exit status 1.

A bad flag, a missing or corrupt file, an unusable run directory: the command prints exactly one
line `error: ...` naming the flag, file or value, as its last line, and exits with status 1; no
traceback and no usage text (`--help` shows that). absl's own flag-parsing errors (a value that is
not a number, an unknown flag) end the same way. Ctrl-C ends with `interrupted` and status 130
(train.py saves first: svg_tf/train_loop.py). Internal failures still raise: a traceback then
means a bug, not a mistake.
"""

import os
import sys
import uuid
from typing import Callable, List

from absl import app, flags

ERROR_EXIT_CODE = 1
INTERRUPTED_EXIT_CODE = 130  # a shell's code for a process ended by Ctrl-C (128 + SIGINT)


class UserError(Exception):
  """A mistake the user can fix; its message is the one line the command prints."""


def fail(message: str) -> None:
  """Prints `error: message` (one line) to stderr and exits with status 1."""
  line = " ".join(str(message).split())  # one line, whatever the message held
  print(f"error: {line}", file=sys.stderr, flush=True)
  sys.exit(ERROR_EXIT_CODE)


def _parse_flags(argv: List[str]) -> List[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as err:
    fail(str(err))


def run(main: Callable[[List[str]], int]) -> None:
  """absl's app.run for a front end: UserError and flag errors become one line and status 1."""
  def guarded(argv):
    if len(argv) > 1:
      fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value)")
    try:
      return main(argv)
    except UserError as err:
      fail(str(err))
    except KeyboardInterrupt:  # Ctrl-C where the command has no handler of its own
      print("interrupted", file=sys.stderr, flush=True)
      sys.exit(INTERRUPTED_EXIT_CODE)
  app.run(guarded, flags_parser=_parse_flags)


def check_output_dir(path: str, flag: str) -> None:
  """Creates the folder `path` (flag --`flag`) and a probe file in it; UserError naming it if it is
  a file or cannot be written. Remote paths (gs://...) are checked when written."""
  if "://" in path:
    return
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f"--{flag}={path}: is a file, not a folder")
  probe = os.path.join(path, f".write-probe-{uuid.uuid4().hex}")
  try:
    os.makedirs(path, exist_ok=True)
    with open(probe, "w") as f:
      f.write("svg_tf write probe\n")
    os.remove(probe)
  except OSError as err:
    raise UserError(f"--{flag}={path}: cannot be written ({err.strerror or err})") from None
