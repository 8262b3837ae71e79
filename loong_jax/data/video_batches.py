"""grain pipeline of pixel clips, for training the video tokenizer.

    batches = video_batches(SyntheticVideos(SyntheticConfig(num_frames=(17,))), batch_size=8)
    batch = next(iter(batches))   # {"video": float32 [8, 17, H, W, 3] in [-1, 1]}

The source must yield clips of one shape (one frame count and resolution: `SyntheticVideos` with
a single `num_frames`, `FolderSource`, `TfdsVideos`). Unreadable items are counted and skipped
(`sources.readable`). Shuffling, host slices and resume work as in `pipeline.make_pipeline`.
"""

from __future__ import annotations

import grain
import numpy as np

from loong_jax.data import pipeline, sources


def to_model_range(item: dict) -> dict:
  """uint8 `[T, H, W, 3]` -> float32 in [-1, 1] (the tokenizer's input range)."""
  return {"video": item["video"].astype(np.float32) * (2.0 / 255.0) - 1.0}


def video_batches(source, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                  num_epochs: int | None = None, process_index: int | None = None,
                  process_count: int | None = None, worker_count: int = 0,
                  counter: sources.SkipCounter | None = None,
                  read_ahead: int | None = None) -> grain.IterDataset:
  """Batches `{"video": float32 [batch_size, T, H, W, 3]}` of this host's slice of `source`.

  Args:
    source: a data source of `{"video": uint8 [T, H, W, 3], ...}` items.
    batch_size: per-host batch.
    seed, shuffle: order of the items (a function of `seed`, so the iterator resumes exactly).
    num_epochs: None repeats forever; otherwise the last batch may be smaller.
    process_index, process_count: override the JAX process (default: this one's share).
    worker_count: grain worker processes (need absl flags parsed, see STACK_NOTES).
    counter: receives the skipped items (in this process; workers count their own).
    read_ahead: items read ahead of the batches (grain's prefetch buffer); None: grain's default.
  """
  ds = pipeline.host_slice(sources.readable(source, counter), process_index, process_count)
  if shuffle:
    ds = ds.seed(seed).shuffle()
  ds = ds.repeat(num_epochs).map(to_model_range)
  read_options = None if read_ahead is None else grain.ReadOptions(prefetch_buffer_size=read_ahead)
  it = ds.to_iter_dataset(read_options).batch(batch_size, drop_remainder=num_epochs is None)
  if worker_count:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return it
