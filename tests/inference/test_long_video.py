"""Clip-by-clip long videos: exact frame counts, seamless clip boundaries, context, determinism."""

import dataclasses

import jax
import numpy as np
import pytest

from loong_jax.inference import decode, long_video, sampling

# 16x16 pixels with the stand-in's 8x downsampling: 2x2 = 4 tokens per latent frame.
CONFIG = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=1, height=16,
                                    width=16)


def make_decoder(lm, vocab, **sampling_kwargs):
  model, params = lm
  config = sampling.SamplingConfig(top_k=8, **sampling_kwargs)
  return decode.Decoder(model, vocab, config), params


def test_three_clip_generation_returns_exactly_the_frames_asked(lm, vocab, stand_in_codec):
  decoder, params = make_decoder(lm, vocab)
  calls = []
  # 22 frames: 6 latent frames after the first -> clips of 3, then 1 context + 2 new, twice.
  assert long_video.clip_schedule(22, CONFIG, 4) == [(0, 3), (1, 2), (1, 2)]
  out = long_video.generate(decoder, params, [[1, 2], [3]], 22, stand_in_codec.codec(), CONFIG,
                            jax.random.key(0), on_clip=lambda done, total: calls.append(
                                (done, total)))
  assert out.video.shape == (2, 22, 16, 16, 3)
  assert out.codes.shape == (2, 7, 2, 2)
  assert calls == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("num_frames", [1, 8, 13])
def test_any_length_has_exactly_that_many_frames(lm, vocab, stand_in_codec, num_frames):
  decoder, params = make_decoder(lm, vocab)
  out = long_video.generate(decoder, params, [[4]], num_frames, stand_in_codec.codec(), CONFIG,
                            jax.random.key(1))
  assert out.video.shape[1] == num_frames


def test_clip_boundaries_neither_duplicate_nor_drop_frames(lm, vocab, stand_in_codec):
  decoder, params = make_decoder(lm, vocab)
  config = long_video.LongVideoConfig(clip_latent_frames=4, cond_latent_frames=2, height=16,
                                      width=16)
  num_frames = 1 + 4 * 8  # 9 latent frames: clips (0, 4), (2, 2), (2, 2), (2, 1)
  out = long_video.generate(decoder, params, [[5, 6]], num_frames, stand_in_codec.codec(), config,
                            jax.random.key(2))
  # The stand-in decodes latent frames independently, so the video must be the decode of the
  # generated timeline itself, frame for frame.
  np.testing.assert_array_equal(out.video, stand_in_codec.decode(out.codes))
  np.testing.assert_array_equal(stand_in_codec.encode(out.video), out.codes)


class RecordingDecoder:
  """Wraps a Decoder and keeps every prompt it is given."""

  def __init__(self, decoder):
    self.decoder, self.vocab, self.prompts = decoder, decoder.vocab, []

  def __call__(self, params, prompts, plan, key, uncond_prompts=None):
    self.prompts.append((prompts, uncond_prompts))
    return self.decoder(params, prompts, plan, key, uncond_prompts=uncond_prompts)


@pytest.mark.parametrize("reencode", [True, False])
def test_next_clip_is_conditioned_on_text_and_last_latent_frames(lm, vocab, stand_in_codec,
                                                                  reencode):
  decoder, params = make_decoder(lm, vocab, guidance_scale=2.0)
  recorder = RecordingDecoder(decoder)
  config = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=2,
                                      reencode=reencode, height=16, width=16)
  out = long_video.generate(recorder, params, [[7, 8, 9]], 13, stand_in_codec.codec(), config,
                            jax.random.key(3))
  assert stand_in_codec.encode_calls == (1 if reencode else 0)
  (cond, uncond), = recorder.prompts[1:]
  want = decode.prompt_ids(vocab, [7, 8, 9], out.codes[0, 1:3])
  np.testing.assert_array_equal(cond[0], want)
  np.testing.assert_array_equal(uncond[0], decode.prompt_ids(vocab, None, out.codes[0, 1:3]))


def test_same_seed_same_video(lm, vocab, stand_in_codec):
  decoder, params = make_decoder(lm, vocab)
  run = lambda seed: long_video.generate(decoder, params, [[1]], 17, stand_in_codec.codec(),
                                         CONFIG, jax.random.key(seed)).video
  np.testing.assert_array_equal(run(0), run(0))
  assert not np.array_equal(run(0), run(1))


