"""The CPU demo's LM diagnostics (`demo_steps.evaluate` writes them to RUN/lm_eval.json):

  * `text_gap_by_stage.stage{k}` and `text_gap` (stage 3): does each stage's LM read the prompt's
    colour, shape and motion words (`loong_jax/eval/text_gap.py`)? A later stage that forgets
    what an earlier one learnt shows here, where its frame-0 training loss hides it.
  * `continuation` (stage 3): does the LM start the object in the frame after two true latent
    frames (`loong_jax/eval/continuation.py`)? Its `prompted_move`: after the true frame 0
    alone, does it draw frame 1's object where the motion word moves it (moving clips only)?
  * `motion_effect` (stage 3): does the motion word change the latent frame 1 it draws after a
    true frame 0 (`loong_jax/eval/motion_effect.py`)?
  * `edge_rest` (stage 3): does it stop a moving object at the frame's edge, as the long clips
    do (`loong_jax/eval/edge_rest.py`, on `config.evaluate.edge_rest_clips` held-out clips of
    `config.evaluate.edge_rest_frames` frames)?
  * `first_frames` (stage 3): attribute binding (`loong_jax/eval/binding.py`): the prompted
    colour and shape in first frames drawn from the faithfulness prompts, with the full caption
    and without its shape or colour word (`config.evaluate.first_frame_samples` per prompt).
  * `tokenizer_codes` (reported as tokenizer.codes.*): `shift_invariance` (do an object's codes
    move with it?), `roundtrip` (does long-video re-encoding give back the codes it decoded,
    `loong_jax/eval/roundtrip.py`, with the generation's codec?) and `digit_information` (does
    colour sit in FSQ digits apart from shape? `loong_jax/eval/codes.py`; digit codes only).

Measured on `config.evaluate.text_gap_items` held-out images and 17-frame clips, encoded with the
run's video encoder (learned or oracle) and text model. Skipped for the AR-DF variant (its loss
is not next-token prediction).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable

import jax
import numpy as np

from loong_jax import demo_codec, demo_prompts, demo_steps, generate as generate_lib, tokens
from loong_jax import sharding as sharding_lib
from loong_jax.data import synthetic, text as text_lib, video_io
from loong_jax.eval import binding, blocks, codes, continuation, edge_rest, motion_effect
from loong_jax.eval import objects
from loong_jax.eval import probe, roundtrip
from loong_jax.eval import shift_invariance, text_gap
from loong_jax.inference import decode, sampling
from loong_jax.llm import transformer


@dataclasses.dataclass(frozen=True)
class StageLM:
  """One stage's trained LM and what the diagnostics feed it."""
  stage: object                       # the stage's training config (demo_steps.lm_stage_config)
  vocab: tokens.Vocab
  model: transformer.Transformer
  params: object
  logits_fn: text_gap.LogitsFn
  encode_video: Callable              # float [B, T, H, W, 3] in [-1, 1] -> codes [B, t, h, w]
  encode_text: Callable               # str -> [N] text ids
  mesh: object
  rules: tuple


def load_stage_lm(config, run: str, stage_number: int) -> StageLM:
  """The final LM of curriculum stage `stage_number` of the demo run `run`."""
  stage = demo_steps.lm_stage_config(config, run, stage_number)
  vocab = tokens.Vocab(stage.vocab.text_size, stage.vocab.video_size)
  mesh, rules = sharding_lib.make_mesh(stage.mesh), sharding_lib.rules(stage.sharding)
  model = transformer.Transformer(transformer.LMConfig.from_config(stage.lm))
  params = generate_lib.restore_params(os.path.join(run, "lm", f"stage{stage_number}"), model,
                                       mesh, rules)
  logits_fn = text_gap.model_logits(model, params, vocab, config.pretokenize.batch_size,
                                    stage.data.frame_width, mesh, rules)
  encode_video = demo_codec.video_encoder(config, run, vocab.video_size)  # the LM's codes
  text_model = text_lib.TextTokenizer(os.path.join(run, "text.model"))
  return StageLM(stage, vocab, model, params, logits_fn, encode_video, text_model.encode, mesh,
                 rules)


def held_out_clips(config):
  """The held-out 17-frame clips of the diagnostics (4n items: clips whose motion has no
  opposite to swap to are passed over by the text gap)."""
  return demo_steps.synthetic_source(config, (17,), 4 * config.evaluate.text_gap_items, "heldout")


