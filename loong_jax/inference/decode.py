"""KV-cached autoregressive decoding: one prefill, then one jit-compiled `lax.scan` over the cache.

    decoder = Decoder(model, vocab, SamplingConfig(top_k=50), mesh=mesh, rules=rules)
    plan = frame_plan(vocab, num_frames=5, tokens_per_frame=256, frame_width=16)
    ids = decoder(params, [prompt_ids(vocab, text)], plan, key)   # [B, len(plan)] int32

A `Plan` says, for every generated slot, whether its token is forced (`<boi>`, `<eoi>`, `<eov>` at
their fixed places, so the frame structure cannot break) or sampled, and whether sampling is
restricted to the video ids (inside a latent frame). The plan is an array input, not a static
argument: every plan of one length shares one compiled program.

Prompts of different lengths are left-padded (`input_mask` False, never attended) with
per-example positions, so each prompt's real tokens sit at positions 0, 1, ... as in training and
every row writes its next token into the same cache slot. Rotary positions of the whole planned
sequence (prompt + plan) are computed once on the host by the training helpers (`layout`): the
slot index for 1D RoPE, `tokens.mm_rope_positions` of the planned layout for MM-RoPE, so a model
trained with MM-RoPE and causal attention is sampled with the positions it was trained on. With classifier-free guidance the model
batch is `2B`: the conditional prompts, then the unconditional ones (`<no_text>` instead of the
text); both rows of a pair continue with the token sampled from the guided logits.

Composed conditioning [ours] generalises the pair to K branches of B prompts each, sampled from
the weighted sum of their logits `sum_k w_k logits_k` (weights summing to 1: the branch-0 prompts
get `1 - sum(others)`); classifier-free guidance is the case `[(1 - g, uncond)]`. With the
prompt's parts as branches (e.g. the caption without its shape word, without its colour word,
without both, weights 1, 1, -1) this is a product of experts, `p(x | a) p(x | b) / p(x)`: the
posterior of an image given two attributes that the image determines, which also holds for
combinations that training never showed (Liu et al. 2022, "Compositional Visual Generation with
Composable Diffusion Models").

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
  bool (sample only video ids); `frame_width`: video ids per row of a latent frame, needed for
  MM-RoPE positions (0 = no frames in the plan); `logit_scale [T]` float32 or None: the slot's
  (guided) logits are multiplied by it before sampling, so it samples at `temperature / scale`
  (None: 1 everywhere), e.g. a lower temperature for the latent frames after the first."""

  forced: np.ndarray
  video_only: np.ndarray
  frame_width: int = 0
  logit_scale: np.ndarray | None = None

  def scales(self) -> np.ndarray:
    """`[T]` float32 logit scales (ones when `logit_scale` is None)."""
    if self.logit_scale is None:
      return np.ones(len(self.forced), np.float32)
    scale = np.asarray(self.logit_scale, np.float32)
    if scale.shape != self.forced.shape or not (scale > 0).all():
      raise ValueError(f"Plan.logit_scale must be {self.forced.shape} positive floats; got "
                       f"shape {scale.shape}, min {scale.min() if scale.size else None}")
    return scale


def frame_plan(vocab: tokens_lib.Vocab, num_frames: int, tokens_per_frame: int,
               end_video: bool = True, frame_width: int | None = None,
               frame_scales: Sequence[float] | None = None) -> Plan:
  """`[<boi> N video ids <eoi>] x num_frames` (then `<eov>` when `end_video`).

  `frame_width` (ids per row of a frame) defaults to `sqrt(N)`, for square frames.
  `frame_scales`: one logit scale per frame (`Plan.logit_scale`); None: 1.
  """
  if frame_width is None:
    frame_width = int(np.sqrt(tokens_per_frame))
    if frame_width**2 != tokens_per_frame:
      raise ValueError(f"frame_plan: {tokens_per_frame} tokens per frame is not a square; pass "
                       "frame_width")
  if tokens_per_frame % frame_width:
    raise ValueError(f"frame_plan: frame_width={frame_width} does not divide "
                     f"tokens_per_frame={tokens_per_frame}")
  frame = np.concatenate([[vocab.boi], np.full(tokens_per_frame, -1), [vocab.eoi]])
  forced = np.concatenate([np.tile(frame, num_frames), [vocab.eov] if end_video else []])
  scale = None
  if frame_scales is not None:
    if len(frame_scales) != num_frames:
      raise ValueError(f"frame_plan: {len(frame_scales)} frame_scales for {num_frames} frames")
    per_frame = np.repeat(np.asarray(frame_scales, np.float32), len(frame))
    scale = np.concatenate([per_frame, np.ones(len(forced) - len(per_frame), np.float32)])
  return Plan(forced.astype(np.int32), forced < 0, frame_width, scale)


