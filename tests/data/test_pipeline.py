"""Stage pipelines: batch format, round trip through tokens.py, mixing, text dropout, host
slices, and exact resume of a restored iterator."""

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from loong_jax import tokens
from loong_jax.data import pipeline, sources
from loong_jax.train import lm_step
from tests.data.conftest import VOCAB, data_config

TOKENS_PER_FRAME = 16


def _batches(config, n=None, **kwargs):
  kwargs = {"process_index": 0, "process_count": 1, **kwargs}
  it = iter(pipeline.make_pipeline(config, VOCAB, **kwargs))
  return list(it) if n is None else [next(it) for _ in range(n)]


def _rows(batches):
  return [tuple(np.concatenate([b["inputs"][i], b["targets"][i, -1:]]))
          for b in batches for i in range(len(b["inputs"]))]


def test_batch_format(token_dirs):
  config = data_config([(token_dirs["images"], 0.5, 1), (token_dirs["clips9"], 0.5, 9)])
  batch = _batches(config, 1)[0]
  assert set(batch) == set(lm_step.BATCH_KEYS) | {"frame"} == set(pipeline.BATCH_KEYS)
  # <bos> + 24 text + <bov> + 3 frames of (16 + 2) + <eov>, minus one for the shift
  length = pipeline.required_seq_len(24, 9, TOKENS_PER_FRAME)
  assert length == 1 + 24 + 1 + 3 * 18 + 1 - 1
  for key, dtype in (("inputs", np.int32), ("targets", np.int32), ("weights", np.float32),
                     ("frame", np.int32)):
    assert batch[key].shape == (4, length) and batch[key].dtype == dtype
  np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
  np.testing.assert_array_equal(batch["frame"], tokens.frame_index(batch["targets"], VOCAB))


def test_sequences_round_trip_through_tokens(token_dirs):
  config = data_config([(token_dirs["clips9"], 1.0, 9)], shuffle=False)
  rows = _rows(_batches(config, num_epochs=1))
  records = sources.TokenShards(token_dirs["clips9"])
  assert len(rows) == len(records)
  for row, i in zip(rows, range(len(records))):
    text, codes = tokens.parse_sequence(np.asarray(row), VOCAB, TOKENS_PER_FRAME)
    np.testing.assert_array_equal(text, records[i]["text_ids"][:24])
    np.testing.assert_array_equal(codes, records[i]["video_ids"].reshape(3, -1))


def test_frames_are_cut_to_the_stage(token_dirs):
  config = data_config([(token_dirs["clips9"], 1.0, 5)], shuffle=False)
  row = np.asarray(_rows(_batches(config, 1))[0])
  _, codes = tokens.parse_sequence(row, VOCAB, TOKENS_PER_FRAME)
  first = sources.TokenShards(token_dirs["clips9"])[0]["video_ids"]
  np.testing.assert_array_equal(codes, first[:2].reshape(2, -1))  # 5 frames -> 2 latent


def test_weights_follow_the_config(token_dirs):
  config = data_config([(token_dirs["clips9"], 1.0, 9)])
  config.loss.scheme = "linear_decay"
  batch = _batches(config, 1)[0]
  frame = pipeline.loss_weights.target_frame_index(batch["targets"], VOCAB)
  for f, w in enumerate(np.linspace(5.0, 1.0, 3)):
    np.testing.assert_allclose(batch["weights"][frame == f], w)
  eov = batch["targets"] == VOCAB.eov
  np.testing.assert_allclose(batch["weights"][eov], 1.0)
  assert np.all(batch["weights"][(frame < 0) & ~eov] == 0)


def test_changed_weight_reaches_the_batch(token_dirs):
  """data.loss.changed_weight multiplies exactly the ids that differ from a frame earlier."""
  config = data_config([(token_dirs["clips9"], 1.0, 9)], shuffle=False)
  plain = _batches(config, 1)[0]
  config.loss.changed_weight = 3.0
  batch = _batches(config, 1)[0]
  np.testing.assert_array_equal(batch["targets"], plain["targets"])
  extra = pipeline.loss_weights.changed_token_weights(batch["inputs"], batch["targets"], VOCAB,
                                                      3.0)
  assert np.any(extra == 3.0)  # the stand-in encoder's codes change where the object moves
  np.testing.assert_allclose(batch["weights"], plain["weights"] * extra)
  config.loss.changed_weight = -1.0
  with pytest.raises(ValueError, match="changed_weight"):
    _batches(config, 1)


def test_mixing_and_text_dropout(token_dirs):
  config = data_config([(token_dirs["images"], 0.25, 1), (token_dirs["clips9"], 0.75, 9)],
                       batch_size=8, text_dropout=0.5)
  rows = np.asarray(_rows(_batches(config, 25)))
  num_frames = (rows == VOCAB.boi).sum(-1)
  assert set(num_frames) == {1, 3}
  assert abs((num_frames == 1).mean() - 0.25) < 0.06
  dropped = rows[:, 1] == VOCAB.no_text
  assert abs(dropped.mean() - 0.5) < 0.1
  assert np.all(rows[dropped, 2] == VOCAB.bov)  # <bos> <no_text> <bov>: no caption left


