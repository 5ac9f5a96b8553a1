"""Evaluation that scales out: N processes each score every N-th test video; a merge writes what
one unsharded run would have written.

  evaluate.py --model_dir=RUN --num_shards=N --shard_index=i --out=DIR    # i = 0 .. N-1
  evaluate.py --merge=DIR [--merge=DIR2 ...] --out=OUT

Video j of the test set (after --max_videos) goes to shard j % N. A shard saves its per-video
`evaluation.Results` as DIR/shard-0000i-of-0000N.npz (written atomically); the merge checks that
the N files are all there, once each, readable and of one run with one set of settings, joins them
in test-set order and writes every output from them with `evaluation.write_outputs`.

With BatchNorm on its moving statistics (the default) a (video, sample) row's future depends on
that row alone (the noise of sample s on (seed, s) only), so a merge equals the unsharded run up
to float rounding: CPU kernels round a row by the size of its batch and its place in it. With
--videos_per_batch=1 every sampling and scoring call of a shard is one the unsharded run makes,
and the merge is bit for bit the unsharded run (tests/test_evaluate_shards.py); the computations
over batches of the whole set (SM-MNIST's prior std fed the true frames, the figure videos'
reconstructions) a shard makes in the unsharded run's batches (`evaluation.rows_as_unsharded`).
With --generation_bn=batch the statistics come from whichever rows share a batch, which sharding
changes: recorded, not refused.

TensorFlow is not imported at load time: evaluate.py checks the shard files before it starts.
"""

import json
import os
import re
import zipfile
import zlib
from typing import Dict, Sequence, Tuple

import numpy as np

FORMAT = "svg_tf evaluation shard, version 1"
_NAME = re.compile(r"^shard-(\d{5,})-of-(\d{5,})\.npz$")
# Settings every shard of one run shares, checked first and named in that order when they differ.
_KEY_SETTINGS = ("num_shards", "checkpoint", "checkpoint_step", "seed", "num_samples", "n_past",
                 "n_future", "batchnorm", "test_set", "total_videos")
# Settings a shard records besides metrics.json's fields.
_SHARD_ONLY = ("num_shards", "total_videos", "seed", "num_figure_videos", "metrics", "fvd",
               "wall_hits")
BATCH_BN_NOTE = ("generation_bn=batch: BatchNorm statistics came from the rows that shared a "
                 "batch, which depends on the sharding; these numbers may differ from an "
                 "unsharded run's")


class ShardError(ValueError):
  """Shard files that cannot be merged; the message is one line naming the file or the shard."""


def shard_name(index: int, count: int) -> str:
  return f"shard-{index:05d}-of-{count:05d}.npz"


def save_shard(results, out_dir: str, shard_index: int, num_shards: int) -> str:
  """Writes one shard's `evaluation.Results` to out_dir/shard-...npz (atomically); returns it."""
  from svg_tf import evaluation  # pylint: disable=g-import-not-at-top  (TensorFlow)
  scores = results.scores
  meta = {"format": FORMAT, "shard_index": shard_index,
          "metrics": list(scores.best), "settings": _settings(results, num_shards)}
  if results.fields["batchnorm"] == "batch":
    meta["warning"] = BATCH_BN_NOTE
  arrays = {"meta": np.array(json.dumps(meta, sort_keys=True)),
            "video_index": results.video_index, "prior_std": scores.prior_std,
            "kept_samples": scores.kept_samples, "kept_best": scores.kept_best,
            "figure_frames": results.figure_frames, "reconstructions": results.reconstructions}
  for name in scores.best:
    arrays[f"best.{name}"] = scores.best[name]
    arrays[f"index.{name}"] = scores.best_index[name]
    arrays[f"mean.{name}"] = scores.sample_mean[name]
  if scores.real_activations is not None:
    arrays["real_activations"] = scores.real_activations
    arrays["fake_activations"] = scores.fake_activations
  for name, value in (results.wall or {}).items():
    arrays[f"wall.{name}"] = value
  path = os.path.join(out_dir, shard_name(shard_index, num_shards))
  evaluation.write_npz(path, arrays)
  return path


def _settings(results, num_shards: int) -> Dict:
  """What must be the same in every shard of one run: the run, the test set, the protocol."""
  scores = results.scores
  return dict(results.fields, num_shards=num_shards, total_videos=int(results.total_videos),
              seed=int(results.seed), num_figure_videos=int(results.num_figure_videos),
              metrics=list(scores.best), fvd=scores.real_activations is not None,
              wall_hits=results.wall is not None)


