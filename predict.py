"""Futures of any clip from a trained SVG model: `python predict.py --flags` runs
svg_cli/predict.py (installed as `svg-predict`)."""

from svg_cli.predict import run

if __name__ == "__main__":
  run()
