"""Serving an exported SVG model: a TF Serving client, a local stand-in server, a command line.

  client.py        `Client` (Predict over gRPC or REST, row or columnar JSON) and `ServingError`,
                   against TF Serving or the stand-in; what applications import.
  local_server.py  `LocalServer`: TF Serving's Predict API (tensorflow-serving-api's gRPC
                   PredictionService and the REST `/v1/models/NAME[/versions/N]:predict` contract)
                   over an exported SavedModel on 127.0.0.1, for tests and development where no
                   TF Serving binary can be installed; `latest_version_dir`, `read_warmup_requests`.
                   Import it as `svg_tf.serving.local_server`: this package does not load it.
  __main__.py      `python -m svg_tf.serving --server=HOST:PORT --video=clip.gif --out=samples.gif`:
                   samples of a served model for a video, as a GIF.

The package re-exports the client API only, so `from svg_tf.serving import Client` loads neither
the stand-in server nor the command line.
"""

from svg_tf.serving.client import Client, ServingError

__all__ = ["Client", "ServingError"]
