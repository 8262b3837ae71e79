"""launch/aot_compile.py: topology names, the batch search, OOM messages, compiles on CPU / TPU."""

import importlib.util
import json
import subprocess
import sys

import jax
import pytest

from launch import aot_compile as aot
from tests.llm.helpers import tiny_config

GIB = aot.GIB


def _report(batch, *, temp):
  return aot.StepReport(batch_size=batch, seq_len=4608, mesh={"data": 1, "fsdp": 64, "tensor": 1},
                        argument_bytes=2 * GIB, output_bytes=2 * GIB, alias_bytes=2 * GIB,
                        temp_bytes=temp, code_bytes=0, flops=1e12, model_flops=1e12,
                        compile_s=0.0)


@pytest.mark.parametrize("name,expected", [
    ("v5p-128", ("v5p", "4x4x4", 64)), ("v5e-256", ("v5e", "16x16", 256)),
    ("v4-8", ("v4", "2x2x1", 4)), ("v5litepod-16", ("v5e", "4x4", 16)),
    ("v5e:2x4", ("v5e", "2x4", 8)), ("v5p:2x2x2", ("v5p", "2x2x2", 8))])
def test_slice_names_map_to_chip_grids(name, expected):
  assert aot.parse_topology(name) == expected


@pytest.mark.parametrize("name,message", [
    ("v5p-127", "multiple of 2"), ("v7-8", "unknown TPU generation 'v7'"),
    ("v5e:2x2x2", "v5e grids have 2 dimensions"), ("v5e-12", "no standard v5e slice of 12")])
def test_bad_topologies_fail_naming_the_flag(name, message):
  with pytest.raises(ValueError, match=f"--topology={name!r}.*{message}"):
    aot.parse_topology(name)


def test_batch_search_finds_the_largest_fitting_multiple_in_few_compiles():
  # 2 GiB of state plus 0.3 GiB per 64 examples; 16 GiB per device: fits up to 46 x 64 = 2944.
  measured = []

  def measure(batch):
    measured.append(batch)
    return _report(batch, temp=int(0.3 * GIB * batch / 64))

  best, attempts = aot.find_max_batch(measure, 64, 16 * GIB, 100_000)
  assert best.batch_size == 2944 and best.total_bytes <= 16 * GIB
  assert _report(3008, temp=int(0.3 * GIB * 3008 / 64)).total_bytes > 16 * GIB
  assert [b for b, _, _ in attempts] == measured
  assert len(measured) <= 12
  assert all(b % 64 == 0 for b in measured)


def test_batch_search_caps_at_the_limit_and_reports_nothing_when_nothing_fits():
  best, attempts = aot.find_max_batch(lambda b: _report(b, temp=0), 8, GIB * 4, 64)
  assert best.batch_size == 64 and [b for b, _, _ in attempts] == [8, 16, 32, 64]
  best, attempts = aot.find_max_batch(lambda b: _report(b, temp=20 * GIB), 8, 16 * GIB, 64)
  assert best is None and [(b, ok) for b, ok, _ in attempts] == [(8, False)]


def test_compiler_out_of_memory_counts_as_not_fitting():
  def measure(batch):
    if batch > 24:
      raise aot.OutOfMemory(f"global batch {batch}: RESOURCE_EXHAUSTED")
    return _report(batch, temp=0)

  best, attempts = aot.find_max_batch(measure, 8, 16 * GIB, 1024)
  assert best.batch_size == 24
  assert isinstance(attempts[-1][2], aot.OutOfMemory) or attempts[-1][1]


def test_out_of_memory_message_gives_needed_and_available_per_device():
  message = aot.out_of_memory_message(_report(128, temp=20 * GIB), 16 * GIB, "TPU v5 lite")
  assert message.startswith("RESOURCE_EXHAUSTED: ran out of memory in memory space hbm.")
  assert "needs 22.00 GiB per device; a TPU v5 lite has 16.00 GiB (exceeded by 6.00 GiB)" in message
  assert "global batch 128 x seq_len 4608" in message


def test_mesh_flag_values():
  config = tiny_config()
  assert aot.resolve_mesh("fsdp", config) == {"data": 1, "fsdp": -1, "tensor": 1}
  assert aot.resolve_mesh("config", config) == {"data": -1, "fsdp": 1, "tensor": 1}
  assert aot.resolve_mesh("2,-1,2", config) == {"data": 2, "fsdp": -1, "tensor": 2}
  with pytest.raises(ValueError, match="--mesh='2,2'"):
    aot.resolve_mesh("2,2", config)


def test_tiny_step_compiles_on_fake_cpu_devices():
  config = tiny_config()
  report = aot.compile_step(config, jax.devices()[:8], {"data": 2, "fsdp": -1, "tensor": 1},
                            batch_size=8, seq_len=64)
  assert report.mesh == {"data": 2, "fsdp": 4, "tensor": 1}
  assert report.argument_bytes > 0 and report.temp_bytes > 0 and report.flops > 0
  # Donation: the new state is written over the old one.
  assert report.alias_bytes > 0.9 * (report.argument_bytes - 8 * 64 * 12)
  with pytest.raises(ValueError, match="--batch_size=6 must be divisible .* data\\*fsdp=8"):
    aot.compile_step(config, jax.devices()[:8], {"data": 2, "fsdp": -1, "tensor": 1},
                     batch_size=6, seq_len=64)


def test_cli_on_cpu_prints_the_table_and_fails_like_a_pod_when_memory_is_short(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "launch.aot_compile", "--config=configs/lm/llama.py:tiny",
       "--platform=cpu", "--num_devices=4", "--batch_size=4", "--seq_len=64",
       "--memory_gib=0.001", f"--json_out={tmp_path / 'report.json'}",
       "--config.vocab.text_size=1000", "--config.vocab.video_size=256"],
      capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin"})
  assert out.returncode == 1, out.stderr
  assert "| cpu | configs/lm/llama.py:tiny | 1, 4, 1 | 64 | 4 |" in out.stdout
  assert "RESOURCE_EXHAUSTED: ran out of memory in memory space hbm" in out.stderr
  report = json.loads((tmp_path / "report.json").read_text())
  assert report["total_bytes"] > report["capacity_bytes"] == int(0.001 * GIB)


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="libtpu not installed")
def test_tiny_step_compiles_for_a_tpu_topology():
  devices, chip = aot.tpu_devices("v5e-8")
  assert len(devices) == 8 and chip.hbm_gib == 16
  report = aot.compile_step(tiny_config(), devices, {"data": 1, "fsdp": -1, "tensor": 1},
                            batch_size=8, seq_len=128)
  assert report.mesh["fsdp"] == 8 and report.flops > 0
  assert 0 < report.total_bytes < GIB
