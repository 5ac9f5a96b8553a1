"""Any folder of videos as an SVG dataset: converted once to TFRecord shards, then streamed.

  python -m pipelines.videos --src=FOLDER --out=DIR [--image_size=64|128] [--channels=1|3]
      [--crop=center|none] [--test_fraction=0.1 | --test_list=FILE] [--min_frames=20]
      [--workers=N] [--seed=0] [--overwrite]

Every clip under FOLDER, recursively, is one video: video files (.mp4 .avi .mov .mkv .webm, decoded
by ffmpeg), GIFs, .npy/.npz arrays, and every folder that holds .png/.jpg/.jpeg frames
(svg_tf/video_files.py says how each is read, cropped, resized and coloured). A video's name is
its path relative to FOLDER. The conversion (pipelines/video_shards.py: atomic shards, resumable,
progress per video with an ETA, `--workers` decoders at once, the same files whatever their
number) writes

  DIR/train/, DIR/test/   shards of one record per video: frames uint8 [T, S, S, C] and
                          `sequences` [[0, T]] (training windows start anywhere), plus
                          dataset_info.json: every video with its frame count, every file
                          skipped (unreadable, with ffmpeg's reason; shorter than --min_frames)
  DIR/videos_conversion.json   the settings

The split is by file and stable: a video is in the test split when a hash of (seed, its relative
path) falls below --test_fraction, or when --test_list names it. It depends on nothing else, so
videos added later never move an existing one to the other split.

Training (`train_dataset`) draws random windows of n_past + n_future frames from the train
videos; evaluation (`test_clips`) scores a fixed set of clips drawn with a seed from the test
videos: a uniform video among those long enough, then a uniform start.
"""

import hashlib
import os
import re
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from absl import flags, logging
import numpy as np
import tensorflow as tf

from pipelines import tfrecord, video_shards
from svg_tf import command_line, media, video_files
from svg_tf.command_line import UserError

DATASET_NAME = 'videos'
SPLITS = ('train', 'test')
IMAGE_SIZES = (64, 128)
SETTINGS_FILE = 'videos_conversion.json'
FORMAT_VERSION = 1
DEFAULT_MIN_FRAMES = 20  # the KTH preset's n_past + n_future
DEFAULT_VIDEOS_PER_SHARD = 10
TEST_NUM_CLIPS = 256
TEST_SEED = 42


class NotConvertedError(FileNotFoundError):
  """A folder that is not (or not yet completely) a conversion output; says what to run."""


class TestClips(NamedTuple):
  frames: np.ndarray  # uint8 [N, clip_len, S, S, C]
  videos: Tuple[str, ...]  # source video name of each clip
  starts: np.ndarray  # int64 [N]: first frame of each clip in its video


# --------------------------------------------------------------------------------------------------
# Finding and splitting the clips.


def find_clips(src: str) -> Dict[str, str]:
  """Relative name -> path of every clip under `src`: clip files, and folders of frames."""
  if not os.path.isdir(src):
    raise FileNotFoundError(f'--src={src}: no such folder')
  found = {}
  for folder, dirs, files in os.walk(src):
    dirs.sort()
    if any(os.path.splitext(f)[1].lower() in video_files.IMAGE_SUFFIXES for f in files):
      found[os.path.relpath(folder, src).replace(os.sep, '/')] = folder
    for name in sorted(files):
      path = os.path.join(folder, name)
      if video_files.is_clip(path):
        found[os.path.relpath(path, src).replace(os.sep, '/')] = path
  if not found:
    raise FileNotFoundError(
        f'--src={src}: no clips found (video files {" ".join(video_files.VIDEO_SUFFIXES)}, GIFs, '
        f'.npy/.npz arrays or folders of {"/".join(video_files.IMAGE_SUFFIXES)} frames, at any '
        'depth)')
  return dict(sorted(found.items()))


def in_test_split(name: str, seed: int, test_fraction: float) -> bool:
  """The stable split rule: sha256 of "seed:name" read as a number in [0, 1), below the fraction."""
  digest = hashlib.sha256(f'{seed}:{name}'.encode()).digest()
  return int.from_bytes(digest[:8], 'big') / 2.0**64 < test_fraction


def read_test_list(path: str) -> List[str]:
  """Relative clip names, one per line ('#' starts a comment)."""
  with open(path) as f:
    names = [line.split('#', 1)[0].strip() for line in f]
  return [n.replace(os.sep, '/') for n in names if n]


