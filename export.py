"""Exports a trained SVG run for TF Serving: `python export.py --flags` runs svg_cli/export.py
(installed as `svg-export`)."""

from svg_cli.export import run

if __name__ == "__main__":
  run()
