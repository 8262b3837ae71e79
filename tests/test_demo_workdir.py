"""The demo's run directory across commands (`loong_jax/demo_workdir.py`): a changed config is
refused where a started step read it, `--from_step` redoes the later steps and keeps the old
outputs."""

import json
import os

import pytest

from loong_jax import cli, demo, demo_workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(REPO, "configs", "demo_cpu.py") + ":quick"
STEPS = ("tokenizer", "text", "pretokenize", "lm_stage1", "lm_stage2")


def _config(**overrides):
  config = cli.load_config_file(QUICK)
  for key, value in overrides.items():
    block, field = key.split("__")
    config[block][field] = value
  return config


def _runner(calls):
  """A step that records its call and writes its outputs (their content: the call number)."""
  def run(name, workdir):
    calls.append(name)
    for rel in demo_workdir.OUTPUTS[name][:1]:
      path = os.path.join(workdir, rel)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "w") as f:
        f.write(str(len(calls)))
  return run


def test_changes_flattens_and_compares_as_json():
  old = {"lm": {"steps": (1, 2), "model": {"copy_head": False}}, "data": {"speed": 0.0}}
  new = {"lm": {"steps": [1, 2], "model": {"copy_head": True}}, "text": {"max_text_len": 16}}
  assert demo_workdir.changes(old, new) == {
      "data.speed": (0.0, "<absent>"), "lm.model.copy_head": (False, True),
      "text.max_text_len": ("<absent>", 16)}
  # The same config file in another clone of the repository is the same config.
  assert demo_workdir.changes({"tokenizer": {"config": "/a/loong/configs/t.py:demo"}},
                              {"tokenizer": {"config": "/b/c/configs/t.py:demo"}}) == {}
  assert demo_workdir.changes({"tokenizer": {"config": "/a/configs/t.py:demo"}},
                              {"tokenizer": {"config": "/a/configs/t.py:tiny"}})
  assert demo_workdir.first_step("lm.model.copy_head", STEPS) == "lm_stage1"
  assert demo_workdir.first_step("data.speed", STEPS) == "tokenizer"


def test_a_changed_config_is_refused_where_a_started_step_read_it(tmp_path):
  calls = []
  demo.run_pipeline(_config(), str(tmp_path), steps=STEPS, runner=_runner(calls))
  assert calls == list(STEPS)
  # A block no finished step read is fine; so is the same config again.
  demo.run_pipeline(_config(), str(tmp_path), steps=STEPS, runner=_runner(calls))
  demo.run_pipeline(_config(generate__top_k=5), str(tmp_path), steps=STEPS,
                    runner=_runner(calls))
  assert calls == list(STEPS)
  with pytest.raises(demo_workdir.ConfigChanged, match=r"(?s)lm\.seed: 0 -> 3.*"
                     r"--from_step=lm_stage1"):
    demo.run_pipeline(_config(lm__seed=3), str(tmp_path), steps=STEPS, runner=_runner(calls))
  with pytest.raises(demo_workdir.ConfigChanged, match=r"(?s)data\.wall_fraction.*"
                     r"--from_step=tokenizer"):
    demo.run_pipeline(_config(data__wall_fraction=0.3, lm__seed=3), str(tmp_path), steps=STEPS,
                      runner=_runner(calls))
  # An interrupted step counts as started: its checkpoint holds the old config's work.
  os.remove(tmp_path / "steps" / "lm_stage2.done")
  os.remove(tmp_path / "steps" / "lm_stage1.done")
  os.remove(tmp_path / "steps" / "lm_stage1.seconds")
  with pytest.raises(demo_workdir.ConfigChanged, match="--from_step=lm_stage1"):
    demo.run_pipeline(_config(lm__seed=3), str(tmp_path), steps=STEPS, runner=_runner(calls))
  assert calls == list(STEPS)
  saved = json.loads((tmp_path / demo_workdir.CONFIG_FILE).read_text())
  assert saved["lm"]["seed"] == 0 and saved["generate"]["top_k"] == 5  # the refused one unsaved


def test_from_step_redoes_the_later_steps_and_moves_their_outputs_aside(tmp_path):
  calls = []
  demo.run_pipeline(_config(), str(tmp_path), steps=STEPS, runner=_runner(calls))
  timings = demo.run_pipeline(_config(lm__seed=3), str(tmp_path), steps=STEPS,
                              runner=_runner(calls), from_step="lm_stage1")
  assert calls == list(STEPS) + ["lm_stage1", "lm_stage2"]
  assert set(timings) == set(STEPS) | {"total"}
  assert (tmp_path / "lm" / "stage1").read_text() == "6"   # redone
  assert (tmp_path / "tokenizer").read_text() == "1"       # kept
  replaced = list((tmp_path / "replaced").iterdir())
  assert len(replaced) == 1
  assert (replaced[0] / "lm" / "stage1").read_text() == "4"
  assert (replaced[0] / "steps" / "lm_stage2.done").exists()
  assert not (replaced[0] / "tokenizer").exists()
  assert json.loads((tmp_path / demo_workdir.CONFIG_FILE).read_text())["lm"]["seed"] == 3
  # Keeping a step across a change of its own block is allowed, and said.
  notes = demo_workdir.prepare(_config(data__wall_fraction=0.3).to_json(), str(tmp_path), STEPS,
                               from_step="pretokenize")
  assert any("data.wall_fraction=0.0" in n for n in notes)
  assert any("replaced" in n for n in notes)
  with pytest.raises(ValueError, match="not a step"):
    demo_workdir.prepare(_config().to_json(), str(tmp_path), STEPS, from_step="lm_stage9")
