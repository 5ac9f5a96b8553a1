"""Input pipelines for svg_tf: MNIST digits, Stochastic Moving MNIST and shared video TFRecord code.

Library code only: nothing here defines or reads absl flags (the `pipelines.smmnist` CLI defines its
flags only when run as a script), so the training front ends can import these modules freely.
"""
