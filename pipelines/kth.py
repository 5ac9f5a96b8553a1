"""KTH actions (Schuldt et al. 2004) for SVG: raw AVIs converted once to TFRecords, then streamed.

The raw download (anchors section 3.2): six zips of `personNN_<action>_dK_uncomp.avi` (persons
01..25, actions in ACTIONS, scenarios d1..d4), 160x120, 25 fps, grey content in a 3-channel AVI,
599 of the 600 videos (`person13_handclapping_d3` does not exist), plus `00sequences.txt`, which
lists 3 or 4 sub-sequences per video as 1-based inclusive frame ranges
(`person01_boxing_d1  frames  1-95, 96-185, 186-245, 246-360`). The files may lie flat in one folder
or in one folder per action. The 00sequences.txt header gives the original recognition split;
video prediction (SVG, SRVP, SLAMP, MCVD) uses persons 1-20 for training and 21-25 for testing, as
here.

Why a conversion, once: decoding AVIs with ffmpeg at every epoch would cost more than a training
step, and the reference's own route is broken for everyone (its metadata download is dead, its
Lua converter calls a hard-coded ffmpeg, and `load_lua` left PyTorch; user-reports.md). `convert`
decodes every video once with the ffmpeg binary shipped by imageio-ffmpeg into sharded TFRecords
(`pipelines/tfrecord.py` format) that tf.data streams:

  out/train/  train-00000-of-000NN.tfrecord ... + dataset_info.json   (persons 1-20)
  out/test/   test-00000-of-0000M.tfrecord ...  + dataset_info.json   (persons 21-25)
  out/kth_conversion.json                                             (image size, shard size)

One record per video: frames uint8 [T, S, S, 1], the whole video, plus extras `person`, `action`
(index into ACTIONS), `scenario` (all int32 scalars) and `sequences` (int32 [K, 2], 0-based
half-open [start, end) ranges from 00sequences.txt, clipped to the decoded length). The video name
is `video_name(person, action, scenario)`; dataset_info.json also lists, in record order, every
video's name, shard, index, frame count and ranges, plus the skipped videos with reasons.

The conversion resumes: videos go to shards in a fixed order (sorted names, `videos_per_shard`
each), each shard is written under a temporary name and renamed when complete, then a small
`<shard>.manifest.json` records what it holds; a re-run keeps every shard whose manifest matches
(same videos, same image size, same byte size) without decoding its videos again, and writes
dataset_info.json last. Run one conversion per output folder at a time.

Reproduced from the reference (SVG `data/convert_kth.lua`, `data/kth.py`): frames squashed from
160x120 to SxS by ffmpeg's `-s SxS` (bicubic; aspect ratio not preserved), S = 64 or 128, every
frame at the native 25 fps, one grey channel; persons 1-20 / 21-25; training windows drawn as a
uniformly random sub-sequence among those of at least seq_len frames, then a uniform start
(`train_dataset`). Differences: the grey level is ffmpeg's luma (`-pix_fmt gray`) where the
reference kept the R channel of an RGB PNG (equal for grey content up to swscale's rounding, 1-2
grey levels); and every video is visited once per epoch (shuffled) instead of the reference's
"uniform class, uniform video, uniform sub-sequence, reject if too short" draw, which weights
videos by their fraction of long-enough sub-sequences (nearly all, at SVG's 20 frames).

Reproduced from SRVP (`preprocessing/kth/make_test_set.py`): the fixed test set (`test_clips`),
1000 clips of 40 frames drawn with numpy seed 42 from whole test videos (SRVP ignores the
sub-sequence ranges here): action, person 21-25, scenario, then a start, in SRVP's order and with
its legacy `np.random.RandomState` draws, so the same (video, start) list comes out wherever the
decoded frame counts agree with SRVP's ffmpeg extraction.

ffmpeg reads local files only, so the raw folder is read with `os`; the converted folder is read
through `tf.io.gfile` and may live on GCS.

Command lines:
  python -m pipelines.kth --data_dir=RAW --out=DIR [--image_size=64|128] [--videos_per_shard=10]
      [--overwrite] [--preview_out=P]                       # convert once (resumable)
  python -m pipelines.kth --data_dir=DIR --split=test --preview_out=P --preview_num=8
      # P.npz (`frames` uint8 [K, T, S, S, 1]) and P.gif from a converted folder
"""

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

