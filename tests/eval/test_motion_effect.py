"""The motion-effect check (loong_jax/eval/motion_effect.py) with stand-in decoders: one that
moves the object by the motion word of its prompt, one that ignores the word."""

import numpy as np
import pytest

from loong_jax import tokens
from loong_jax.eval import motion_effect, text_gap

VOCAB = tokens.Vocab(text_size=16, video_size=8)
H = W = 4
LEFT, RIGHT = 3, 4  # the stand-in "motion words"


class WordDecoder:
  """Greedy frame after a one-frame prompt: the context frame rolled one block towards the
  prompt's motion word (`reads=False`: never rolled)."""

  def __init__(self, reads=True):
    self.reads = reads

  def __call__(self, params, prompts, plan, key):
    del params, plan, key
    out = []
    for prompt in prompts:
      frame = VOCAB.tokens_to_video(prompt[-(H * W + 1):-1]).reshape(H, W)
      if self.reads:
        frame = np.roll(frame, 1 if RIGHT in prompt else -1, axis=1)
      out.append(np.concatenate([[VOCAB.boi], VOCAB.video_to_tokens(frame.reshape(-1)),
                                 [VOCAB.eoi]]))
    return np.stack(out).astype(np.int32)


def _clips(n=3):
  """n clips of 2 latent frames: background 0, an object of code 5 at column 1 (row i)."""
  codes = np.zeros((n, 2, H, W), np.int32)
  codes[np.arange(n), :, np.arange(n), 1] = 5
  texts = [np.array([1, 2, RIGHT])] * n
  swapped = [np.array([1, 2, LEFT])] * n
  return texts, swapped, codes, codes == 5


def test_a_model_that_reads_the_word_changes_the_blocks_beside_the_object():
  texts, swapped, codes, masks = _clips()
  out = motion_effect.measure(WordDecoder(), None, VOCAB, texts, swapped, codes, masks, 8)
  # Near the object (3 x 3 around column 1, clipped): right puts it at column 2, left at 0,
  # so 3 of the 9 (rows 0 and 3: 6) near tokens differ; nothing far away changes.
  assert out["changed"] == pytest.approx((2 + 2 + 2) / (6 + 9 + 9))
  assert out["changed_far"] == 0.0 and out["clips"] == 3


def test_the_paraphrase_control():
  texts, swapped, codes, masks = _clips()
  same_words = [np.array([1, 5, RIGHT])] * 3       # "right" in other words: the same frame
  out = motion_effect.measure(WordDecoder(), None, VOCAB, texts, swapped, codes, masks, 8,
                              paraphrased=same_words)
  assert out["changed_paraphrase"] == 0.0 and out["changed"] > 0.2
  out = motion_effect.measure(WordDecoder(), None, VOCAB, texts, swapped, codes, masks, 8,
                              paraphrased=swapped)  # a "paraphrase" that flips the motion
  assert out["changed_paraphrase"] == out["changed"]


def test_caption_motion_and_paraphrase():
  caption = "on a black background, a medium red circle moves left"
  assert text_gap.caption_motion(caption) == "left"
  assert text_gap.paraphrase_motion(caption, "left") == (
      "on a black background, a medium red circle slides to the left")
  assert text_gap.caption_motion(text_gap.swap_motion(caption, "left")) == "right"
  with pytest.raises(ValueError, match="names 0 motions"):
    text_gap.caption_motion("a medium red circle on a black background")


def test_a_model_that_ignores_the_word_draws_the_same_frame():
  texts, swapped, codes, masks = _clips()
  out = motion_effect.measure(WordDecoder(reads=False), None, VOCAB, texts, swapped, codes,
                              masks, 8)
  assert out["changed"] == 0.0 and out["changed_far"] == 0.0


def test_bad_inputs_are_reported():
  texts, swapped, codes, masks = _clips()
  with pytest.raises(ValueError, match="same text ids"):
    motion_effect.measure(WordDecoder(), None, VOCAB, texts, swapped, codes, masks, 2)
  with pytest.raises(ValueError, match="F >= 2"):
    motion_effect.measure(WordDecoder(), None, VOCAB, texts, swapped, codes[:, :1],
                          masks[:, :1], 8)
  with pytest.raises(ValueError, match="captions"):
    motion_effect.measure(WordDecoder(), None, VOCAB, texts[:2], swapped, codes, masks, 8)
