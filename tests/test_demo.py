"""The CPU demo: step bookkeeping (skip, resume, timings), the quick run end to end with an
interruption in LM stage 2, the plots, and the quickstart notebook on a Jupyter kernel."""

import glob
import json
import os
import shutil

import nbclient
import nbformat
import numpy as np
import pytest
from PIL import Image

from loong_jax import demo, demo_plots
from loong_jax.eval import report
from tests import quick_demo

REPO, QUICK = quick_demo.REPO, quick_demo.QUICK


def _quick_config():
  from loong_jax import cli
  return cli.load_config_file(QUICK)


def test_pipeline_skips_finished_steps_and_resumes_the_interrupted_one(tmp_path):
  calls = []

  def runner(name, workdir):
    calls.append(name)
    if name == "b" and calls.count("b") == 1:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    demo.run_pipeline(_quick_config(), str(tmp_path), steps=("a", "b", "c"), runner=runner)
  assert calls == ["a", "b"]
  assert os.path.exists(tmp_path / "steps" / "a.done")
  assert not os.path.exists(tmp_path / "steps" / "b.done")
  first_b = json.loads((tmp_path / "steps" / "b.seconds").read_text())
  timings = demo.run_pipeline(_quick_config(), str(tmp_path), steps=("a", "b", "c"),
                              runner=runner)
  assert calls == ["a", "b", "b", "c"]   # a skipped, b resumed, c run
  assert set(timings) == {"a", "b", "c", "total"}
  assert timings["b"] >= first_b
  assert json.loads((tmp_path / "timings.json").read_text()) == timings
  demo.run_pipeline(_quick_config(), str(tmp_path), steps=("a", "b", "c"), runner=runner)
  assert calls == ["a", "b", "b", "c"]   # everything done: nothing runs


def test_failed_step_names_itself(tmp_path):
  with pytest.raises(demo.StepFailed, match="'nonexistent'"):
    demo.run_pipeline(_quick_config(), str(tmp_path), steps=("nonexistent",))
  assert not os.path.exists(tmp_path / "steps" / "nonexistent.done")


def test_config_variants_hold_every_number():
  from loong_jax import cli
  from loong_jax.data import synthetic
  for variant in ("default", "quick"):
    config = cli.load_config_file(os.path.join(REPO, "configs", "demo_cpu.py") + ":" + variant)
    assert config.generate.seconds == 60.0
    assert list(config.generate.reencode) == [True, False]
    pairs = {(p["color"], p["shape"]) for p in config.generate.prompts}
    heldout = {(p["color"], p["shape"]) for p in config.generate.prompts
               if p["split"] == "heldout"}
    assert heldout and heldout <= set(synthetic.HELDOUT_PAIRS)
    assert pairs - heldout, "faithfulness needs seen prompts too"
    assert len(config.lm.steps) == 3
    assert config.tokenizer.kind == "learned"
    assert config.evaluate.text_gap_items % config.pretokenize.batch_size == 0
  assert cli.load_config_file(os.path.join(REPO, "configs", "demo_cpu.py")
                              ).generate.faithfulness_prompts >= 30
  with pytest.raises(ValueError, match="unknown variant"):
    cli.load_config_file(os.path.join(REPO, "configs", "demo_cpu.py") + ":huge")


def test_world_settings_reach_the_demo_data():
  # Every world field of config.data reaches the synthetic dataset the demo trains on.
  from loong_jax import demo_steps
  config = _quick_config()
  config.data.speed, config.data.wall_fraction = 1 / 32, 0.25
  source = demo_steps.synthetic_source(config, (17,), 4)
  assert source.config.speed == 1 / 32 and source.config.wall_fraction == 0.25
  assert source.config.motions == tuple(config.data.motions)
  config.data.wall_fraction = 0.0
  assert demo_steps.synthetic_source(config, (17,), 4).config.wall_fraction == 0.0