DATASET_NAME = 'kth'
ACTIONS = ('boxing', 'handclapping', 'handwaving', 'jogging', 'running', 'walking')  # sorted
PERSONS = tuple(range(1, 26))
TRAIN_PERSONS = tuple(range(1, 21))  # video-prediction split (SVG, SRVP), not Schuldt's
TEST_PERSONS = tuple(range(21, 26))
SCENARIOS = (1, 2, 3, 4)  # d1 outdoors, d2 scale variation, d3 different clothes, d4 indoors
KNOWN_MISSING = ('person13_handclapping_d3',)  # absent from the real download
NATIVE_SIZE = (160, 120)  # (width, height) of the AVIs
FPS = 25
CHANNELS = 1
IMAGE_SIZES = (64, 128)  # SxS after the squash; SVG's paper used 128, later tables 64
SPLITS = ('train', 'test')
SPLIT_PERSONS = {'train': TRAIN_PERSONS, 'test': TEST_PERSONS}
SEQUENCES_FILE = '00sequences.txt'
VIDEO_SUFFIX = '_uncomp.avi'
DEFAULT_VIDEOS_PER_SHARD = 10  # about 20 MB per shard at 64x64
TEST_NUM_CLIPS = 1000  # SRVP's KTH test set: 1000 clips of 40 frames, numpy seed 42
TEST_CLIP_LEN = 40
TEST_SEED = 42
TRAIN_SEQ_LEN = 20  # SVG's KTH windows: n_past 10 + n_future 10 (preview default)

CONVERSION_FILE = 'kth_conversion.json'
FORMAT_VERSION = 1
_NAME = r'person(\d\d)_(' + '|'.join(ACTIONS) + r')_d(\d)'
_VIDEO_FILE = re.compile(r'^(' + _NAME + r')_uncomp\.(?i:avi)$')
_VIDEO_NAME = re.compile(r'^' + _NAME + r'$')
_LISTED_LINE = re.compile(r'^(person\d\d_[A-Za-z]+_d\d)(?:\s+(.*))?$')
_RANGE = re.compile(r'^(\d+)-(\d+)$')


class VideoDecodeError(ValueError):
  """A video that ffmpeg cannot decode (missing, corrupt, no frames); names the path and reason."""


class NotConvertedError(FileNotFoundError):
  """A folder that is not (or not yet completely) a `convert` output; says what to run."""


class TestClips(NamedTuple):
  frames: np.ndarray  # uint8 [N, clip_len, S, S, 1]
  videos: Tuple[str, ...]  # source video name of each clip
  starts: np.ndarray  # int64 [N]: first frame of each clip in its (whole) video, 0-based
  persons: np.ndarray  # int32 [N]
  actions: np.ndarray  # int32 [N]: index into ACTIONS
  scenarios: np.ndarray  # int32 [N]


# --------------------------------------------------------------------------------------------------
# Names and the raw folder.


def video_name(person: int, action: int, scenario: int) -> str:
  """'person01_boxing_d1' for (1, 0, 1); `action` indexes ACTIONS."""
  return f'person{int(person):02d}_{ACTIONS[int(action)]}_d{int(scenario)}'


def parse_video_name(name: str) -> Tuple[int, int, int]:
  """(person, action index, scenario) of 'personNN_<action>_dK'; ValueError if malformed."""
  m = _VIDEO_NAME.match(name)
  if not m:
    raise ValueError(f'{name!r} is not a KTH video name personNN_<action>_dK with <action> in '
                     f'{ACTIONS}')
  return int(m.group(1)), ACTIONS.index(m.group(2)), int(m.group(3))


def parse_sequences_file(path: str) -> Dict[str, List[Tuple[int, int]]]:
  """Sub-sequences of 00sequences.txt: video name -> 0-based half-open [start, end) ranges.

  Lines that do not start with a video name (the free-text header, blank lines) are skipped. A
  video line is `<name>  frames  a-b, c-d, ...` with 1-based inclusive ranges, separated by commas
  and/or whitespace (tabs, extra spaces and `1 - 95` are fine); `1-95` becomes (0, 95). A name
  alone gives an empty list (listed, no ranges).

  Raises:
    ValueError: naming the file and 1-based line number, for a range that is not `a-b` with
      1 <= a <= b, a video line without the word `frames`, or a video listed twice.
  """
  with tf.io.gfile.GFile(path, 'r') as f:
    lines = f.read().splitlines()
  result, where = {}, {}
  for lineno, raw in enumerate(lines, 1):
    line = raw.strip()
    m = _LISTED_LINE.match(line)
    if not m:
      continue  # header or blank
    name, rest = m.group(1), (m.group(2) or '').strip()
    if name in result:
      raise ValueError(f'{path}, line {lineno}: {name} is already listed on line {where[name]}')
    where[name] = lineno
    ranges = []
    if rest:
      if not rest.startswith('frames'):
        raise ValueError(f'{path}, line {lineno}: expected "{name}  frames  1-95, 96-185, ...", '
                         f'got {line!r}')
      text = re.sub(r'\s*-\s*', '-', rest[len('frames'):])  # '1 - 95' -> '1-95'
      for piece in re.split(r'[,\s]+', text.strip()):  # commas and/or whitespace between ranges
        if not piece:
          continue
        r = _RANGE.match(piece)
        if not r or not 1 <= int(r.group(1)) <= int(r.group(2)):
          raise ValueError(f'{path}, line {lineno}: cannot read frame range {piece!r} of {name}: '
                           'expected first-last, 1-based and inclusive, with 1 <= first <= last')
        ranges.append((int(r.group(1)) - 1, int(r.group(2))))  # 1-based inclusive -> [start, end)
    result[name] = ranges
  return result


