"""Bounded fuzzing (fixed seeds): damaged TFRecords into every reader, damaged and random bytes into
the video decoder, random and damaged REST bodies, headers and gRPC requests into the stand-in
server. Each family runs in its own process (tests/reliability/fuzz_cases.py), so that a crash or
a hang is seen as one; every case must end in a valid result or a clean refusal, and the process's
peak memory must stay bounded."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.reliability.helpers import subprocess_env

# family: (cases, seconds allowed, peak RSS allowed in MB). The server's caps bound a request's
# memory; a tiny model and tiny files bound the rest, so these are generous.
FAMILIES = {"tfrecords": (120, 120, 1500), "videos": (120, 120, 1200), "server": (160, 180, 1800)}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fuzzed_inputs_end_in_a_result_or_a_clean_error(family, tmp_path):
  cases, seconds, peak_mb = FAMILIES[family]
  started = time.monotonic()
  try:
    out = subprocess.run([sys.executable, "-m", "tests.reliability.fuzz_cases", family,
                          "--seed=2026", f"--cases={cases}", f"--workdir={tmp_path}"], cwd=ROOT,
                         env=subprocess_env(), capture_output=True, text=True, timeout=seconds)
  except subprocess.TimeoutExpired as err:
    pytest.fail(f"{family}: no answer within {seconds} s (a hang?); last output:\n"
                f"{(err.stdout or b'')[-2000:]}")
  lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
  assert out.returncode == 0 and lines and "done" in lines[-1], (
      f"{family} crashed (exit {out.returncode}):\n{out.stderr[-3000:]}")
  results = lines[:-1]
  bad = [r for r in results if r["outcome"] == "BAD"]
  assert not bad, "\n".join(f"{r['what']}: {r['detail']}" for r in bad)
  outcomes = {o: sum(r["outcome"] == o for r in results) for o in ("ok", "clean error")}
  print(family, outcomes, f"{time.monotonic() - started:.0f} s, peak {lines[-1]['peak_rss_mb']} MB")
  assert len(results) >= cases
  assert outcomes["clean error"] > 0  # the damage was seen ...
  assert lines[-1]["peak_rss_mb"] < peak_mb, lines[-1]