def test_lm_seed_reaches_every_stage(tmp_path):
  from loong_jax import demo_steps
  config = _quick_config()
  seeds = lambda: [demo_steps.lm_stage_config(config, str(tmp_path), k).train.seed
                   for k in (1, 2, 3)]
  assert seeds() == [0, 0, 0]
  config.lm.seed = 7
  assert seeds() == [7, 7, 7]


def test_lm_variant_ardf_trains_ardf_stages_and_decodes_masked(tmp_path):
  from loong_jax import demo_steps, generate, tokens
  from loong_jax.inference import masked_decode
  from loong_jax.llm import transformer
  config, run = _quick_config(), str(tmp_path)
  assert config.lm.variant == ""   # Loong by default
  loong = demo_steps.inference_config(config, run, reencode=True)
  assert loong.inference.decoder == "autoregressive" and loong.lm.rope == "rope_1d"
  assert loong.lm.prev_frame_input   # the demo's causal LM embeds the previous frame's codes
  config.lm.variant = "ardf"
  for stage in (1, 2, 3):
    stage_config = demo_steps.lm_stage_config(config, run, stage)
    assert stage_config.variant == "ardf"
    assert stage_config.train.objective == "ardf"
    assert stage_config.lm.rope == "mm_rope"
    assert stage_config.lm.attention_mask == "frame_bidirectional"
    assert not stage_config.lm.prev_frame_input   # causal models only
    assert not stage_config.lm.copy_head and not stage_config.lm.prev_frame_radius
    assert stage_config.train.seed == 0
    assert stage_config.train.steps == config.lm.steps[stage - 1]   # the demo's overrides
  ic = demo_steps.inference_config(config, run, reencode=False)
  assert ic.lm.to_dict() == stage_config.lm.to_dict()
  assert ic.inference.decoder == "masked"
  assert ic.inference.masked.steps > 0 and not ic.inference.reencode
  model = transformer.Transformer(transformer.LMConfig.from_config(ic.lm))
  decoder = generate.make_decoder(ic, model, tokens.Vocab(ic.vocab.text_size,
                                                          ic.vocab.video_size))
  assert isinstance(decoder, masked_decode.MaskedDecoder)
  # demo_steps.LM_VARIANTS mirrors configs/lm/llama.py's VARIANTS ('' for Loong).
  from configs.lm import llama
  assert {v or "loong" for v in demo_steps.LM_VARIANTS} == set(llama.VARIANTS)
  config.lm.variant = "lumos"
  with pytest.raises(ValueError, match=r"config\.lm\.variant='lumos'"):
    demo_steps.lm_stage_config(config, run, 1)