def find_videos(raw_dir: str) -> Dict[str, str]:
  """Video name -> path of every `personNN_<action>_dK_uncomp.avi` in raw_dir or one level below.

  Local folders only (os, not tf.io.gfile): ffmpeg reads local files.

  Raises:
    FileNotFoundError: raw_dir does not exist or holds no such file (the message says the layout).
    ValueError: the same video found twice.
  """
  if not os.path.isdir(raw_dir):
    raise FileNotFoundError(f'KTH raw folder {raw_dir} does not exist (or is not a local folder: '
                            'ffmpeg needs local files)')
  folders = [raw_dir] + sorted(
      os.path.join(raw_dir, d) for d in os.listdir(raw_dir)
      if os.path.isdir(os.path.join(raw_dir, d)))
  found = {}
  for folder in folders:
    for fname in sorted(os.listdir(folder)):
      m = _VIDEO_FILE.match(fname)
      if not m:
        continue
      path = os.path.join(folder, fname)
      if m.group(1) in found:
        raise ValueError(f'video {m.group(1)} found twice: {found[m.group(1)]} and {path}')
      found[m.group(1)] = path
  if not found:
    raise FileNotFoundError(
        f'no KTH videos in {raw_dir}: expected files named personNN_<action>_dK{VIDEO_SUFFIX} '
        f'(NN 01-25, <action> one of {", ".join(ACTIONS)}, K 1-4), either directly in this folder '
        'or one folder down (e.g. boxing/person01_boxing_d1_uncomp.avi, as the six zips unpack), '
        f'plus {SEQUENCES_FILE}')
  return dict(sorted(found.items()))


def find_sequences_file(raw_dir: str) -> str:
  """Path of 00sequences.txt in raw_dir or one level below; FileNotFoundError if absent."""
  candidates = [os.path.join(raw_dir, SEQUENCES_FILE)] + sorted(
      os.path.join(raw_dir, d, SEQUENCES_FILE) for d in os.listdir(raw_dir)
      if os.path.isdir(os.path.join(raw_dir, d)))
  for path in candidates:
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(
      f'{SEQUENCES_FILE} not found in {raw_dir} or its subfolders: it is the KTH page\'s separate '
      'download (www.nada.kth.se/cvap/actions/00sequences.txt) that lists each video\'s '
      'sub-sequences; put it next to the AVIs')


# --------------------------------------------------------------------------------------------------
# Decoding.


def _check_image_size(image_size) -> int:
  if image_size not in IMAGE_SIZES:
    raise ValueError(f'image_size must be one of {IMAGE_SIZES}, got {image_size!r}')
  return int(image_size)


def _decode(path: str, image_size: int) -> Tuple[np.ndarray, Dict[str, Any]]:
  """decode_video plus what ffmpeg said: {'codec', 'width', 'height', 'messages'}."""
  size = _check_image_size(image_size)
  if not os.path.isfile(path):
    raise VideoDecodeError(f'{path}: no such file')
  raw, stderr = video_files.ffmpeg_raw(
      path, ['-s', f'{size}x{size}',  # the reference's squash (bicubic swscale), aspect not kept
             '-pix_fmt', 'gray'], error=VideoDecodeError)
  num_frames, rest = divmod(len(raw), size * size)
  if num_frames == 0 or rest:
    raise VideoDecodeError(f'{path}: ffmpeg gave {len(raw)} bytes, not a positive number '
                           f'of {size}x{size} frames: {video_files.ffmpeg_reason(stderr)}')
  frames = np.frombuffer(raw, np.uint8).reshape(num_frames, size, size, CHANNELS)
  return frames, video_files.ffmpeg_stream(stderr)


