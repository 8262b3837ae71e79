import numpy as np
import pytest

from loong_jax import tokens

VOCAB = tokens.Vocab()


def test_loong_vocabulary_layout():
  assert (VOCAB.text_size, VOCAB.video_size) == (32_000, 8_192)
  assert VOCAB.size == 40_202
  assert VOCAB.padded_size == 40_320 and VOCAB.padded_size % 128 == 0
  specials = [VOCAB.special(n) for n in tokens.SPECIALS]
  assert specials == list(range(40_192, 40_202))
  assert VOCAB.is_special(specials).all() and not VOCAB.is_video(specials).any()


def test_round_trip_of_a_five_latent_frame_clip():
  rng = np.random.default_rng(0)
  text = rng.integers(0, VOCAB.text_size, 7)
  codes = rng.integers(0, VOCAB.video_size, (tokens.latent_frames(17), 16, 16))
  seq = tokens.build_sequence(text, codes, VOCAB)
  assert len(seq) == tokens.sequence_length(7, 5, 256) == 1 + 7 + 1 + 5 * 258 + 1
  assert seq[0] == VOCAB.bos and seq[8] == VOCAB.bov and seq[-1] == VOCAB.eov
  padded = np.concatenate([seq, np.full(5, VOCAB.pad)])
  text_back, codes_back = tokens.parse_sequence(padded, VOCAB, 256)
  np.testing.assert_array_equal(text_back, text)
  np.testing.assert_array_equal(codes_back.reshape(codes.shape), codes)


def test_frame_index_marks_each_latent_frame():
  codes = np.arange(3 * 4).reshape(3, 4)
  seq = tokens.build_sequence([5, 6], codes, VOCAB)
  idx = tokens.frame_index(seq, VOCAB)
  assert (idx[:4] == -1).all() and idx[-1] == -1  # <bos> text <bov> ... <eov>
  np.testing.assert_array_equal(idx[4:-1], np.repeat([0, 1, 2], 6))


@pytest.mark.parametrize("frames,expected", [(1, 1), (17, 5), (65, 17)])
def test_latent_frames(frames, expected):
  assert tokens.latent_frames(frames) == expected


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match="1 \\+ 4k"):
    tokens.latent_frames(16)
  with pytest.raises(ValueError, match="video codes"):
    tokens.build_sequence([1], np.full((1, 4), 9_000), VOCAB)
  seq = tokens.build_sequence([1], np.zeros((2, 4), int), VOCAB)
  broken = seq.copy()
  broken[3 + 4 + 1] = VOCAB.bos  # the <eoi> of frame 0: <bos> text <bov> <boi> 4 codes <eoi>
  with pytest.raises(ValueError, match="latent frame 0"):
    tokens.parse_sequence(broken, VOCAB, 4)
  with pytest.raises(ValueError, match="whole number"):
    tokens.parse_sequence(seq, VOCAB, 5)
