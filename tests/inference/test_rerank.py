"""Best-of-N first frames: teacher-forced frame likelihoods, guided scores, the chosen frame."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax.inference import decode, long_video, masked_decode, rerank, sampling
from loong_jax.llm import transformer

from tests.inference.conftest import small_lm_config

H = W = 2  # 2x2 = 4 tokens per latent frame (16x16 pixels through the stand-in codec)


def sampled_frame_log_likelihood(decoder, params, prompts, key, h=H, w=W):
  """Sample one frame per prompt at temperature 1 (no top-k, no guidance) and sum the log-probs
  of its ids under the logits the KV-cached decoder drew them from: the reference."""
  plan = decode.frame_plan(decoder.vocab, 1, h * w, end_video=False, frame_width=w)
  ids, logits = decoder(params, prompts, plan, key, return_logits=True)
  logp = jax.nn.log_softmax(jnp.asarray(logits), axis=-1)
  picked = np.take_along_axis(np.asarray(logp), ids[..., None], axis=-1)[..., 0]
  frames = decoder.vocab.tokens_to_video(ids[:, 1:1 + h * w])
  return frames, picked[:, 1:1 + h * w].sum(axis=1)


@pytest.mark.parametrize("prev_radius,w", [(None, 2), (1, 2), (1, 4)])
def test_log_likelihood_matches_the_cached_decoders_sampling_probabilities(vocab, prev_radius, w):
  """Teacher-forced (right-padded) scores equal the left-padded KV-cached decoder's, for prompts
  of different lengths, with and without context frames and previous-frame inputs (whose
  neighbourhoods depend on the frame's width: square and 2x4 frames)."""
  extra = {} if prev_radius is None else dict(prev_frame_input=True, prev_frame_radius=1)
  model = transformer.Transformer(small_lm_config(**extra))
  params = jax.jit(lambda: nn.unbox(model.init(jax.random.key(2),
                                                jnp.zeros((1, 8), jnp.int32))["params"]))()
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(temperature=1.0))
  context = np.arange(3, 3 + 2 * w).reshape(1, 2, w)
  prompts = [decode.prompt_ids(vocab, [1, 2, 3]), decode.prompt_ids(vocab, None),
             decode.prompt_ids(vocab, [7], context)]
  frames, expected = sampled_frame_log_likelihood(decoder, params, prompts, jax.random.key(0),
                                                  2, w)
  got = decoder.log_likelihood(params, prompts, frames, frame_width=w)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
  assert (got < 0).all()
  with pytest.raises(ValueError, match="frames must be"):
    decoder.log_likelihood(params, prompts, frames[:2])


def test_guided_score_is_likelihood_at_one_and_adds_pmi_above():
  cond, uncond = np.array([-3.0, -5.0]), np.array([-4.0, -4.0])
  np.testing.assert_allclose(rerank.guided_score(cond, uncond, 1.0), cond)
  np.testing.assert_allclose(rerank.guided_score(cond, uncond, 3.0), cond + 2 * (cond - uncond))


def test_best_first_frames_keeps_the_best_scored_candidate(lm, vocab):
  model, params = lm
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(top_k=8))
  texts = [[1, 2], [5]]
  frames, scores = rerank.best_first_frames(decoder, params, texts, H, W, 6, 2.0,
                                            jax.random.key(3))
  assert frames.shape == (2, 1, H, W) and scores.shape == (2, 6)
  # The same draw, scored here: the kept frame is each prompt's argmax.
  cond = [decode.prompt_ids(vocab, t) for t in texts for _ in range(6)]
  uncond = [decode.prompt_ids(vocab, None)] * len(cond)
  plan = decode.frame_plan(vocab, 1, H * W, end_video=False, frame_width=W)
  ids = decoder(params, cond, plan, jax.random.key(3), uncond_prompts=uncond)
  candidates = vocab.tokens_to_video(ids[:, 1:1 + H * W])
  expected = rerank.guided_score(decoder.log_likelihood(params, cond, candidates),
                                 decoder.log_likelihood(params, uncond, candidates), 2.0)
  np.testing.assert_allclose(scores.reshape(-1), expected, rtol=1e-5, atol=1e-5)
  best = candidates.reshape(2, 6, H, W)[np.arange(2), expected.reshape(2, 6).argmax(1)]
  np.testing.assert_array_equal(frames[:, 0], best)
  # Distinct candidates were drawn, so the choice is not vacuous.
  assert len({c.tobytes() for c in candidates[:6]}) > 1


def test_caption_posterior_is_a_log_softmax_over_the_caption_and_its_alternatives():
  cond = np.array([-3.0, -10.0])
  alts = [np.array([-4.0, -5.0]), np.array([-1.0])]
  got = rerank.caption_posterior(cond, alts)
  ref0 = jax.nn.log_softmax(jnp.array([-3.0, -4.0, -5.0]))[0]
  ref1 = jax.nn.log_softmax(jnp.array([-10.0, -1.0]))[0]
  np.testing.assert_allclose(got, [ref0, ref1], rtol=1e-6)
  assert (got <= 0).all()
  np.testing.assert_allclose(rerank.caption_posterior(cond, [np.zeros(0)] * 2), 0.0)


