"""Folder sources (jsonl, WebVid csv) with bad files counted and skipped; token records."""

import json

import imageio.v3 as iio
import numpy as np
import pytest

from loong_jax.data import sources, synthetic, video_io


def make_folder(root, with_bad=True):
  """3 good items (mp4, gif, png) and, with `with_bad`, one corrupt and one truncated mp4."""
  data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(resolution=32, num_frames=(9,)))
  rows = []
  for i, ext in enumerate((".mp4", ".gif")):
    s = data.sample(i)
    video_io.write_video(str(root / f"v{i}{ext}"), s["video"], fps=8)
    rows.append({"path": f"v{i}{ext}", "caption": s["caption"]})
  iio.imwrite(root / "still.png", data.sample(2)["video"][0])
  rows.append({"path": "still.png", "caption": "a still image"})
  if with_bad:
    (root / "corrupt.mp4").write_bytes(b"\x00garbage" * 64)
    good = (root / "v0.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(good[: len(good) // 2])
    rows += [{"path": "corrupt.mp4", "caption": "x"}, {"path": "truncated.mp4", "caption": "y"}]
  (root / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return rows


def test_folder_source_skips_bad_files(tmp_path):
  make_folder(tmp_path)
  source = sources.FolderSource(str(tmp_path), resolution=16, num_frames=1)
  assert len(source) == 5
  counter = sources.SkipCounter()
  items = list(sources.readable(source, counter).to_iter_dataset())
  assert [it["key"] for it in items] == ["v0.mp4", "v1.gif", "still.png"]
  assert all(it["video"].shape == (1, 16, 16, 3) for it in items)
  assert counter.count == 2
  assert any("corrupt.mp4" in r for r in counter.reasons)
  assert any("truncated.mp4" in r for r in counter.reasons)


def test_folder_clips_and_too_short(tmp_path):
  make_folder(tmp_path, with_bad=False)
  source = sources.FolderSource(str(tmp_path), resolution=32, num_frames=5, fps=4)
  clip = source[0]  # 9 frames at 8 fps -> 5 frames at 4 fps
  assert clip["video"].shape == (5, 32, 32, 3) and clip["fps"] == 4
  with pytest.raises(sources.VideoReadError, match="need 5"):
    source[2]  # an image is one frame


def test_webvid_csv(tmp_path):
  make_folder(tmp_path, with_bad=False)
  (tmp_path / "captions.jsonl").unlink()
  (tmp_path / "page1").mkdir()
  (tmp_path / "v0.mp4").rename(tmp_path / "page1" / "123.mp4")
  (tmp_path / "results.csv").write_text(
      "videoid,contentUrl,duration,page_dir,name\n123,http://x,PT00H00M01S,page1,a red ring\n")
  source = sources.FolderSource(str(tmp_path), resolution=16, num_frames=1)
  assert source.entries == [("page1/123.mp4", "a red ring")]
  assert source[0]["video"].shape == (1, 16, 16, 3)


def test_bad_caption_file_names_line(tmp_path):
  (tmp_path / "captions.jsonl").write_text('{"path": "a.mp4"}\n')
  with pytest.raises(ValueError, match="1 of 1 caption rows.*captions.jsonl:1"):
    sources.FolderSource(str(tmp_path), resolution=16, num_frames=1)


def test_malformed_csv_rows_are_skipped_and_counted(tmp_path):
  make_folder(tmp_path, with_bad=False)
  (tmp_path / "captions.jsonl").unlink()
  (tmp_path / "results.csv").write_text(
      "path,caption\nv0.mp4,a clip\n,no path\nv1.gif,a gif\nstill.png\n")
  source = sources.FolderSource(str(tmp_path), resolution=16, num_frames=1,
                                max_bad_fraction=0.5)
  assert source.entries == [("v0.mp4", "a clip"), ("v1.gif", "a gif")]
  assert [row.split("results.csv:")[1][:2] for row in source.bad_rows] == ["3:", "5:"]
  with pytest.raises(ValueError, match=r"2 of 4 caption rows .* first bad row .*results.csv:3"):
    sources.FolderSource(str(tmp_path), resolution=16, num_frames=1, max_bad_fraction=0.25)


def test_token_record_round_trip():
  codes = np.arange(2 * 3 * 3).reshape(2, 3, 3) * 1000
  data = sources.encode_token_record(codes, np.array([5, 6]), 5, 8.0, "k", "cap")
  record = sources.decode_token_record(data)
  np.testing.assert_array_equal(record["video_ids"], codes)
  assert record["video_ids"].dtype == np.int32
  np.testing.assert_array_equal(record["text_ids"], [5, 6])
  assert (record["num_frames"], record["fps"], record["key"], record["caption"]) == (
      5, 8.0, "k", "cap")
  big = sources.decode_token_record(sources.encode_token_record(
      np.array([[[70000]]]), np.zeros(0), 1, 0, "k", ""))
  assert big["video_ids"].item() == 70000 and big["text_ids"].shape == (0,)
