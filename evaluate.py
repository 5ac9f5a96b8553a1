"""Scores trained SVG models: `python evaluate.py --flags` runs svg_cli/evaluate.py (installed as
`svg-evaluate`)."""

from svg_cli.evaluate import run

if __name__ == "__main__":
  run()