def find_shards(dirs: Sequence[str]) -> Tuple[int, Dict[int, str]]:
  """The shard files in `dirs`: (N, {index: path}); ShardError when one is missing, found twice,
  or the files are of different shard counts."""
  where = ", ".join(dirs)
  found, counts = {}, {}
  seen_dirs = set()
  for folder in dirs:
    if not os.path.isdir(folder):
      raise ShardError(f"--merge={folder}: no such folder")
    if os.path.realpath(folder) in seen_dirs:  # the same folder twice is not a duplicate shard
      continue
    seen_dirs.add(os.path.realpath(folder))
    for name in sorted(os.listdir(folder)):
      match = _NAME.match(name)
      if not match:
        continue
      path = os.path.join(folder, name)
      index, count = int(match.group(1)), int(match.group(2))
      if index >= count:
        raise ShardError(f"{path}: shard index {index} is not below its shard count {count}")
      counts.setdefault(count, path)
      if len(counts) > 1:
        (count_a, path_a), (count_b, path_b) = list(counts.items())[:2]
        raise ShardError(f"shards of different runs: {path_a} is one of {count_a}, {path_b} one "
                         f"of {count_b}")
      if index in found:
        raise ShardError(f"shard {index} of {count} found twice: {found[index]} and {path}")
      found[index] = path
  if not found:
    raise ShardError(f"no shard files (shard-NNNNN-of-NNNNN.npz) in {where}")
  count = next(iter(counts))
  missing = [i for i in range(count) if i not in found]
  if missing:
    more = ", ..." if len(missing) > 3 else ""
    indices = ", ".join(str(i) for i in missing[:3]) + more
    names = ", ".join(shard_name(i, count) for i in missing[:3]) + more
    raise ShardError(f"{'shard' if len(missing) == 1 else 'shards'} {indices} of {count} "
                     f"missing: no {names} in {where}")
  return count, found


def _open(path: str):
  try:
    return np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
    raise ShardError(f"{path}: damaged or not a shard file ({err})") from None


def _read(npz, path: str, key: str) -> np.ndarray:
  """One array of a shard file; ShardError naming the file if it is absent or damaged."""
  try:
    return npz[key]
  except KeyError:
    raise ShardError(f"{path}: damaged or not a shard file (no {key})") from None
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
    raise ShardError(f"{path}: damaged ({key}: {err})") from None


def read_meta(path: str) -> Dict:
  """A shard file's description (no arrays): format, shard_index, metrics, settings."""
  with _open(path) as npz:
    raw = _read(npz, path, "meta")
  try:
    meta = json.loads(str(raw))
  except ValueError as err:
    raise ShardError(f"{path}: damaged (meta is not JSON: {err})") from None
  if not isinstance(meta, dict) or meta.get("format") != FORMAT:
    raise ShardError(f"{path}: not a shard file of this svg_tf ({FORMAT!r} expected)")
  settings = meta.get("settings")
  missing = [k for k in _KEY_SETTINGS + _SHARD_ONLY if k not in (settings or {})]
  if (not isinstance(settings, dict) or missing or not isinstance(meta.get("shard_index"), int)
      or not isinstance(meta.get("metrics"), list)):
    raise ShardError(f"{path}: damaged (its description lacks {', '.join(missing) or 'parts'})")
  return meta


def check_shards(dirs: Sequence[str]) -> Tuple[int, Dict[int, str], Dict[int, Dict]]:
  """find_shards, then every file's description against shard 0's: (N, paths, metas)."""
  count, paths = find_shards(dirs)
  metas = {i: read_meta(paths[i]) for i in range(count)}
  first = metas[0]["settings"]
  for i in range(count):
    meta, path = metas[i], paths[i]
    if meta.get("shard_index") != i or meta["settings"].get("num_shards") != count:
      raise ShardError(f"{path}: holds shard {meta.get('shard_index')} of "
                       f"{meta['settings'].get('num_shards')}, not what its name says")
    settings = meta["settings"]
    keys = list(_KEY_SETTINGS) + sorted((set(first) | set(settings)) - set(_KEY_SETTINGS))
    differ = [f"{k} {settings.get(k)!r} against {first.get(k)!r}" for k in keys
              if settings.get(k) != first.get(k)]
    if differ:
      raise ShardError(f"{path} and {paths[0]} are shards of different runs or settings: "
                       + "; ".join(differ))
  return count, paths, metas


