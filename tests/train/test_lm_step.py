import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from loong_jax import sharding, tokens
from loong_jax.data import token_stream
from loong_jax.llm import transformer
from loong_jax.train import lm_step
from loong_jax.train import state as state_lib
from tests.llm.helpers import tiny_config


def test_weighted_cross_entropy_matches_naive():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 11)).astype(np.float32)
  targets = rng.integers(0, 11, (2, 5))
  weights = rng.uniform(size=(2, 5)).astype(np.float32)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ce = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
  loss, aux = lm_step.weighted_cross_entropy(logits, targets, weights)
  np.testing.assert_allclose(loss, (ce * weights).sum() / weights.sum(), rtol=1e-5)
  np.testing.assert_allclose(aux["weight_sum"], weights.sum(), rtol=1e-6)
  with_z, _ = lm_step.weighted_cross_entropy(logits, targets, weights, z_loss=1e-2)
  assert with_z > loss


def test_weight_decay_skips_norms_and_embeddings():
  params = {"embed": {"embedding": 1}, "layers": {"mlp": {"up": {"kernel": 1}},
                                                  "mlp_norm": {"scale": 1}}}
  mask = state_lib.weight_decay_mask(params)
  assert mask == {"embed": {"embedding": False}, "layers": {"mlp": {"up": {"kernel": True}},
                                                            "mlp_norm": {"scale": False}}}


def test_schedule_warms_up_then_decays_to_the_end_fraction():
  config = tiny_config()
  config.optim.learning_rate, config.optim.warmup_steps = 1.0, 10
  schedule = state_lib.learning_rate_schedule(config.optim, total_steps=100)
  assert schedule(0) == 0 and schedule(10) == pytest.approx(1.0)
  assert schedule(100) == pytest.approx(config.optim.end_learning_rate_fraction)
  config.optim.warmup_steps = 100
  with pytest.raises(ValueError, match="config.optim.warmup_steps"):
    state_lib.learning_rate_schedule(config.optim, total_steps=100)


def _setup(config, mesh_cfg):
  config.mesh = mesh_cfg
  model = transformer.Transformer(transformer.LMConfig.from_config(config.lm))
  mesh = sharding.make_mesh(config.mesh)
  rules = sharding.rules(config.sharding)
  tx = state_lib.make_optimizer(config.optim, config.train.steps)
  dummy = jnp.zeros((1, config.train.seq_len), jnp.int32)
  state, shardings = state_lib.create_sharded_state(
      lambda k: model.init(k, dummy)["params"], model.apply, tx, jax.random.key(0), mesh, rules,
      config.sharding.max_replicated_fraction)
  return state, lm_step.jit_train_step(shardings, mesh, rules), mesh, rules


def _batches(config, n):
  vocab = tokens.Vocab(config.vocab.text_size, config.vocab.video_size)
  stream = token_stream.dataset(config.data, vocab, config.train.batch_size,
                                config.train.seq_len, seed=0)
  return [{k: v for k, v in stream[i].items() if k in lm_step.BATCH_KEYS} for i in range(n)]


def _run(config, mesh_cfg, batches):
  state, step, mesh, rules = _setup(config, mesh_cfg)
  losses = []
  with sharding.mesh_context(mesh, rules):
    for batch in batches:
      state, metrics = step(state, batch)
      losses.append(float(metrics["loss"]))
  return losses, jax.device_get(state.params), state


def test_three_steps_on_a_2x2x2_mesh_match_one_device():
  config = tiny_config(**{"train.seq_len": 128})
  batches = _batches(config, 3)
  losses_8, params_8, state_8 = _run(config, dict(data=2, fsdp=2, tensor=2), batches)
  losses_1, params_1, _ = _run(config, dict(data=1, fsdp=1, tensor=1), batches)
  np.testing.assert_allclose(losses_8, losses_1, rtol=1e-4)
  chex.assert_trees_all_close(params_8, params_1, rtol=1e-4, atol=1e-6)
  # The parameters really are split: the query kernel over fsdp (embed) and tensor (heads).
  query = state_8.params["layers"]["attention"]["query"]["kernel"]
  assert query.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
  assert query.addressable_shards[0].data.shape == (2, 32, 2, 16)  # [N, D/fsdp, H/tensor, hd]


def test_loss_falls_when_memorising_a_batch():
  config = tiny_config(**{"train.seq_len": 128, "optim.learning_rate": 1e-2,
                          "optim.warmup_steps": 5})
  batch = _batches(config, 1)[0]
  losses, _, _ = _run(config, dict(data=1, fsdp=1, tensor=1), [batch] * 40)
  assert losses[-1] < 0.2 * losses[0], losses


