"""KV-cached autoregressive decoding: one prefill, then one jit-compiled `lax.scan` over the cache.

    decoder = Decoder(model, vocab, SamplingConfig(top_k=50), mesh=mesh, rules=rules)
    plan = frame_plan(vocab, num_frames=5, tokens_per_frame=256)
    ids = decoder(params, [prompt_ids(vocab, text)], plan, key)   # [B, len(plan)] int32

A `Plan` says, for every generated slot, whether its token is forced (`<boi>`, `<eoi>`, `<eov>` at
their fixed places, so the frame structure cannot break) or sampled, and whether sampling is
restricted to the video ids (inside a latent frame). The plan is an array input, not a static
argument: every plan of one length shares one compiled program.

Prompts of different lengths are left-padded (`input_mask` False, never attended) with
per-example positions, so each prompt's real tokens sit at positions 0, 1, ... as in training and
every row writes its next token into the same cache slot. With classifier-free guidance the model
batch is `2B`: the conditional prompts, then the unconditional ones (`<no_text>` instead of the
text); both rows of a pair continue with the token sampled from the guided logits.

The compiled program is cached by `jax.jit` on (model, sampling config, shapes, shardings): a
second call with the same shapes does not recompile.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from loong_jax import sharding as sharding_lib
from loong_jax import tokens as tokens_lib
from loong_jax.inference import sampling as sampling_lib
from loong_jax.llm import transformer


class Plan(NamedTuple):
  """Per generated slot: `forced [T]` int32 (the id to place, -1 = sample) and `video_only [T]`
  bool (sample only video ids)."""

  forced: np.ndarray
  video_only: np.ndarray


def frame_plan(vocab: tokens_lib.Vocab, num_frames: int, tokens_per_frame: int,
               end_video: bool = True) -> Plan:
  """`[<boi> N video ids <eoi>] x num_frames` (then `<eov>` when `end_video`)."""
  frame = np.concatenate([[vocab.boi], np.full(tokens_per_frame, -1), [vocab.eoi]])
  forced = np.concatenate([np.tile(frame, num_frames), [vocab.eov] if end_video else []])
  return Plan(forced.astype(np.int32), forced < 0)


def free_plan(num_tokens: int) -> Plan:
  """Sample every slot from the whole vocabulary (plain LM decoding, e.g. for benchmarks)."""
  return Plan(np.full(num_tokens, -1, np.int32), np.zeros(num_tokens, bool))


def prompt_ids(vocab: tokens_lib.Vocab, text_ids=None, cond_codes=None) -> np.ndarray:
  """`<bos> text <bov> [<boi> codes <eoi>] x n`, the head of a training sequence.

  Args:
    vocab: the id layout.
    text_ids: `[N_text]` text ids; None or empty gives `<no_text>`, the unconditional prompt
      (as the data pipeline's text dropout builds it).
    cond_codes: optional `[n, h, w]` or `[n, N]` video codes of the frames to continue from.
  Returns:
    `[P]` int32.
  """
  text = np.asarray([] if text_ids is None else text_ids, np.int32).reshape(-1)
  if text.size and not np.all(vocab.is_text(text)):
    raise ValueError(f"prompt_ids: text ids must lie in [0, {vocab.text_size})")
  head = [[vocab.bos], text if text.size else [vocab.no_text], [vocab.bov]]
  if cond_codes is not None:
    codes = np.asarray(cond_codes)
    frames = vocab.video_to_tokens(codes.reshape(codes.shape[0], -1))
    body = np.concatenate([np.full((len(frames), 1), vocab.boi), frames,
                           np.full((len(frames), 1), vocab.eoi)], axis=1)
    head.append(body.reshape(-1))
  return np.concatenate(head).astype(np.int32)


def left_pad(prompts: Sequence[np.ndarray], pad_id: int, multiple: int = 1):
  """Stack prompts right-aligned: `(tokens [R, P] int32, mask [R, P] bool)`, P a multiple of
  `multiple` (so nearby prompt lengths share one compiled program)."""
  longest = max(len(p) for p in prompts)
  width = -(-longest // multiple) * multiple
  tokens = np.full((len(prompts), width), pad_id, np.int32)
  mask = np.zeros((len(prompts), width), bool)
  for i, p in enumerate(prompts):
    tokens[i, width - len(p):] = p
    mask[i, width - len(p):] = True
  return tokens, mask


def _last_position_logits(next_fun, args, kwargs, context):
  # Prefill needs only the last prompt position's logits. The Transformer projects every position
  # onto the vocabulary, and XLA does not push the later slice into that matmul; cutting the
  # lm_head input saves a [B, P, D] x [D, V] product (a third of prefill FLOPs for `bench`).
  if context.module.name == "lm_head" and context.method_name == "__call__":
    args = (args[0][:, -1:],) + tuple(args[1:])
  return next_fun(*args, **kwargs)


@functools.partial(jax.jit,
                   static_argnames=("model", "sampling", "video_range", "return_logits"))
def _generate(params, tokens, mask, forced, video_only, key, *, model, sampling, video_range,
              return_logits):
  """Prefill `tokens [R, P]` then run the plan. Returns `ids [B, T]` (and `logits [B, T, V]`)."""
  rows, prompt_len = tokens.shape
  steps = forced.shape[0]
  batch = rows // 2 if sampling.guided else rows
  positions = jnp.maximum(jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1, 0)
  lengths = jnp.sum(mask, axis=1, dtype=jnp.int32)
  # The last sampled token is never fed back, hence `steps - 1` slots after the prompt.
  cache = transformer.init_cache(model, rows, prompt_len + steps - 1)
  with nn.intercept_methods(_last_position_logits):
    logits, state = model.apply({"params": params, "cache": cache}, tokens, positions=positions,
                                input_mask=mask, decode=True, mutable=["cache"])

  def choose(row_logits, t):
    """`[R, V]` logits of slot t -> (token `[B]`, the logits it was drawn from `[B, V]`)."""
    logits = row_logits[:batch]
    if sampling.guided:
      logits = sampling_lib.guide(logits, row_logits[batch:], sampling.guidance_scale)
    logits = jnp.where(video_only[t], sampling_lib.restrict_to_range(logits, *video_range),
                       logits)
    sampled = sampling_lib.sample(logits, jax.random.fold_in(key, t), sampling)
    return jnp.where(forced[t] >= 0, forced[t], sampled), logits

  def step(carry, t):
    cache, row_logits = carry
    token, used = choose(row_logits, t)
    fed = jnp.tile(token, rows // batch)[:, None]
    logits, state = model.apply({"params": params, "cache": cache}, fed,
                                positions=(lengths + t)[:, None], decode=True, mutable=["cache"])
    return (state["cache"], logits[:, -1]), (token, used if return_logits else None)

  (_, row_logits), (ids, used) = jax.lax.scan(
      step, (state["cache"], logits[:, -1]), jnp.arange(steps - 1, dtype=jnp.int32))
  last, last_used = choose(row_logits, steps - 1)
  ids = jnp.concatenate([ids, last[None]], axis=0).T
  if not return_logits:
    return ids
  return ids, jnp.concatenate([used, last_used[None]], axis=0).transpose(1, 0, 2)


def param_shardings(model: transformer.Transformer, mesh, rules):
  """`NamedSharding`s of the model's parameters from their logical axis names."""
  boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32)))
  return sharding_lib.logical_to_sharding(nn.get_partition_spec(boxed["params"]), mesh, rules)