def decode_video(path: str, image_size: int = 64) -> np.ndarray:
  """All frames of one AVI, grey, squashed to SxS: uint8 [T, S, S, 1].

  Runs `ffmpeg -i path -fps_mode passthrough -s SxS -pix_fmt gray -f rawvideo` (the imageio-ffmpeg
  binary): every frame at the native frame rate, bicubic resize without keeping the 4:3 aspect
  ratio (as the reference's `ffmpeg -s WxW`), luma expanded to 0..255.

  Args:
    path: local video file.
    image_size: S, 64 or 128.

  Raises:
    VideoDecodeError: the file is missing, ffmpeg fails or yields no frames; the message names
      the path and quotes ffmpeg's last error lines.
  """
  return _decode(path, image_size)[0]


# --------------------------------------------------------------------------------------------------
# Conversion.


class SplitPlan(NamedTuple):
  """Which listed/found videos go to which split, and which are skipped or ignored (and why)."""
  split_videos: Dict[str, List[str]]  # split -> sorted names of AVIs to convert
  skipped: Dict[str, List[Dict[str, str]]]  # split -> listed videos with no AVI
  ignored: List[Dict[str, str]]  # names in neither split (bad person or action)


def plan_splits(videos: Dict[str, str],
                listed: Dict[str, List[Tuple[int, int]]]) -> SplitPlan:
  """Assigns the AVIs found (`find_videos`) and listed (`parse_sequences_file`) to the splits."""
  split_videos = {s: [] for s in SPLITS}
  skipped = {s: [] for s in SPLITS}
  ignored = []
  for name in sorted(set(videos) | set(listed)):
    try:
      person, _, scenario = parse_video_name(name)
    except ValueError:
      ignored.append({'name': name, 'reason': f'listed in {SEQUENCES_FILE} but not a KTH video '
                                              f'name (actions: {", ".join(ACTIONS)})'})
      continue
    split = next((s for s in SPLITS if person in SPLIT_PERSONS[s]), None)
    if split is None or scenario not in SCENARIOS:
      ignored.append({'name': name, 'reason': f'person {person} / scenario d{scenario} outside '
                                              f'persons {PERSONS[0]}-{PERSONS[-1]}, scenarios '
                                              f'd{SCENARIOS[0]}-d{SCENARIOS[-1]}'})
      continue
    if name not in videos:
      reason = f'listed in {SEQUENCES_FILE} but no {name}{VIDEO_SUFFIX} found'
      if name in KNOWN_MISSING:
        reason += ' (known to be missing from the KTH download)'
      skipped[split].append({'name': name, 'reason': reason})
      continue
    split_videos[split].append(name)
  return SplitPlan(split_videos, skipped, ignored)


def clip_ranges(ranges: Sequence[Tuple[int, int]], num_frames: int):
  """Ranges clipped to [0, num_frames): (kept [K, 2] int32, list of ranges that were cut)."""
  kept, cut = [], []
  for start, end in ranges:
    if end > num_frames:
      cut.append([int(start), int(end)])
      end = num_frames
    if start < end:
      kept.append((start, end))
  return np.asarray(kept, np.int32).reshape(-1, 2), cut  # [K, 2]


def _record(listed: Dict[str, List[Tuple[int, int]]], image_size: int):
  """make_record for video_shards.convert_split: a KTH video's extras and manifest entry."""
  def make(source: video_shards.Source, frames: np.ndarray, stream: Dict[str, Any]):
    name = source.name
    if stream['messages']:
      logging.warning('kth | convert | %s decoded, but ffmpeg said: %s', source.path,
                      ' | '.join(stream['messages'][-3:]))
    if stream['width'] and (stream['width'], stream['height']) != NATIVE_SIZE:
      logging.warning('kth | convert | %s is %dx%d, not KTH\'s %dx%d; squashed to %dx%d anyway',
                      source.path, stream['width'], stream['height'], *NATIVE_SIZE, image_size,
                      image_size)
    person, action, scenario = parse_video_name(name)
    sequences, cut = clip_ranges(listed.get(name) or [(0, len(frames))], len(frames))
    record = {
        'name': name, 'num_frames': len(frames), 'sequences': sequences.tolist(),
        'clipped': cut, 'unlisted': not listed.get(name), 'codec': stream['codec'],
        'native_size': [stream['width'], stream['height']], 'messages': stream['messages'][-3:],
    }
    extras = {'person': np.int32(person), 'action': np.int32(action),
              'scenario': np.int32(scenario), 'sequences': sequences}
    return extras, record
  return make


