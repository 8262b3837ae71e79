"""Hugging Face `LlamaForCausalLM` <-> our `llm.transformer.Transformer` parameters, without torch.

  python -m loong_jax.convert.hf_llama --direction=import --hf_dir=DIR --checkpoint_dir=CKPT
  python -m loong_jax.convert.hf_llama --direction=export --checkpoint_dir=CKPT --hf_dir=DIR \
      --dtype=bfloat16

A Hugging Face directory holds `config.json` and `model.safetensors` (or shards named by
`model.safetensors.index.json`). Our side, `CKPT`, holds `params/` (an orbax `StandardCheckpointer`
tree of float32 arrays) and `lm_config.json` (the architectural `config.lm` fields; merge them into
a `configs/lm/llama.py` config). HF LLaMA applies rotary embeddings in the same "rotate half"
convention as `llm/rope.py`, so query/key weights need no permutation; linear weights are
transposed from torch's `[out, in]` and split into heads, and the vocabulary is padded (zero rows)
to a multiple of `vocab_pad_multiple` on import and cut back on export.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags, logging
from safetensors import safe_open
from safetensors.numpy import save_file

from loong_jax.llm import code_digits

Params = dict[str, Any]

# Old checkpoints store the rotary inverse frequencies as a buffer; they follow from rope_theta.
_DERIVED_SUFFIX = "rotary_emb.inv_freq"
EXPORT_DTYPES = ("float32", "bfloat16", "float16")


class _LayerTensor(NamedTuple):
  hf_name: str         # under `model.layers.{i}.`
  hf_shape: tuple      # torch layout
  our_shape: tuple     # one layer's slice of the stacked parameter
  to_ours: Callable[[np.ndarray], np.ndarray]
  to_hf: Callable[[np.ndarray], np.ndarray]


def _layer_tensors(c: Mapping[str, Any]) -> dict[tuple[str, ...], _LayerTensor]:
  """Our per-layer parameter path (under `layers/`) -> how it is stored by Hugging Face."""
  d, h, kv, hd, f = c["d_model"], c["num_heads"], c["num_kv_heads"], c["head_dim"], c["mlp_dim"]

  def same(w):
    return w

  def transpose(w):  # torch Linear [out, in] <-> our Dense kernel [in, out]
    return w.T

  def heads_in(name, heads):  # torch [heads * hd, D] <-> ours [D, heads, hd]
    return _LayerTensor(name, (heads * hd, d), (d, heads, hd),
                        lambda w: w.T.reshape(d, heads, hd), lambda w: w.reshape(d, heads * hd).T)

  return {
      ("attention_norm", "scale"): _LayerTensor("input_layernorm.weight", (d,), (d,), same, same),
      ("attention", "query", "kernel"): heads_in("self_attn.q_proj.weight", h),
      ("attention", "key", "kernel"): heads_in("self_attn.k_proj.weight", kv),
      ("attention", "value", "kernel"): heads_in("self_attn.v_proj.weight", kv),
      # torch [D, H * hd] <-> ours [H, hd, D]
      ("attention", "out", "kernel"): _LayerTensor(
          "self_attn.o_proj.weight", (d, h * hd), (h, hd, d),
          lambda w: w.T.reshape(h, hd, d), lambda w: w.reshape(h * hd, d).T),
      ("mlp_norm", "scale"): _LayerTensor("post_attention_layernorm.weight", (d,), (d,), same,
                                          same),
      ("mlp", "gate", "kernel"): _LayerTensor("mlp.gate_proj.weight", (f, d), (d, f), transpose,
                                              transpose),
      ("mlp", "up", "kernel"): _LayerTensor("mlp.up_proj.weight", (f, d), (d, f), transpose,
                                            transpose),
      ("mlp", "down", "kernel"): _LayerTensor("mlp.down_proj.weight", (d, f), (f, d), transpose,
                                              transpose),
  }


def padded_vocab_size(vocab_size: int, multiple: int) -> int:
  return -(-vocab_size // multiple) * multiple


def lm_fields_from_hf(hf: Mapping[str, Any], vocab_pad_multiple: int = 128,
                      where: str = "config.json") -> dict[str, Any]:
  """HF `LlamaConfig` dict -> our architectural `config.lm` fields; rejects what we can't run.

  The run-time fields (`attention_impl`, `init_std`, `remat`, `dtype`, `param_dtype`) are left to
  the user's config.
  """
  def field(name, default=None):
    if name not in hf and default is None:
      raise ValueError(f"{where}: missing field {name!r}")
    return hf.get(name, default)

  def need(ok, name, msg):
    if not ok:
      raise ValueError(f"{where}: {name}={hf.get(name)!r} is not supported: {msg}")

  need(field("model_type") == "llama", "model_type", "expected 'llama'")
  need(field("hidden_act", "silu") == "silu", "hidden_act", "our MLP is SwiGLU (silu)")
  need(not field("attention_bias", False), "attention_bias", "our projections have no bias")
  need(not field("mlp_bias", False), "mlp_bias", "our MLP has no bias")
  # transformers >= 5 writes `rope_parameters`; older versions `rope_theta` + `rope_scaling`.
  rope_key = "rope_parameters" if hf.get("rope_parameters") else "rope_scaling"
  rope = hf.get(rope_key) or {}
  need(rope.get("rope_type", rope.get("type", "default")) == "default", rope_key,
       "only plain RoPE (rope_type 'default') is implemented")
  d_model, heads = field("hidden_size"), field("num_attention_heads")
  return dict(
      vocab_size=field("vocab_size"),
      vocab_pad_multiple=vocab_pad_multiple,
      num_layers=field("num_hidden_layers"),
      d_model=d_model,
      num_heads=heads,
      num_kv_heads=field("num_key_value_heads", heads),
      head_dim=hf.get("head_dim") or d_model // heads,
      mlp_dim=field("intermediate_size"),
      rope="rope_1d",
      rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
      attention_mask="causal",
      qk_norm=False,
      norm_eps=float(field("rms_norm_eps", 1e-6)),
  )


@contextlib.contextmanager
def _open_tensors(checkpoint_dir: str):
  """Yield `{tensor name: (safe_open handle, file name)}` over the single file or all shards."""
  index = os.path.join(checkpoint_dir, "model.safetensors.index.json")
  single = os.path.join(checkpoint_dir, "model.safetensors")
  if os.path.exists(index):
    with open(index) as fp:
      weight_map = json.load(fp)["weight_map"]
    files = sorted(set(weight_map.values()))
  elif os.path.exists(single):
    files = ["model.safetensors"]
  else:
    raise FileNotFoundError(f"{checkpoint_dir}: no model.safetensors nor "
                            "model.safetensors.index.json (re-save with safe_serialization)")
  with contextlib.ExitStack() as stack:
    handles = {}
    for name in files:
      handle = stack.enter_context(
          safe_open(os.path.join(checkpoint_dir, name), framework="numpy"))
      handles.update({key: (handle, name) for key in handle.keys()})
    yield handles


def import_hf(checkpoint_dir: str, vocab_pad_multiple: int = 128) -> tuple[Params, dict]:
  """Read a Hugging Face `LlamaForCausalLM` directory (float32, bfloat16 or float16 tensors).

  Args:
    checkpoint_dir: a local directory with `config.json` and safetensors weights.
    vocab_pad_multiple: embedding / lm_head rows are zero-padded to a multiple of this.

  Returns:
    `(params, lm_fields)`: our float32 numpy parameter tree (layout in `llm/transformer.py`, per
    layer weights stacked on a leading `[num_layers]` axis, vocabulary padded to `V_pad`) and the
    architectural `config.lm` fields (see `lm_fields_from_hf`). Tied input/output embeddings are
    untied by copying.
  """
  config_path = os.path.join(checkpoint_dir, "config.json")
  with open(config_path) as fp:
    hf = json.load(fp)
  c = lm_fields_from_hf(hf, vocab_pad_multiple, where=config_path)
  vocab, d_model, n = c["vocab_size"], c["d_model"], c["num_layers"]
  v_pad = padded_vocab_size(vocab, vocab_pad_multiple)
  tied = hf.get("tie_word_embeddings", False)

  with _open_tensors(checkpoint_dir) as handles:
    unused = {k for k in handles if not k.endswith(_DERIVED_SUFFIX)}

    def read(name, shape):
      if name not in handles:
        raise ValueError(f"{checkpoint_dir}: no tensor {name!r} in the safetensors files")
      handle, file = handles[name]
      w = handle.get_tensor(name)
      if w.shape != shape:
        raise ValueError(f"{checkpoint_dir}/{file}: {name} has shape {w.shape}, expected {shape} "
                         f"from {config_path}")
      unused.discard(name)
      return w.astype(np.float32)

    embed = np.zeros((v_pad, d_model), np.float32)
    embed[:vocab] = read("model.embed_tokens.weight", (vocab, d_model))
    lm_head = np.zeros((d_model, v_pad), np.float32)
    if tied:
      lm_head[:, :vocab] = embed[:vocab].T
      unused.discard("lm_head.weight")  # HF ignores a stored copy of a tied head
    else:
      lm_head[:, :vocab] = read("lm_head.weight", (vocab, d_model)).T

    layers: Params = {}
    for path, t in _layer_tensors(c).items():
      stacked = np.empty((n, *t.our_shape), np.float32)  # filled in place: one copy in memory
      for i in range(n):
        stacked[i] = t.to_ours(read(f"model.layers.{i}.{t.hf_name}", t.hf_shape))
      _set(layers, path, stacked)
    final_norm = read("model.norm.weight", (d_model,))

  if unused:
    raise ValueError(f"{checkpoint_dir}: tensors with no place in our model (biases? a different "
                     f"architecture?): {sorted(unused)}")
  params = {"embed": {"embedding": embed}, "layers": layers, "final_norm": {"scale": final_norm},
            "lm_head": {"kernel": lm_head}}
  return params, c


def _set(tree: Params, path: tuple[str, ...], value):
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _get(params: Params, path: tuple[str, ...], shape: tuple[int, ...]) -> np.ndarray:
  node = params
  for key in path:
    if not isinstance(node, Mapping) or key not in node:
      raise ValueError(f"params: no entry {'/'.join(path)}")
    node = node[key]
  w = np.asarray(node, np.float32)
  if w.shape != shape:
    raise ValueError(f"params/{'/'.join(path)}: shape {w.shape}, expected {shape} from the config")
  return w


def hf_config_from_lm(c: Mapping[str, Any], dtype: str,
                      max_position_embeddings: int) -> dict[str, Any]:
  """Our `config.lm` fields -> a `LlamaConfig` dict; rejects what LLaMA can't represent."""
  unsupported = {"qk_norm": False, "rope": "rope_1d", "attention_mask": "causal"}
  for name, llama_value in unsupported.items():
    if c[name] != llama_value:
      raise ValueError(f"config.lm.{name}={c[name]!r}: Hugging Face LLaMA has only "
                       f"{name}={llama_value!r}")
  return {
      "architectures": ["LlamaForCausalLM"],
      "model_type": "llama",
      "vocab_size": c["vocab_size"],
      "hidden_size": c["d_model"],
      "intermediate_size": c["mlp_dim"],
      "num_hidden_layers": c["num_layers"],
      "num_attention_heads": c["num_heads"],
      "num_key_value_heads": c["num_kv_heads"],
      "head_dim": c["head_dim"],
      "hidden_act": "silu",
      "rms_norm_eps": c["norm_eps"],
      # Both spellings: transformers >= 5 reads rope_parameters, older versions rope_theta.
      "rope_theta": c["rope_theta"],
      "rope_parameters": {"rope_type": "default", "rope_theta": c["rope_theta"]},
      "max_position_embeddings": max_position_embeddings,
      "attention_bias": False,
      "mlp_bias": False,
      "tie_word_embeddings": False,
      "dtype": dtype,
  }