def test_plots(tmp_path):
  for k in (1, 2):
    stage = tmp_path / "lm" / f"stage{k}"
    stage.mkdir(parents=True)
    rows = [{"step": s, "loss": 5.0 / s, "loss_first_frame": 6.0 / s,
             "loss_later_frames": 4.0 / s} for s in (1, 2, 3)]
    rows.append({"step": 3, "eval_loss": 1.0})
    (stage / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  rng = np.random.default_rng(0)
  real = rng.integers(0, 255, (3, 17, 16, 16, 3), dtype=np.uint8)
  np.savez(tmp_path / "tokenizer_eval.npz", real=real, recon=real, codes=np.zeros(4),
           codebook_size=8)
  (tmp_path / "generated").mkdir()
  for i, name in enumerate(("red_triangle_still", "red_circle_left", "blue_ring_up")):
    np.savez(tmp_path / "generated" / f"clip_{i:02d}_{name}.npz", video=real[i], fps=8.0)
  written = demo_plots.training_plots(str(tmp_path), example_clips=2)
  assert sorted(os.path.basename(p) for p in written) == [
      "faithfulness.png", "frame_loss.png", "lm_loss.png", "reconstruction.png"]
  grid = np.asarray(Image.open(tmp_path / "reconstruction.png"))
  assert grid.shape[0] == 14 + 2 * (2 * 16 + 6)
  clips = np.asarray(Image.open(tmp_path / "faithfulness.png"))  # 2 held-out | 1 seen, 5 frames
  assert clips.shape[:2] == (2 * (12 + 16 + 2), 2 * (5 * 18 + 6))
  np.testing.assert_array_equal(clips[12:28, 96:112], real[1, 0])  # seen column: frame 0
  np.testing.assert_array_equal(clips[30 + 12:30 + 28, 4 * 18:4 * 18 + 16], real[2, 16])
  strip = tmp_path / "strip.png"
  demo_plots.frame_strip(real[0], str(strip), count=4, fps=8)
  assert Image.open(strip).size == (4 * 16 + 3 * 2, 16 + 14)
  with pytest.raises(ValueError, match="no finite points"):
    demo_plots.line_plot({"x": ([1], [float("nan")])}, str(tmp_path / "x.png"), "x")


@pytest.mark.slow
@pytest.mark.xdist_group("quick_demo")
def test_quick_demo_end_to_end_resumes_after_sigint_in_stage2(interrupted_quick_demo):
  workdir, out, returncode, rerun = interrupted_quick_demo
  assert returncode != 0, out
  assert "interrupted" in out
  assert rerun.returncode == 0, rerun.stdout + rerun.stderr
  for step in ("tokenizer", "text", "pretokenize", "lm_stage1"):
    assert f"] {step}: done in an earlier run" in rerun.stdout
  assert "lm_stage2: resuming" in rerun.stdout
  assert "resumed from step" in rerun.stdout
  result = report.read(str(workdir / "report.json"), require_all=True)
  flat = report.flatten(result)
  for key in report.REQUIRED:
    assert key in flat, key
  for key in ("tokenizer.object_psnr", "tokenizer.object_visible", "lm.text_gap.color",
              "lm.text_gap.motion", *(f"lm.text_gap_by_stage.stage{k}.color" for k in (1, 2, 3)),
              "tokenizer.codes.unchanged", "lm.continuation.teacher_forced",
              "lm.continuation.free_running", "lm.continuation.prompted_move.free_running",
              "lm.motion_effect.changed", "lm.motion_effect.changed_paraphrase",
              "tokenizer.codes.roundtrip.object", "tokenizer.codes.roundtrip.background",
              "tokenizer.codes.digit_information.color.code",
              "tokenizer.codes.digit_information.shape.code"):
    assert key in flat, key
  assert flat["lm.text_gap_by_stage.stage3.color"] == flat["lm.text_gap.color"]
  assert flat["lm.continuation.clips"] == 8
  assert 0 < flat["lm.continuation.prompted_move.clips"] < 8   # the moving clips among them
  assert flat["lm.motion_effect.clips"] == 8
  assert flat["faithfulness.num_videos"] == 4
  for mode in ("reencode", "no_reencode"):
    assert len(result["long_video"]["presence"][mode]) == 6   # 60 s in 10 s windows
  for step in demo.STEPS:
    assert f"timings.{step}_s" in flat
  for pattern in ("generated/*.mp4", "generated/*.gif", "generated/*.png", "*.png"):
    assert glob.glob(str(workdir / pattern)), pattern
  assert {os.path.basename(p) for p in glob.glob(str(workdir / "*.png"))} >= {
      "lm_loss.png", "frame_loss.png", "reconstruction.png", "long_video.png"}


@pytest.mark.slow
@pytest.mark.xdist_group("quick_demo")
def test_quickstart_notebook(interrupted_quick_demo, tmp_path, monkeypatch):
  """Executes notebooks/quickstart.ipynb on a real Jupyter kernel (nbclient). Its workdir is a
  copy of the session's finished quick-demo run, so its demo cell resumes a finished run (every
  step skipped, seconds): what the notebook adds is the kernel, the cells and the inline video."""
  finished, *_ = interrupted_quick_demo
  workdir = tmp_path / "run"
  shutil.copytree(finished, workdir)
  # The kernel inherits this environment: the machine's real devices, the copied run.
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  monkeypatch.setenv("LOONG_JAX_NOTEBOOK_WORKDIR", str(workdir))
  notebook = nbformat.read(os.path.join(REPO, "notebooks", "quickstart.ipynb"), as_version=4)
  nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": os.path.join(REPO, "notebooks")}}
                          ).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  html = "".join(o.data.get("text/html", "") for o in outputs if "data" in o)
  assert "done in an earlier run" in text   # the demo cell resumed the finished run
  assert "<video" in html and "data:video/mp4;base64," in html   # mediapy's inline video
  assert "<img" in html   # the frame strip
  assert "no TPU attached" in text


