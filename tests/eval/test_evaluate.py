"""`python -m loong_jax.evaluate` end to end, with rendered ground truth standing in for generated
videos: the probe + faithfulness path must then find every prompt honoured."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from loong_jax import evaluate
from loong_jax.data import synthetic, video_io
from loong_jax.eval import objects, report
from tests import compile_settings
from tests.eval import helpers

pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # ffmpeg, the CLI

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_run(run):
  rng = np.random.default_rng(0)
  held_out = helpers.single_object("heldout", seed=7)
  real = np.stack([held_out.sample(i)["video"] for i in range(3)])
  recon = np.clip(real + rng.normal(0, 4, real.shape), 0, 255).astype(np.uint8)
  masks, backgrounds = zip(*(objects.object_masks(held_out, i) for i in range(3)))
  np.savez(run / "tokenizer_eval.npz", real=real, recon=recon,
           codes=rng.integers(0, 32, (3, 5, 4, 4)), codebook_size=64, masks=np.stack(masks),
           backgrounds=np.stack(backgrounds))
  (run / "tokenizer_eval.json").write_text(json.dumps({"psnr": 0.0, "train_steps": 100}))
  gen = run / "generated"
  gen.mkdir()
  entries = []
  for split, data_split in (("seen", "train"), ("heldout", "heldout")):
    data = helpers.single_object(data_split, seed=8)
    for i in range(4):
      sample = data.sample(i)
      name = f"{split}{i}"
      entry = {"prompt": sample["caption"], "attributes": helpers.first_object(sample),
               "split": split, "kind": "clip"}
      if i == 0:  # an mp4 file
        entry["file"] = name + ".mp4"
        video_io.write_video(str(gen / entry["file"]), sample["video"], 8)
      elif i == 1:  # the first 17 frames of a longer file
        entry["file"], entry["frames"] = name + ".npz", [0, 17]
        padded = np.concatenate([sample["video"], np.zeros_like(sample["video"])])
        np.savez(gen / entry["file"], video=padded)
      else:
        entry["file"] = name + ".npz"
        np.savez(gen / entry["file"], video=sample["video"])
      entries.append(entry)
  minute = helpers.single_object("train", num_frames=synthetic.long_clip_frames(8), seed=9)
  for i, reencode in enumerate((True, False)):
    sample = minute.sample(i)
    entries.append({"file": f"long{i}.npz", "prompt": sample["caption"], "split": "seen",
                    "attributes": helpers.first_object(sample), "kind": "long",
                    "reencode": reencode})
    np.savez(gen / f"long{i}.npz", video=sample["video"], fps=8)
  (gen / "prompts.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
  (run / "timings.json").write_text(json.dumps({"demo_total": 42.0}))
  (run / "lm_eval.json").write_text(json.dumps({
      "text_gap": {"color": 0.5}, "tokenizer_codes": {"shift_invariance": {"same": 0.75}}}))


def test_evaluate_measures_every_section(tmp_path):
  _write_run(tmp_path)
  result = evaluate.evaluate(str(tmp_path), probe_clips=20, require_all=True)
  loaded = report.read(str(tmp_path / "report.json"))
  assert loaded == json.loads(json.dumps(result))
  assert 35 < loaded["tokenizer"]["psnr"] < 45 and 0.8 < loaded["tokenizer"]["ssim"] < 1.0
  assert loaded["tokenizer"]["codebook_usage"] == 0.5
  # Random codes: 1/32 of the tokens unchanged in expectation, 3 x 3 x 16 pairs counted.
  assert loaded["tokenizer"]["codes"]["pairs"] == 144
  assert loaded["tokenizer"]["codes"]["unchanged"] < 0.15
  # ... and where the object moved, random codes change near it (no block is far on 4 x 4).
  assert loaded["tokenizer"]["codes"]["moved_transitions"] > 0
  assert loaded["tokenizer"]["codes"]["changed_near"] > 0.8
  assert "changed_far" not in loaded["tokenizer"]["codes"]
  # Code figures the LM evaluation measured go with the tokenizer's, not the LM's.
  assert loaded["tokenizer"]["codes"]["shift_invariance"] == {"same": 0.75}
  assert loaded["lm"] == {"text_gap": {"color": 0.5}}
  assert 35 < loaded["tokenizer"]["object_psnr"] < 45
  assert loaded["tokenizer"]["object_visible"] == 1.0
  # Slightly noisy reconstructions of rendered clips read as the clips do.
  assert loaded["tokenizer"]["read_through"]["color"] == 1.0
  assert loaded["tokenizer"]["read_through"]["shape"] >= 0.75
  assert loaded["tokenizer"]["train_steps"] == 100  # trainer figures fill in, npz ones win
  assert loaded["probe"]["accuracy"] >= 0.95
  for key in ("color", "shape", "direction"):
    assert loaded["faithfulness"][key] == {"seen": 1.0, "heldout": 1.0}
  assert loaded["long_video"]["presence"] == {"reencode": [1.0] * 6, "no_reencode": [1.0] * 6}
  assert loaded["timings"]["demo_total_s"] == 42.0
  assert loaded["timings"]["evaluate_probe_s"] > 0
  assert (tmp_path / "long_video.png").exists()
  assert "| 50-60 s |" in (tmp_path / "long_video.md").read_text()


def test_bad_prompt_entries_are_named(tmp_path):
  gen = tmp_path / "generated"
  gen.mkdir()
  (gen / "prompts.jsonl").write_text(json.dumps({"file": "a.npz", "attributes": {},
                                                 "split": "seen", "kind": "long"}) + "\n")
  with pytest.raises(ValueError, match=r"prompts.jsonl:1: field 'reencode'"):
    evaluate.read_prompts(str(tmp_path))


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "loong_jax.evaluate", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin",
                             **compile_settings.subprocess_env()})


def test_cli_on_an_empty_run_skips_sections_and_can_require_them(tmp_path):
  out = _cli(f"--workdir={tmp_path}", "--probe_clips=4")
  assert out.returncode == 0, out.stderr
  assert "tokenizer section skipped" in out.stderr
  loaded = json.loads((tmp_path / "report.json").read_text())
  assert set(loaded) == {"probe", "timings"}
  out = _cli(f"--workdir={tmp_path}", "--probe_clips=0", "--require_all")
  assert out.returncode != 0
  assert "missing tokenizer.psnr" in out.stderr
