"""Pixel clip batches for the tokenizer: range, shape, skipping, resume."""

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
