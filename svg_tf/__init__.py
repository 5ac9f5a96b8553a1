"""svg_tf: Stochastic Video Generation with a Learned Prior (Denton & Fergus, ICML 2018) in TF2/Keras 3.

Modules: `config` (every hyperparameter, per-dataset presets), `frame_nets` (DCGAN/VGG frame
encoders and decoders), `recurrent` (LSTM stacks, Gaussian LSTMs returning tfp distributions),
`distributions`, `losses`, `model` (the SVG model: teacher-forced training pass, sampling,
reconstruction), `training` (distribution strategy, train step, checkpointed loop), `previews` and
`media` (sample panels, GIFs and image grids).
"""
