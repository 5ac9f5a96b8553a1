"""Every measured figure in the README's bench blocks is what bench/results/*.json says.

bench/report.py renders each `<!-- bench:NAME -->` block from the committed bench records; the
README must hold exactly that text, so a figure cannot drift from the file it came from.
"""

import importlib.util
import json
import os
import re
import sys

from tests.conftest import ROOT

BENCH = os.path.join(ROOT, "bench")


def _report():
  spec = importlib.util.spec_from_file_location("bench_report", os.path.join(BENCH, "report.py"))
  module = importlib.util.module_from_spec(spec)
  sys.path.insert(0, BENCH)  # report.py imports bench/record.py as `record`
  try:
    spec.loader.exec_module(module)
  finally:
    sys.path.remove(BENCH)
  return module


def test_the_readme_blocks_are_rendered_from_the_bench_records():
  report = _report()
  text = open(os.path.join(ROOT, "README.md")).read()
  names = re.findall(r"<!-- bench:(\w+) -->", text)
  assert sorted(names) == sorted(report.BLOCKS), names
  assert report.rendered(text) == text, "README differs: run python bench/report.py --write"


def test_every_record_names_its_machine_and_command():
  results = os.path.join(BENCH, "results")
  files = sorted(f for f in os.listdir(results) if f.endswith(".json"))
  assert files
  for name in files:
    record = json.load(open(os.path.join(results, name)))
    assert record["machine"]["cores"] >= 1 and record["machine"]["cpu"], name
    assert record["machine"]["packages"], name
    assert any("bench/" in part for part in record["command"]), name


def test_a_changed_record_changes_the_rendered_block(tmp_path, monkeypatch):
  report = _report()
  original = report.record.load
  def faster(name):
    rec = original(name)
    if name == "train_step_smmnist_b16_float32":
      rec = json.loads(json.dumps(rec))
      rec["result"]["frames_per_s"] *= 2
    return rec
  monkeypatch.setattr(report.record, "load", faster)
  text = open(os.path.join(ROOT, "README.md")).read()
  assert report.rendered(text) != text
