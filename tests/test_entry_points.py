"""The command-line entry points: params table, config errors, the train_lm main job."""

import json
import re
import subprocess
import sys

import pytest

from loong_jax import train_lm
from tests import compile_settings
from tests.llm.helpers import tiny_config


def _run(*args):
  return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                        timeout=300, env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin",
                                         **compile_settings.subprocess_env()})


@pytest.mark.parametrize("size,target", [("700m", 0.7e9), ("3b", 3e9), ("7b", 7e9)])
def test_params_cli_sizes_are_within_ten_percent(size, target):
  out = _run("loong_jax.params", f"--config=configs/lm/llama.py:{size}")
  assert out.returncode == 0, out.stderr
  last = out.stdout.strip().splitlines()[-1]
  n = int(re.fullmatch(r"params=(\d+)", last).group(1))
  assert abs(n - target) / target < 0.10, n
  assert "layers/mlp/gate/kernel" in out.stdout


def test_unknown_override_is_named():
  out = _run("loong_jax.params", "--config=configs/lm/llama.py:tiny", "--config.lm.num_layerz=3")
  assert out.returncode != 0
  assert "config.lm has no field 'num_layerz'" in out.stderr


def test_heads_not_dividing_the_width_fail_at_start_up():
  out = _run("loong_jax.params", "--config=configs/lm/llama.py:tiny", "--config.lm.num_heads=3")
  assert out.returncode != 0
  assert "config.lm.num_heads: 3 must divide d_model=64" in out.stderr


def test_mesh_larger_than_the_devices_fails_naming_the_field(tmp_path):
  config = tiny_config()
  config.mesh = dict(data=16, fsdp=1, tensor=1)
  with pytest.raises(ValueError, match="config.mesh: .* needs 16 devices"):
    train_lm.build(config)


def test_train_lm_trains_checkpoints_and_resumes(tmp_path):
  config = tiny_config(**{"train.steps": 12, "train.log_every": 4, "train.checkpoint_every": 8,
                          "train.seq_len": 128, "optim.warmup_steps": 2})
  rows = train_lm.train(config, str(tmp_path)).history
  assert [r["step"] for r in rows] == [4, 8, 12]
  assert rows[-1]["loss"] < rows[0]["loss"]
  # A longer run in the same workdir resumes from step 12 instead of starting over.
  config.train.steps = 16
  more = train_lm.train(config, str(tmp_path)).history
  assert [r["step"] for r in more] == [16]
  logged = [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")]
  assert logged == [4, 8, 12, 16]


def test_a_runs_config_json_loads_as_a_config(tmp_path):
  """A training run's config.json is a config spec (how the demo points generation at its
  tokenizer run, overrides included); it takes no ':' argument."""
  from loong_jax import cli  # noqa: PLC0415
  config = cli.load_config_file("configs/tokenizer/magvit2.py:demo")
  config.tokenizer.local_encoder = True
  path = tmp_path / "config.json"
  path.write_text(config.to_json())
  loaded = cli.load_config_file(str(path))
  assert loaded.tokenizer.local_encoder is True
  assert list(loaded.tokenizer.quantizer.levels) == list(config.tokenizer.quantizer.levels)
  with pytest.raises(ValueError, match="no ':' argument"):
    cli.load_config_file(f"{path}:demo")
