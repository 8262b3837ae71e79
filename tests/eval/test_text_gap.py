"""Text reliance: a model that reads the caption shows a gap, one that ignores it shows none."""

import numpy as np
import pytest

from loong_jax import tokens
from loong_jax.data import synthetic
from loong_jax.eval import text_gap

VOCAB = tokens.Vocab(text_size=8, video_size=4, pad_multiple=8)


def _reads_text(inputs):
  """Logits favouring video code (first text id - 1) at every position (p ~ 0.87): the caption
  names the code."""
  logits = np.zeros((*inputs.shape, VOCAB.padded_size), np.float32)
  named = inputs[:, 1] - 1
  for b in range(len(inputs)):
    logits[b, :, VOCAB.video_offset + named[b]] = 5.0
  return logits


def _ignores_text(inputs):
  return np.zeros((*inputs.shape, VOCAB.padded_size), np.float32)


def _items():
  codes = [np.full((2, 2, 2), c) for c in (0, 1, 2)]
  true = [np.asarray([c + 1, 7]) for c in (0, 1, 2)]
  swapped = [np.asarray([(c + 1) % 3 + 1, 7]) for c in (0, 1, 2)]
  masks = [np.ones((2, 2, 2), bool)] * 3
  return true, swapped, codes, masks


def test_a_model_that_reads_the_caption_has_a_gap_and_one_that_ignores_it_has_none():
  true, swapped, codes, masks = _items()
  reads = text_gap.gap(_reads_text, VOCAB, true, swapped, codes, masks, max_text_len=4,
                       batch_size=2)
  ignores = text_gap.gap(_ignores_text, VOCAB, true, swapped, codes, masks, max_text_len=4)
  assert reads > 4.0
  assert ignores == pytest.approx(0.0, abs=1e-6)


def test_only_masked_tokens_count():
  true, _, codes, masks = _items()
  codes = [c.copy() for c in codes]
  for c in codes:
    c[1] = 3  # frame 1 never predicted: only counted if unmasked
  first_only = [np.stack([m[0], np.zeros_like(m[0])]) for m in masks]
  assert text_gap.object_loss(_reads_text, VOCAB, true, codes, first_only, 4) < 0.2
  assert text_gap.object_loss(_reads_text, VOCAB, true, codes, masks, 4) > 1.0


def test_object_tokens_follow_the_latent_frames():
  masks = np.zeros((9, 16, 16), bool)
  masks[0, 0, 0] = True    # latent 0, block (0, 0)
  masks[4, 9, 15] = True   # latent 1 (frames 1-4), block (1, 1)
  masks[5, 3, 12] = True   # latent 2 (frames 5-8), block (0, 1)
  out = text_gap.object_tokens(masks)
  assert out.shape == (3, 2, 2)
  assert np.argwhere(out).tolist() == [[0, 0, 0], [1, 1, 1], [2, 0, 1]]


def test_swaps_name_another_colour_shape_and_the_opposite_motion():
  data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=2, resolution=32, num_frames=(17,), max_objects=1, num_heldout=20), "heldout")
  for i in range(20):
    attrs = data.attributes(i)[0]
    obj, caption = attrs["objects"][0], attrs["caption"]
    swapped = text_gap.swap_color(caption, obj["color"], obj["shape"])
    assert swapped != caption and obj["shape"] in swapped
    assert f"{obj['color']} {obj['shape']}" not in swapped
    reshaped = text_gap.swap_shape(caption, obj["color"], obj["shape"])
    assert reshaped != caption and f"{obj['color']} " in reshaped
    assert f"{obj['color']} {obj['shape']}" not in reshaped
    moved = text_gap.swap_motion(caption, obj["motion"])
    assert synthetic.MOTION_PHRASES[text_gap.OPPOSITE[obj["motion"]]][0] in moved
  with pytest.raises(ValueError, match="does not name"):
    text_gap.swap_color("a red circle", "blue", "circle")
  with pytest.raises(ValueError, match="does not name"):
    text_gap.swap_shape("a red circle", "red", "square")