def frame_codes(ids: np.ndarray, vocab: tokens_lib.Vocab, num_frames: int, h: int,
                w: int) -> np.ndarray:
  """Generated ids of a `frame_plan` `[B, T]` -> video codes `[B, num_frames, h, w]`."""
  body = ids[:, : num_frames * (h * w + 2)].reshape(len(ids), num_frames, h * w + 2)
  return vocab.tokens_to_video(body[:, :, 1:-1]).reshape(len(ids), num_frames, h, w)


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


class Layout(NamedTuple):
  """A left-padded batch and its planned continuation, as the jitted decoders take it.

  `tokens [R, P]` int32 and `mask [R, P]` bool: the prompts, right-aligned. `positions
  [R, P + T]` (or `[R, P + T, 3]` for MM-RoPE) and `frames [R, P + T]` (latent frame of each
  slot, -1 outside frames): the rotary positions and frame ids of every prompt and plan slot.
  `prev_source [R, P + T]` (`prev_frame` layouts only, else None): for each slot, the slot whose
  id the model gets as its previous-frame input (`tokens.previous_frame_source`), -1 for none;
  `[R, P + T, (2r + 1)**2]`, the slots of its neighbourhood, for `prev_radius` r > 0.
  """

  tokens: np.ndarray
  mask: np.ndarray
  positions: np.ndarray
  frames: np.ndarray
  prev_source: np.ndarray | None = None


def layout(vocab: tokens_lib.Vocab, prompts: Sequence[np.ndarray], plan: Plan, rope: str,
           multiple: int = 1, prev_frame: bool = False, prev_radius: int = 0) -> Layout:
  """Left-pad `prompts` and lay out each row's whole planned sequence with the training helpers.

  The planned sequence is the prompt followed by the plan, its sampled video slots standing for
  video ids (only the layout matters: `tokens.frame_index` and `tokens.mm_rope_positions` look at
  where frames and video ids are, not at which ids they are). Slots sampled from the whole
  vocabulary are laid out as text.
  """
  tokens, mask = left_pad(prompts, vocab.pad, multiple)
  width = tokens.shape[1]
  filler = np.where(plan.forced >= 0, plan.forced,
                    np.where(plan.video_only, vocab.video_offset, vocab.pad)).astype(np.int32)
  total = width + len(filler)
  positions = np.zeros((len(prompts), total) + ((3,) if rope == "mm_rope" else ()), np.int32)
  frames = np.full((len(prompts), total), -1, np.int32)
  prev_source = (np.full((len(prompts), total) + tokens_lib.neighbourhood_shape(prev_radius), -1,
                         np.int32) if prev_frame else None)
  for i, p in enumerate(prompts):
    seq = np.concatenate([p, filler])
    if rope == "mm_rope":
      if not plan.frame_width and plan.video_only.any():
        raise ValueError("MM-RoPE decoding needs the plan's frame_width (frame_plan(..., "
                         "frame_width=w))")
      pos = tokens_lib.mm_rope_positions(seq, vocab, max(plan.frame_width, 1))
    else:
      pos = np.arange(len(seq), dtype=np.int32)
    positions[i, total - len(seq):] = pos
    frames[i, total - len(seq):] = tokens_lib.frame_index(seq, vocab)
    if prev_frame:
      source = tokens_lib.previous_frame_source(seq, vocab, plan.frame_width, prev_radius)
      prev_source[i, total - len(seq):] = np.where(source >= 0, source + total - len(seq), -1)
  return Layout(tokens, mask, positions, frames, prev_source)


def last_position_logits(next_fun, args, kwargs, context):
  """`nn.intercept_methods` hook for a prefill that needs only the last position's logits."""
  # Prefill needs only the last prompt position's logits. The Transformer projects every position
  # onto the vocabulary, and XLA does not push the later slice into that matmul; cutting the
  # lm_head input saves a [B, P, D] x [D, V] product (a third of prefill FLOPs for `bench`).
  if context.module.name == "lm_head" and context.method_name == "__call__":
    args = (args[0][:, -1:],) + tuple(args[1:])
  return next_fun(*args, **kwargs)


