"""Layers that show in the imports: svg_tf never imports pipelines, and no module imports itself back.

Data enters svg_tf through the front ends (svg_cli: train, evaluate, export, predict), so the
library can be used on any frames; an import cycle makes the order of module initialisation decide
behaviour.
"""

import ast
import os
import subprocess
import sys

from tests.conftest import ROOT

PACKAGES = ("svg_tf", "pipelines", "svg_cli")
FRONT_ENDS = ("train.py", "evaluate.py", "export.py", "predict.py")  # wrappers of svg_cli's


def _modules():
  """{module name: file} for every module of the packages and the front ends."""
  found = {name[:-3]: os.path.join(ROOT, name) for name in FRONT_ENDS}
  for package in PACKAGES:
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(folder, name)
          module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
          found[module[:-len(".__init__")] if module.endswith(".__init__") else module] = path
  return found


def _imports(path, known):
  """Modules of `known` that the file imports anywhere (top level or inside functions)."""
  out = set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      # `from package import module` imports that module (and runs the package's __init__,
      # which imports nothing of its own here); `from module import name` imports the module.
      names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known
               else node.module for alias in node.names]
    else:
      continue
    out.update(n for n in names if n in known)
  return out


def _graph():
  modules = _modules()
  return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_no_svg_tf_module_imports_pipelines_in_a_fresh_interpreter():
  names = sorted(m for m in _modules() if m.startswith("svg_tf.") and not m.endswith("__main__"))
  assert "svg_tf.model" in names and "svg_tf.evaluation" in names and "svg_tf.predictor" in names
  code = ("import sys\n" + "".join(f"import {n}\n" for n in names) +
          "import svg_tf\nsvg_tf.load\n"
          "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pipelines'))")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().splitlines()[-1] == "[]"


def test_svg_tf_sources_name_no_pipelines_module():
  graph = _graph()
  offenders = {m: sorted(i for i in imports if i.startswith("pipelines"))
               for m, imports in graph.items() if m.startswith("svg_tf")}
  assert {m: i for m, i in offenders.items() if i} == {}


def _cycles(graph):
  """Every import cycle, each as the list of modules around it (depth-first search)."""
  cycles, state = [], {}

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        cycles.append(path[path.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  return cycles


def test_the_cycle_finder_finds_a_cycle():
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
  assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
  graph = _graph()
  assert graph["svg_tf.model"] and graph["pipelines.inputs"]  # the graph is not empty
  assert _cycles(graph) == []
