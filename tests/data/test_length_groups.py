"""Length groups (`data.length_groups`): sources of different lengths in row groups padded to
their own length; a train step on them equals the step on the same rows padded to one length."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from loong_jax import sharding
from loong_jax.data import pipeline
from loong_jax.llm import transformer
from loong_jax.train import lm_step
from loong_jax.train import state as state_lib
from tests.data.conftest import VOCAB, data_config
from tests.llm.helpers import tiny_config

TOKENS_PER_FRAME = 16


def _config(token_dirs, **overrides):
  return data_config([(token_dirs["images"], 0.5, 1), (token_dirs["clips9"], 0.5, 9)],
                     **{"length_groups": True, **overrides})


def _batches(config, n, **kwargs):
  it = iter(pipeline.make_pipeline(config, VOCAB, process_index=0, process_count=1, **kwargs))
  return [next(it) for _ in range(n)], it


def test_groups_hold_each_length_with_fixed_rows(token_dirs):
  config = _config(token_dirs, batch_size=8)
  short = pipeline.required_seq_len(24, 1, TOKENS_PER_FRAME)
  long = pipeline.required_seq_len(24, 9, TOKENS_PER_FRAME)
  assert pipeline.length_groups(config, VOCAB) == [(short, [0], 4), (long, [1], 4)]
  batches, _ = _batches(config, 3)
  for batch in batches:
    assert set(batch) == {"group0", "group1"} and lm_step.batch_groups(batch)[0] is batch["group0"]
    for group, length in (("group0", short), ("group1", long)):
      for key in pipeline.BATCH_KEYS:
        assert batch[group][key].shape == (4, length)
    assert np.all(batch["group0"]["frame"] <= 0)        # images: latent frame 0 only
    assert np.any(batch["group1"]["frame"] > 0)
  # Off (the default), or one length only: one padded batch, as before.
  assert pipeline.length_groups(_config(token_dirs, length_groups=False), VOCAB) == []
  one = data_config([(token_dirs["clips9"], 1.0, 9)], length_groups=True)
  assert pipeline.length_groups(one, VOCAB) == []
  # Rows follow the weights; every group keeps at least one row.
  config.sources[0]["weight"] = 0.1
  assert [r for _, _, r in pipeline.length_groups(config, VOCAB)] == [1, 7]


def test_grouped_iterator_restores_exactly(token_dirs):
  config = _config(token_dirs)
  _, it = _batches(config, 2)
  state = it.get_state()
  want = next(it)
  it.set_state(state)
  chex.assert_trees_all_equal(next(it), want)


def test_fixed_seq_len_and_errors(token_dirs):
  # A fixed data.seq_len stays the longest group's length.
  fixed = pipeline.length_groups(_config(token_dirs, seq_len=200), VOCAB)
  assert [n for n, _, _ in fixed] == [pipeline.required_seq_len(24, 1, TOKENS_PER_FRAME), 200]
  with pytest.raises(ValueError, match="split over the 3 processes"):
    pipeline.length_groups(_config(token_dirs), VOCAB, process_count=3)


def _pad_to(group, length):
  """A group's arrays padded (pad ids, weight 0, frame -1) to `length` positions."""
  fill = {"inputs": VOCAB.pad, "targets": VOCAB.pad, "weights": 0.0, "frame": -1}
  return {k: np.pad(v, ((0, 0), (0, length - v.shape[1])), constant_values=fill[k])
          for k, v in group.items()}


def test_a_step_on_groups_equals_the_step_on_one_padded_batch(token_dirs):
  batch = _batches(_config(token_dirs), 1)[0][0]
  long = batch["group1"]["inputs"].shape[1]
  padded = {k: np.concatenate([_pad_to(batch["group0"], long)[k], batch["group1"][k]])
            for k in pipeline.BATCH_KEYS}
  config = tiny_config()
  config.vocab.text_size, config.vocab.video_size = VOCAB.text_size, VOCAB.video_size
  model = transformer.Transformer(transformer.LMConfig.from_config(config.lm))
  mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=1, fsdp=1, tensor=1)))
  rules = sharding.rules(config.sharding)

  def step(b):
    state, _ = state_lib.create_sharded_state(
        lambda k: model.init(k, jnp.zeros((1, long), jnp.int32))["params"], model.apply,
        optax.sgd(1.0), jax.random.key(0), mesh, rules, config.sharding.max_replicated_fraction)
    with sharding.mesh_context(mesh, rules):
      return lm_step.train_step(state, jax.tree.map(jnp.asarray, b))

  grouped_state, grouped = step(batch)
  padded_state, plain = step(padded)
  for key in ("loss", "tokens", "loss_first_frame", "loss_later_frames"):
    np.testing.assert_allclose(grouped[key], plain[key], rtol=1e-5)
  chex.assert_trees_all_close(grouped_state.params, padded_state.params, rtol=1e-4, atol=1e-6)
  evaluated = lm_step.eval_step(grouped_state.params, jax.tree.map(jnp.asarray, batch),
                                apply_fn=model.apply)
  again = lm_step.eval_step(grouped_state.params, jax.tree.map(jnp.asarray, padded),
                            apply_fn=model.apply)
  np.testing.assert_allclose(evaluated["loss"], again["loss"], rtol=1e-5)