def _convert_split(split: str, out_dir: str, raw_dir: str, names: List[str],
                   paths: Dict[str, str], listed: Dict[str, List[Tuple[int, int]]],
                   plan_skipped: List[Dict[str, str]], ignored: List[Dict[str, str]],
                   sequences_path: str, image_size: int, videos_per_shard: int,
                   num_workers: int) -> Dict[str, Any]:
  sources = [video_shards.Source(n, paths[n]) for n in names]
  settings = {'format_version': FORMAT_VERSION, 'image_size': image_size}
  written = video_shards.convert_split(
      'kth', split, out_dir, sources, lambda path: _decode(path, image_size),
      _record(listed, image_size), settings, videos_per_shard, num_workers)
  records = written.records
  info = {
      'dataset': DATASET_NAME,
      'split': split,
      'image_size': image_size,
      'channels': CHANNELS,
      'fps': FPS,
      'native_size': list(NATIVE_SIZE),
      'persons': list(SPLIT_PERSONS[split]),
      'actions': list(ACTIONS),
      'scenarios': list(SCENARIOS),
      'videos_per_shard': videos_per_shard,
      'raw_dir': os.path.abspath(raw_dir),
      'sequences_file': os.path.relpath(sequences_path, raw_dir),
      'sources': [os.path.relpath(paths[n], raw_dir) for n in names],
      'skipped': sorted(list(plan_skipped) + written.skipped, key=lambda s: s['name']),
      'ignored': ignored,
      'unlisted': [r['name'] for r in records if r['unlisted']],
      'clipped': [{'name': r['name'], 'num_frames': r['num_frames'], 'ranges': r['clipped']}
                  for r in records if r['clipped']],
      'record': 'one tf.train.Example per video (pipelines/tfrecord.py): frames uint8 '
                '[T, S, S, 1], the whole video; extras person, action (index into actions), '
                'scenario: int32 scalars; sequences: int32 [K, 2], 0-based half-open frame ranges '
                'of 00sequences.txt clipped to T (the whole video for unlisted videos)',
      'decoder': f'ffmpeg -fps_mode passthrough -s {image_size}x{image_size} -pix_fmt gray',
  }
  return video_shards.write_split_info('kth', split, out_dir, written, info)


def convert(raw_dir: str,
            out_dir: str,
            image_size: int = 64,
            videos_per_shard: int = DEFAULT_VIDEOS_PER_SHARD,
            overwrite: bool = False,
            num_workers: Optional[int] = None,
            sequences_file: Optional[str] = None) -> Dict[str, Optional[Dict[str, Any]]]:
  """Converts the raw KTH AVIs once into `out_dir/train` and `out_dir/test` (resumable).

  Videos listed in 00sequences.txt without an AVI (e.g. KNOWN_MISSING) and AVIs that ffmpeg cannot
  decode are skipped, named in ONE warning and in dataset_info.json's `skipped`. An AVI without a
  00sequences.txt entry is kept with its whole video as one sub-sequence (one warning lists them;
  dataset_info.json's `unlisted`). Ranges that end after the decoded frames are clipped (one
  warning; `clipped`). A split without any video is not written (None, with a warning).

  Args:
    raw_dir: local folder with the AVIs (flat or one folder per action) and 00sequences.txt.
    out_dir: output folder (tf.io.gfile path).
    image_size: S, 64 or 128.
    videos_per_shard: videos per TFRecord shard (>= 1); fixes the shard plan of a folder.
    overwrite: delete a previous conversion in out_dir first (needed to change image_size or
      videos_per_shard).
    num_workers: ffmpeg processes run at once (default: min(8, CPU count)).
    sequences_file: 00sequences.txt path (default: found in raw_dir or one level below).

  Returns:
    {'train': dataset_info dict or None, 'test': ...}.

  Raises:
    FileNotFoundError: no AVIs or no 00sequences.txt.
    FileExistsError: out_dir holds a conversion with other settings, or unrelated files.
    ValueError: bad arguments or a malformed 00sequences.txt.
  """
  image_size = _check_image_size(image_size)
  if int(videos_per_shard) != videos_per_shard or videos_per_shard < 1:
    raise ValueError(f'videos_per_shard must be an integer >= 1, got {videos_per_shard!r}')
  num_workers = num_workers or min(8, os.cpu_count() or 1)
  start = time.time()
  paths = find_videos(raw_dir)
  sequences_path = sequences_file or find_sequences_file(raw_dir)
  listed = parse_sequences_file(sequences_path)
  plan = plan_splits(paths, listed)
  logging.info('kth | convert | %s | %d AVIs, %d videos listed in %s | -> %s at %dx%d',
               raw_dir, len(paths), len(listed), sequences_path, out_dir, image_size, image_size)
  video_shards.prepare_out_dir(out_dir, {'dataset': DATASET_NAME, 'format_version': FORMAT_VERSION,
                                         'image_size': image_size,
                                         'videos_per_shard': int(videos_per_shard)},
                               overwrite, SPLITS, CONVERSION_FILE, 'a KTH conversion')
  infos = {}
  for split in SPLITS:
    if not plan.split_videos[split]:
      logging.warning('kth | convert | %s | no videos of persons %d-%d in %s: split not written',
                      split, SPLIT_PERSONS[split][0], SPLIT_PERSONS[split][-1], raw_dir)
      infos[split] = None
      continue
    infos[split] = _convert_split(split, out_dir, raw_dir, plan.split_videos[split], paths,
                                  listed, plan.skipped[split], plan.ignored, sequences_path,
                                  image_size, int(videos_per_shard), num_workers)

  written = [i for i in infos.values() if i]
  skipped = [s for i in written for s in i['skipped']] + plan.ignored
  if skipped:
    logging.warning('kth | convert | skipped %d videos (recorded in dataset_info.json):\n%s',
                    len(skipped), '\n'.join(f'  {s["name"]}: {s["reason"]}' for s in skipped))
  unlisted = [n for i in written for n in i['unlisted']]
  if unlisted:
    logging.warning('kth | convert | %d videos have no ranges in %s; each is used whole, as one '
                    'sub-sequence: %s', len(unlisted), SEQUENCES_FILE, ', '.join(unlisted))
  clipped = [c for i in written for c in i['clipped']]
  if clipped:
    logging.warning('kth | convert | %d videos have %s ranges ending after their last decoded '
                    'frame; clipped:\n%s', len(clipped), SEQUENCES_FILE, '\n'.join(
                        f'  {c["name"]}: {c["num_frames"]} frames, ranges {c["ranges"]}'
                        for c in clipped))
  logging.info('kth | convert | finished in %s | train %s, test %s videos | %s',
               video_shards.format_duration(time.time() - start),
               *[infos[s]['num_examples'] if infos[s] else 0 for s in SPLITS], out_dir)
  return infos


