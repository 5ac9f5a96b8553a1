"""Damage done to TFRecord files by the bad-data tests: a truncated record, a file cut short."""

import tensorflow as tf


def read_records(path):
  return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def write_records(path, records):
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      writer.write(record)


def truncate_in_record(path, index):
  """Cuts the file 7 bytes into record `index`: it and every record after it are unreadable."""
  size = sum(len(r) + 16 for r in read_records(path)[:index + 1])  # 16 bytes of framing per record
  with open(path, "r+b") as f:
    f.truncate(size - 7)


def cut_at_boundary(path, index):
  """Drops records `index`.. cleanly: the file reads without any error, but is short."""
  write_records(path, read_records(path)[:index])
