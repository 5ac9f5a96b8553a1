"""svg_tf's command lines: train, evaluate, export and predict (console commands svg-train,
svg-evaluate, svg-export, svg-predict; the top-level train.py etc. of a checkout run the same).

The front ends are the only code that joins the library (`svg_tf`) and the data layer
(`pipelines`): they check their flags before TensorFlow starts, load data with `pipelines` and
hand it to `svg_tf`.
"""
