"""Pixel clip batches for the tokenizer: range, shape, skipping, resume."""

import time

import numpy as np

from loong_jax.data import sources, video_batches
from tests.data.conftest import synthetic_source
from tests.data.test_sources import make_folder


def test_synthetic_clips():
  it = iter(video_batches.video_batches(synthetic_source(5, 12), 4, process_index=0,
                                        process_count=1))
  batch = next(it)
  assert set(batch) == {"video"} and batch["video"].shape == (4, 5, 32, 32, 3)
  assert batch["video"].dtype == np.float32
  assert -1.0 <= batch["video"].min() and batch["video"].max() <= 1.0
  state = it.get_state()
  want = next(it)
  again = iter(video_batches.video_batches(synthetic_source(5, 12), 4, process_index=0,
                                           process_count=1))
  again.set_state(state)
  np.testing.assert_array_equal(next(again)["video"], want["video"])


def test_bad_files_are_skipped(tmp_path):
  make_folder(tmp_path)
  counter = sources.SkipCounter()
  source = sources.FolderSource(str(tmp_path), resolution=16, num_frames=1)
  batches = list(video_batches.video_batches(source, 2, num_epochs=1, shuffle=False,
                                             process_index=0, process_count=1, counter=counter))
  assert [len(b["video"]) for b in batches] == [2, 1] and counter.count == 2


class _CountingSource:
  """A random-access source that counts the items read from it."""

  def __init__(self, source):
    self.source, self.reads = source, 0

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    self.reads += 1
    return self.source[index]


def test_read_ahead_bounds_the_items_read_before_they_are_needed():
  counted = _CountingSource(synthetic_source(1, 48))
  it = iter(video_batches.video_batches(counted, 2, shuffle=False, process_index=0,
                                        process_count=1, read_ahead=2))
  first = next(it)
  time.sleep(0.5)  # let grain's reader threads run ahead as far as they are allowed
  # One batch and at most a few items more, not grain's default buffer of 500 (the whole source).
  assert counted.reads <= 2 + 2 + 2, counted.reads
  plain = next(iter(video_batches.video_batches(synthetic_source(1, 48), 2, shuffle=False,
                                                process_index=0, process_count=1)))
  np.testing.assert_array_equal(first["video"], plain["video"])  # the same data either way
