"""SentencePiece text ids: train, save, load, encode/decode into the text range."""

import pickle

import numpy as np
import pytest

from loong_jax import tokens
from loong_jax.data import text


def test_round_trip_and_range(text_model):
  caption = "a small red circle drifts to the left over a grey background"
  ids = text_model.encode(caption)
  assert ids.dtype == np.int32 and text_model.decode(ids) == caption
  vocab = tokens.Vocab(text_size=256, video_size=16)
  assert np.all(vocab.is_text(ids))
  text_model.check_fits(vocab)
  with pytest.raises(ValueError, match="text_size"):
    text_model.check_fits(tokens.Vocab(text_size=8, video_size=16))
  assert len(text_model.encode(caption, max_len=3)) == 3


def test_save_load_and_pickle(text_model, tmp_path):
  loaded = text.TextTokenizer(text_model.model_path)
  assert loaded.vocab_size == text_model.vocab_size
  assert list(pickle.loads(pickle.dumps(loaded)).encode("a blue ring")) == list(
      text_model.encode("a blue ring"))
  with pytest.raises(FileNotFoundError, match="nothing.model"):
    text.TextTokenizer(str(tmp_path / "nothing.model"))


def test_training_is_reproducible(tmp_path):
  corpus = [f"a {c} {s} moves left" for c in ("red", "blue", "green") for s in ("ring", "cross")]
  a = text.train(corpus * 20, str(tmp_path / "a.model"), 64)
  b = text.train(corpus * 20, str(tmp_path / "b.model"), 64)
  assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()
  assert a.vocab_size <= 64
  with pytest.raises(ValueError, match="no non-empty"):
    text.train(["", "  "], str(tmp_path / "c.model"), 64)