def test_lm_stage_config_takes_the_demo_recipe(tmp_path):
  from loong_jax import cli, demo_steps
  from loong_jax.data import pipeline
  config, run = _quick_config(), str(tmp_path)
  config.lm.learning_rate = (1e-2, 3e-3, 1e-3)
  config.lm.mixes = ({"images": 1.0}, {"images": 0.25, "clips17": 0.75},
                     {"images": 0.5, "clips17": 0.0, "clips65": 0.5})
  stages = [demo_steps.lm_stage_config(config, run, k) for k in (1, 2, 3)]
  assert [s.optim.learning_rate for s in stages] == [1e-2, 3e-3, 1e-3]
  for s in stages:
    assert s.lm.d_model == config.lm.model.d_model and s.lm.head_dim == config.lm.model.head_dim
    assert s.vocab.text_size == config.lm.text_size
    codebook = cli.load_config_file(config.tokenizer.config).tokenizer.quantizer.codebook_size
    assert s.vocab.video_size == codebook   # lm.video_size 0: the tokenizer's codebook
    assert s.data.max_text_len == config.text.max_text_len
  assert [(src["path"].rsplit("/", 1)[-1], src["weight"]) for src in stages[2].data.sources] == [
      ("images", 0.5), ("clips65", 0.5)]   # weight 0 drops a source
  # Digit codes (config.lm.digit_codes): the FSQ levels, the oracle's 16 levels per channel.
  levels = tuple(cli.load_config_file(config.tokenizer.config).tokenizer.quantizer.levels)
  assert stages[0].lm.video_code_levels == levels
  assert stages[0].lm.video_offset == config.lm.text_size
  config.tokenizer.kind = "oracle"
  assert demo_steps.lm_stage_config(config, run, 1).vocab.video_size == 4_096
  assert demo_steps.lm_stage_config(config, run, 1).lm.video_code_levels == (16, 16, 16)
  config.tokenizer.kind = "learned"
  config.lm.digit_codes = False
  assert demo_steps.lm_stage_config(config, run, 1).lm.video_code_levels == ()
  config.lm.digit_codes = True
  # The sequence length follows the text budget and the longest clip of the stage.
  assert stages[2].train.seq_len == pipeline.required_seq_len(config.text.max_text_len, 65, 64)
  # Any token folder in any stage, optionally cut to its first frames (name@frames).
  config.lm.mixes = ({"images": 0.5, "clips17@5": 0.5},) * 3
  first = demo_steps.lm_stage_config(config, run, 1)
  assert [(src["path"].rsplit("/", 1)[-1], src["max_frames"], src["weight"])
          for src in first.data.sources] == [("images", 1, 0.5), ("clips17", 5, 0.5)]
  assert first.train.seq_len == pipeline.required_seq_len(config.text.max_text_len, 5, 64)
  for bad, message in (({"clips33": 1.0}, r"config.lm.mixes\[0\] \(stage 1\): unknown source "
                                          r"'clips33'"),
                       ({"clips17@6": 1.0}, "frames must be 1 \\+ 4n"),
                       ({"clips17@21": 1.0}, "at most the source's 17")):
    config.lm.mixes = (bad,) * 3
    with pytest.raises(ValueError, match=message):
      demo_steps.lm_stage_config(config, run, 1)
  config.lm.mixes = ({"images": 1.0},) * 3
  config.lm.model.widthh = 3
  with pytest.raises(ValueError, match="config.lm.model.widthh"):
    demo_steps.lm_stage_config(config, run, 1)


