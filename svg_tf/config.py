"""Every SVG hyperparameter in one frozen object, with the reference's defaults per dataset; and
the options of the training loop.

The presets equal the commands in the reference README (SPEC section 0): SM-MNIST trains SVG-LP
with DCGAN-64 frames, BAIR and KTH with VGG-64. Field names are the reference's flag names
(`n_past`, `g_dim`, `rnn_size`, `beta`, ...) so its commands translate one to one.

Both objects check their values when built (a ValueError naming the flag), so front ends check
flags by building them, before TensorFlow is imported: this module does not import it.
"""

import dataclasses
import json
import math
import signal
from typing import Any, Dict, Sequence

MODELS = ("lp", "fp", "det")  # learned prior, fixed N(0, I) prior, deterministic baseline
ARCHS = ("dcgan", "vgg")
SKIP_RULES = ("last_context", "reference", "previous_frame")
# Compute dtypes of the conv nets (variables, loss, KL and LSTMs stay float32); mixed_float16
# trains with a dynamic loss scale (svg_tf/trainer.py), for GPUs without bfloat16 (T4, V100).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
BN_MODES = ("moving", "batch")  # BatchNorm statistics used when generating
BAIR_CAMERAS = ("aux1", "main")  # image_aux1 is the camera every paper uses
SMMNIST_VARIANTS = ("svg", "srvp")  # whose SM-MNIST generator (pipelines/smmnist.py)


_FIELD_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool,
                str: str, int: int, float: (int, float), bool: bool}
_TYPE_WORDS = {str: "a string", int: "an integer", (int, float): "a number", bool: "true or false"}


@dataclasses.dataclass(frozen=True)
class SVGConfig:
  """Model, loss, optimiser and data settings of one SVG run.

  skip_rule picks the frame whose encoder features feed the decoder's skip connections at step t
  (the frame being predicted is x[t]):
    last_context   x[min(t-1, n_past-1)]: the last ground-truth frame, as the paper says (default);
    reference      x[min(t-1, n_past-2)]: what the reference code does (its issue #1);
    previous_frame x[t-1] at every step (the reference's --last_frame_skip).
  """

  dataset: str = "smmnist"
  model: str = "lp"
  arch: str = "dcgan"
  image_size: int = 64
  channels: int = 1
  g_dim: int = 128
  z_dim: int = 10
  rnn_size: int = 256
  predictor_rnn_layers: int = 2
  posterior_rnn_layers: int = 1
  prior_rnn_layers: int = 1
  base_filters: int = 64  # width of the first conv stage; 64 is the paper's, small values make tiny test models
  n_past: int = 5
  n_future: int = 10
  beta: float = 1e-4
  lr: float = 2e-3
  beta1: float = 0.9
  beta2: float = 0.999
  adam_epsilon: float = 1e-8
  batch_size: int = 100  # global batch, split over replicas
  # One update from K micro-batches of batch_size / K (per replica: batch_size / replicas / K):
  # the memory of a K times smaller batch; BatchNorm statistics are per micro-batch.
  grad_accum_steps: int = 1
  train_steps: int = 180_000  # 300 epochs x 600 iterations, as the reference
  skip_rule: str = "last_context"
  torch_lstm_bias: bool = False  # give LSTM cells torch's second bias vector (parameter-count parity)
  sync_batchnorm: bool = True  # BatchNorm statistics over the global batch when replicated
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  generation_bn: str = "moving"
  precision: str = "float32"
  num_digits: int = 2  # SM-MNIST only
  deterministic_bounce: bool = False  # SM-MNIST only: reflect at walls instead of a random new velocity
  smmnist_variant: str = "svg"  # SM-MNIST only: the SVG reference's generator, or SRVP's
  action_dim: int = 0  # > 0: the frame predictor also sees the action a_{t-1} (BAIR: 4); 0: the paper
  bair_camera: str = "aux1"  # BAIR only: which camera's frames
  seed: int = 1

  def __post_init__(self):
    def fail(field, why):
      raise ValueError(f"--{field}={getattr(self, field)!r}: {why}")

    for field in dataclasses.fields(self):  # a config.json edited by hand, or a wrong Python call
      value, kind = getattr(self, field.name), _FIELD_TYPES[field.type]
      if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        fail(field.name, f"must be {_TYPE_WORDS[kind]}")

    for field, choices in (("model", MODELS), ("arch", ARCHS), ("skip_rule", SKIP_RULES),
                           ("precision", PRECISIONS), ("generation_bn", BN_MODES),
                           ("bair_camera", BAIR_CAMERAS), ("smmnist_variant", SMMNIST_VARIANTS)):
      if getattr(self, field) not in choices:
        fail(field, f"must be one of {', '.join(choices)}")
    if self.image_size not in (64, 128):
      fail("image_size", "must be 64 or 128")
    positive = ("channels", "g_dim", "rnn_size", "predictor_rnn_layers", "base_filters", "n_past",
                "n_future", "batch_size", "train_steps", "num_digits", "grad_accum_steps")
    for field in positive:
      if getattr(self, field) < 1:
        fail(field, "must be at least 1")
    if self.model != "det":
      for field in ("z_dim", "posterior_rnn_layers"):
        if getattr(self, field) < 1:
          fail(field, "must be at least 1 for a stochastic model")
    if self.model == "lp" and self.prior_rnn_layers < 1:
      fail("prior_rnn_layers", "must be at least 1 for --model=lp")
    if self.skip_rule == "reference" and self.n_past < 2:
      fail("skip_rule", "the reference rule takes skips from x[n_past-2], so it needs --n_past >= 2")
    if self.action_dim < 0:
      fail("action_dim", "must be 0 (no actions) or the size of an action vector")
    for field in ("beta", "lr", "beta1", "beta2", "adam_epsilon", "bn_momentum", "bn_epsilon"):
      if not math.isfinite(getattr(self, field)):  # nan/inf would skip every step, then be saved
        fail(field, "must be a finite number")
    for field in ("beta", "bn_epsilon"):
      if getattr(self, field) < 0:
        fail(field, "must be non-negative")
    for field in ("lr", "adam_epsilon"):
      if not getattr(self, field) > 0:
        fail(field, "must be positive")
    for field in ("beta1", "beta2", "bn_momentum"):  # Adam's moments diverge at 1 and beyond
      if not 0 <= getattr(self, field) < 1:
        fail(field, "must be in [0, 1)")
    if self.batch_size % self.grad_accum_steps:
      fail("grad_accum_steps", f"must divide --batch_size={self.batch_size}")
    if self.seed < 0 or self.seed >= 2**31:
      fail("seed", "must be in [0, 2**31)")

  @property
  def seq_len(self) -> int:
    """Frames per training sequence."""
    return self.n_past + self.n_future

  @property
  def latent_dim(self) -> int:
    """Size of z fed to the frame predictor (0 for the deterministic baseline)."""
    return 0 if self.model == "det" else self.z_dim

  def replace(self, **changes) -> "SVGConfig":
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, values: Dict[str, Any]) -> "SVGConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f"unknown config keys: {', '.join(unknown)}")
    return cls(**values)


