"""Hugging Face LLaMA import/export: logits against PyTorch LlamaForCausalLM, exact round trips."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from loong_jax.convert import hf_llama
from loong_jax.llm import transformer

VOCAB = 300  # not a multiple of 128: exercises padding to 384
# The config.lm fields Hugging Face has no counterpart for.
RUN_TIME_FIELDS = dict(attention_impl=None, init_std=0.02, remat="none", dtype="float32",
                       param_dtype="float32")
HF_CONFIG = dict(
    model_type="llama", vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_act="silu",
    rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
    attention_bias=False, mlp_bias=False, tie_word_embeddings=False)


def save_llama(path, dtype="float32", max_shard_size=None, **overrides):
  """A randomly initialised `LlamaForCausalLM` saved as safetensors in `path`; returns it."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  config = {k: v for k, v in HF_CONFIG.items() if k != "model_type"}
  config = transformers.LlamaConfig(**{**config, **overrides}, initializer_range=0.1)
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(config).eval()
  with torch.no_grad():  # norm scales start at one; make them informative
    for name, p in model.named_parameters():
      if "norm" in name:
        p.uniform_(0.5, 1.5)
  model = model.to(getattr(torch, dtype))
  kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
  model.save_pretrained(path, **kwargs)
  return model


def torch_logits(model, tokens):
  """`[B, L]` ids -> `[B, L, V]` float32 numpy logits from the PyTorch model."""
  import torch
  with torch.no_grad():
    return model(torch.from_numpy(tokens)).logits.float().numpy()


def lm_config(lm_fields):
  return transformer.LMConfig.from_config(ml_collections.ConfigDict({**lm_fields,
                                                                     **RUN_TIME_FIELDS}))


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
  path = tmp_path_factory.mktemp("hf")
  return str(path), save_llama(path)


@pytest.mark.parametrize("tied", [False, True])
def test_import_matches_pytorch_logits(tmp_path, tied):
  model = save_llama(tmp_path, tie_word_embeddings=tied)
  params, lm_fields = hf_llama.import_hf(str(tmp_path))
  assert lm_fields == dict(
      vocab_size=VOCAB, vocab_pad_multiple=128, num_layers=2, d_model=64, num_heads=4,
      num_kv_heads=2, head_dim=16, mlp_dim=128, rope="rope_1d", rope_theta=10_000.0,
      attention_mask="causal", qk_norm=False, norm_eps=1e-5)
  cfg = lm_config(lm_fields)
  net = transformer.Transformer(cfg)
  tokens = np.random.default_rng(0).integers(0, VOCAB, (2, 16)).astype(np.int32)
  expected = jax.eval_shape(lambda: net.init(jax.random.key(0), tokens)["params"])
  shapes = jax.tree.map(lambda x: x.shape, params)
  assert shapes == jax.tree.map(lambda x: x.shape, nn.unbox(expected))
  assert shapes["embed"]["embedding"] == (384, 64)
  assert not params["embed"]["embedding"][VOCAB:].any()
  assert not params["lm_head"]["kernel"][:, VOCAB:].any()

  logits = np.asarray(net.apply({"params": params}, tokens))
  np.testing.assert_allclose(logits[..., :VOCAB], torch_logits(model, tokens), atol=1e-4)
  assert (logits[..., VOCAB:] < -1e30).all()


def test_export_round_trip_is_exact_and_loads_in_transformers(hf_model, tmp_path):
  import transformers
  hf_dir, model = hf_model
  params, lm_fields = hf_llama.import_hf(hf_dir)
  hf_llama.export_hf(params, lm_config(lm_fields), str(tmp_path))

  original = load_file(os.path.join(hf_dir, "model.safetensors"))
  exported = load_file(os.path.join(tmp_path, "model.safetensors"))
  assert exported.keys() == original.keys()
  for name, w in original.items():
    np.testing.assert_array_equal(exported[name], w, err_msg=name)

  reloaded = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path)).eval()
  assert reloaded.config.rope_parameters["rope_theta"] == 10_000.0
  assert reloaded.config.rms_norm_eps == 1e-5
  tokens = np.arange(24, dtype=np.int64).reshape(2, 12) * 7 % VOCAB
  np.testing.assert_array_equal(torch_logits(reloaded, tokens), torch_logits(model, tokens))


def test_bfloat16_sharded_round_trip(tmp_path):
  src, out = tmp_path / "src", tmp_path / "out"
  save_llama(src, dtype="bfloat16", max_shard_size="40KB")
  index = json.loads((src / "model.safetensors.index.json").read_text())
  shards = sorted(set(index["weight_map"].values()))
  assert len(shards) > 1
  params, lm_fields = hf_llama.import_hf(str(src))
  assert params["layers"]["mlp"]["down"]["kernel"].dtype == np.float32
  hf_llama.export_hf(params, lm_fields, str(out), dtype="bfloat16")

  exported = load_file(os.path.join(out, "model.safetensors"))
  original = {}
  for shard in shards:
    original.update(load_file(os.path.join(src, shard)))
  assert exported.keys() == original.keys()
  for name, w in original.items():
    assert exported[name].dtype == w.dtype, name
    np.testing.assert_array_equal(exported[name].view(np.uint16), w.view(np.uint16),
                                  err_msg=name)