def test_tokenizer_model_overrides_reach_training_and_generation(tmp_path):
  """`config.tokenizer.model` overrides the tokenizer config's fields (an unknown one fails,
  naming it); generation reads the tokenizer's own run config, so it builds the trained model."""
  from loong_jax import demo_steps
  config, run = _quick_config(), str(tmp_path)
  assert demo_steps.tokenizer_config(config).tokenizer.local_encoder is True   # the recipe's
  config.tokenizer.model.local_encoder = False
  assert demo_steps.tokenizer_config(config).tokenizer.local_encoder is False
  ic = demo_steps.inference_config(config, run, reencode=True)
  assert ic.inference.tokenizer_config == os.path.join(run, "tokenizer", "config.json")
  config.tokenizer.model.no_such_field = 1
  with pytest.raises(ValueError, match="config.tokenizer.model.no_such_field"):
    demo_steps.tokenizer_config(config)
  del config.tokenizer.model["no_such_field"]
  config.tokenizer.fsq_levels = (4, 4, 7, 8)  # the quantizer, the latent width and the LM's digits
  t = demo_steps.tokenizer_config(config).tokenizer
  assert (tuple(t.quantizer.levels), t.z_channels, t.quantizer.codebook_size) == ((4, 4, 7, 8), 4,
                                                                                 896)
  assert demo_steps.video_code_levels(config) == (4, 4, 7, 8)
  assert demo_steps.video_vocab_size(config) == 896
  config.tokenizer.fsq_levels = (4, 1)
  with pytest.raises(ValueError, match="fsq_levels"):
    demo_steps.tokenizer_config(config)


def test_flat_codes_setting_reaches_pretokenization_evaluation_and_generation(tmp_path):
  """`config.tokenizer.flat_codes` is the LM's codes' canonicalisation: the same setting builds
  the encoder of every place that makes LM codes (`demo_codec.video_encoder`), and generation's
  re-encoding gets it; a misspelt key fails."""
  from loong_jax import demo_codec, demo_steps
  config, run = _quick_config(), str(tmp_path)
  config.tokenizer.flat_codes = dict(enabled=True, tolerance=2.0, margin=2)
  got = demo_codec.flat_config(config)
  assert got.enabled and got.tolerance == 2.0 and got.margin == 2
  ic = demo_steps.inference_config(config, run, reencode=True)
  assert dict(ic.inference.flat_codes) == dict(enabled=True, tolerance=2.0, margin=2)
  config.tokenizer.flat_codes.marginn = 1
  with pytest.raises(ValueError, match="marginn"):
    demo_codec.flat_config(config)
  config.tokenizer.flat_codes = dict(enabled=False)
  assert not demo_codec.flat_config(config).enabled


def test_generate_sampling_settings_reach_inference(tmp_path):
  """`config.generate`'s sampling settings (guidance, top-k, top-p, temperatures) are what the
  decoder of every generation step gets."""
  from loong_jax import demo_steps
  from loong_jax.inference import sampling
  config, run = _quick_config(), str(tmp_path)
  config.generate.update(dict(guidance_scale=1.5, top_k=7, top_p=0.9, temperature=0.8,
                              first_frame_candidates=3, rerank_guidance=1.5,
                              reencode_margin=0.25))
  inf = demo_steps.inference_config(config, run, reencode=True).inference
  got = sampling.SamplingConfig.from_config(inf)
  assert (got.guidance_scale, got.top_k, got.top_p, got.temperature) == (1.5, 7, 0.9, 0.8)
  assert (inf.first_frame_candidates, inf.rerank_guidance) == (3, 1.5)
  assert inf.reencode_margin == 0.25


def test_composed_first_frame_branches_leave_out_the_prompt_words(tmp_path):
  """`generate.first_frame_without_*` weights become branches of the prompts without their
  shape word, colour word or both; zero weights give none; a prompt must name its attributes."""
  from loong_jax import demo_prompts
  config = _quick_config()
  prompts = config.generate.prompts[:2]
  assert demo_prompts.first_frame_branches(config, prompts) == []
  config.generate.first_frame_without_shape = 0.5
  config.generate.first_frame_without_both = -0.25
  (w1, shapeless), (w2, bare) = demo_prompts.first_frame_branches(config, prompts)
  assert (w1, w2) == (0.5, -0.25)
  assert shapeless[0] == "a medium red moves right over a black background"
  assert bare[1] == "a medium moves left over a black background"
  with pytest.raises(ValueError, match="does not contain its color"):
    demo_prompts.first_frame_branches(config, [dict(prompts[0], color="blue")])