def lm_text_gap(config, lm: StageLM, stage_number: int) -> dict:
  """`loong_jax.eval.text_gap.measure` of `lm` on held-out images and 17-frame clips."""
  n = config.evaluate.text_gap_items
  out = text_gap.measure(lm.logits_fn, lm.vocab, lm.encode_video, lm.encode_text,
                         demo_steps.synthetic_source(config, (1,), 4 * n, "heldout"),
                         held_out_clips(config), n, lm.stage.data.max_text_len,
                         config.pretokenize.batch_size)
  print(f"evaluate: text gap of stage {stage_number} on {n} held-out items: colour "
        f"{out['color']:.3f} nats, shape {out['shape']:.3f} nats, motion {out['motion']:.3f} "
        f"nats (latent frame 1: {out['motion_frame1']:.3f})", flush=True)
  return out


def lm_continuation(config, lm: StageLM) -> dict:
  """`loong_jax.eval.continuation.measure` of `lm` on held-out 17-frame clips: does it start the
  object in the frame after 2 true latent frames?"""
  n, batch = config.evaluate.text_gap_items, config.pretokenize.batch_size
  clips = held_out_clips(config)
  videos = np.stack([clips[i]["video"] for i in range(n)])
  masks = np.stack([objects.object_masks(clips, i)[0] for i in range(n)])
  codes, token_masks = text_gap.encode_items(lm.encode_video, videos, masks, batch)
  greedy = decode.Decoder(lm.model, lm.vocab, sampling.SamplingConfig(temperature=0.0),
                          mesh=lm.mesh, rules=lm.rules)
  params = greedy.place_params(lm.params)
  texts = [lm.encode_text(clips.caption(i)) for i in range(n)]  # captions without rendering
  out = continuation.measure(lm.logits_fn, greedy, params, lm.vocab, texts, codes, token_masks,
                             lm.stage.data.max_text_len)
  print(f"evaluate: continuation on {n} held-out clips: object codes right "
        f"{out['teacher_forced']:.2f} teacher-forced, {out['free_running']:.2f} generated; "
        f"object started in {out['object_started']:.2f}", flush=True)
  # The prompt's motion from a true first frame: latent frame 1 of the clips whose object moves
  # in a straight line, after the text and the true frame 0 only. Only the motion word tells
  # where the object goes, so this separates moving it (here) from drawing it (faithfulness).
  moving = [i for i in range(n)
            if clips.attributes(i)[0]["objects"][0]["motion"] in synthetic.DIRECTIONS]
  if moving:
    first = continuation.measure(lm.logits_fn, greedy, params, lm.vocab,
                                 [texts[i] for i in moving], codes[moving], token_masks[moving],
                                 lm.stage.data.max_text_len, context=1)
    out["prompted_move"] = {k: first[k] for k in ("teacher_forced", "free_running", "clips")}
    print(f"evaluate: prompted move on {len(moving)} held-out moving clips: latent frame 1's "
          f"object codes right {first['teacher_forced']:.2f} teacher-forced, "
          f"{first['free_running']:.2f} generated after the true frame 0", flush=True)
  return out


def lm_motion_effect(config, lm: StageLM) -> dict:
  """`loong_jax.eval.motion_effect.measure` of `lm` on held-out 17-frame clips: does the motion
  word change the latent frame 1 it draws?"""
  n, batch = config.evaluate.text_gap_items, config.pretokenize.batch_size
  # The text gap's motion items: held-out clips, each caption with its motion phrase swapped.
  videos, captions, swapped, masks = text_gap.held_out_items(held_out_clips(config), n, "motion")
  codes, token_masks = text_gap.encode_items(lm.encode_video, videos, masks, batch)
  greedy = decode.Decoder(lm.model, lm.vocab, sampling.SamplingConfig(temperature=0.0),
                          mesh=lm.mesh, rules=lm.rules)
  motions = [text_gap.caption_motion(c) for c in captions]
  out = motion_effect.measure(
      greedy, greedy.place_params(lm.params), lm.vocab, [lm.encode_text(c) for c in captions],
      [lm.encode_text(c) for c in swapped], codes[:, :2], token_masks[:, :2],
      lm.stage.data.max_text_len,
      [lm.encode_text(text_gap.paraphrase_motion(c, m)) for c, m in zip(captions, motions)])
  print(f"evaluate: motion effect on {n} held-out clips: the opposite motion word changes "
        f"{out['changed']:.3f} of the greedy frame-1 tokens near the object "
        f"({out['changed_far']:.3f} elsewhere; the same motion in other words: "
        f"{out['changed_paraphrase']:.3f})", flush=True)
  return out


