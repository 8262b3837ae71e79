"""AR-DF training masks and loss [Lumos]."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loong_jax import tokens, train_lm
from loong_jax.train import ardf, lm_step
from tests.llm.helpers import tiny_config

VOCAB = tokens.Vocab(100, 64)
N = 16  # 4x4 tokens per latent frame


def _batch(frames=3, batch=6, seed=0):
  rng = np.random.default_rng(seed)
  seqs = np.stack([tokens.build_sequence(rng.integers(0, 100, 3),
                                         rng.integers(0, 64, (frames, N)), VOCAB)
                   for _ in range(batch)])
  return {"inputs": jnp.asarray(seqs), "input_frame": jnp.asarray(tokens.frame_index(seqs, VOCAB)),
          "targets": jnp.asarray(seqs), "weights": jnp.ones(seqs.shape)}


def _mask(kind, batch, seed=0):
  return np.asarray(ardf.video_mask(
      jax.random.key(seed), batch["inputs"], batch["input_frame"], kind=kind, min_ratio=0.7,
      tokens_per_frame=N, video_range=(VOCAB.video_offset, VOCAB.special_offset),
      boi_id=VOCAB.boi, max_frames=3))


def test_tube_masks_repeat_the_same_positions_in_every_frame():
  batch = _batch()
  mask = _mask("tube", batch)
  video = np.asarray(VOCAB.is_video(batch["inputs"]))
  assert not (mask & ~video).any()
  per_frame = mask[video].reshape(6, 3, N)
  for example in per_frame:
    assert (example == example[0]).all()               # the same tube through time
    # round(N r) positions with r in [0.7, 1]
    assert round(0.7 * N) <= example[0].sum() <= N


def test_other_mask_kinds_and_ratio_distribution():
  batch = _batch(batch=64)
  video = np.asarray(VOCAB.is_video(batch["inputs"]))
  per_frame = _mask("per_frame", batch)[video].reshape(64, 3, N)
  assert (per_frame.sum(-1) >= round(0.7 * N)).all()
  assert any((ex != ex[0]).any() for ex in per_frame)  # frames choose their own positions
  ratios = np.asarray(ardf.mask_ratio(jax.random.key(1), (10_000,), 0.7))
  assert ratios.min() >= 0.7 and ratios.max() <= 1.0
  # P(r = 0.7) = P(cos(pi u / 2) <= 0.7) = 1 - 2 acos(0.7) / pi ~ 0.506
  np.testing.assert_allclose((ratios == np.float32(0.7)).mean(), 1 - 2 * np.arccos(0.7) / np.pi,
                             atol=0.02)
  with pytest.raises(ValueError, match="config.train.ardf.mask_kind='block'"):
    _mask("block", batch)


def test_ardf_batch_targets_and_loss_ignore_unmasked_tokens():
  batch = _batch()
  out = ardf.ardf_batch(jax.random.key(0), batch, mask_id=VOCAB.mask, kind="tube",
                        min_ratio=0.7, tokens_per_frame=N,
                        video_range=(VOCAB.video_offset, VOCAB.special_offset),
                        boi_id=VOCAB.boi, max_frames=3)
  masked = out["weights"] > 0
  np.testing.assert_array_equal(out["targets"], batch["inputs"])
  np.testing.assert_array_equal(out["inputs"][masked], VOCAB.mask)
  np.testing.assert_array_equal(out["inputs"][~masked], batch["inputs"][~masked])
  # Changing the logits at unmasked positions leaves the loss unchanged.
  logits = jax.random.normal(jax.random.key(2), out["inputs"].shape + (VOCAB.padded_size,))
  loss, _ = lm_step.weighted_cross_entropy(logits, out["targets"], out["weights"])
  noisy = jnp.where(masked[..., None], logits, logits * 50 + 3)
  loss2, _ = lm_step.weighted_cross_entropy(noisy, out["targets"], out["weights"])
  np.testing.assert_allclose(loss, loss2, rtol=1e-6)


def test_ardf_training_runs_and_needs_the_frame_mask(tmp_path):
  config = tiny_config(**{"train.objective": "ardf", "train.steps": 4, "train.log_every": 2,
                          "train.eval_every": 0, "train.seq_len": 128,
                          "optim.warmup_steps": 1})
  config.mesh = dict(data=1, fsdp=1, tensor=1)
  with pytest.raises(ValueError, match="attention_mask='frame_bidirectional'"):
    train_lm.build(config)
  config.lm.update(attention_mask="frame_bidirectional", rope="mm_rope", num_heads=2,
                   num_kv_heads=1, head_dim=32)
  result = train_lm.train(config, str(tmp_path))
  assert int(result.state.step) == 4
  assert all(np.isfinite(r["loss"]) for r in result.history)
  # Only masked video tokens count: about 70-100% of 5 frames x 16 ids per example.
  per_example = result.history[-1]["tokens"] / config.train.batch_size
  assert round(0.7 * 16) * 5 <= per_example <= 80