# --------------------------------------------------------------------------------------------------
# Reading the converted folder.


def _looks_raw(data_dir: str) -> bool:
  patterns = ['*.avi', '*/*.avi', SEQUENCES_FILE, '*/' + SEQUENCES_FILE]
  try:
    return any(tf.io.gfile.glob(os.path.join(data_dir, p)) for p in patterns)
  except tf.errors.OpError:
    return False


def read_converted_info(data_dir: str, split: str = 'train') -> Dict[str, Any]:
  """dataset_info.json of `data_dir/split` (a `convert` output): image_size, videos, skipped...

  Raises:
    NotConvertedError: data_dir is the raw download, an unfinished conversion or something else;
      the message says which command to run.
    ValueError: unknown split, or the folder holds another dataset.
  """
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}')

  def not_converted(split_dir):
    command = f'python -m pipelines.kth --data_dir={data_dir} --out=DIR'
    if _looks_raw(data_dir):
      return NotConvertedError(
          f'{data_dir} looks like the raw KTH download (AVI files / {SEQUENCES_FILE}), not a '
          f'converted folder: convert it once with `{command}`, then pass DIR')
    if tf.io.gfile.exists(os.path.join(data_dir, CONVERSION_FILE)):
      return NotConvertedError(
          f'{split_dir}/{tfrecord.INFO_FILE} is missing: the conversion into {data_dir} did not '
          f'finish (re-run the same `python -m pipelines.kth --data_dir=RAW --out={data_dir}` to '
          f'resume) or the raw folder had no {split} videos')
    return NotConvertedError(
        f'{split_dir}/{tfrecord.INFO_FILE} not found: pass the output folder of '
        '`python -m pipelines.kth --data_dir=RAW --out=DIR` (it holds train/ and test/)')

  return video_shards.read_split_info(data_dir, split, DATASET_NAME, not_converted)


def train_dataset(data_dir: str,
                  seq_len: int,
                  seed: int,
                  num_shards: int = 1,
                  shard_index: int = 0,
                  shuffle_buffer: int = video_shards.DEFAULT_SHUFFLE_BUFFER,
                  split: str = 'train',
                  cycle_length: int = 4,
                  skip_bad_records: bool = False) -> tf.data.Dataset:
  """Infinite stream of random training windows {'frames': float32 [seq_len, S, S, 1] in [0, 1]}.

  Each pass visits every video record of this input pipeline once, in a shuffled order (shards
  shuffled, `cycle_length` of them interleaved). For each video: a uniformly random sub-sequence
  among those with at least seq_len frames, then a uniform start within it (SVG's `data/kth.py`
  draw, `video_shards.subsequence_window`). Videos without such a sub-sequence are skipped.
  The other arguments are `video_shards.train_windows`'; `data_dir` is a `convert` output
  folder (holding train/ and test/), `split` 'train' (default) or 'test' (random test windows,
  e.g. for a validation loss).

  Raises:
    NotConvertedError: data_dir is the raw download or not a finished conversion.
    ValueError: bad arguments, or no video of this pipeline has a sub-sequence of seq_len frames.
  """
  return video_shards.train_windows(os.path.join(data_dir, split),
                                    read_converted_info(data_dir, split), seq_len, seed,
                                    num_shards, shard_index, shuffle_buffer, cycle_length,
                                    skip_bad_records)