@functools.partial(jax.jit, static_argnames=("model", "sampling", "video_range", "return_logits",
                                             "weights"))
def _generate(params, tokens, mask, positions, prev_source, forced, video_only, logit_scale, key,
              *, model, sampling, video_range, return_logits, weights):
  """Prefill `tokens [R, P]` then run the plan; `positions [R, P + T(, 3)]` and `prev_source
  [R, P + T]` or None (`layout`). `R = K * B` rows, K = len(weights) branches whose logits are
  combined with `weights` (module docstring). Returns `ids [B, T]` (and `logits [B, T, V]`)."""
  rows, prompt_len = tokens.shape
  steps = forced.shape[0]
  batch = rows // len(weights)
  # Every slot's id so far, for the previous-frame inputs (`prev_frame_input` models).
  history = None
  if prev_source is not None:
    history = jnp.concatenate([tokens, jnp.zeros((rows, steps), tokens.dtype)], axis=1)

  def prev_ids(history, slots):
    """`[R, len(slots)]` previous-frame inputs of `slots`, read from `history` (None: unused)."""
    if history is None:
      return None
    source = prev_source[:, slots]  # [R, n] or [R, n, K] (a neighbourhood)
    flat = jnp.maximum(source, 0).reshape(rows, -1)
    read = jnp.take_along_axis(history, flat, axis=1).reshape(source.shape)
    return jnp.where(source >= 0, read, -1)

  # The last sampled token is never fed back, hence `steps - 1` slots after the prompt.
  cache = transformer.init_cache(model, rows, prompt_len + steps - 1)
  with nn.intercept_methods(last_position_logits):
    logits, state = model.apply({"params": params, "cache": cache}, tokens,
                                positions=positions[:, :prompt_len], input_mask=mask,
                                decode=True, mutable=["cache"],
                                prev_ids=prev_ids(history, jnp.arange(prompt_len)))

  def choose(row_logits, t):
    """`[R, V]` logits of slot t -> (token `[B]`, the logits it was drawn from `[B, V]`)."""
    logits = row_logits[:batch]
    if len(weights) > 1:  # guidance (`sampling_lib.guide`) or composed conditioning
      logits = sum(w * row_logits[k * batch:(k + 1) * batch] for k, w in enumerate(weights))
    logits = jnp.where(video_only[t], sampling_lib.restrict_to_range(logits, *video_range),
                       logits)
    sampled = sampling_lib.sample(logits * logit_scale[t], jax.random.fold_in(key, t), sampling)
    return jnp.where(forced[t] >= 0, forced[t], sampled), logits

  def step(carry, slot):
    cache, row_logits, history = carry
    t, position = slot
    token, used = choose(row_logits, t)
    fed = jnp.tile(token, rows // batch)[:, None]
    if history is not None:
      history = jax.lax.dynamic_update_slice(history, fed, (0, prompt_len + t))
    logits, state = model.apply({"params": params, "cache": cache}, fed,
                                positions=position[:, None], decode=True, mutable=["cache"],
                                prev_ids=prev_ids(history, (prompt_len + t)[None]))
    return (state["cache"], logits[:, -1], history), (token, used if return_logits else None)

  fed_positions = jnp.moveaxis(positions[:, prompt_len:prompt_len + steps - 1], 1, 0)
  (_, row_logits, _), (ids, used) = jax.lax.scan(
      step, (state["cache"], logits[:, -1], history),
      (jnp.arange(steps - 1, dtype=jnp.int32), fed_positions))
  last, last_used = choose(row_logits, steps - 1)
  ids = jnp.concatenate([ids, last[None]], axis=0).T
  if not return_logits:
    return ids
  return ids, jnp.concatenate([used, last_used[None]], axis=0).transpose(1, 0, 2)


@functools.partial(jax.jit, static_argnames=("model", "video_range"))
def _video_log_likelihood(params, inputs, targets, scored, positions, frame_ids, prev_ids, *,
                          model, video_range):
  """Teacher-forced `[R]` sum of `log p(target)` over the `scored [R, L]` targets of `inputs
  [R, L]` (the model's logits restricted to the video range, as frame slots are sampled)."""
  logits = model.apply({"params": params}, inputs, positions, frame_ids=frame_ids,
                       prev_ids=prev_ids)
  logp = jax.nn.log_softmax(sampling_lib.restrict_to_range(logits, *video_range), axis=-1)
  picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  return jnp.where(scored, picked, 0.0).sum(axis=-1)


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
    self.check_model(model.config)
    self.model, self.vocab, self.sampling = model, vocab, sampling
    self.mesh, self.rules, self.prompt_multiple = mesh, rules, prompt_multiple

  @staticmethod
  def check_model(config: transformer.LMConfig):
    """Token-by-token sampling suits causal models (1D RoPE or MM-RoPE)."""
    if config.attention_mask != "causal":
      raise ValueError(f"config.lm.attention_mask={config.attention_mask!r}: a model that sees "
                       "its whole latent frame is sampled frame by frame with the masked "
                       "decoder (inference.decoder='masked', inference/masked_decode.py); the "
                       "token-by-token decoder supports only 'causal'")

  def place_params(self, params):
    """Put (unboxed) params on the mesh with their training shardings; identity without a mesh."""
    if self.mesh is None:
      return params
    return jax.device_put(params, param_shardings(self.model, self.mesh, self.rules))

  def branches(self, prompts: Sequence[np.ndarray], uncond_prompts: Sequence[np.ndarray] | None,
               branches: Sequence[tuple[float, Sequence[np.ndarray]]] | None = None,
               ) -> tuple[list[list[np.ndarray]], tuple[float, ...]]:
    """The K prompt lists whose logits are combined, and their K weights (module docstring):
    `prompts` alone; with guidance `prompts` and `uncond_prompts`, weights `(g, 1 - g)`; with
    `branches` (`[(weight, B prompts)]`, composed conditioning) `prompts` weighted
    `1 - sum(weights)`, then each branch."""
    batch = len(prompts)
    if branches:
      if self.sampling.guided:
        raise ValueError(f"guidance_scale={self.sampling.guidance_scale} with composed branches: "
                         "give the unconditional prompts as a branch of weight 1 - g instead")
      for weight, rows in branches:
        if len(rows) != batch or not np.isfinite(weight):
          raise ValueError(f"a composed branch needs one prompt per prompt ({batch}) and a "
                           f"finite weight; got {len(rows)} prompts, weight {weight}")
      return ([list(prompts)] + [list(rows) for _, rows in branches],
              (1.0 - sum(float(w) for w, _ in branches),) + tuple(float(w) for w, _ in branches))
    if self.sampling.guided:
      if uncond_prompts is None or len(uncond_prompts) != batch:
        raise ValueError(f"guidance_scale={self.sampling.guidance_scale} needs one unconditional "
                         f"prompt per prompt ({batch})")
      g = self.sampling.guidance_scale
      return [list(prompts), list(uncond_prompts)], (g, 1.0 - g)
    return [list(prompts)], (1.0,)

  def batch_layout(self, prompts: Sequence[np.ndarray], plan: Plan,
                   uncond_prompts: Sequence[np.ndarray] | None,
                   branches: Sequence[tuple[float, Sequence[np.ndarray]]] | None = None) -> Layout:
    """The model batch: each branch's prompts (`branches`: the prompts, then with guidance as
    many unconditional rows, or the composed branches) filled up to a multiple of the
    batch-sharding mesh axes with copies of its prompt 0."""
    lists, _ = self.branches(prompts, uncond_prompts, branches)
    split = 1 if self.mesh is None else self.mesh.shape["data"] * self.mesh.shape["fsdp"]
    padded = -(-len(prompts) // split) * split
    rows = [p for part in lists for p in part + [part[0]] * (padded - len(part))]
    return layout(self.vocab, rows, plan, self.model.config.rope, self.prompt_multiple,
                  prev_frame=self.model.config.prev_frame_input,
                  prev_radius=self.model.config.prev_frame_radius)

  def run(self, program, params, rows: Sequence[np.ndarray], *args, **kwargs):
    """`program(params, *rows, *args, **kwargs)` as host arrays; on the mesh, with the `[R, ...]`
    row arrays batch-sharded, when there is one."""
    if self.mesh is None:
      return jax.device_get(program(params, *rows, *args, **kwargs))
    with sharding_lib.mesh_context(self.mesh, self.rules):
      rows = [None if x is None else
              jax.device_put(x, sharding_lib.batch_sharding(self.mesh, x.ndim)) for x in rows]
      return jax.device_get(program(params, *rows, *args, **kwargs))

  def log_likelihood(self, params, prompts: Sequence[np.ndarray], frames: np.ndarray,
                     frame_width: int | None = None):
    """Teacher-forced `log p(frame | prompt)` (nats) of one latent frame after each prompt.

    Args:
      params: LM parameters (placed with `place_params` when a mesh is used).
      prompts: R prompts, `[P_r]` int32 each (`prompt_ids`, context frames allowed).
      frames: `[R, N]` video codes, one latent frame per prompt.
      frame_width: ids per row of a frame (MM-RoPE and previous-frame layouts); None: sqrt(N).
    Returns:
      `[R]` float32: the sum over the frame's N ids of their log-probabilities, each among the
      video ids (as a frame slot is sampled), at temperature 1 and without guidance.
    """
    frames = np.asarray(frames)
    if frames.ndim != 2 or len(frames) != len(prompts):
      raise ValueError(f"log_likelihood: frames must be [{len(prompts)}, N] codes, got shape "
                       f"{frames.shape}")
    v = self.vocab
    seqs = [np.concatenate([p, [v.boi], v.video_to_tokens(f), [v.eoi]]).astype(np.int32)
            for p, f in zip(prompts, frames)]
    split = 1 if self.mesh is None else self.mesh.shape["data"] * self.mesh.shape["fsdp"]
    rows = -(-len(seqs) // split) * split
    width = -(-max(len(s) for s in seqs) // self.prompt_multiple) * self.prompt_multiple + 1
    # Right-padded: with causal attention the trailing <pad>s change nothing before them.
    batch = np.full((rows, width), v.pad, np.int32)
    scored = np.zeros((rows, width - 1), bool)  # the targets of the scored frame's ids only
    for i, (s, p) in enumerate(zip(seqs, prompts)):
      batch[i, :len(s)] = s
      scored[i, len(p):len(p) + frames.shape[1]] = True
    batch[len(seqs):] = batch[0]
    inputs, targets = batch[:, :-1], batch[:, 1:]
    layout = transformer.sequence_inputs(self.model.config, inputs, v,
                                         frame_width or int(np.sqrt(frames.shape[1])))
    out = self.run(_video_log_likelihood, params,
                   [inputs, targets, scored, layout["positions"], layout["frame_ids"],
                    layout["prev_ids"]],
                   model=self.model, video_range=(v.video_offset, v.special_offset))
    return np.asarray(out, np.float32)[:len(seqs)]

  def __call__(self, params, prompts: Sequence[np.ndarray], plan: Plan, key: jax.Array,
               uncond_prompts: Sequence[np.ndarray] | None = None, return_logits: bool = False,
               branches: Sequence[tuple[float, Sequence[np.ndarray]]] | None = None):
    """Generate `len(plan)` tokens after each prompt.

    Args:
      params: LM parameters (placed with `place_params` when a mesh is used).
      prompts: B prompts, `[P_b]` int32 each (see `prompt_ids`).
      plan: what each generated slot holds.
      key: PRNG key; the same key, prompts and plan give the same tokens.
      uncond_prompts: B unconditional prompts, required when guidance is on.
      return_logits: also return the (guided, restricted) logits each token was drawn from.
      branches: composed conditioning (module docstring), `[(weight, B prompts)]`; `prompts`
        get weight `1 - sum(weights)`. Not with guidance (it is the branch `(1 - g, uncond)`).
    Returns:
      `ids [B, T]` int32 numpy (and `logits [B, T, V_pad]` float32).
    """
    _, weights = self.branches(prompts, uncond_prompts, branches)
    rows = self.batch_layout(prompts, plan, uncond_prompts, branches)
    out = self.run(_generate, params, rows[:3] + (rows.prev_source,), plan.forced,
                   plan.video_only, plan.scales(), key,
                   model=self.model, sampling=self.sampling, return_logits=return_logits,
                   video_range=(self.vocab.video_offset, self.vocab.special_offset),
                   weights=weights)
    batch = len(prompts)
    if return_logits:
      return out[0][:batch], out[1][:batch]
    return out[:batch]