def test_default_motion_baseline_and_oracle_variants_change_only_their_recipes():
  """The default is the motion recipe (`motion`, its earlier name, is the same config):
  against `:baseline` it changes the world grid, tokenizer codes, wall folders, LM recipe and
  sampling; `:oracle` is that recipe on the oracle codec (its own grid, stage steps and first
  frames); `:quick` runs the same recipe at its own sizes."""
  from loong_jax import cli

  def leaves(d, prefix=""):
    out = {}
    for k, v in d.items():
      out.update(leaves(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "mixes"
                 else {prefix + k: v})
    return out

  default, motion, oracle, baseline, quick = (
      leaves(cli.load_config_file(QUICK.replace(":quick", v)).to_dict())
      for v in ("", ":motion", ":oracle", ":baseline", ":quick"))
  assert {k for k in default if default[k] != motion[k]} == {"variant"}
  recipe = {"data.grid", "tokenizer.model.local_encoder", "tokenizer.model.encoder_frames",
            "pretokenize.walls17", "pretokenize.walls65", "lm.model.prev_frame_radius",
            "lm.model.copy_head", "lm.model.text_summary_input", "lm.mixes",
            "lm.learning_rate", "lm.length_groups", "generate.guidance_scale",
            "generate.frame_temperature", "generate.first_frame_candidates",
            "generate.first_frame_min_object_pixels", "generate.reencode_first_frame",
            "generate.reencode_margin", "generate.clip_latent_frames",
            "generate.cond_latent_frames"}
  assert {k for k in default if default[k] != baseline[k]} == recipe | {"variant", "lm.steps"}
  assert {k for k in motion if motion[k] != oracle[k]} == {
      "variant", "tokenizer.kind", "tokenizer.oracle_frames", "data.grid", "lm.steps",
      "lm.length_groups", "generate.first_frame_candidates", "generate.clip_latent_frames",
      "generate.cond_latent_frames"}
  assert oracle["tokenizer.kind"] == "oracle" and oracle["generate.first_frame_candidates"] == 1
  assert motion["generate.first_frame_candidates"] == 8 and motion["data.grid"] == 8
  assert motion["generate.reencode_margin"] == 0.5 and baseline["generate.reencode_margin"] == 0
  assert (motion["generate.clip_latent_frames"], motion["generate.cond_latent_frames"]) == (17, 8)
  assert motion["lm.length_groups"] and not baseline["lm.length_groups"]
  # quick: the default's recipe, its own sizes and steps.
  assert all(quick[k] == default[k] for k in recipe - {
      "pretokenize.walls17", "pretokenize.walls65", "lm.length_groups",
      "generate.first_frame_candidates"})
  assert not quick["lm.length_groups"]   # compile-bound at its sizes
  assert quick["generate.first_frame_candidates"] == 2   # re-ranks, at a quarter of the cost
  assert tuple(quick["lm.steps"]) == (10, 10, 3)
  assert 0 < quick["pretokenize.walls17"] < default["pretokenize.walls17"]
  for c in (motion, oracle):
    assert c["generate.guidance_scale"] == 1.0 and c["lm.model.copy_head"]
    # Stage 1 learns plain motion; only stages 2-3 see objects that rest at the edge.
    walls = [{k.partition("@")[0] for k in mix} & {"walls17", "walls65"} for mix in c["lm.mixes"]]
    assert walls == [set(), {"walls17"}, {"walls17", "walls65"}]


def test_wall_sources_are_written_on_request_and_meet_the_edge(tmp_path):
  """`config.pretokenize.walls17/walls65` > 0 adds token folders of clips whose straight motions
  all may reach the edge (own seed); a mix naming one that is not written fails, saying how."""
  from loong_jax import demo_steps
  config, run = _quick_config(), str(tmp_path)
  assert [n for n, _, _ in demo_steps.token_sources(config)] == [   # the default recipe's
      "images", "clips17", "clips65", "walls17", "walls65"]
  config.pretokenize.walls17 = config.pretokenize.walls65 = 0
  assert [n for n, _, _ in demo_steps.token_sources(config)] == ["images", "clips17", "clips65"]
  config.lm.mixes = ({"images": 1.0}, {"images": 0.5, "walls17": 0.5}, {"images": 1.0})
  with pytest.raises(ValueError, match=r"'walls17' is not written.*pretokenize.walls17"):
    demo_steps.lm_stage_config(config, run, 2)
  config.pretokenize.walls17 = 8
  assert demo_steps.token_sources(config)[-1] == ("walls17", 17, True)
  sources = demo_steps.lm_stage_config(config, run, 2).data.sources
  assert [(s["path"].rsplit("/", 1)[-1], s["max_frames"]) for s in sources] == [
      ("images", 1), ("walls17", 17)]
  plain = demo_steps.synthetic_source(config, (17,), 16)
  walls = demo_steps.synthetic_source(config, (17,), 16, walls=True)
  assert plain.config.wall_fraction == 0.0 and walls.config.wall_fraction == 1.0
  assert walls.config.seed != plain.config.seed   # other draws, not the plain clips moved
  assert [plain.caption(i) for i in range(16)] != [walls.caption(i) for i in range(16)]

  def rests(source):   # straight motions whose object stops before the clip ends
    out = []
    for i in range(len(source)):
      obj = source.attributes(i)[0]["objects"][0]
      if obj["motion"] != "still":
        out.append(bool(np.all(obj["centers"][-1] == obj["centers"][-2])))
    return out

  assert not any(rests(plain)) and any(rests(walls))


def test_step_processes_share_the_run_compile_cache(tmp_path, monkeypatch):
  """The steps compile into the run's own cache, unless the environment names one."""
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
  env = demo.step_env(str(tmp_path))
  assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / demo.COMPILE_CACHE_DIR)
  assert float(env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]) > 0
  assert demo.REPO in env["PYTHONPATH"].split(os.pathsep)
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
  assert demo.step_env(str(tmp_path))["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "mine")


def test_caption_contrast_reaches_the_stages_with_the_colour_words_ids(tmp_path):
  """`lm.caption_contrast` (per stage) becomes `train.caption_contrast` with the ids the run's
  word model gives the world's colours; a model that splits a colour word is refused."""
  from loong_jax import demo_prompts, demo_steps, train_lm
  from loong_jax.data import synthetic_render, text as text_lib
  config, run = _quick_config(), str(tmp_path)
  captions = [f"a medium {c} {s} moves left over a black background"
              for c in synthetic_render.COLORS for s in synthetic_render.SHAPES]
  model = text_lib.train(captions, str(tmp_path / "text.model"), 128, model_type="word")
  ids = demo_prompts.color_word_ids(run)
  assert len(set(ids)) == len(synthetic_render.COLORS)
  assert [list(model.encode(c)) for c in synthetic_render.COLORS] == [[i] for i in ids]
  config.lm.caption_contrast = (1.0, 0.5, 0.0)
  stages = [demo_steps.lm_stage_config(config, run, k) for k in (1, 2, 3)]
  assert [s.train.caption_contrast.weight for s in stages] == [1.0, 0.5, 0.0]
  assert tuple(stages[0].train.caption_contrast.ids) == ids
  assert train_lm.caption_contrast(stages[1]) == dict(caption_contrast=0.5, contrast_ids=ids)
  assert train_lm.caption_contrast(stages[2]) == {}
  text_lib.train(captions, str(tmp_path / "text.model"), 40, model_type="unigram")
  with pytest.raises(ValueError, match="one id per colour word"):
    demo_prompts.color_word_ids(run)