def plan_test_clips(lengths: Dict[str, int], count: int, clip_len: int,
                    seed: int = TEST_SEED) -> List[Tuple[str, int, int, int, int]]:
  """SRVP's draw of the KTH test clips: [(video name, start, person, action, scenario)] * count.

  `lengths`: frame count of every available test video, by name. See `test_clips`.
  """
  if not any(t >= clip_len for t in lengths.values()):
    raise ValueError(f'no test video has {clip_len} frames (longest: '
                     f'{max(lengths.values(), default=0)})')
  rng = np.random.RandomState(int(seed))
  plan, redraws = [], 0
  while len(plan) < count:
    action = rng.randint(len(ACTIONS))
    person = rng.randint(TEST_PERSONS[0], TEST_PERSONS[-1] + 1)
    scenario = rng.randint(SCENARIOS[0], SCENARIOS[-1] + 1)
    name = video_name(person, action, scenario)
    if lengths.get(name, 0) < clip_len:
      redraws += 1
      continue
    plan.append((name, int(rng.randint(lengths[name] - clip_len + 1)), person, action, scenario))
  if redraws:
    logging.info('kth | test clips | %d draws were redrawn (video absent or shorter than %d)',
                 redraws, clip_len)
  return plan


def test_clips(data_dir: str,
               num_clips: int = TEST_NUM_CLIPS,
               clip_len: int = TEST_CLIP_LEN,
               seed: int = TEST_SEED,
               max_clips: Optional[int] = None) -> TestClips:
  """SRVP's fixed KTH test set: `num_clips` clips of `clip_len` frames from the test persons.

  Clip by clip, with `np.random.RandomState(seed)` (SRVP: `np.random.seed(42)` then
  `np.random.randint`): action = randint(6), person = randint(21, 26), scenario = randint(1, 5);
  if that video was not converted or is shorter than clip_len, those three are drawn again (SRVP
  never needs to: all 120 test videos exist and are longer than 40 frames); then the start
  t0 = randint(T - clip_len + 1) in the WHOLE video (SRVP ignores the sub-sequence ranges here).
  The same data and seed give the same clips on every run; `max_clips=K` gives the first K.

  Args:
    data_dir: a `convert` output folder.
    num_clips: size of the test set.
    clip_len: frames per clip.
    seed: numpy seed.
    max_clips: if set, only the first min(max_clips, num_clips) clips.

  Returns:
    TestClips (frames uint8 [N, clip_len, S, S, 1], with each clip's video and start).
  """
  info = read_converted_info(data_dir, 'test')
  if int(clip_len) != clip_len or clip_len < 1 or int(num_clips) != num_clips or num_clips < 1:
    raise ValueError(f'num_clips and clip_len must be integers >= 1, got {num_clips!r}, '
                     f'{clip_len!r}')
  count = num_clips if max_clips is None else min(int(max_clips), num_clips)
  lengths = {v['name']: v['num_frames'] for v in info['videos']}
  plan = plan_test_clips(lengths, count, clip_len, seed)
  record_of = {v['name']: r for r, v in enumerate(info['videos'])}
  frames = video_shards.read_clips(os.path.join(data_dir, 'test'), info,
                                   [(record_of[name], start) for name, start, *_ in plan],
                                   clip_len)
  return TestClips(frames=frames, videos=tuple(p[0] for p in plan),
                   starts=np.array([p[1] for p in plan], np.int64).reshape(-1),
                   persons=np.array([p[2] for p in plan], np.int32).reshape(-1),
                   actions=np.array([p[3] for p in plan], np.int32).reshape(-1),
                   scenarios=np.array([p[4] for p in plan], np.int32).reshape(-1))


