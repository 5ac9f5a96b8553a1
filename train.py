"""Trains SVG: `python train.py --flags` runs svg_cli/train.py (installed as `svg-train`)."""

from svg_cli.train import run

if __name__ == "__main__":
  run()