def test_chunked_log_likelihood_equals_one_call(lm, vocab):
  model, params = lm
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig())
  prompts = [decode.prompt_ids(vocab, [1 + i % 5]) for i in range(7)]
  frames = np.arange(7 * H * W).reshape(7, H * W) % 11
  one = decoder.log_likelihood(params, prompts, frames, W)
  np.testing.assert_allclose(rerank.log_likelihood(decoder, params, prompts, frames, W, rows=3),
                             one, rtol=1e-5, atol=1e-5)


def test_contrasts_add_the_weighted_caption_posterior_to_the_score(lm, vocab):
  """With contrasts the score is the guided score plus w x log p(caption | x) among the caption
  and the prompt's alternatives (each scored teacher-forced); the kept frame is its argmax."""
  model, params = lm
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(top_k=8))
  texts, key, n = [[1, 2], [5]], jax.random.key(3), 6
  alternatives = [[[3, 2], [4, 2]], [[6]]]
  _, plain = rerank.best_first_frames(decoder, params, texts, H, W, n, 1.0, key)
  frames, scores = rerank.best_first_frames(decoder, params, texts, H, W, n, 1.0, key,
                                            contrasts=[(2.0, alternatives)])
  cond = [decode.prompt_ids(vocab, t) for t in texts for _ in range(n)]
  plan = decode.frame_plan(vocab, 1, H * W, end_video=False, frame_width=W)
  ids = decoder(params, cond, plan, key, uncond_prompts=[decode.prompt_ids(vocab, None)] * 12)
  candidates = vocab.tokens_to_video(ids[:, 1:1 + H * W])
  ll = decoder.log_likelihood(params, cond, candidates)
  alt_ll = [decoder.log_likelihood(params, [decode.prompt_ids(vocab, a)] * 1, candidates[r:r + 1])
            for r in range(12) for a in alternatives[r // n]]
  posterior = [ll[c] - np.logaddexp.reduce([ll[c], alt_ll[2 * c][0], alt_ll[2 * c + 1][0]])
               for c in range(n)]
  posterior += [ll[n + c] - np.logaddexp(ll[n + c], alt_ll[2 * n + c][0]) for c in range(n)]
  expected = plain.reshape(-1) + 2.0 * np.asarray(posterior)
  np.testing.assert_allclose(scores.reshape(-1), expected, rtol=1e-4, atol=1e-4)
  best = candidates.reshape(2, n, H, W)[np.arange(2), expected.reshape(2, n).argmax(1)]
  np.testing.assert_array_equal(frames[:, 0], best)
  with pytest.raises(ValueError, match="alternatives for 2 prompts"):
    rerank.best_first_frames(decoder, params, texts, H, W, n, 1.0, key,
                             contrasts=[(1.0, alternatives[:1])])


def test_long_video_continues_the_chosen_first_frame(lm, vocab, stand_in_codec):
  model, params = lm
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(top_k=8))
  config = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=1, height=16,
                                      width=16, first_frame_candidates=5, rerank_guidance=3.0)
  key = jax.random.key(7)
  out = long_video.generate(decoder, params, [[1, 2], [9]], 22, stand_in_codec.codec(), config,
                            key)
  assert out.video.shape == (2, 22, 16, 16, 3) and out.codes.shape == (2, 7, 2, 2)
  first, _ = rerank.best_first_frames(decoder, params, [[1, 2], [9]], H, W, 5, 3.0,
                                      jax.random.fold_in(key, rerank.CANDIDATE_STREAM))
  np.testing.assert_array_equal(out.codes[:, :1], first)
  # A one-frame video is the chosen frame alone.
  one = long_video.generate(decoder, params, [[1, 2], [9]], 1, stand_in_codec.codec(), config,
                            key)
  np.testing.assert_array_equal(one.codes, first)


def test_composed_first_frames_are_drawn_from_the_composed_logits(lm, vocab, stand_in_codec):
  """With `branches` the candidates are the composed decoder's draw (scored as without), and a
  long video's first frame comes from them even with one candidate."""
  model, params = lm
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(top_k=8))
  texts, parts = [[1, 2], [5]], [[1], [5, 6]]
  key = jax.random.key(3)
  frames, _ = rerank.best_first_frames(decoder, params, texts, H, W, 4, 1.0, key,
                                       branches=[(0.5, parts)])
  cond = [decode.prompt_ids(vocab, t) for t in texts for _ in range(4)]
  branch = [decode.prompt_ids(vocab, t) for t in parts for _ in range(4)]
  plan = decode.frame_plan(vocab, 1, H * W, end_video=False, frame_width=W)
  ids = decoder(params, cond, plan, key, branches=[(0.5, branch)])
  candidates = vocab.tokens_to_video(ids[:, 1:1 + H * W])
  scores = decoder.log_likelihood(params, cond, candidates).reshape(2, 4)
  np.testing.assert_array_equal(frames[:, 0],
                                candidates.reshape(2, 4, H, W)[np.arange(2), scores.argmax(1)])
  plain, _ = rerank.best_first_frames(decoder, params, texts, H, W, 4, 1.0, key)
  assert not np.array_equal(plain, frames)  # the branch changed the draw
  config = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=1, height=16,
                                      width=16)
  out = long_video.generate(decoder, params, texts, 9, stand_in_codec.codec(), config, key,
                            first_frame_branches=[(0.5, parts)])
  one, _ = rerank.best_first_frames(decoder, params, texts, H, W, 1, 1.0,
                                    jax.random.fold_in(key, rerank.CANDIDATE_STREAM),
                                    branches=[(0.5, parts)])
  np.testing.assert_array_equal(out.codes[:, :1], one)


