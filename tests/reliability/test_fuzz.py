"""Bounded fuzzing (fixed seeds): damaged TFRecords into every reader, damaged and random bytes into
the video decoder, random and damaged REST bodies, headers and gRPC requests into the stand-in
server. Each family runs in its own process (tests/reliability/fuzz_cases.py), so that a crash or
a hang is seen as one; every case must end in a valid result or a clean refusal, and the process's
peak memory must stay bounded."""

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.reliability.helpers import subprocess_env

# family: (cases, peak RSS allowed in MB). A tiny model and tiny files; the server's caps bound a
# request's memory. TensorFlow alone takes about 600 MB.
FAMILIES = {"tfrecords": (60, 1200), "videos": (150, 400), "server": (160, 1500)}
TIMEOUT_S = 240  # on 2 cores beside other tests; alone the slowest family takes about 50 s


# One test per family (each was already its own process): three shorter tests that pytest-xdist
# can spread, instead of one that ran the three processes at once.
@pytest.mark.parametrize("family", list(FAMILIES))
def test_fuzzed_inputs_end_in_a_result_or_a_clean_error(family, tmp_path):
  cases, peak_mb = FAMILIES[family]
  started = time.monotonic()
  proc = subprocess.Popen(
      [sys.executable, "-m", "tests.reliability.fuzz_cases", family, "--seed=2026",
       f"--cases={cases}", f"--workdir={tmp_path}"], cwd=ROOT, env=subprocess_env(),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired:
    pytest.fail(f"{family}: no answer within {TIMEOUT_S} s (a hang?)")
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
  assert proc.returncode == 0 and lines and "done" in lines[-1], (
      f"{family} crashed (exit {proc.returncode}):\n{stderr[-3000:]}")
  results = lines[:-1]
  bad = [r for r in results if r["outcome"] == "BAD"]
  assert not bad, family + ":\n" + "\n".join(f"{r['what']}: {r['detail']}" for r in bad)
  outcomes = {o: sum(r["outcome"] == o for r in results) for o in ("ok", "clean error")}
  print(family, outcomes, f"peak {lines[-1]['peak_rss_mb']} MB")
  assert len(results) >= cases
  assert outcomes["clean error"] > 0 and outcomes["ok"] > 0  # damage seen, and not only
  assert lines[-1]["peak_rss_mb"] < peak_mb, (family, lines[-1])
  print(f"{cases} cases in {time.monotonic() - started:.0f} s")
