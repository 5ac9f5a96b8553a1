"""Bad SM-MNIST TFRecords: a truncated file, a file cut at a record boundary, a record of the wrong
shape or byte count. Reading fails with an error naming the file and record; with skip_bad_records
they are dropped, logged and counted, and train.py says how many. `inputs.explain_data_error`, what
train.py calls, names the file and record behind an error of any dataset's training stream
(SM-MNIST TFRecords and BAIR here). (Frames are uint8 on disk, so NaN or out-of-range pixels cannot
come from these files; the trainer refuses such batches from any source: test_bad_steps.py.)"""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from pipelines import inputs, smmnist, tfrecord
from pipelines.fixtures import bair as bair_fixture
from svg_tf import config as config_lib
from tests.reliability.helpers import TINY, run_train
from tests.tfrecord_damage import cut_at_boundary as _cut_at_boundary
from tests.tfrecord_damage import read_records as _records
from tests.tfrecord_damage import truncate_in_record as _truncate
from tests.tfrecord_damage import write_records as _write_records


def _edit(shard, index, edit):
  records = _records(shard)
  example = tf.train.Example.FromString(records[index])
  edit(example.features.feature)
  records[index] = example.SerializeToString()
  _write_records(shard, records)


def _wrong_shape(shard, index):
  """Frames of 32x32 with a matching byte count, in a dataset declaring 64x64."""
  def edit(feature):
    feature["shape"].int64_list.value[:] = [4, 32, 32, 1]
    feature["frames"].bytes_list.value[0] = bytes(4 * 32 * 32)
  _edit(shard, index, edit)


def _wrong_bytes(shard, index):
  def edit(feature):
    feature["frames"].bytes_list.value[0] = feature["frames"].bytes_list.value[0][:-1]
  _edit(shard, index, edit)


DAMAGES = {  # name: (damage, shard, record, what the error says)
    "truncated": (_truncate, 1, 2, r"missing or unreadable, as every record after it: the file "
                                   r"ends after 2 of its 3 records"),
    "cut_at_boundary": (_cut_at_boundary, 3, 1, r"missing or unreadable, as every record after "
                                                r"it: the file ends after 1 of its 3 records"),
    "wrong_shape": (_wrong_shape, 0, 1, r"frames have shape 4x32x32x1, the dataset declares "
                                        r"4x64x64x1"),
    "wrong_bytes": (_wrong_bytes, 2, 0, r"frames has 16383 bytes, shape 4x64x64x1 needs 16384"),
}


def _dataset(path, mnist_npz, damages=()):
  """4 shards of 3 SM-MNIST records, 4 frames each, with `damages` applied."""
  smmnist.write_tfrecords(str(path), "train", num_sequences=12, seq_len=4, seed=0,
                          mnist_path=mnist_npz, examples_per_shard=3)
  shards = tfrecord.list_shards(str(path))
  for name in damages:
    damage, shard, index, _ = DAMAGES[name]
    damage(shards[shard], index)
  return shards


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_a_bad_record_fails_naming_its_file_and_index(name, mnist_npz, tmp_path):
  shards = _dataset(tmp_path / "data", mnist_npz, [name])
  _, shard, index, what = DAMAGES[name]
  where = re.escape(f"{shards[shard]}: record {index}: ")
  with pytest.raises(tf.errors.InvalidArgumentError, match="bad record: " + where + what) as caught:
    for _ in smmnist.tfrecord_dataset(str(tmp_path / "data")):
      pass
  with pytest.raises(tfrecord.CorruptRecordError, match="^" + where + what):
    tfrecord.explain_data_error(str(tmp_path / "data"), caught.value)