def split_clips(names: Sequence[str], seed: int, test_fraction: Optional[float],
                test_list: Optional[Sequence[str]]) -> Dict[str, List[str]]:
  """{'train': [...], 'test': [...]}, each sorted; by --test_list if given, else by the hash."""
  if test_list is not None:
    listed = set(test_list)
    unknown = sorted(listed - set(names))
    if unknown:
      logging.warning('videos | --test_list names %d clips that are not under --src: %s',
                      len(unknown), ', '.join(unknown[:10]) + (' ...' if len(unknown) > 10 else ''))
    test = [n for n in names if n in listed]
  else:
    test = [n for n in names if in_test_split(n, seed, test_fraction)]
  chosen = set(test)
  return {'train': [n for n in names if n not in chosen], 'test': test}


# --------------------------------------------------------------------------------------------------
# Conversion.


def _record(min_frames: int):
  """make_record for video_shards.convert_split: the whole video as one sub-sequence."""
  def make(source: video_shards.Source, frames: np.ndarray, steps: Dict[str, Any]):
    if len(frames) < min_frames:
      raise video_shards.SkipVideo(f'{len(frames)} frames, fewer than --min_frames={min_frames}')
    sequences = np.array([[0, len(frames)]], np.int32)
    record = {'name': source.name, 'num_frames': len(frames), 'sequences': sequences.tolist(),
              'fps': steps['fps'], 'native_size': steps['native_size'], 'format': steps['format']}
    return {'sequences': sequences}, record
  return make


def convert(src: str, out_dir: str, image_size: int = 64, channels: int = 3, crop: str = 'center',
            test_fraction: Optional[float] = 0.1, test_list: Optional[str] = None,
            min_frames: int = DEFAULT_MIN_FRAMES, seed: int = 0,
            videos_per_shard: int = DEFAULT_VIDEOS_PER_SHARD, workers: Optional[int] = None,
            overwrite: bool = False) -> Dict[str, Optional[Dict[str, Any]]]:
  """Converts every clip under `src` into out_dir/train and out_dir/test (resumable).

  Returns {'train': dataset_info dict or None, 'test': ...} (None: a split without videos).
  Raises FileNotFoundError (no clips), FileExistsError (out_dir holds another conversion) and
  ValueError (bad arguments); unreadable and too short clips are skipped and listed instead.
  """
  if image_size not in IMAGE_SIZES:
    raise ValueError(f'--image_size={image_size}: must be one of {IMAGE_SIZES}')
  if channels not in (1, 3):
    raise ValueError(f'--channels={channels}: must be 1 or 3')
  if crop not in video_files.CROPS:
    raise ValueError(f'--crop={crop}: must be one of {", ".join(video_files.CROPS)}')
  if test_list is None and not (test_fraction is not None and 0 <= test_fraction < 1):
    raise ValueError(f'--test_fraction={test_fraction}: must be in [0, 1)')
  if min_frames < 1 or videos_per_shard < 1:
    raise ValueError(f'--min_frames={min_frames} and --videos_per_shard={videos_per_shard} must be '
                     'at least 1')
  workers = workers or os.cpu_count() or 1
  start = time.time()
  paths = find_clips(src)
  listed = read_test_list(test_list) if test_list else None
  splits = split_clips(list(paths), seed, None if listed is not None else test_fraction, listed)
  split_rule = ({'test_list': os.path.abspath(test_list), 'test_names': sorted(listed)} if listed
                is not None else {'seed': seed, 'test_fraction': test_fraction})
  settings = {'dataset': DATASET_NAME, 'format_version': FORMAT_VERSION, 'image_size': image_size,
              'channels': channels, 'crop': crop, 'min_frames': min_frames,
              'videos_per_shard': videos_per_shard, 'split': split_rule}
  logging.info('videos | convert | %s | %d clips: %d train, %d test | -> %s at %dx%dx%d', src,
               len(paths), len(splits['train']), len(splits['test']), out_dir, image_size,
               image_size, channels)
  video_shards.prepare_out_dir(out_dir, settings, overwrite, SPLITS, SETTINGS_FILE,
                               'a video-folder conversion')
  shard_settings = {k: settings[k] for k in ('format_version', 'image_size', 'channels', 'crop',
                                             'min_frames')}
  decode = lambda path: _decode(path, image_size, channels, crop)
  infos = {}
  for split in SPLITS:
    names = splits[split]
    if not names:
      logging.warning('videos | convert | %s | no clips in this split: not written', split)
      infos[split] = None
      continue
    written = video_shards.convert_split(
        'videos', split, out_dir, [video_shards.Source(n, paths[n]) for n in names], decode,
        _record(min_frames), shard_settings, videos_per_shard, workers)
    info = {'dataset': DATASET_NAME, 'split': split, 'image_size': image_size,
            'channels': channels, 'crop': crop, 'min_frames': min_frames, 'src': os.path.abspath(src),
            'split_rule': split_rule, 'skipped': sorted(written.skipped, key=lambda s: s['name']),
            'record': 'one tf.train.Example per video (pipelines/tfrecord.py): frames uint8 '
                      f'[T, {image_size}, {image_size}, {channels}], the whole video; sequences: '
                      'int32 [[0, T]]',
            'decoder': 'svg_tf/video_files.py read_clip: crop, bicubic resize, channels'}
    if not written.records:
      logging.warning('videos | convert | %s | every clip was skipped: split not written', split)
      infos[split] = None
      continue
    infos[split] = video_shards.write_split_info(
        'videos', split, out_dir, written, info,
        video_fields=('name', 'num_frames', 'sequences', 'fps', 'native_size', 'format'))
  skipped = [s for i in infos.values() if i for s in i['skipped']]
  if skipped:
    logging.warning('videos | convert | skipped %d clips (listed in dataset_info.json):\n%s',
                    len(skipped), '\n'.join(f'  {s["name"]}: {s["reason"]}' for s in skipped))
  logging.info('videos | convert | finished in %s | train %s, test %s videos | %s',
               video_shards.format_duration(time.time() - start),
               *[infos[s]['num_examples'] if infos[s] else 0 for s in SPLITS], out_dir)
  return infos


