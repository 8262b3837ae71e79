"""Pre-tokenization: shard contents, skipped items, and resume == uninterrupted run."""

import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from loong_jax import cli, tokens
from loong_jax.data import encoders, pretokenize, sources
from tests import compile_settings
from tests.data.conftest import VOCAB, synthetic_source
from tests.data.test_sources import make_folder


def _shard_files(directory):
  return sorted(f for f in os.listdir(directory) if f.startswith("tokens-"))


def _assert_same_output(a, b):
  assert _shard_files(a) == _shard_files(b)
  for name in _shard_files(a):
    assert filecmp.cmp(os.path.join(a, name), os.path.join(b, name), shallow=False), name
  with open(os.path.join(a, "manifest.json")) as fa, open(os.path.join(b, "manifest.json")) as fb:
    assert json.load(fa) == json.load(fb)


def test_pooling_stand_in_shapes_and_determinism():
  encode = encoders.pooling_stand_in_encoder(8192)
  video = np.random.default_rng(0).uniform(-1, 1, (2, 9, 32, 32, 3)).astype(np.float32)
  codes = np.asarray(encode(video))
  assert codes.shape == (2, tokens.latent_frames(9), 4, 4) and codes.dtype == np.int32
  assert codes.min() >= 0 and codes.max() < 8192
  np.testing.assert_array_equal(codes, np.asarray(encode(video)))


def test_records_match_the_source(token_dirs, text_model):
  records = sources.TokenShards(token_dirs["clips9"])
  source = synthetic_source(9, 16, seed=9)
  assert len(records) == 16
  encode = encoders.pooling_stand_in_encoder(VOCAB.video_size)
  for i in (0, 15):
    item = source[i]
    record = records[i]
    assert record["key"] == item["key"] and record["caption"] == item["caption"]
    assert record["num_frames"] == 9 and record["fps"] == item["fps"]
    np.testing.assert_array_equal(record["text_ids"], text_model.encode(item["caption"], 64))
    video = item["video"][None].astype(np.float32) * (2 / 255) - 1
    np.testing.assert_array_equal(record["video_ids"], np.asarray(encode(video))[0])


class _Interrupted(Exception):
  pass


def test_resume_gives_identical_shards(tmp_path, text_model):
  source = synthetic_source(5, 30)
  encode = encoders.data_parallel(encoders.pooling_stand_in_encoder(VOCAB.video_size))
  kwargs = dict(vocab=VOCAB, shard_size=8, batch_size=8)
  pretokenize.pretokenize(source, encode, text_model, str(tmp_path / "full"), **kwargs)

  calls = []

  def dies_in_shard_three(video):
    calls.append(1)
    if len(calls) == 3:  # one batch per shard: the third shard dies mid-way
      raise _Interrupted
    return encode(video)

  dies_in_shard_three.num_devices = encode.num_devices
  resumed = str(tmp_path / "resumed")
  with pytest.raises(_Interrupted):
    pretokenize.pretokenize(source, dies_in_shard_three, text_model, resumed, **kwargs)
  assert len([f for f in _shard_files(resumed) if f.endswith(".array_record")]) == 2
  # A half-written shard of a killed process is left under a temporary name, never counted.
  (tmp_path / "resumed" / "tokens-00003-of-00004.array_record.tmp-999").write_bytes(b"half")
  manifest = pretokenize.pretokenize(source, encode, text_model, resumed, **kwargs)
  assert manifest["complete"] and manifest["records"] == 30 and manifest["skipped"] == 0
  os.remove(tmp_path / "resumed" / "tokens-00003-of-00004.array_record.tmp-999")
  _assert_same_output(str(tmp_path / "full"), resumed)


def test_hosts_split_the_shards(tmp_path, text_model):
  source = synthetic_source(1, 20)
  encode = encoders.pooling_stand_in_encoder(VOCAB.video_size)
  kwargs = dict(vocab=VOCAB, shard_size=5, batch_size=5)
  for p in (0, 1):
    pretokenize.pretokenize(source, encode, text_model, str(tmp_path / "two"), process_index=p,
                            process_count=2, **kwargs)
  pretokenize.pretokenize(source, encode, text_model, str(tmp_path / "one"), **kwargs)
  _assert_same_output(str(tmp_path / "one"), str(tmp_path / "two"))


def test_encoder_contract_is_checked(tmp_path, text_model):
  source = synthetic_source(5, 4)
  with pytest.raises(ValueError, match="expected \\[4, 2, h, w\\]"):
    pretokenize.pretokenize(source, lambda v: np.zeros((4, 5, 4, 4), np.int32), text_model,
                            str(tmp_path), vocab=VOCAB, shard_size=4, batch_size=4)
  with pytest.raises(ValueError, match="outside"):
    pretokenize.pretokenize(source, lambda v: np.full((4, 2, 4, 4), 10**6, np.int32),
                            text_model, str(tmp_path), vocab=VOCAB, shard_size=4, batch_size=4)