def test_bad_candidate_settings_are_clear_errors(lm, vocab, stand_in_codec):
  model, params = lm
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig())
  bad = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=1, height=16,
                                   width=16, first_frame_candidates=0)
  with pytest.raises(ValueError, match="first_frame_candidates"):
    long_video.generate(decoder, params, [[1]], 5, stand_in_codec.codec(), bad, jax.random.key(0))
  masked = masked_decode.MaskedDecoder(
      transformer.Transformer(small_lm_config(attention_mask="frame_bidirectional")), vocab,
      sampling.SamplingConfig(), masked_decode.MaskedConfig())
  with pytest.raises(ValueError, match="first_frame_candidates=1"):
    rerank.best_first_frames(masked, params, [[1]], H, W, 4, 1.0, jax.random.key(0))


def test_rejected_candidates_are_kept_only_when_every_candidate_is(lm, vocab):
  """`accept` takes the best-scored candidate out of the choice (the next best is kept), unless
  it rejects all of a prompt's candidates (then the best-scored one stays)."""
  model, params = lm
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(top_k=8))
  texts, key = [[1, 2], [5]], jax.random.key(3)
  plain, scores = rerank.best_first_frames(decoder, params, texts, H, W, 6, 1.0, key)
  best = [f.tobytes() for f in plain[:, 0]]
  seen = []

  def not_the_best(frames):
    seen.append(frames.shape)
    return np.array([f.tobytes() not in best for f in frames[:, 0]])

  frames, again = rerank.best_first_frames(decoder, params, texts, H, W, 6, 1.0, key,
                                           accept=not_the_best)
  assert seen == [(12, 1, H, W)]
  np.testing.assert_array_equal(again, scores)     # scores are reported unchanged
  for i in range(2):
    assert frames[i, 0].tobytes() not in best
  none, _ = rerank.best_first_frames(decoder, params, texts, H, W, 6, 1.0, key,
                                     accept=lambda f: np.zeros(len(f), bool))
  np.testing.assert_array_equal(none, plain)


def test_object_check_counts_pixels_off_the_background():
  frames = np.full((3, 16, 16, 3), -0.9, np.float32)
  frames[1, 2:6, 2:6] = [0.8, -0.9, -0.9]        # a 4x4 red square on black
  frames[2, 2:4, 2:4] = -0.8                     # too faint to count
  np.testing.assert_array_equal(long_video.object_pixels(frames, 0.25), [0, 16, 0])

  class Codec:
    def decode(self, codes):                     # [M, 1, h, w] -> [M, 1, H, W, 3]
      return frames[np.asarray(codes)[:, 0, 0, 0]][:, None]

  accept = long_video.object_check(Codec(), 10, 0.25)
  np.testing.assert_array_equal(accept(np.arange(3).reshape(3, 1, 1, 1)), [False, True, False])
  bad = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=1, height=16,
                                   width=16, first_frame_min_object_pixels=-1)
  with pytest.raises(ValueError, match="first_frame_min_object_pixels"):
    bad.validate(Codec())


def test_reencoded_first_frame_is_what_the_first_clip_continues(lm, vocab, stand_in_codec):
  """With `reencode_first_frame` the chosen first frame goes through decode -> encode (here an
  encoder that shifts every code by one) before the first clip continues it."""
  model, params = lm
  decoder = decode.Decoder(model, vocab, sampling.SamplingConfig(top_k=8))
  base = stand_in_codec.codec()
  shifted = long_video.VideoCodec(lambda v: (base.encode(v) + 1) % vocab.video_size, base.decode,
                                  base.temporal_stride, base.spatial_downsample)
  config = long_video.LongVideoConfig(clip_latent_frames=3, cond_latent_frames=1, height=16,
                                      width=16, first_frame_candidates=3,
                                      reencode_first_frame=True)
  key = jax.random.key(5)
  out = long_video.generate(decoder, params, [[1, 2], [9]], 9, shifted, config, key)
  first, _ = rerank.best_first_frames(decoder, params, [[1, 2], [9]], H, W, 3, 1.0,
                                      jax.random.fold_in(key, rerank.CANDIDATE_STREAM))
  np.testing.assert_array_equal(out.codes[:, :1], (first + 1) % vocab.video_size)
