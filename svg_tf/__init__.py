"""svg_tf: Stochastic Video Generation with a Learned Prior (Denton & Fergus, ICML 2018) in TF2/Keras 3.

The public API is `svg_tf.load(path)`, which returns a `Predictor` for a train.py run directory
or an export (svg_tf/predictor.py):

  predictor = svg_tf.load("runs/smmnist_lp")
  futures = predictor.sample(context, num_future=20, num_samples=10, seed=1)

The layers, bottom up: `config` (hyperparameters, loop options); the model core `frame_nets`,
`recurrent`, `distributions`, `losses`, `model` (SVG: training pass, the one sampling path);
training `strategies`, `trainer` (one distributed step), `checkpoints`, `run_dir`, `train_loop`;
`evaluation`, `metrics`, `figures`, `previews`, `media`; serving `export`, `predictor` and the
`serving` package (TF Serving client, local stand-in server). svg_tf never imports `pipelines`:
data enters through the front ends (train.py, evaluate.py).
"""

__version__ = "0.2.0"
__all__ = ["load", "Predictor"]


def __getattr__(name):
  # Lazy: `import svg_tf.config` must not start TensorFlow (the front ends check their flags
  # first), and this package's __init__ runs on every `import svg_tf.<module>`.
  if name in __all__:
    from svg_tf import predictor  # pylint: disable=g-import-not-at-top
    return getattr(predictor, name)
  raise AttributeError(f"module 'svg_tf' has no attribute {name!r}")