def _decode(path: str, image_size: int, channels: int, crop: str):
  clip = video_files.read_clip(path, image_size, channels, crop)
  return clip.frames, clip.steps


# --------------------------------------------------------------------------------------------------
# Reading a converted folder.


def read_converted_info(data_dir: str, split: str = 'train') -> Dict[str, Any]:
  """dataset_info.json of data_dir/split; NotConvertedError saying what to run when missing."""
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}')

  def not_converted(split_dir):
    if tf.io.gfile.exists(os.path.join(data_dir, SETTINGS_FILE)):
      return NotConvertedError(
          f'{split_dir}/{tfrecord.INFO_FILE} is missing: the conversion into {data_dir} did not '
          'finish (re-run the same `python -m pipelines.videos` command to resume) or it had no '
          f'{split} videos')
    return NotConvertedError(
        f'--data_dir={data_dir} is not a converted video folder ({split}/{tfrecord.INFO_FILE} not '
        'found): convert your videos once with `python -m pipelines.videos --src=FOLDER '
        '--out=DIR`, then pass DIR')

  return video_shards.read_split_info(data_dir, split, DATASET_NAME, not_converted)


def train_dataset(data_dir: str, seq_len: int, seed: int, num_shards: int = 1,
                  shard_index: int = 0, skip_bad_records: bool = False,
                  split: str = 'train') -> tf.data.Dataset:
  """Random windows {'frames': float32 [seq_len, S, S, C]} of the train videos, forever
  (video_shards.train_windows); videos shorter than seq_len are left out."""
  return video_shards.train_windows(os.path.join(data_dir, split),
                                    read_converted_info(data_dir, split), seq_len, seed,
                                    num_shards, shard_index, skip_bad_records=skip_bad_records)


def plan_test_clips(lengths: Sequence[int], count: int, clip_len: int,
                    seed: int = TEST_SEED) -> List[Tuple[int, int]]:
  """[(video index, start)] * count: with np.random.RandomState(seed), a uniform video among those
  of at least clip_len frames, then a uniform start."""
  usable = [i for i, t in enumerate(lengths) if t >= clip_len]
  if not usable:
    raise ValueError(f'no test video has {clip_len} frames (the longest has '
                     f'{max(lengths, default=0)}): convert longer videos, or evaluate shorter '
                     'clips (--n_past, --n_future)')
  rng = np.random.RandomState(int(seed))
  plan = []
  for _ in range(count):
    video = usable[rng.randint(len(usable))]
    plan.append((video, int(rng.randint(lengths[video] - clip_len + 1))))
  return plan