def test_state_is_donated():
  config = tiny_config(**{"train.seq_len": 128})
  state, step, mesh, rules = _setup(config, dict(data=1, fsdp=1, tensor=1))
  old = state.params["final_norm"]["scale"]
  with sharding.mesh_context(mesh, rules):
    step(state, _batches(config, 1)[0])
  assert old.is_deleted()


def test_batch_not_divisible_by_data_axes_fails(tmp_path):
  from loong_jax import train_lm
  config = tiny_config(**{"train.batch_size": 6})
  config.mesh = dict(data=4, fsdp=1, tensor=1)
  with pytest.raises(ValueError, match="config.train.batch_size=6"):
    train_lm.build(config)


def test_swap_caption_ids_replaces_each_listed_id_by_another_and_cycles_over_steps():
  ids = (5, 7, 9)
  inputs = jnp.asarray([[1, 5, 2, 3], [1, 4, 2, 3], [1, 9, 9, 3]], jnp.int32)
  seen = set()
  for step in range(4):
    swapped, has = lm_step.swap_caption_ids(inputs, ids, step)
    swapped = np.asarray(swapped)
    np.testing.assert_array_equal(has, [True, False, True])
    np.testing.assert_array_equal(swapped[1], inputs[1])           # no listed id: unchanged
    np.testing.assert_array_equal(swapped[:, [0, 3]], inputs[:, [0, 3]])
    assert swapped[0, 1] in ids and swapped[0, 1] != 5
    assert swapped[2, 1] == swapped[2, 2] != 9                      # one swap per row
    seen.add(int(swapped[0, 1]))
  assert seen == {7, 9}                                             # both alternatives, in turn


def test_caption_contrast_adds_the_weighted_log_loss_of_the_swapped_caption():
  """The step's loss = the LM loss + w x mean over rows of softplus(nll_true - nll_swapped) on the
  first frame's targets (recomputed here from the model's logits); training lowers it."""
  config = tiny_config(**{"train.seq_len": 128, "optim.learning_rate": 1e-2,
                          "optim.warmup_steps": 2})
  vocab = tokens.Vocab(config.vocab.text_size, config.vocab.video_size)
  stream = token_stream.dataset(config.data, vocab, config.train.batch_size,
                                config.train.seq_len, seed=0)
  batch = {k: v for k, v in stream[0].items() if k in lm_step.BATCH_KEYS + ("frame",)}
  assert "frame" in batch
  text = batch["inputs"][:, 1]                                      # each row's first text id
  ids = tuple(sorted({int(i) for i in text} | {int(text[0]) + 1}))
  config.mesh = dict(data=1, fsdp=1, tensor=1)
  model = transformer.Transformer(transformer.LMConfig.from_config(config.lm))
  mesh, rules = sharding.make_mesh(config.mesh), sharding.rules(config.sharding)

  tx = state_lib.make_optimizer(config.optim, config.train.steps)

  def fresh():
    return state_lib.create_sharded_state(
        lambda k: model.init(k, jnp.zeros((1, 128), jnp.int32))["params"], model.apply, tx,
        jax.random.key(0), mesh, rules, config.sharding.max_replicated_fraction)

  keys = lm_step.BATCH_KEYS + ("frame",)
  state, shardings = fresh()
  params = jax.device_get(state.params)
  # The reference, outside the step: both captions' first-frame NLL per row.
  swapped, has = lm_step.swap_caption_ids(jnp.asarray(batch["inputs"]), ids, 0)
  mask = (batch["weights"] > 0) & (batch["frame"] == 0)
  nll = [np.sum(np.asarray(optax.softmax_cross_entropy_with_integer_labels(
      model.apply({"params": params}, x), batch["targets"])) * mask, axis=1)
      for x in (batch["inputs"], swapped)]
  pair = np.sum(np.where(np.asarray(has), np.logaddexp(0.0, nll[0] - nll[1]), 0.0)) / len(
      batch["inputs"])
  assert np.asarray(has).all()
  plain = lm_step.jit_train_step(shardings, mesh, rules, batch_keys=keys)
  contrast = lm_step.jit_train_step(shardings, mesh, rules, batch_keys=keys,
                                    caption_contrast=0.5, contrast_ids=ids)
  state2, _ = fresh()
  with sharding.mesh_context(mesh, rules):
    _, base = plain(state, dict(batch))
    new, metrics = contrast(state2, dict(batch))
    np.testing.assert_allclose(metrics["caption_contrast"], pair, rtol=1e-4)
    np.testing.assert_allclose(metrics["loss"], float(base["loss"]) + 0.5 * pair, rtol=1e-4)
    first = float(metrics["caption_contrast"])
    for _ in range(30):
      new, metrics = contrast(new, dict(batch))
  assert float(metrics["caption_contrast"]) < 0.5 * first
  with pytest.raises(ValueError, match="needs >= 2 ids"):
    lm_step.train_step(state2, batch, caption_contrast=1.0, contrast_ids=(3,))