def test_a_minute_is_covered_by_whole_clips():
  config = long_video.LongVideoConfig(clip_latent_frames=17, cond_latent_frames=4)
  num_frames = int(60 * 6.5)  # Loong: 65 frames = 10 s
  schedule = long_video.clip_schedule(num_frames, config, 4)
  latent = sum(new for _, new in schedule)
  assert long_video.pixel_frames(latent, 4) >= num_frames > long_video.pixel_frames(latent - 1, 4)
  assert schedule[0] == (0, 17) and all(c == 4 and 1 <= n <= 13 for c, n in schedule[1:])


def test_bad_context_length_is_rejected(lm, vocab, stand_in_codec):
  decoder, params = make_decoder(lm, vocab)
  config = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=3, height=16,
                                      width=16)
  with pytest.raises(ValueError, match="cond_latent_frames"):
    long_video.generate(decoder, params, [[1]], 20, stand_in_codec.codec(), config,
                        jax.random.key(0))


def test_continue_decoder_samples_every_clip_after_the_first(lm, vocab, stand_in_codec):
  """`continue_decoder` (e.g. a lower continuation temperature) samples clips 2.., the first
  decoder clip 1; a greedy continuation of the same model gives the same clips 2.. whatever the
  first decoder's seed-dependent draws were, given the same context."""
  first, params = make_decoder(lm, vocab)
  later, _ = make_decoder(lm, vocab, temperature=0.0)
  first_rec, later_rec = RecordingDecoder(first), RecordingDecoder(later)
  out = long_video.generate(first_rec, params, [[1, 2]], 22, stand_in_codec.codec(), CONFIG,
                            jax.random.key(4), continue_decoder=later_rec)
  assert len(first_rec.prompts) == 1 and len(later_rec.prompts) == 2
  # Greedy continuation: re-running clip 2 from its recorded context gives the same codes.
  (cond, uncond), = later_rec.prompts[:1]
  again = later(params, cond, decode.frame_plan(vocab, 2, 4, frame_width=2), jax.random.key(99),
                uncond_prompts=uncond)
  np.testing.assert_array_equal(long_video.frame_codes(again, vocab, 2, 2, 2), out.codes[:, 3:5])


def test_frame_temperature_scales_every_frame_but_the_videos_first(lm, vocab, stand_in_codec):
  decoder, params = make_decoder(lm, vocab, temperature=0.8)
  config = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=1, height=16,
                                      width=16, frame_temperature=0.2)
  assert long_video.frame_scales(decoder, config, 3, True) == pytest.approx([1.0, 4.0, 4.0])
  assert long_video.frame_scales(decoder, config, 2, False) == pytest.approx([4.0, 4.0])
  assert long_video.frame_scales(decoder, CONFIG, 3, True) is None
  greedy, _ = make_decoder(lm, vocab, temperature=0.0)
  assert long_video.frame_scales(greedy, config, 3, True) is None
  out = long_video.generate(decoder, params, [[1, 2]], 22, stand_in_codec.codec(), config,
                            jax.random.key(4))
  assert out.video.shape[1] == 22
  bad = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=1, height=16,
                                   width=16, frame_temperature=0.0)
  with pytest.raises(ValueError, match="frame_temperature"):
    long_video.generate(decoder, params, [[1]], 5, stand_in_codec.codec(), bad, jax.random.key(0))


def test_reencode_margin_passes_each_contexts_generated_codes_to_the_codec(lm, vocab,
                                                                          stand_in_codec):
  """With a margin, the context is `codec.reencode(tail pixels, the tail's generated codes,
  margin)`; the codes it returns are the next clip's context."""
  decoder, params = make_decoder(lm, vocab)
  calls = []

  def reencode(video, previous, margin):
    calls.append((np.asarray(video).shape, np.array(previous), margin))
    return (np.asarray(previous) + 1) % vocab.video_size   # not what encode would give

  codec = dataclasses.replace(stand_in_codec.codec(), reencode=reencode)
  recorder = RecordingDecoder(decoder)
  config = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=2, height=16,
                                      width=16, reencode_margin=0.25)
  out = long_video.generate(recorder, params, [[7, 8]], 13, codec, config, jax.random.key(3))
  (shape, previous, margin), = calls
  assert shape == (1, 5, 16, 16, 3) and margin == 0.25
  np.testing.assert_array_equal(previous, out.codes[:, 1:3])
  assert stand_in_codec.encode_calls == 0
  (cond, _), = recorder.prompts[1:]
  np.testing.assert_array_equal(cond[0], decode.prompt_ids(vocab, [7, 8], previous[0] + 1))