def lm_edge_rest(config, lm: StageLM) -> dict | None:
  """`loong_jax.eval.edge_rest.measure` of `lm` on held-out long clips of straight motions: does
  it stop the object at the edge? None where the world has no straight motion."""
  e, batch = config.evaluate, config.pretokenize.batch_size
  count = e.get("edge_rest_clips", 0)
  if not count:
    return None
  data = demo_steps.synthetic_source(config, (e.get("edge_rest_frames", 65),), 8 * count,
                                     "heldout")
  straight = {}  # index -> the object's centres [T, 2], for straight motions only
  for i in range(len(data)):
    obj = data.attributes(i)[0]["objects"][0]
    if obj["motion"] in synthetic.DIRECTIONS and len(straight) < count:
      straight[i] = obj["centers"]
  if not straight:
    return None
  samples = [data[i] for i in straight]  # each render once
  videos = np.stack([sample["video"] for sample in samples])
  masks = np.stack([objects.object_masks(data, i)[0] for i in straight])
  codes, token_masks = text_gap.encode_items(lm.encode_video, videos, masks, batch)
  kinds = [edge_rest.frame_kinds(centers) for centers in straight.values()]
  out = edge_rest.measure(lm.logits_fn, lm.vocab,
                          [lm.encode_text(sample["caption"]) for sample in samples],
                          codes, token_masks, kinds, lm.stage.data.max_text_len, batch)
  shown = {k: f"{out[k]:.2f}" if k in out else "n/a" for k in edge_rest.KINDS}
  print(f"evaluate: edge rest on {len(samples)} held-out {videos.shape[1]}-frame clips: object "
        f"codes right (teacher-forced) {shown['move']} moving, {shown['stop']} at the stop, "
        f"{shown['rest']} at rest", flush=True)
  return out


def measure(config, run: str) -> dict | None:
  """`{"text_gap", "text_gap_by_stage", "continuation", "motion_effect", "edge_rest"}` of the
  run's LMs
  (module docstring);
  None for the AR-DF variant."""
  if config.lm.get("variant", "") == "ardf":
    print("evaluate: LM diagnostics skipped (AR-DF trains masked frames, not next tokens)",
          flush=True)
    return None
  by_stage, final = {}, None
  ic, codec = generation_codec(config, run)
  for k in (1, 2, 3):
    lm = load_stage_lm(config, run, k)
    by_stage[f"stage{k}"] = lm_text_gap(config, lm, k)
    final = lm
  out = {"text_gap": by_stage["stage3"], "text_gap_by_stage": by_stage,
         "continuation": lm_continuation(config, final),
         "motion_effect": lm_motion_effect(config, final),
         "edge_rest": lm_edge_rest(config, final),
         "first_frames": lm_first_frames(config, final, ic, codec),
         "tokenizer_codes": {"shift_invariance": codes_shift_invariance(config, final),
                             "roundtrip": codes_roundtrip(config, ic, codec),
                             "digit_information": codes_digit_information(config, final)}}
  out["tokenizer_codes"] = {k: v for k, v in out["tokenizer_codes"].items() if v is not None}
  return {k: v for k, v in out.items() if v is not None}


def generation_codec(config, run: str):
  """`(inference settings, codec)` that the run's generation uses (with re-encoding), loaded
  once for the diagnostics that decode or re-encode."""
  ic = demo_steps.inference_config(config, run, True).inference
  codec = generate_lib.load_codec(ic.tokenizer_config, ic.tokenizer_dir, ic.tokenizer_kind,
                                  demo_steps.video_size(config, run), ic.oracle_frames,
                                  ic.flat_codes)
  return ic, codec


def lm_first_frames(config, lm: StageLM, ic, codec) -> dict | None:
  """`loong_jax.eval.binding.measure` of `lm`: first frames drawn with the generation's sampling
  settings `ic` (no guidance) from the faithfulness prompts, decoded by the generation's `codec`.
  None when `config.evaluate.first_frame_samples` is 0."""
  samples = config.evaluate.get("first_frame_samples", 0)
  if not samples:
    return None
  sampler = decode.Decoder(lm.model, lm.vocab, sampling.SamplingConfig(
      temperature=ic.temperature, top_k=ic.top_k, top_p=ic.top_p), mesh=lm.mesh, rules=lm.rules)
  params = sampler.place_params(lm.params)
  h = w = config.data.resolution // codec.spatial_downsample
  plan = decode.frame_plan(lm.vocab, 1, h * w, end_video=False, frame_width=w)
  calls = itertools.count()

  def draw(texts):
    prompts = [decode.prompt_ids(lm.vocab, generate_lib.encode_prompt(
        t, lm.encode_text, lm.stage.data.max_text_len, lm.vocab)) for t in texts]
    ids = sampler(params, prompts, plan, jax.random.key(config.generate.seed + next(calls)))
    return video_io.to_uint8(codec.decode(decode.frame_codes(ids, lm.vocab, 1, h, w)))

  reader = (lambda v: blocks.read(v, 0.0)) if ic.tokenizer_kind == "oracle" else probe.read
  out = binding.measure(draw, demo_prompts.faithfulness_prompts(config), samples, reader)

  def rates(v, key):
    return " / ".join(f"{out[v][key].get(s, 0):.2f}" for s in binding.SPLITS)

  print(f"evaluate: first frames drawn ({samples} per prompt, seen / held-out): " + "; ".join(
      f"{v} colour {rates(v, 'color')}, shape {rates(v, 'shape')}" for v in binding.VARIANTS),
        flush=True)
  return out


