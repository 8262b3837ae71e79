"""Caption text ids: a SentencePiece model trained on a caption corpus, saved beside the run.

Ids map straight into the text range of `tokens.Vocab`: the model has no bos/eos/pad pieces (the
unified vocabulary has its own specials), `<unk>` is id 0, and every id is below `vocab_size`,
which must not exceed `Vocab.text_size` (32,000 for real data; small for the built-in captions).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable

import numpy as np
import sentencepiece as spm

from loong_jax import tokens


def train(captions: Iterable[str], model_path: str, vocab_size: int,
          model_type: str = "unigram") -> "TextTokenizer":
  """Train on `captions` and write `model_path` (atomically: a crash leaves no half file).

  `vocab_size` is an upper bound: a small corpus (the built-in captions use ~100 words) gets fewer
  pieces rather than an error. Training is single-threaded so the model is reproducible.
  """
  sentences = [c.strip() for c in captions if c and c.strip()]
  if not sentences:
    raise ValueError(f"text.train: no non-empty captions to train {model_path}")
  buffer = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=buffer, vocab_size=vocab_size,
      model_type=model_type, hard_vocab_limit=False, character_coverage=1.0,
      unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, num_threads=1, minloglevel=2)
  os.makedirs(os.path.dirname(os.path.abspath(model_path)), exist_ok=True)
  tmp = f"{model_path}.tmp-{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(buffer.getvalue())
  os.replace(tmp, model_path)
  return TextTokenizer(model_path)


class TextTokenizer:
  """A trained SentencePiece model: `encode(str) -> int32 [N]`, `decode(ids) -> str`."""

  def __init__(self, model_path: str):
    if not os.path.exists(model_path):
      raise FileNotFoundError(f"text tokenizer: no SentencePiece model at {model_path!r} "
                              "(train one with loong_jax.data.text.train)")
    self.model_path = model_path
    self._sp = spm.SentencePieceProcessor(model_file=model_path)

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  def check_fits(self, vocab: tokens.Vocab):
    """Raise unless every id is a text id of `vocab`."""
    if self.vocab_size > vocab.text_size:
      raise ValueError(f"text tokenizer {self.model_path} has {self.vocab_size} pieces, more "
                       f"than vocab.text_size={vocab.text_size}")

  def encode(self, text: str, max_len: int | None = None) -> np.ndarray:
    """`[N]` int32 ids in [0, vocab_size), cut to `max_len` when given."""
    ids = np.asarray(self._sp.encode(text), np.int32)
    return ids if max_len is None else ids[:max_len]

  def decode(self, ids) -> str:
    return self._sp.decode([int(i) for i in np.asarray(ids).reshape(-1)])

  def __getstate__(self):
    # Picklable for grain worker processes: reload from the path.
    return {"model_path": self.model_path}

  def __setstate__(self, state):
    self.__init__(state["model_path"])
