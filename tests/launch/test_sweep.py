"""launch/hyper.py and launch/sweep.py: expansion, run names, overrides, a local 2x2 sweep."""

import json
import subprocess
import sys

import pytest

from launch import hyper, sweep
from tests import compile_settings

SWEEP = "configs/sweeps/tiny_lr_x_weighting.py"


def test_product_varies_the_last_sweep_fastest_and_zipit_pairs():
  points = hyper.product([hyper.sweep("config.a", [1, 2]), hyper.sweep("config.b", ["x", "y"]),
                          hyper.fixed("config.c", 0)])
  assert points == [{"config.a": 1, "config.b": "x", "config.c": 0},
                    {"config.a": 1, "config.b": "y", "config.c": 0},
                    {"config.a": 2, "config.b": "x", "config.c": 0},
                    {"config.a": 2, "config.b": "y", "config.c": 0}]
  assert hyper.zipit([hyper.sweep("config.a", [1, 2]), hyper.sweep("config.b", [3, 4])]) == [
      {"config.a": 1, "config.b": 3}, {"config.a": 2, "config.b": 4}]


def test_combining_errors_name_the_problem():
  with pytest.raises(ValueError, match="config.a is set by two combined sweeps"):
    hyper.product([hyper.sweep("config.a", [1]), hyper.fixed("config.a", 2)])
  with pytest.raises(ValueError, match=r"zipit needs sweeps of one length, got lengths \[1, 2\]"):
    hyper.zipit([hyper.sweep("config.a", [1]), hyper.sweep("config.b", [1, 2])])


def test_tiny_sweep_expands_to_four_named_runs_with_resolved_configs():
  runs, configs = sweep.expand(SWEEP, ["--config.train.steps=5"])
  assert [r.name for r in runs] == [
      "00_learning_rate=0.001,loss_weighting=uniform",
      "01_learning_rate=0.001,loss_weighting=first_frame",
      "02_learning_rate=0.003,loss_weighting=uniform",
      "03_learning_rate=0.003,loss_weighting=first_frame"]
  assert runs[1].overrides == ("--config.optim.learning_rate=0.001",
                               "--config.data.loss_weighting=first_frame",
                               "--config.train.steps=5")
  assert [(c.optim.learning_rate, c.data.loss_weighting) for c in configs] == [
      (1e-3, "uniform"), (1e-3, "first_frame"), (3e-3, "uniform"), (3e-3, "first_frame")]
  assert all(c.train.steps == 5 and isinstance(c.train.steps, int) for c in configs)
  assert configs[0].lm.d_model == 64  # the rest is configs/lm/llama.py:tiny


def test_unknown_swept_field_and_missing_get_hyper_fail_naming_them(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("from configs.lm import llama\n"
                 "def get_config(arg=None):\n  return llama.get_config('tiny')\n"
                 "def get_hyper(h):\n  return h.sweep('config.optim.learnin_rate', [1.0])\n")
  with pytest.raises(ValueError, match="config.optim has no field 'learnin_rate'"):
    sweep.expand(str(bad))
  unprefixed = tmp_path / "unprefixed.py"
  unprefixed.write_text(bad.read_text().replace("config.optim.learnin_rate", "optim.learning_rate"))
  with pytest.raises(ValueError, match="'optim.learning_rate' must start with 'config.'"):
    sweep.expand(str(unprefixed))
  with pytest.raises(ValueError, match="defines no get_hyper"):
    sweep.expand("configs/lm/llama.py:tiny")
  with pytest.raises(ValueError, match="only --config.FIELD=VALUE overrides"):
    sweep.expand(SWEEP, ["--workdir=x"])


def test_print_mode_gives_pod_and_slurm_submissions():
  runs, _ = sweep.expand(SWEEP)
  tpu = sweep.submit_command("tpu", SWEEP, runs[0], "gs://b/s/" + runs[0].name)
  assert tpu.startswith('launch/tpu_pod.sh --name "${TPU_NAME}" --zone "${ZONE}" -- ')
  assert tpu.endswith(" --workdir=gs://b/s/00_learning_rate=0.001,loss_weighting=uniform")
  slurm = sweep.submit_command("slurm", SWEEP, runs[3], "/runs/" + runs[3].name)
  assert slurm.startswith("sbatch --job-name=03_learning_rate=0.003,loss_weighting=first_frame "
                          "launch/gpu_slurm.sbatch --config=configs/sweeps/")
  assert "--config.data.loss_weighting=first_frame" in slurm


@pytest.mark.slow
def test_local_sweep_runs_four_points_and_summarizes_final_losses(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "launch.sweep", f"--config={SWEEP}", f"--workdir={tmp_path}", "--",
       "--config.train.steps=3", "--config.train.log_every=3", "--config.train.seq_len=128",
       "--config.optim.warmup_steps=1", "--config.vocab.text_size=1000",
       "--config.vocab.video_size=256"],
      capture_output=True, text=True, timeout=600, env={"JAX_PLATFORMS": "cpu",
                                                        "PATH": "/usr/bin:/bin",
                                                        **compile_settings.subprocess_env()})
  assert out.returncode == 0, out.stdout + out.stderr
  rows = json.loads((tmp_path / "summary.json").read_text())
  assert [r["name"] for r in rows] == [r.name for r in sweep.expand(SWEEP)[0]]
  for row in rows:
    assert row["final_step"] == 3 and row["returncode"] == 0
    assert 0 < row["final_loss"] < 20
    run_dir = tmp_path / row["name"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data"]["loss_weighting"] == row["data.loss_weighting"]
    assert config["optim"]["learning_rate"] == row["optim.learning_rate"]
    assert (run_dir / "checkpoints").is_dir()
  table = (tmp_path / "summary.md").read_text().splitlines()
  assert len(table) == 2 + 4 and "final_loss" in table[0]