def test_text_word_dropout_leaves_out_words_in_order(token_dirs):
  """Each caption id is left out with probability text_word_dropout: what is left is the
  caption's subsequence, in order, with the same video; 0 keeps every caption whole."""
  sources_ = [(token_dirs["clips9"], 1.0, 9)]
  records = sources.TokenShards(token_dirs["clips9"])
  whole = _rows(_batches(data_config(sources_, shuffle=False), num_epochs=1))
  rows = _rows(_batches(data_config(sources_, shuffle=False, text_word_dropout=0.3),
                        num_epochs=1))
  kept, total = 0, 0
  for row, full, i in zip(rows, whole, range(len(records))):
    text, codes = tokens.parse_sequence(np.asarray(row), VOCAB, TOKENS_PER_FRAME)
    caption = list(records[i]["text_ids"][:24])
    np.testing.assert_array_equal(codes, records[i]["video_ids"].reshape(3, -1))
    np.testing.assert_array_equal(tokens.parse_sequence(np.asarray(full), VOCAB,
                                                        TOKENS_PER_FRAME)[0], caption)
    rest = iter(caption)
    assert all(t in rest for t in text)  # a subsequence, in order
    kept, total = kept + len(text), total + len(caption)
  assert 0.6 < kept / total < 0.8
  with pytest.raises(ValueError, match="text_word_dropout"):
    _batches(data_config(sources_, text_word_dropout=1.0), 1)


def test_host_slices_are_disjoint_and_cover(token_dirs):
  config = data_config([(token_dirs["images"], 0.5, 1), (token_dirs["clips9"], 0.5, 9)],
                       batch_size=2)
  everything = _rows(_batches(config, num_epochs=1))
  hosts = [_rows(_batches(config, process_index=p, process_count=2, num_epochs=1))
           for p in (0, 1)]
  assert len(everything) == 24 + 16 and len(set(everything)) == len(everything)
  assert not set(hosts[0]) & set(hosts[1])
  assert set(hosts[0]) | set(hosts[1]) == set(everything)


def test_restored_iterator_continues_exactly(token_dirs, tmp_path):
  config = data_config([(token_dirs["images"], 0.5, 1), (token_dirs["clips9"], 0.5, 9)],
                       text_dropout=0.3)
  reference = _batches(config, 7)
  it = iter(pipeline.make_pipeline(config, VOCAB, process_index=0, process_count=1))
  for _ in range(3):
    next(it)
  manager = ocp.CheckpointManager(tmp_path / "ckpt")
  manager.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
  manager.wait_until_finished()
  fresh = iter(pipeline.make_pipeline(config, VOCAB, process_index=0, process_count=1))
  manager.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  for want in reference[3:]:
    got = next(fresh)
    for key in pipeline.BATCH_KEYS:
      np.testing.assert_array_equal(got[key], want[key])


def test_config_errors(token_dirs):
  config = data_config([(token_dirs["clips9"], 1.0, 9)], seq_len=40)
  with pytest.raises(ValueError, match="data.seq_len=40"):
    pipeline.make_pipeline(config, VOCAB, process_index=0, process_count=1)
  config = data_config([(token_dirs["clips9"], 1.0, 8)])
  with pytest.raises(ValueError, match="1 \\+ 4k"):
    pipeline.make_pipeline(config, VOCAB, process_index=0, process_count=1)
  config = data_config([(token_dirs["clips9"], 1.0, 9)], batch_size=3)
  with pytest.raises(ValueError, match="batch_size=3"):
    pipeline.make_pipeline(config, VOCAB, process_index=0, process_count=2)
  with pytest.raises(FileNotFoundError, match="pretokenize"):
    pipeline.make_pipeline(data_config([("/nonexistent", 1.0, 1)]), VOCAB)


def test_stage_configs_load():
  from loong_jax import cli
  for stage, frames in ((1, {1}), (2, {1, 17}), (3, {1, 17, 65})):
    config = cli.load_config_file(f"configs/data/stages.py:{stage}")
    assert {s["max_frames"] for s in config.data.sources} == frames
  demo = cli.load_config_file("configs/data/stages.py:3,demo")
  assert demo.data.batch_size == 8 and demo.vocab.text_size == 1000


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(token_dirs):
  from absl import flags
  flags.FLAGS.mark_as_parsed()  # grain workers read absl flags (STACK_NOTES)
  config = data_config([(token_dirs["images"], 0.5, 1), (token_dirs["clips9"], 0.5, 9)],
                       text_dropout=0.3)
  want = _batches(config, 6)
  config.worker_count = 2
  got = _batches(config, 6)
  for a, b in zip(got, want):
    for key in pipeline.BATCH_KEYS:
      np.testing.assert_array_equal(a[key], b[key])