def test_skip_bad_records_drops_and_counts_each_once(mnist_npz, tmp_path):
  clean = tmp_path / "clean"
  _dataset(clean, mnist_npz)
  originals = {(os.path.basename(r["file"].decode()), int(r["index"])): r["frames"]
               for r in tfrecord.video_dataset(str(clean), False).as_numpy_iterator()}
  shards = _dataset(tmp_path / "data", mnist_npz, sorted(DAMAGES))
  tfrecord.reset_skipped_records()
  ds = tfrecord.video_dataset(str(tmp_path / "data"), False, skip_bad_records=True)
  for _ in range(2):  # a second pass (epoch) meets the same records: counted once
    kept = {(os.path.basename(r["file"].decode()), int(r["index"])): r["frames"]
            for r in ds.as_numpy_iterator()}
  lost = {(os.path.basename(shards[s]), i) for _, s, i, _ in DAMAGES.values()}
  lost.add((os.path.basename(shards[3]), 2))  # the cut file lost its records 1 and 2
  assert sorted(kept) == sorted(set(originals) - lost)
  for key, frames in kept.items():
    np.testing.assert_array_equal(frames, originals[key])
  assert tfrecord.skipped_records() == {shards[0]: 1, shards[1]: 1, shards[2]: 1, shards[3]: 2}


def test_skip_bad_records_needs_records(tiny_config, tmp_path):
  with pytest.raises(ValueError, match="not to SM-MNIST generated on the fly"):
    inputs.train_input_fn(tiny_config, skip_bad_records=True)
  with pytest.raises(ValueError, match="not to --data_source=tfds"):
    inputs.train_input_fn(tiny_config, data_dir=str(tmp_path), skip_bad_records=True,
                          source="tfds")


def test_train_py_skips_bad_records_and_says_how_many(mnist_npz, tmp_path):
  # (Without --skip_bad_records train.py stops with a one-line error naming the first bad record
  # it meets: tests/test_train_cli.py.)
  shards = _dataset(tmp_path / "data", mnist_npz, sorted(DAMAGES))
  out = run_train(*TINY, "--train_steps=3", f"--data_dir={tmp_path / 'data'}",
                  "--skip_bad_records", f"--model_dir={tmp_path / 'run'}")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "train | step 3/3" in out.stderr
  for _, shard, index, what in DAMAGES.values():
    assert re.search(re.escape(f"skipped bad record | {shards[shard]}: record {index}: ") + what,
                     out.stderr)
  assert "skipped 5 bad record(s) in 4 file(s)" in out.stderr


# ---------------------------------------------------------------------------------------------
# inputs.explain_data_error: the one call train.py makes for an error of the training stream.

SMMNIST_CONFIG = config_lib.preset("smmnist", batch_size=2, n_past=2, n_future=2)  # 4 frames
BAIR_CONFIG = config_lib.preset("bair", batch_size=2, n_future=3)  # 5-frame windows
OOM = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape [2, 64]")


def _stream_error(config, data_dir):
  """What taking the first batch of train.py's stream raises."""
  with pytest.raises((tf.errors.OpError, UnicodeDecodeError)) as caught:
    next(iter(inputs.train_input_fn(config, data_dir)(tf.distribute.InputContext(), 0)))
  return caught.value


def test_explain_data_error_names_a_bad_smmnist_record(mnist_npz, tmp_path):
  data_dir = str(tmp_path / "data")
  shards = _dataset(data_dir, mnist_npz, ["wrong_bytes"])
  _, shard, index, what = DAMAGES["wrong_bytes"]
  err = _stream_error(SMMNIST_CONFIG, data_dir)
  with pytest.raises(tfrecord.CorruptRecordError,
                     match="^" + re.escape(f"{shards[shard]}: record {index}: ") + what) as bad:
    inputs.explain_data_error(SMMNIST_CONFIG, data_dir, "native", err)
  assert bad.value.__cause__ is err

  # An error that names no record (a reader's DataLossError): the shards are read again.
  cut_dir = str(tmp_path / "cut")
  shards = _dataset(cut_dir, mnist_npz, ["cut_at_boundary"])
  data_loss = tf.errors.DataLossError(None, None, "corrupted record at 1234")
  with pytest.raises(tfrecord.CorruptRecordError,
                     match="^" + re.escape(f"{shards[3]}: has 1 records but dataset_info.json "
                                           "says 3: the file ends early at record 1")):
    inputs.explain_data_error(SMMNIST_CONFIG, cut_dir, "native", data_loss)