class Decoder:
  """Batched, optionally sharded, KV-cached generation for one model and sampling config.

  Args:
    model: the `Transformer` (its config decides the shapes).
    vocab: the id layout (video range, `<pad>`).
    sampling: temperature / top-k / top-p / guidance.
    mesh, rules: optional device mesh and logical-axis rules; with them the batch is split over
      ('data', 'fsdp') and heads over 'tensor', exactly as in training.
    prompt_multiple: prompt widths are rounded up to this, so prompts of nearby lengths reuse one
      compiled program.
  """

  def __init__(self, model: transformer.Transformer, vocab: tokens_lib.Vocab,
               sampling: sampling_lib.SamplingConfig, mesh=None, rules=(),
               prompt_multiple: int = 16):
    # Token-by-token sampling feeds 1D positions and no frame ids: the Lumos options need
    # per-slot 3D positions (MM-RoPE) or parallel in-frame decoding (frame-bidirectional mask).
    for field, supported in (("rope", "rope_1d"), ("attention_mask", "causal")):
      if getattr(model.config, field) != supported:
        raise ValueError(f"config.lm.{field}={getattr(model.config, field)!r}: the KV-cached "
                         f"decoder supports only {supported!r}")
    self.model, self.vocab, self.sampling = model, vocab, sampling
    self.mesh, self.rules, self.prompt_multiple = mesh, rules, prompt_multiple

  def place_params(self, params):
    """Put (unboxed) params on the mesh with their training shardings; identity without a mesh."""
    if self.mesh is None:
      return params
    return jax.device_put(params, param_shardings(self.model, self.mesh, self.rules))

  def __call__(self, params, prompts: Sequence[np.ndarray], plan: Plan, key: jax.Array,
               uncond_prompts: Sequence[np.ndarray] | None = None, return_logits: bool = False):
    """Generate `len(plan)` tokens after each prompt.

    Args:
      params: LM parameters (placed with `place_params` when a mesh is used).
      prompts: B prompts, `[P_b]` int32 each (see `prompt_ids`).
      plan: what each generated slot holds.
      key: PRNG key; the same key, prompts and plan give the same tokens.
      uncond_prompts: B unconditional prompts, required when guidance is on.
      return_logits: also return the (guided, restricted) logits each token was drawn from.
    Returns:
      `ids [B, T]` int32 numpy (and `logits [B, T, V_pad]` float32).
    """
    batch = len(prompts)
    rows = list(prompts)
    if self.sampling.guided:
      if uncond_prompts is None or len(uncond_prompts) != batch:
        raise ValueError(f"guidance_scale={self.sampling.guidance_scale} needs one unconditional "
                         f"prompt per prompt ({batch})")
    # Fill the batch up to a multiple of the batch-sharding mesh axes with copies of prompt 0.
    split = 1 if self.mesh is None else self.mesh.shape["data"] * self.mesh.shape["fsdp"]
    padded = -(-batch // split) * split
    rows += [rows[0]] * (padded - batch)
    if self.sampling.guided:
      uncond = list(uncond_prompts)
      rows += uncond + [uncond[0]] * (padded - batch)
    tokens, mask = left_pad(rows, self.vocab.pad, self.prompt_multiple)
    args = (tokens, mask, plan.forced, plan.video_only)
    kwargs = dict(model=self.model, sampling=self.sampling, return_logits=return_logits,
                  video_range=(self.vocab.video_offset, self.vocab.special_offset))
    if self.mesh is None:
      out = _generate(params, *args, key, **kwargs)
    else:
      with sharding_lib.mesh_context(self.mesh, self.rules):
        batched = sharding_lib.batch_sharding(self.mesh, 2)
        args = (jax.device_put(tokens, batched), jax.device_put(mask, batched),
                *args[2:])
        out = _generate(params, *args, key, **kwargs)
    out = jax.device_get(out)
    if return_logits:
      return out[0][:batch], out[1][:batch]
    return out[:batch]