def test_cli_import_then_export(hf_model, tmp_path):
  hf_dir, _ = hf_model
  ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "out")
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  for args in (["--direction=import", f"--hf_dir={hf_dir}", f"--checkpoint_dir={ckpt}"],
               ["--direction=export", f"--hf_dir={out}", f"--checkpoint_dir={ckpt}"]):
    subprocess.run([sys.executable, "-m", "loong_jax.convert.hf_llama", *args], check=True,
                   env=env, capture_output=True)
  with open(os.path.join(ckpt, "lm_config.json")) as fp:
    assert json.load(fp)["vocab_size"] == VOCAB
  original = load_file(os.path.join(hf_dir, "model.safetensors"))
  exported = load_file(os.path.join(out, "model.safetensors"))
  assert exported.keys() == original.keys()
  for name, w in original.items():
    np.testing.assert_array_equal(exported[name], w, err_msg=name)


@pytest.mark.parametrize("patch, field", [
    ({"model_type": "mistral"}, "model_type"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"attention_bias": True}, "attention_bias"),
    ({"mlp_bias": True}, "mlp_bias"),
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}},
     "rope_parameters"),
    ({"rope_parameters": None, "rope_scaling": {"type": "linear", "factor": 2.0}},
     "rope_scaling"),
    ({"hidden_size": None}, "hidden_size"),
])
def test_rejects_what_we_cannot_represent(patch, field):
  hf = {k: v for k, v in {**HF_CONFIG, **patch}.items() if v is not None}
  with pytest.raises(ValueError, match=field):
    hf_llama.lm_fields_from_hf(hf)


def test_reads_pre_5_config_spelling():
  hf = {k: v for k, v in HF_CONFIG.items() if k not in ("rope_parameters", "num_key_value_heads")}
  fields = hf_llama.lm_fields_from_hf({**hf, "rope_theta": 5e5, "rope_scaling": None})
  assert (fields["rope_theta"], fields["head_dim"], fields["num_kv_heads"]) == (5e5, 16, 4)


@pytest.mark.parametrize("extra, patch, message", [
    ({"model.layers.0.self_attn.q_proj.bias": np.zeros(64, np.float32)}, {}, "q_proj.bias"),
    ({}, {"intermediate_size": 96}, "gate_proj.weight has shape"),
])
def test_import_names_the_bad_tensor(hf_model, tmp_path, extra, patch, message):
  hf_dir, _ = hf_model
  with open(os.path.join(hf_dir, "config.json")) as fp:
    config = {**json.load(fp), **patch}
  (tmp_path / "config.json").write_text(json.dumps(config))
  tensors = {**load_file(os.path.join(hf_dir, "model.safetensors")), **extra}
  save_file(tensors, str(tmp_path / "model.safetensors"))
  with pytest.raises(ValueError, match=message):
    hf_llama.import_hf(str(tmp_path))


def test_export_rejects_qk_norm(hf_model, tmp_path):
  params, lm_fields = hf_llama.import_hf(hf_model[0])
  with pytest.raises(ValueError, match="qk_norm"):
    hf_llama.export_hf(params, {**lm_fields, "qk_norm": True}, str(tmp_path))


def test_export_folds_digit_factorised_video_codes(tmp_path):
  """A model with `video_code_levels` exports as plain LLaMA tables with the same logits."""
  fields = dict(vocab_size=VOCAB, vocab_pad_multiple=128, num_layers=2, d_model=64, num_heads=4,
                num_kv_heads=2, head_dim=16, mlp_dim=128, rope="rope_1d", rope_theta=10_000.0,
                attention_mask="causal", qk_norm=False, norm_eps=1e-5)
  digit_config = lm_config(dict(fields, video_code_levels=(4, 4, 4), video_offset=200))
  model = transformer.Transformer(digit_config)
  tokens = np.asarray([[1, 200, 217, 263, 299, 150]])
  params = nn.unbox(jax.jit(model.init)(jax.random.key(0), tokens))["params"]
  hf_llama.export_hf(jax.tree.map(np.asarray, params), digit_config, str(tmp_path))
  plain_params, plain_fields = hf_llama.import_hf(str(tmp_path))
  plain = transformer.Transformer(lm_config(plain_fields))
  np.testing.assert_allclose(jax.jit(plain.apply)({"params": plain_params}, tokens),
                             jax.jit(model.apply)({"params": params}, tokens), atol=1e-5,
                             rtol=1e-5)