def test_clips(data_dir: str, clip_len: int, num_clips: int = TEST_NUM_CLIPS,
               seed: int = TEST_SEED, max_clips: Optional[int] = None) -> TestClips:
  """The fixed test set: num_clips clips of clip_len frames (`plan_test_clips`); the same data and
  seed give the same clips on every run, and max_clips=K gives the first K."""
  info = read_converted_info(data_dir, 'test')
  count = num_clips if max_clips is None else min(int(max_clips), num_clips)
  plan = plan_test_clips([v['num_frames'] for v in info['videos']], count, clip_len, seed)
  frames = video_shards.read_clips(os.path.join(data_dir, 'test'), info, plan, clip_len)
  return TestClips(frames, tuple(info['videos'][v]['name'] for v, _ in plan),
                   np.array([s for _, s in plan], np.int64).reshape(-1))


def write_preview(path_prefix: str, data_dir: str, count: int = 8, clip_len: int = 20,
                  seed: int = TEST_SEED) -> np.ndarray:
  """<prefix>.npz and <prefix>.gif of the first `count` test clips."""
  videos = test_clips(data_dir, clip_len, num_clips=count, seed=seed).frames
  path_prefix = media.save_preview(path_prefix, videos)
  logging.info('videos | preview | %d clips of %d frames | %s.npz | %s.gif', count, clip_len,
               path_prefix, path_prefix)
  return videos


# --------------------------------------------------------------------------------------------------
# Command line. Flags are defined only when this file runs as a script: train.py imports the module.


def _define_flags():
  flags.DEFINE_string('src', None, 'Folder of your clips, searched recursively.')
  flags.DEFINE_string('out', None, 'Output folder (train/, test/); re-running the same command '
                      'resumes an interrupted conversion.')
  flags.DEFINE_enum('image_size', '64', [str(s) for s in IMAGE_SIZES], 'Frame size S (SxS).')
  flags.DEFINE_enum('channels', '3', ['1', '3'], '1: grey (luma), 3: colour.')
  flags.DEFINE_enum('crop', 'center', list(video_files.CROPS), 'center: the largest centred '
                    'square; none: squash the whole frame to a square.')
  flags.DEFINE_float('test_fraction', 0.1, 'Share of the clips in the test split, chosen by a '
                     'stable hash of each relative path (and --seed).')
  flags.DEFINE_string('test_list', None, 'A file of relative clip paths (one per line) that form '
                      'the test split, instead of --test_fraction.')
  flags.DEFINE_integer('min_frames', DEFAULT_MIN_FRAMES, 'Clips with fewer frames are skipped '
                       '(listed in dataset_info.json).', lower_bound=1)
  flags.DEFINE_integer('workers', None, 'Clips decoded at once (default: the CPU count).',
                       lower_bound=1)
  flags.DEFINE_integer('videos_per_shard', DEFAULT_VIDEOS_PER_SHARD, 'Videos per TFRecord shard.',
                       lower_bound=1)
  flags.DEFINE_integer('seed', 0, 'Seed of the split hash.', lower_bound=0)
  flags.DEFINE_boolean('overwrite', False, 'Delete a previous conversion in --out first.')
  flags.DEFINE_string('preview_out', None, 'Path prefix P: P.npz and P.gif of 8 test clips.')
  flags.mark_flags_as_required(['src', 'out'])


def main(argv):
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  del argv  # command_line.run refuses positional arguments
  if FLAGS.test_list and FLAGS['test_fraction'].present:
    raise UserError('--test_list and --test_fraction exclude each other')
  try:
    infos = convert(FLAGS.src, FLAGS.out, int(FLAGS.image_size), int(FLAGS.channels), FLAGS.crop,
                    FLAGS.test_fraction, FLAGS.test_list, FLAGS.min_frames, FLAGS.seed,
                    FLAGS.videos_per_shard, FLAGS.workers, FLAGS.overwrite)
    if FLAGS.preview_out and infos['test']:
      write_preview(FLAGS.preview_out, FLAGS.out)
  except (OSError, ValueError, tf.errors.OpError) as err:  # e.g. no --src, --out not empty
    raise UserError(str(err)) from None
  print(f'converted into {os.path.abspath(FLAGS.out)}: ' + ', '.join(
      f'{s} {infos[s]["num_examples"] if infos[s] else 0} videos' for s in SPLITS))


if __name__ == '__main__':
  _define_flags()
  command_line.run(main)