def codes_roundtrip(config, ic, codec) -> dict:
  """`loong_jax.eval.roundtrip.measure` with the codec (and `generate.reencode_margin`)
  long-video re-encoding uses (`generation_codec`), on
  `config.evaluate.roundtrip_clips` held-out 17-frame clips (reported as
  tokenizer.codes.roundtrip)."""
  ev = config.evaluate   # runs made before these keys: 16 clips, 5 rounds
  clips = demo_steps.synthetic_source(config, (17,), ev.get("roundtrip_clips", 16), "heldout")
  videos = np.stack([clips[i]["video"] for i in range(len(clips))])
  object_blocks = np.stack([text_gap.object_tokens(objects.object_masks(clips, i)[0])
                            for i in range(len(clips))])
  margin = float(ic.reencode_margin)
  reencode = (None if margin == 0 else
              lambda video, previous: codec.reencode(video, previous, margin))
  out = roundtrip.measure(codec.encode, codec.decode, videos, object_blocks,
                          ev.get("roundtrip_rounds", 5), config.pretokenize.batch_size, reencode)
  print(f"evaluate: re-encoding round trips keep {out['object'][0]:.3f} (1) / "
        f"{out['object'][-1]:.3f} ({len(out['object'])}) of the object's codes, "
        f"{out['background'][0]:.3f} / {out['background'][-1]:.3f} of the background's; "
        f"{out['psnr'][0]:.1f} / {out['psnr'][-1]:.1f} dB against the first decode", flush=True)
  return out


def codes_shift_invariance(config, lm: StageLM) -> dict:
  """`loong_jax.eval.shift_invariance.measure` of the codes the LM reads (reported as
  tokenizer.codes.shift_invariance): do an object's codes move with it?"""
  data = config.data
  out = shift_invariance.measure(
      lm.encode_video, data.resolution, objects=4 if config.variant == "quick" else 32,
      sizes=tuple(data.get("sizes", ("medium", "large"))),
      background_color=tuple(data.get("background_colors", ("black",)))[0],
      batch_size=config.pretokenize.batch_size)
  print(f"evaluate: code shift invariance: {out['same']:.3f} of {out['blocks']} blocks keep "
        "their code when the object moves by whole blocks", flush=True)
  return out


def codes_digit_information(config, lm: StageLM) -> dict | None:
  """`loong_jax.eval.codes.digit_information` of the object codes (the codes the LM reads) of
  `config.evaluate.digit_information_images` training images, for the object's colour and its
  shape (reported as tokenizer.codes.digit_information); None without digit codes."""
  levels = lm.model.config.video_code_levels
  count = config.evaluate.get("digit_information_images", 0)
  if not levels or count <= 0:
    return None
  data = demo_steps.synthetic_source(config, (1,), count, "train")
  samples = [data.sample(i) for i in range(count)]
  images = np.stack([s["video"] for s in samples]).astype(np.float32) / 127.5 - 1.0
  batch = config.pretokenize.batch_size
  ids = np.concatenate([np.asarray(lm.encode_video(images[b:b + batch]))
                        for b in range(0, count, batch)])                   # [N, 1, h, w]
  spatial = images.shape[2] // ids.shape[2]
  on = np.stack([text_gap.object_tokens(objects.object_masks(data, i)[0], spatial=spatial)
                 for i in range(count)])                                    # object tokens
  colors, shapes = ([s["attributes"]["objects"][0][k] for s in samples] for k in ("color", "shape"))
  per_token = np.broadcast_to(np.arange(count)[:, None, None, None], on.shape)[on]
  out = {name: codes.digit_information(ids[on], np.asarray(labels)[per_token], levels)
         for name, labels in (("color", colors), ("shape", shapes))}
  out["tokens"] = int(on.sum())
  print("evaluate: code digits' information (nats) about colour " + " / ".join(
      f"{v:.2f}" for v in out["color"]["digits"]) + f" (code {out['color']['code']:.2f}), shape "
        + " / ".join(f"{v:.2f}" for v in out["shape"]["digits"])
        + f" (code {out['shape']['code']:.2f}) on {out['tokens']} object tokens", flush=True)
  return out
