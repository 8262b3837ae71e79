"""tokenizer.codes.roundtrip: do decode -> encode round trips give back the codes?"""

import numpy as np
import pytest

from loong_jax import generate
from loong_jax.data import synthetic
from loong_jax.eval import objects, roundtrip, text_gap


def _clips(n=4):
  """`n` held-out 17-frame clips of one object over plain black (the demo's world)."""
  data = synthetic.SyntheticVideos(synthetic.SyntheticConfig(
      seed=0, resolution=64, num_frames=(17,), fps=(8,), max_objects=1, textures=("plain",),
      background_colors=("black",), num_train=n, num_heldout=n), "heldout")
  videos = np.stack([data[i]["video"] for i in range(n)])
  blocks = np.stack([text_gap.object_tokens(objects.object_masks(data, i)[0]) for i in range(n)])
  return videos, blocks


def test_an_exact_codec_keeps_every_code():
  """The oracle codec's block decoder re-encodes to the same codes (`generate.oracle_codec`)."""
  codec = generate.oracle_codec(4096, "last")
  videos, blocks = _clips()
  out = roundtrip.measure(codec.encode, codec.decode, videos, blocks, rounds=3, batch_size=2)
  assert out["object"] == [1.0, 1.0, 1.0] and out["background"] == [1.0, 1.0, 1.0]
  assert out["psnr"] == [100.0] * 3   # the same pixels (the 1e-10 floor)
  assert 0 < out["object_blocks"] < out["blocks"] == blocks.size


def test_a_lossy_decoder_shows_where_codes_drift():
  """A decoder that dims its output by 30% changes the object's colour codes (and they never come
  back); the black background stays black, so its codes stay."""
  codec = generate.oracle_codec(4096, "last")
  videos, blocks = _clips()
  out = roundtrip.measure(codec.encode, lambda c: 0.7 * (codec.decode(c) + 1.0) - 1.0, videos,
                          blocks, rounds=4)
  assert out["background"] == [1.0] * 4
  assert out["object"][0] < 1.0
  assert all(b <= a for a, b in zip(out["object"], out["object"][1:]))
  assert out["psnr"][-1] < out["psnr"][0] < 100.0   # dimmer every round


def test_bad_inputs_are_clear_errors():
  codec = generate.oracle_codec(4096, "last")
  videos, blocks = _clips(2)
  with pytest.raises(ValueError, match="uint8"):
    roundtrip.measure(codec.encode, codec.decode, videos.astype(np.float32), blocks)
  with pytest.raises(ValueError, match="must match"):
    roundtrip.measure(codec.encode, codec.decode, videos, blocks[:, :2])
  with pytest.raises(ValueError, match="rounds"):
    roundtrip.measure(codec.encode, codec.decode, videos, blocks, rounds=0)


def test_a_sticky_reencoder_sees_the_previous_rounds_codes():
  """`reencode(video, previous)` gets each round's input codes (round 1: the clips' own codes);
  one that keeps them all (an infinitely wide margin) keeps every code however lossy the
  decoder."""
  codec = generate.oracle_codec(4096, "last")
  videos, blocks = _clips()
  lossy = lambda c: 0.7 * (codec.decode(c) + 1.0) - 1.0
  seen = []

  def plain(video, previous):
    seen.append(np.array(previous))
    return codec.encode(video)

  want = roundtrip.measure(codec.encode, lossy, videos, blocks, rounds=2)
  got = roundtrip.measure(codec.encode, lossy, videos, blocks, rounds=2, reencode=plain)
  assert got == want
  codes0 = codec.encode(videos.astype(np.float32) / 127.5 - 1.0)
  np.testing.assert_array_equal(np.concatenate(seen[:len(seen) // 2]), codes0)
  kept = roundtrip.measure(codec.encode, lossy, videos, blocks, rounds=3,
                           reencode=lambda video, previous: previous)
  assert kept["object"] == [1.0] * 3 and kept["background"] == [1.0] * 3