def test_reencode_margin_is_checked(lm, vocab, stand_in_codec):
  decoder, params = make_decoder(lm, vocab)
  for margin, message in [(-0.1, "must be >= 0"), (float("nan"), "must be >= 0"),
                          (0.5, "no latents")]:
    config = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=1, height=16,
                                        width=16, reencode_margin=margin)
    with pytest.raises(ValueError, match=message):
      long_video.generate(decoder, params, [[1]], 5, stand_in_codec.codec(), config,
                          jax.random.key(0))
  # Without re-encoding the margin is unused, so any codec will do.
  config = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=1, height=16,
                                      width=16, reencode=False, reencode_margin=0.5)
  assert long_video.generate(decoder, params, [[1]], 5, stand_in_codec.codec(), config,
                             jax.random.key(0)).video.shape[1] == 5


def _frames_with_objects(pixels: list[int], size: int = 8) -> np.ndarray:
  """`[len(pixels), size, size, 3]` black frames, each with that many white pixels."""
  out = -np.ones((len(pixels), size * size, 3), np.float32)
  for i, n in enumerate(pixels):
    out[i, :n] = 1.0
  return out.reshape(len(pixels), size, size, 3)


def test_keep_object_takes_the_first_draw_that_keeps_the_object_else_the_best():
  shown = _frames_with_objects([10, 10, 10])            # 3 prompts
  # Object pixels per [draw, prompt, frame]: 3 draws of 2 new frames.
  held = [[[10, 2], [10, 9], [0, 0]],
          [[8, 8], [7, 10], [1, 3]],
          [[10, 10], [10, 10], [2, 2]]]
  drawn = np.stack([np.stack([_frames_with_objects(f) for f in draw]) for draw in held])
  # prompt 0: draw 0 loses it in frame 1, draw 1 keeps >= 0.7 -> 1 (not the fuller draw 2);
  # prompt 1: draw 0 keeps 9 >= 7 -> 0; prompt 2: none keeps it -> the best worst frame (2).
  np.testing.assert_array_equal(long_video.keep_object(shown, drawn, 0.7, 0.25), [1, 0, 2])
  np.testing.assert_array_equal(long_video.keep_object(shown, drawn, 0.0, 0.25), [0, 0, 0])


class BatchRecordingDecoder(RecordingDecoder):
  """Also keeps each call's sampled ids."""

  def __call__(self, params, prompts, plan, key, uncond_prompts=None):
    ids = super().__call__(params, prompts, plan, key, uncond_prompts)
    self.prompts[-1] += (np.asarray(ids),)
    return ids


def test_continuation_candidates_keep_the_draw_that_keeps_the_object(lm, vocab, stand_in_codec):
  """K draws per continued clip in one batch (each prompt K times, with its context); the kept
  one is `keep_object`'s choice, and the video is still the decode of the kept codes."""
  decoder, params = make_decoder(lm, vocab, temperature=1.5)
  recorder = BatchRecordingDecoder(decoder)
  config = dataclasses.replace(CONFIG, continuation_candidates=3, continuation_keep=1.0)
  codec = stand_in_codec.codec()
  out = long_video.generate(recorder, params, [[1, 2], [3]], 22, codec, config,
                            jax.random.key(6))
  assert [len(p[0]) for p in recorder.prompts] == [2, 6, 6]   # the first clip: no candidates
  np.testing.assert_array_equal(out.video, stand_in_codec.decode(out.codes)[:, :22])
  video_so_far = stand_in_codec.decode(out.codes[:, :3])
  (cond, _, ids) = recorder.prompts[1]
  for p in range(2):  # the draws of prompt p are rows p, p + 2, p + 4, with the same context
    np.testing.assert_array_equal(cond[p], cond[p + 2])
  draws = long_video.frame_codes(ids, vocab, 2, 2, 2).reshape(3, 2, 2, 2, 2)
  clips = np.concatenate([np.broadcast_to(out.codes[None, :, 2:3], (3, 2, 1, 2, 2)), draws], 2)
  pixels = stand_in_codec.decode(clips.reshape(6, 3, 2, 2)).reshape(3, 2, 9, 16, 16, 3)
  want = long_video.keep_object(video_so_far[:, 0], pixels[:, :, 1:], 1.0, 0.25)
  assert want.any(), "this draw should not keep every prompt's first candidate"
  np.testing.assert_array_equal(out.codes[:, 3:5], draws[want, np.arange(2)])
  with pytest.raises(ValueError, match="continuation_candidates"):
    long_video.generate(decoder, params, [[1]], 5, codec,
                        dataclasses.replace(CONFIG, continuation_candidates=0), jax.random.key(0))