def test_explain_data_error_names_a_bad_bair_record(tmp_path):
  root = str(tmp_path / "bair")
  paths = bair_fixture.write_bair_tfrecords(root, "train", 2, 3, seed=1,
                                            corrupt={(1, 2): "short_image"})
  err = _stream_error(BAIR_CONFIG, root)
  with pytest.raises(tfrecord.CorruptRecordError,
                     match="^" + re.escape(f"{paths[1]}: record 2: key 7/image_aux1/encoded has "
                                           "100 bytes, expected 12288") + "$") as bad:
    inputs.explain_data_error(BAIR_CONFIG, root, "native", err)
  assert bad.value.__cause__ is err

  # A download cut short: the record count in the file's name (traj_0_to_1: 2) names the first
  # missing record, in the stream's own error.
  cut_root = str(tmp_path / "cut")
  paths = bair_fixture.write_bair_tfrecords(cut_root, "train", 2, 2, seed=1)
  with open(paths[0], "r+b") as f:  # cut in the file's second record
    f.truncate(os.path.getsize(paths[0]) - 1000)
  err = _stream_error(BAIR_CONFIG, cut_root)
  assert isinstance(err, tf.errors.InvalidArgumentError)
  with pytest.raises(tfrecord.CorruptRecordError,
                     match="^" + re.escape(f"{paths[0]}: record 1: missing or unreadable, as every "
                                           "record after it: the file ends after 1 of its 2 "
                                           "records (as its name says)")):
    inputs.explain_data_error(BAIR_CONFIG, cut_root, "native", err)


def test_explain_data_error_returns_none_for_other_errors(mnist_npz, tmp_path):
  smmnist_dir = str(tmp_path / "smmnist")
  _dataset(smmnist_dir, mnist_npz, ["wrong_bytes"])
  bair_dir = str(tmp_path / "bair")
  bair_fixture.write_bair_tfrecords(bair_dir, "train", 1, 3, seed=1,
                                    corrupt={(0, 1): "short_image"})
  # Not an error bad data causes: None at once, without reading the (here bad) data again.
  assert inputs.explain_data_error(SMMNIST_CONFIG, smmnist_dir, "native", OOM) is None
  assert inputs.explain_data_error(BAIR_CONFIG, bair_dir, "native", OOM) is None
  # An error bad data could cause, from clean data: read again, nothing found.
  clean_smmnist = str(tmp_path / "clean_smmnist")
  _dataset(clean_smmnist, mnist_npz)
  clean_bair = str(tmp_path / "clean_bair")
  bair_fixture.write_bair_tfrecords(clean_bair, "train", 2, 2, seed=1)
  shapes = tf.errors.InvalidArgumentError(None, None, "Incompatible shapes: [2,64] vs. [2,32]")
  assert inputs.explain_data_error(SMMNIST_CONFIG, clean_smmnist, "native", shapes) is None
  assert inputs.explain_data_error(BAIR_CONFIG, clean_bair, "native", shapes) is None
  assert inputs.explain_data_error(BAIR_CONFIG, clean_bair, "native",
                                   UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid")) is None
  # Streams that read no files of svg_tf's: SM-MNIST generated on the fly, tfds.
  data_loss = tf.errors.DataLossError(None, None, "corrupted record at 1234")
  assert inputs.explain_data_error(SMMNIST_CONFIG, None, "native", data_loss) is None
  assert inputs.explain_data_error(BAIR_CONFIG, bair_dir, "tfds", data_loss) is None
