"""`loong_jax.demo_presence`: long-video presence on many prompts of a finished demo run."""

import json
import shutil
import subprocess
import sys

import pytest

from loong_jax import cli
from tests import quick_demo


@pytest.mark.slow
@pytest.mark.xdist_group("quick_demo")
def test_presence_over_many_prompts_on_a_finished_run(interrupted_quick_demo, tmp_path):
  """`python -m loong_jax.demo_presence` on a copy of the finished quick run: the faithfulness
  and minute prompts, split seen / held-out, with a changed generation setting recorded."""
  finished, *_ = interrupted_quick_demo
  workdir = tmp_path / "run"
  shutil.copytree(finished, workdir)
  done = subprocess.run(
      [sys.executable, "-m", "loong_jax.demo_presence", f"--workdir={workdir}", "--seconds=4",
       "--set", "generate.clip_latent_frames=5", "--set", "generate.cond_latent_frames=2",
       "--name=short"], cwd=quick_demo.REPO, env=quick_demo.user_env(), capture_output=True,
      text=True, timeout=900)
  assert done.returncode == 0, done.stdout + done.stderr
  with open(workdir / "presence" / "short.json") as f:
    result = json.load(f)
  assert result["settings"] == {"generate.clip_latent_frames": 5,
                                "generate.cond_latent_frames": 2}
  assert result["seen"]["count"] == result["heldout"]["count"] == 3   # 2 clips + 1 minute each
  for split in ("seen", "heldout"):
    assert len(result[split]["presence"]) == 1   # 4 s: one window
    assert 0.0 <= result[split]["frames"][0] <= 1.0


def test_presence_settings_and_summary():
  from loong_jax import demo_presence
  config = cli.load_config_file(quick_demo.QUICK)
  assert demo_presence.apply_settings(config, ["generate.top_k=5"]) == {"generate.top_k": 5}
  assert config.generate.top_k == 5
  for bad in ("generate.no_such_key=1", "lm.steps=(1, 1, 1)", "generate.top_k"):
    with pytest.raises(ValueError, match="generate.KEY=VALUE"):
      demo_presence.apply_settings(config, [bad])
  with pytest.raises(ValueError, match="not a Python literal"):
    demo_presence.apply_settings(config, ["generate.top_k=five"])
  rows = [("seen", [{"presence": True, "frames": 1.0}, {"presence": False, "frames": 0.2}]),
          ("seen", [{"presence": False, "frames": 0.4}]),
          ("heldout", [{"presence": True, "frames": 0.9}, {"presence": True, "frames": 0.8}])]
  summary = demo_presence.summarize(rows)
  assert summary["seen"] == {"presence": [0.5, 0.0], "frames": [0.7, 0.2], "count": 2}
  assert summary["heldout"]["presence"] == [1.0, 1.0]