def test_load_encoder_errors():
  config = cli.load_config_file("configs/data/pretokenize.py:images,demo")
  with pytest.raises(ValueError, match="config.tokenizer_checkpoint"):
    encoders.load_encoder(config)
  config.encoder = "magic"
  with pytest.raises(ValueError, match="config.encoder='magic'"):
    encoders.load_encoder(config)


def _cli(*flags):
  return subprocess.run(
      [sys.executable, "-m", "loong_jax.pretokenize", *flags], capture_output=True, text=True,
      timeout=300, env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
                                       + compile_settings.FAST_COMPILE_FLAGS})


def test_cli_on_a_folder_resumes_identically(tmp_path):
  folder = tmp_path / "videos"
  folder.mkdir()
  make_folder(folder)  # 3 good items, 2 bad ones
  flags = ["--config", "configs/data/pretokenize.py:folder,demo", "--config.encoder=pooling",
           f"--config.source.path={folder}", "--config.source.num_frames=1",
           "--config.source.resolution=32", "--config.shard_size=2", "--config.batch_size=2",
           "--config.text.vocab_size=40", "--config.text.train_captions=5"]
  full = _cli(*flags, f"--config.out_dir={tmp_path}/a/tokens")
  assert full.returncode == 0, full.stderr[-2000:]
  assert "3/3 shards, 3 records, 2 skipped" in full.stdout
  stopped = _cli(*flags, f"--config.out_dir={tmp_path}/b/tokens", "--config.max_shards=1")
  assert stopped.returncode == 0 and "1/3 shards" in stopped.stdout, stopped.stderr[-2000:]
  resumed = _cli(*flags, f"--config.out_dir={tmp_path}/b/tokens")
  assert resumed.returncode == 0 and "1 of them already finished" in resumed.stdout
  _assert_same_output(f"{tmp_path}/a/tokens", f"{tmp_path}/b/tokens")
  unknown = _cli(*flags, "--config.source.colour=1")
  assert unknown.returncode != 0 and "has no field 'colour'" in unknown.stderr


def _folder_with_bad_rows_and_files(root):
  """19 caption rows: 12 good images, 5 unreadable files (corrupt png, corrupt mp4, empty gif,
  missing, unsupported type) and 2 malformed rows (invalid JSON, no caption), interleaved."""
  import imageio.v3 as iio  # noqa: PLC0415
  data = synthetic_source(1, 12)
  lines = []
  for i in range(12):
    iio.imwrite(root / f"good{i:02d}.png", data[i]["video"][0])
    lines.append(json.dumps({"path": f"good{i:02d}.png", "caption": data[i]["caption"]}))
  (root / "corrupt.png").write_bytes(b"\x89PNG garbage" * 8)
  (root / "corrupt.mp4").write_bytes(b"\x00garbage" * 64)
  (root / "empty.gif").write_bytes(b"")
  (root / "notes.txt").write_text("not a video")
  bad_files = ["corrupt.png", "corrupt.mp4", "empty.gif", "missing.mp4", "notes.txt"]
  for k, name in enumerate(bad_files):
    lines.insert(2 * k + 1, json.dumps({"path": name, "caption": "unreadable"}))
  lines.insert(4, '{"path": "good99.png", "caption": "a line cut short')
  lines.insert(15, json.dumps({"path": "good98.png"}))
  (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
  return len(lines)


def test_malformed_caption_rows_are_skipped_up_to_max_bad_fraction(tmp_path, text_model):
  folder = tmp_path / "videos"
  folder.mkdir()
  assert _folder_with_bad_rows_and_files(folder) == 19
  config = cli.load_config_file("configs/data/pretokenize.py:folder,demo")
  config.encoder = "pooling"
  config.vocab.text_size = VOCAB.text_size
  config.text.model = text_model.model_path
  config.source.update(path=str(folder), num_frames=1, resolution=32)
  config.update(shard_size=8, batch_size=8, out_dir=str(tmp_path / "tokens"))
  config.source.max_bad_fraction = 0.2
  manifest = pretokenize.run(config)
  assert manifest["complete"] and manifest["records"] == 12
  assert manifest["unreadable"] == 5 and manifest["skipped"] == 7
  assert [row.split("captions.jsonl:")[1].split(":")[0] for row in manifest["malformed_rows"]
          ] == ["5", "16"]
  keys = sorted(sources.TokenShards(config.out_dir)[i]["key"] for i in range(12))
  assert keys == [f"good{i:02d}.png" for i in range(12)]   # nothing good is lost
  config.source.max_bad_fraction = 0.01   # the default: 2 of 19 rows is too many
  with pytest.raises(ValueError, match=r"captions.jsonl: 2 of 19 caption rows are malformed.*"
                     r"max_bad_fraction=0.01.*first bad row .*captions.jsonl:5: "):
    pretokenize.run(config)