def test_measure_on_held_out_items_through_the_oracle_encoder():
  import jax
  from loong_jax.data import encoders
  vocab = tokens.Vocab(text_size=64, video_size=8192)

  def encode_text(caption):
    return np.asarray([hash(w) % 64 for w in caption.split()], np.int32)

  def ignores_text(inputs):
    return np.zeros((*inputs.shape, vocab.padded_size), np.float32)

  def source(frames):
    return synthetic.SyntheticVideos(synthetic.SyntheticConfig(
        seed=0, resolution=32, num_frames=(frames,), max_objects=1, num_heldout=8), "heldout")

  out = text_gap.measure(ignores_text, vocab, jax.jit(encoders.pooling_stand_in_encoder(8192)),
                         encode_text, source(1), source(17), 4, max_text_len=16, batch_size=4)
  assert out["items"] == 4
  for kind in ("color", "shape", "motion", "motion_frame1"):
    assert out[kind] == pytest.approx(0.0, abs=1e-6)


def test_object_loss_scores_each_masked_token_from_its_prefix():
  """A random bigram model: the loss must be the mean of -log p(token | previous token) over
  exactly the masked video tokens (checks the target alignment and the padding)."""
  table = np.random.default_rng(0).normal(size=(VOCAB.padded_size, VOCAB.padded_size))

  def bigram(inputs):
    return table[inputs].astype(np.float32)

  rng = np.random.default_rng(1)
  texts = [rng.integers(0, 8, n) for n in (1, 3, 2)]
  codes = [rng.integers(0, 4, (2, 2, 2)) for _ in texts]
  masks = [rng.random((2, 2, 2)) < 0.5 for _ in texts]
  expected = []
  for text, code, mask in zip(texts, codes, masks):
    seq = tokens.build_sequence(text, code, VOCAB)
    where = np.flatnonzero(VOCAB.is_video(seq))[mask.reshape(-1)]
    for p in where:
      logits = table[seq[p - 1]]
      expected.append(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[seq[p]])
  got = text_gap.object_loss(bigram, VOCAB, texts, codes, masks, max_text_len=4, batch_size=2)
  assert got == pytest.approx(np.mean(expected), rel=1e-5)


@pytest.mark.slow  # an LM compiled twice: ~40 s on the shared 2-core machine
def test_model_logits_match_the_unpadded_forward():
  """MM-RoPE positions and frame ids are made from the padded inputs as training makes them."""
  import jax
  from tests.llm import helpers as llm_helpers
  model, config = llm_helpers.tiny_model(rope="mm_rope", head_dim=32, num_layers=1)
  vocab = tokens.Vocab(config.vocab.text_size, config.vocab.video_size)
  seq = tokens.build_sequence(np.arange(5), np.random.default_rng(0).integers(0, 256, (2, 4, 4)),
                              vocab)[None, :-1]
  params = model.init(jax.random.key(0), seq)["params"]
  pos = tokens.mm_rope_positions(seq, vocab, 4)
  direct = model.apply({"params": params}, seq, pos, frame_ids=tokens.frame_index(seq, vocab))
  got = text_gap.model_logits(model, params, vocab, batch_size=3, frame_width=4)(seq)
  np.testing.assert_allclose(got, np.asarray(direct), atol=1e-4)


def test_motion_frame1_counts_latent_frame_1_alone():
  # A model that reads the caption only for frames 2.. (as a model could that reads the direction
  # off the frames before) moves `motion` but not `motion_frame1`.
  import jax
  from loong_jax.data import encoders
  vocab = tokens.Vocab(text_size=64, video_size=8192)

  def encode_text(caption):
    return np.asarray([sum(map(ord, w)) % 64 for w in caption.split()], np.int32)

  def reads_text_late(inputs):
    logits = np.zeros((*inputs.shape, vocab.padded_size), np.float32)
    late = tokens.frame_index(inputs, vocab) >= 2
    for b, row in enumerate(inputs):
      text = row[(row >= 0) & (row < vocab.text_size)]
      bonus = 4.0 * (1 + int(text.sum()) % 3)  # differs between most true / swapped captions
      for pos in np.nonzero(late[b, :-1])[0]:
        logits[b, pos, row[pos + 1]] = bonus   # favour the true next id
    return logits

  source = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=0, resolution=32, num_frames=(17,), max_objects=1, num_heldout=16), "heldout")
  images = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=0, resolution=32, num_frames=(1,), max_objects=1, num_heldout=8), "heldout")
  out = text_gap.measure(reads_text_late, vocab,
                         jax.jit(encoders.pooling_stand_in_encoder(8192)), encode_text, images,
                         source, 4, max_text_len=16, batch_size=4)
  assert out["motion_frame1"] == pytest.approx(0.0, abs=1e-6)
  assert abs(out["motion"]) > 0.1
