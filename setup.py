"""svg_tf: Stochastic Video Generation with a Learned Prior (Denton & Fergus, ICML 2018) in TF2/Keras 3."""

from setuptools import setup

setup(
    name="svg_tf",
    version="0.1.0",
    description="SVG-LP / SVG-FP video prediction in TensorFlow 2 and Keras 3",
    packages=["svg_tf", "svg_tf.serving", "pipelines", "pipelines.fixtures"],
    py_modules=["train"],
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.15,<4",
        "tensorflow-probability==0.25.*",
        "tf-keras==2.21.*",  # tensorflow-probability imports it
        "tensorflow-datasets==4.9.*",
        "importlib_resources",  # tensorflow-datasets needs it to download and prepare, undeclared
        "tensorboard>=2.21,<3",  # tf.summary.image needs it
        "absl-py>=2",
        "numpy>=1.26",
        "pillow>=10",
        "imageio>=2.30",
        "imageio-ffmpeg>=0.5",  # an ffmpeg binary inside a wheel: decodes the KTH AVI files
        "matplotlib>=3.8",
        "scipy>=1.11",  # matrix square root for the Frechet distance (FVD)
        "tensorflow-serving-api==2.21.*",  # the gRPC client and PredictionLog warm-up records
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3", "dill"]},  # dill: tfds.testing needs it
)