# The reference README's command per dataset (SPEC section 0). KTH is given with the reference's
# settings (trained there with SVG-FP and lr 8e-4); --model picks LP or FP.
PRESETS: Dict[str, Dict[str, Any]] = {
    "smmnist": dict(arch="dcgan", channels=1, g_dim=128, z_dim=10, n_past=5, n_future=10,
                    beta=1e-4, lr=2e-3),
    "bair": dict(arch="vgg", channels=3, g_dim=128, z_dim=64, n_past=2, n_future=10,
                 beta=1e-4, lr=2e-3),
    "kth": dict(arch="vgg", channels=1, g_dim=128, z_dim=24, n_past=10, n_future=10,
                beta=1e-6, lr=8e-4),
    # People's own videos (pipelines/videos.py): VGG-64 with KTH's hyperparameters; train.py
    # takes the channels (and by default the size) from the converted data.
    "videos": dict(arch="vgg", channels=3, g_dim=128, z_dim=24, n_past=10, n_future=10,
                   beta=1e-6, lr=8e-4),
}


def preset(dataset: str, **overrides) -> SVGConfig:
  """The reference configuration for `dataset`, with `overrides` applied (None values ignored)."""
  if dataset not in PRESETS:
    raise ValueError(f"--dataset={dataset!r}: must be one of {', '.join(sorted(PRESETS))}")
  values = dict(PRESETS[dataset], dataset=dataset)
  values.update({k: v for k, v in overrides.items() if v is not None})
  return SVGConfig.from_dict(values)


@dataclasses.dataclass(frozen=True)
class LoopOptions:
  """How often the training loop logs, summarises and saves (all in steps), and when it stops."""
  log_every: int = 50
  summary_every: int = 50
  image_every: int = 1000
  checkpoint_every: int = 1000
  max_checkpoints: int = 3
  max_bad_steps: int = 10  # consecutive skipped (non-finite) steps that stop training
  # Save and return after the current step (a second SIGINT, Ctrl-C again, stops at once).
  stop_signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.type is int and value < 1:
        raise ValueError(f"--{field.name}={value}: must be at least 1")