def _load_arrays(path: str, meta: Dict) -> Dict[str, np.ndarray]:
  """Every array of a shard file, checked against its description."""
  settings = meta["settings"]
  i, count, total = meta["shard_index"], settings["num_shards"], settings["total_videos"]
  with _open(path) as npz:
    arrays = {key: _read(npz, path, key) for key in npz.files if key != "meta"}
  want = np.arange(i, total, count)
  index = arrays.get("video_index")
  if index is None or not np.array_equal(index, want):
    raise ShardError(f"{path}: damaged (its videos are not {i}, {i + count}, ... of {total})")
  videos, kept = len(want), int(np.sum(want < settings["num_figure_videos"]))
  n_future = settings["n_future"]
  expect = {"prior_std": (videos, n_future)}
  for name in meta["metrics"]:
    expect.update({f"best.{name}": (videos, n_future), f"index.{name}": (videos,),
                   f"mean.{name}": (videos, n_future)})
  for key in ("kept_samples", "kept_best", "figure_frames", "reconstructions"):
    expect[key] = (kept,)
  if settings["fvd"]:
    expect.update(real_activations=(videos,), fake_activations=(videos,))
  if settings["wall_hits"]:
    expect.update({"wall.prior_std_given": (videos,), "wall.wall_hits": (videos,),
                   "wall.model_positions": (kept,), "wall.true_positions": (kept,)})
    if i == 0:
      expect["wall.shared_std"] = (32,)
  for key, shape in expect.items():
    if key not in arrays:
      raise ShardError(f"{path}: damaged or not a shard file (no {key})")
    if arrays[key].shape[:len(shape)] != shape:
      raise ShardError(f"{path}: damaged ({key} has shape {arrays[key].shape}, expected "
                       f"{shape} first)")
  return arrays


def merge(dirs: Sequence[str]):
  """The shard files in `dirs`, checked and joined: (evaluation.Results of all videos, N).

  ShardError (one line naming the file or shard) for a missing, duplicated, mismatched or
  damaged shard.
  """
  from absl import logging  # pylint: disable=g-import-not-at-top
  from svg_tf import evaluation  # pylint: disable=g-import-not-at-top  (TensorFlow)
  count, paths, metas = check_shards(dirs)
  shards = [_load_arrays(paths[i], metas[i]) for i in range(count)]
  settings, names = metas[0]["settings"], metas[0]["metrics"]
  total = settings["total_videos"]
  logging.info("merge | %d shards of %d videos (%s) in %s: %s, step %d, %d samples each, seed %d",
               count, total, ", ".join(str(len(s["video_index"])) for s in shards),
               ", ".join(dirs), settings["checkpoint"], settings["checkpoint_step"],
               settings["num_samples"], settings["seed"])
  order = np.argsort(np.concatenate([s["video_index"] for s in shards]), kind="stable")
  kept_index = np.concatenate([s["video_index"][:len(s["kept_best"])] for s in shards])
  kept_order = np.argsort(kept_index, kind="stable")

  def per_video(key):
    return np.concatenate([s[key] for s in shards])[order]

  def per_kept(key):
    return np.concatenate([s[key] for s in shards])[kept_order]

  scores = evaluation.Scores(
      best={n: per_video(f"best.{n}") for n in names},
      best_index={n: per_video(f"index.{n}") for n in names},
      sample_mean={n: per_video(f"mean.{n}") for n in names},
      prior_std=per_video("prior_std"), kept_samples=per_kept("kept_samples"),
      kept_best=per_kept("kept_best"))
  if settings["fvd"]:
    scores.real_activations = per_video("real_activations")
    scores.fake_activations = per_video("fake_activations")
  wall = None
  if settings["wall_hits"]:
    wall = {"prior_std_given": per_video("wall.prior_std_given"),
            "wall_hits": per_video("wall.wall_hits"),
            "model_positions": per_kept("wall.model_positions"),
            "true_positions": per_kept("wall.true_positions"),
            "shared_std": shards[0]["wall.shared_std"]}
  fields = {k: v for k, v in settings.items() if k not in _SHARD_ONLY}
  results = evaluation.Results(
      scores=scores, fields=fields, video_index=np.arange(total, dtype=np.int64),
      total_videos=total, seed=settings["seed"], num_figure_videos=settings["num_figure_videos"],
      figure_frames=per_kept("figure_frames"), reconstructions=per_kept("reconstructions"),
      wall=wall)
  if settings["batchnorm"] == "batch":
    logging.warning("merge | %s", BATCH_BN_NOTE)
  return results, count



def merged_fields(num_shards: int, batchnorm: str) -> Dict:
  """What a merged metrics.json adds to the unsharded one's: the shard count (and the batch-BN
  caveat)."""
  fields = {"shards": num_shards}
  if batchnorm == "batch":
    fields["shards_note"] = BATCH_BN_NOTE
  return fields


def write_merged(dirs: Sequence[str], out_dir: str) -> Dict:
  """merge, then every output an unsharded run writes, into out_dir; returns metrics.json's
  content (the unsharded one's plus `shards`)."""
  from svg_tf import evaluation  # pylint: disable=g-import-not-at-top  (TensorFlow)
  results, count = merge(dirs)
  return evaluation.write_outputs(results, out_dir,
                                  merged_fields(count, results.fields["batchnorm"]))