def write_preview(path_prefix: str,
                  data_dir: str,
                  split: str,
                  count: int,
                  seq_len: Optional[int] = None,
                  seed: int = TEST_SEED) -> np.ndarray:
  """Writes <prefix>.npz (`frames` uint8 [K, T, S, S, 1]) and <prefix>.gif of a converted folder.

  test: the first K clips of `test_clips(data_dir, clip_len=seq_len, seed=seed)` (T default 40).
  train: the first K windows of `train_dataset(data_dir, seq_len, seed)` (T default 20).
  """
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
  if int(count) != count or count < 1:
    raise ValueError(f'count must be an integer >= 1, got {count!r}')
  if split == 'test':
    seq_len = seq_len or TEST_CLIP_LEN
    videos = test_clips(data_dir, num_clips=max(count, TEST_NUM_CLIPS), clip_len=seq_len,
                        seed=seed, max_clips=count).frames
  else:
    seq_len = seq_len or TRAIN_SEQ_LEN
    windows = train_dataset(data_dir, seq_len, seed).take(count)
    videos = np.stack([np.round(w['frames'].numpy() * 255.0).astype(np.uint8) for w in windows])
  path_prefix = media.save_preview(path_prefix, videos)  # [K, T, S, S, 1]
  logging.info('kth | preview | %s | %d clips of %d frames | %s.npz | %s.gif', split, count,
               seq_len, path_prefix, path_prefix)
  return videos


# --------------------------------------------------------------------------------------------------
# Command line. Flags are defined only when this file runs as a script: train.py imports the module.

_CONVERT_FLAGS = ('image_size', 'videos_per_shard', 'overwrite', 'num_workers')
_PREVIEW_FLAGS = ('split', 'preview_num', 'preview_seq_len', 'seed')


def _define_flags():
  """Defines the CLI flags; called only under __main__ so importers keep a clean flag namespace."""
  flags.DEFINE_string('data_dir', None, 'Raw KTH folder (AVIs flat or per action, plus '
                      f'{SEQUENCES_FILE}) to convert with --out; or a converted folder to preview.')
  flags.DEFINE_string('out', None, 'Output folder of the conversion (train/, test/); re-running '
                      'the same command resumes an interrupted conversion.')
  flags.DEFINE_enum('image_size', '64', [str(s) for s in IMAGE_SIZES],
                    'Frame height and width S in pixels (160x120 squashed to SxS).')
  flags.DEFINE_integer('videos_per_shard', DEFAULT_VIDEOS_PER_SHARD,
                       'Videos per TFRecord shard (about 2 MB per video at 64x64).', lower_bound=1)
  flags.DEFINE_boolean('overwrite', False, 'Delete a previous conversion in --out first.')
  flags.DEFINE_integer('num_workers', None, 'ffmpeg processes at once (default: min(8, CPUs)).',
                       lower_bound=1)
  flags.DEFINE_string('preview_out', None, 'Path prefix P: writes P.npz (`frames` uint8 '
                      '[K, T, S, S, 1]) and P.gif, from --out if given, else from --data_dir.')
  flags.DEFINE_enum('split', 'test', list(SPLITS), 'Preview split: test = the first K clips of '
                    'the seeded SRVP-style test set; train = K random training windows.')
  flags.DEFINE_integer('preview_num', 8, 'K, clips in the preview.', lower_bound=1)
  flags.DEFINE_integer('preview_seq_len', None, 'Frames per preview clip (default: 40 for test, '
                       f'{TRAIN_SEQ_LEN} for train).', lower_bound=1)
  flags.DEFINE_integer('seed', TEST_SEED, 'Seed of the test clips (SRVP: 42) or of the train '
                       'windows of the preview.', lower_bound=0)
  flags.mark_flag_as_required('data_dir')


def main(argv):
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  del argv  # command_line.run refuses positional arguments
  if not FLAGS.out and not FLAGS.preview_out:
    raise UserError('nothing to do: pass --out=DIR to convert the raw AVIs in --data_dir, '
                         'and/or --preview_out=P to write a preview')
  for names, needs in ((_CONVERT_FLAGS, 'out'), (_PREVIEW_FLAGS, 'preview_out')):
    given = [f'--{n}' for n in names if FLAGS[n].present]
    if given and not FLAGS[needs].value:
      raise UserError(f'{", ".join(given)} only apply with --{needs}')
  source = FLAGS.data_dir
  try:
    if FLAGS.out:
      convert(FLAGS.data_dir, FLAGS.out, int(FLAGS.image_size), FLAGS.videos_per_shard,
              overwrite=FLAGS.overwrite, num_workers=FLAGS.num_workers)
      source = FLAGS.out
    if FLAGS.preview_out:
      write_preview(FLAGS.preview_out, source, FLAGS.split, FLAGS.preview_num,
                    seq_len=FLAGS.preview_seq_len, seed=FLAGS.seed)
  except (OSError, ValueError, tf.errors.OpError) as e:  # includes NotConvertedError
    raise UserError(str(e)) from None


if __name__ == '__main__':
  _define_flags()
  command_line.run(main)