def export_hf(params: Params, lm_config, out_dir: str, dtype: str = "float32",
              max_position_embeddings: int = 4096):
  """Write `config.json` + `model.safetensors` that `LlamaForCausalLM.from_pretrained` loads.

  Args:
    params: our plain (unboxed) parameter tree, layout in `llm/transformer.py`.
    lm_config: the `config.lm` fields (a ConfigDict, a dict or an `LMConfig`).
    out_dir: local directory, created if missing; existing files of the same name are replaced.
    dtype: tensor dtype on disk, one of `EXPORT_DTYPES`.
    max_position_embeddings: the context length to advertise (RoPE itself has no limit).
  """
  if dtype not in EXPORT_DTYPES:
    raise ValueError(f"dtype={dtype!r}; expected one of {EXPORT_DTYPES}")
  np_dtype = np.dtype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
  c = dataclasses.asdict(lm_config) if dataclasses.is_dataclass(lm_config) else dict(lm_config)
  hf_config = hf_config_from_lm(c, dtype, max_position_embeddings)
  vocab, d_model, n = c["vocab_size"], c["d_model"], c["num_layers"]
  v_pad = padded_vocab_size(vocab, c["vocab_pad_multiple"])

  embedding = _get(params, ("embed", "embedding"), (v_pad, d_model))
  head = _get(params, ("lm_head", "kernel"), (d_model, v_pad))
  if c.get("video_code_levels"):  # fold digit-factorised video codes into plain tables (exact)
    embedding, head = fold_video_digits(params, c, embedding, head)
  tensors = {
      "model.embed_tokens.weight": embedding[:vocab],
      "lm_head.weight": head[:, :vocab].T,
      "model.norm.weight": _get(params, ("final_norm", "scale"), (d_model,)),
  }
  for path, t in _layer_tensors(c).items():
    stacked = _get(params, ("layers", *path), (n, *t.our_shape))
    for i in range(n):
      tensors[f"model.layers.{i}.{t.hf_name}"] = t.to_hf(stacked[i])
  tensors = {k: np.ascontiguousarray(w.astype(np_dtype)) for k, w in tensors.items()}

  os.makedirs(out_dir, exist_ok=True)
  save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
  with open(os.path.join(out_dir, "config.json"), "w") as fp:
    json.dump(hf_config, fp, indent=2)


