"""Data sources (grain `RandomAccessDataSource`s: `len` and `__getitem__`).

* `FolderSource`: a folder of videos/images with captions in `captions.jsonl`
  (`{"path": ..., "caption": ...}` per line) or a WebVid-style CSV (`videoid`, `name`,
  `page_dir` columns, or `path`, `caption`). Items are decoded clips; an unreadable, truncated
  or too-short file raises `video_io.VideoReadError`. Malformed caption rows (invalid JSON, no
  path or caption) are data errors too: skipped, counted and logged, unless more than
  `max_bad_fraction` of the rows are malformed (then the file is likely not a caption file).
* `TokenShards`: the ArrayRecord shards written by `pretokenize` (see `encode_token_record`).
* `readable(...)`: wraps a source in a grain dataset that counts, logs and skips bad items.

TFDS sources live in `tfds_sources.py`.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
import threading

import grain
import msgpack
import numpy as np

from loong_jax.data import video_io

VideoReadError = video_io.VideoReadError
MAX_BAD_FRACTION = 0.01  # malformed caption rows tolerated, as a fraction of the rows
_LOGGED_BAD_ROWS = 5  # malformed rows logged one by one; the rest are counted


class FolderSource:
  """Captioned videos/images under `root`, decoded to fixed-size clips.

  Items: `{"video": uint8 [num_frames, size, size, 3], "caption": str, "fps": float,
  "key": str}` (key = the path relative to root).
  """

  def __init__(self, root: str, resolution: int, num_frames: int, fps: float | None = None,
                captions: str | None = None, clip_position: str = "start",
                entries: list[tuple[str, str]] | None = None,
                max_bad_fraction: float = MAX_BAD_FRACTION):
    """Read the caption file (videos are decoded lazily, per item).

    Args:
      root: the folder; paths in the caption file are relative to it.
      resolution: output side in pixels (resize + centre crop).
      num_frames: clip length, 1 + 4k (1 takes the first frame of a video, or the image).
      fps: resample videos to this rate first; None keeps each file's rate.
      captions: caption file (`.jsonl` or `.csv`); default `root/captions.jsonl`, else the only
        `*.csv` in root.
      clip_position: where the window sits in a longer video: start | center.
      entries: `[(path relative to root, caption)]` given directly (no caption file is read).
      max_bad_fraction: malformed caption rows are skipped (listed in `bad_rows`) while they are
        at most this fraction of the file's rows; above it, a ValueError names the file, the
        count and the first bad line.
    Attributes:
      bad_rows: `["file:line: reason"]` of the skipped malformed caption rows.
    """
    if num_frames < 1 or (num_frames - 1) % 4:
      raise ValueError(f"FolderSource: num_frames={num_frames} is not 1 + 4k")
    self.root, self.resolution, self.num_frames = root, resolution, num_frames
    self.fps, self.clip_position = fps, clip_position
    self.bad_rows: list[str] = []
    if entries is None:
      self.caption_file = captions or _default_caption_file(root)
      self.entries, self.bad_rows = _read_captions(self.caption_file, max_bad_fraction)
    else:
      self.caption_file, self.entries = None, list(entries)

  @classmethod
  def uncaptioned(cls, root: str, resolution: int, num_frames: int, **kwargs) -> "FolderSource":
    """Every video and image file under `root` (recursively, in name order), captions empty: for
    training the video tokenizer, which reads no text. `kwargs` as `__init__`."""
    if not os.path.isdir(root):
      raise FileNotFoundError(f"FolderSource: {root!r} is not a directory")
    media = video_io.IMAGE_EXTENSIONS + video_io.VIDEO_EXTENSIONS
    paths = sorted(os.path.relpath(p, root)
                   for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                   if os.path.isfile(p) and p.lower().endswith(media))
    if not paths:
      raise FileNotFoundError(f"FolderSource: no video or image files ({', '.join(media)}) "
                              f"under {root}")
    return cls(root, resolution, num_frames, entries=[(p, "") for p in paths], **kwargs)

  def __len__(self) -> int:
    return len(self.entries)

  def __repr__(self) -> str:
    return f"FolderSource({self.caption_file or self.root!r}, {len(self)} items)"

  def caption(self, index: int) -> str:
    return self.entries[index][1]

  def __getitem__(self, index: int) -> dict:
    rel_path, caption = self.entries[index]
    path = os.path.join(self.root, rel_path)
    frames, fps = video_io.read_video(path)
    if self.fps and fps > 0:
      frames, fps = video_io.resample_fps(frames, fps, self.fps), float(self.fps)
    if len(frames) < self.num_frames:
      raise VideoReadError(path, f"{len(frames)} frames at {fps:g} fps, need {self.num_frames}")
    frames = video_io.clip_window(frames, self.num_frames, self.clip_position)
    frames = video_io.resize_center_crop(frames, self.resolution)
    return {"video": frames, "caption": caption, "fps": fps, "key": rel_path}


def _default_caption_file(root: str) -> str:
  jsonl = os.path.join(root, "captions.jsonl")
  if os.path.exists(jsonl):
    return jsonl
  csvs = sorted(glob.glob(os.path.join(root, "*.csv")))
  if len(csvs) != 1:
    raise FileNotFoundError(f"FolderSource: {root} has no captions.jsonl and {len(csvs)} csv "
                            "files; pass captions= explicitly")
  return csvs[0]


def _read_captions(caption_file: str, max_bad_fraction: float
                   ) -> tuple[list[tuple[str, str]], list[str]]:
  """`([(path relative to root, caption)], ["file:line: reason" of malformed rows])` from a jsonl
  or WebVid-style csv file; raises when malformed rows exceed `max_bad_fraction` of all rows."""
  if caption_file.endswith(".jsonl"):
    rows = _jsonl_rows(caption_file)
  elif caption_file.endswith(".csv"):
    rows = _csv_rows(caption_file)
  else:
    raise ValueError(f"FolderSource: caption file {caption_file} must be .jsonl or .csv")
  entries, bad = [], []
  for line_no, entry, reason in rows:
    if entry is None:
      bad.append(f"{caption_file}:{line_no}: {reason}")
    else:
      entries.append(entry)
  total = len(entries) + len(bad)
  if bad and len(bad) > max_bad_fraction * total:
    raise ValueError(f"{caption_file}: {len(bad)} of {total} caption rows are malformed, more "
                     f"than max_bad_fraction={max_bad_fraction:g} (config.source."
                     f"max_bad_fraction); first bad row {bad[0]}")
  for reason in bad[:_LOGGED_BAD_ROWS]:
    logging.warning("skipping caption row %s", reason)
  if bad:
    logging.warning("%s: skipped %d malformed caption rows of %d%s", caption_file, len(bad),
                    total, " (first ones above)" if len(bad) > _LOGGED_BAD_ROWS else "")
  return entries, bad


def _jsonl_rows(caption_file: str):
  """`(line, (path, caption) or None, reason)` per non-empty line of a `captions.jsonl`."""
  with open(caption_file) as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
        yield line_no, (str(row["path"]), str(row["caption"])), ""
      except (json.JSONDecodeError, KeyError, TypeError) as e:
        reason = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        yield line_no, None, (f"expected {{\"path\", \"caption\"}}, got "
                              f"{line.strip()[:80]!r} ({reason})")


def _csv_rows(caption_file: str):
  """`(line, (path, caption) or None, reason)` per data row of a WebVid-style csv (line 1 is the
  header; a row is one line)."""
  with open(caption_file, newline="") as f:
    for line_no, row in enumerate(csv.DictReader(f), 2):
      caption = row.get("caption", row.get("name"))
      if row.get("path"):
        path = row["path"]
      elif row.get("videoid"):
        path = os.path.join(row.get("page_dir") or "", f"{row['videoid']}.mp4")
      else:
        path = None
      if not path or caption is None:
        yield line_no, None, ("needs a 'path' (or 'videoid' [+ 'page_dir']) and a 'caption' (or "
                              f"'name') value; has {row}")
      else:
        yield line_no, (path, caption), ""


class SkipCounter:
  """Thread-safe count of skipped items, with one log line each."""

  def __init__(self):
    self._lock = threading.Lock()
    self.count = 0
    self.reasons: list[str] = []

  def skip(self, key, error: Exception):
    with self._lock:
      self.count += 1
      self.reasons.append(f"{key}: {error}")
    logging.warning("skipping item %s: %s", key, error)


def readable(source, counter: SkipCounter | None = None) -> grain.MapDataset:
  """`grain.MapDataset` over `source` where items raising `VideoReadError` are counted and
  skipped (the dataset keeps its length; iterating leaves the bad items out).

  The counter lives in the calling process: with grain worker processes each worker counts its
  own items, so read the totals of a run from `pretokenize`'s manifest.
  """
  counter = counter if counter is not None else SkipCounter()
  return grain.MapDataset.range(len(source)).map(_LoadOrSkip(source, counter)).filter(
      _is_item)


class _LoadOrSkip:
  """`index -> source[index]`, or None (counted) when the item cannot be read."""

  def __init__(self, source, counter: SkipCounter):
    self.source, self.counter = source, counter

  def __call__(self, index):
    try:
      return self.source[index]
    except VideoReadError as e:
      self.counter.skip(index, e)
      return None

  def __getstate__(self):
    # Worker processes get a fresh counter of their own (locks do not pickle).
    return {"source": self.source}

  def __setstate__(self, state):
    self.__init__(state["source"], SkipCounter())


def _is_item(item) -> bool:
  return item is not None


# Token shards ---------------------------------------------------------------------------------

TOKEN_FIELDS = ("video_ids", "text_ids", "num_frames", "fps", "key", "caption")


def encode_token_record(video_ids: np.ndarray, text_ids: np.ndarray, num_frames: int, fps: float,
                        key: str, caption: str) -> bytes:
  """One pre-tokenized item as msgpack bytes.

  `video_ids` `[F_lat, h, w]` tokenizer codes (stored as uint16 when they fit), `text_ids` `[N]`
  SentencePiece ids, the pixel frame count, the frame rate, the source key and the caption text.
  """
  def array(a):
    a = np.asarray(a)
    dtype = np.uint16 if a.size == 0 or (a.min() >= 0 and a.max() < 2**16) else np.int32
    return {"shape": list(a.shape), "dtype": np.dtype(dtype).str,
            "data": a.astype(dtype).tobytes()}

  return msgpack.packb({"video_ids": array(video_ids), "text_ids": array(text_ids),
                        "num_frames": int(num_frames), "fps": float(fps), "key": str(key),
                        "caption": str(caption)})


def decode_token_record(data: bytes) -> dict:
  """Inverse of `encode_token_record`; id arrays come back as int32."""
  record = msgpack.unpackb(data)
  for name in ("video_ids", "text_ids"):
    a = record[name]
    record[name] = np.frombuffer(a["data"], np.dtype(a["dtype"])).reshape(a["shape"]).astype(
        np.int32)
  return record


class TokenShards:
  """The token records under a `pretokenize` output folder (its finished `*.array_record`
  shards, in name order), decoded to dicts of `TOKEN_FIELDS`."""

  def __init__(self, directory: str):
    self.directory = directory
    self.paths = sorted(glob.glob(os.path.join(directory, "*.array_record")))
    if not self.paths:
      raise FileNotFoundError(f"TokenShards: no *.array_record shards in {directory} "
                              "(write them with python -m loong_jax.pretokenize)")
    self._source = grain.sources.ArrayRecordDataSource(self.paths)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    return decode_token_record(self._source[index])

  def __repr__(self) -> str:
    return f"TokenShards({self.directory!r}, {len(self.paths)} shards, {len(self)} records)"