def fold_video_digits(params: Params, c: Mapping[str, Any], embedding: np.ndarray,
                      head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The plain `(embedding [V_pad, D], lm_head [D, V_pad])` that a model with
  `video_code_levels` computes (llm/code_digits.py): video rows become their digits' summed rows,
  and the digit logits are added to the head's columns (replace them with `digit_logits_only`)."""
  levels, k = tuple(c["video_code_levels"]), sum(c["video_code_levels"])
  matrix = code_digits.digit_matrix(levels, c["video_offset"], embedding.shape[0])
  table = _get(params, ("video_digits",), (k, embedding.shape[1]))
  digit_head = _get(params, ("video_digits_head", "kernel"), (embedding.shape[1], k))
  is_video = matrix.sum(axis=1, keepdims=True) > 0
  embedding = np.where(is_video, matrix @ table, embedding)
  if c.get("digit_logits_only", False):
    head = np.where(is_video.T, 0.0, head)
  return embedding, head + digit_head @ matrix.T


def save_checkpoint(params: Params, lm_fields: Mapping[str, Any], checkpoint_dir: str):
  """Write `checkpoint_dir/params` (orbax) and `checkpoint_dir/lm_config.json`."""
  checkpoint_dir = os.path.abspath(checkpoint_dir)  # orbax wants absolute paths
  params_dir = os.path.join(checkpoint_dir, "params")
  if os.path.exists(params_dir):
    raise FileExistsError(f"{params_dir} exists; choose another --checkpoint_dir")
  os.makedirs(checkpoint_dir, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(params_dir, params)
  checkpointer.wait_until_finished()
  with open(os.path.join(checkpoint_dir, "lm_config.json"), "w") as fp:
    json.dump(dict(lm_fields), fp, indent=2)


def load_checkpoint(checkpoint_dir: str) -> tuple[Params, dict]:
  """Read what `save_checkpoint` wrote: `(params, lm_fields)`."""
  checkpoint_dir = os.path.abspath(checkpoint_dir)
  with open(os.path.join(checkpoint_dir, "lm_config.json")) as fp:
    lm_fields = json.load(fp)
  params = ocp.StandardCheckpointer().restore(os.path.join(checkpoint_dir, "params"))
  return params, lm_fields


def _define_flags():
  flags.DEFINE_enum("direction", None, ["import", "export"],
                    "import: HF directory -> our checkpoint; export: the reverse.")
  flags.DEFINE_string("hf_dir", None, "Hugging Face LlamaForCausalLM directory (local).")
  flags.DEFINE_string("checkpoint_dir", None,
                      "Our side: params/ (orbax) + lm_config.json.")
  flags.DEFINE_integer("vocab_pad_multiple", 128, "import: pad the vocabulary to a multiple.")
  flags.DEFINE_enum("dtype", "float32", list(EXPORT_DTYPES), "export: tensor dtype on disk.")
  flags.DEFINE_integer("max_position_embeddings", 4096,
                       "export: context length written to config.json.")
  flags.mark_flags_as_required(["direction", "hf_dir", "checkpoint_dir"])


def main(argv):
  del argv
  f = flags.FLAGS
  if f.direction == "import":
    params, lm_fields = import_hf(f.hf_dir, f.vocab_pad_multiple)
    save_checkpoint(params, lm_fields, f.checkpoint_dir)
    logging.info("wrote %s (lm fields: %s)", f.checkpoint_dir, lm_fields)
  else:
    params, lm_fields = load_checkpoint(f.checkpoint_dir)
    export_hf(params, lm_fields, f.hf_dir, f.dtype, f.max_position_embeddings)
    logging.info("wrote %s", f.hf_dir)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
