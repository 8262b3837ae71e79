"""loong_jax/demo_candidates.py: the first-frame candidate pool and each scorer's choice."""

import json

import numpy as np
import pytest

from loong_jax import demo_candidates
from tests.quick_demo import interrupted_quick_demo  # noqa: F401 -- the session's quick run


def test_summarise_rates_the_pool_and_each_scorers_choice():
  # 2 prompts (seen, held-out) x 3 candidates; the held-out one has the colour only in its
  # last candidate, which the object filter rules out unless no candidate passes.
  color = np.array([[1, 0, 0], [0, 0, 1]], bool)
  shape = np.array([[1, 1, 0], [0, 0, 0]], bool)
  scores = {"first": np.array([[3.0, 2, 1], [3, 2, 1]]), "last": np.array([[1.0, 2, 3],
                                                                        [1, 2, 3]])}
  ok = np.array([[True, True, True], [True, True, False]])
  out = demo_candidates.summarise(color, shape, ["seen", "heldout"], scores, ok)
  assert out["pool"] == pytest.approx({"color.seen": 1 / 3, "shape.seen": 2 / 3,
                                       "color.heldout": 1 / 3, "shape.heldout": 0.0})
  assert out["any"]["color.heldout"] == 1.0 and out["any"]["shape.heldout"] == 0.0
  assert out["chosen"]["first"] == {"color.seen": 1.0, "shape.seen": 1.0,
                                    "color.heldout": 0.0, "shape.heldout": 0.0}
  # "last" prefers candidate 2: taken for the seen prompt, filtered out for the held-out one.
  assert out["chosen"]["last"]["color.seen"] == 0.0
  assert out["chosen"]["last"]["color.heldout"] == 0.0
  none = demo_candidates.summarise(color, shape, ["seen", "heldout"], scores, ~ok & False)
  assert none["chosen"]["last"]["color.heldout"] == 1.0   # nothing eligible: all compete
  table = demo_candidates.table({**out, "candidates": 3, "prompts": 2})
  assert "| chosen by last | 0.00 / 0.00 |" in table


@pytest.mark.slow
@pytest.mark.xdist_group("quick_demo")
def test_the_tool_runs_on_a_demo_run(interrupted_quick_demo, tmp_path, capsys):
  finished, *_ = interrupted_quick_demo
  out = tmp_path / "candidates.json"
  demo_candidates.main(["--workdir", str(finished), "--candidates", "2", "--out", str(out)])
  result = json.loads(out.read_text())
  assert result["candidates"] == 2 and result["prompts"] == 4   # quick: 4 faithfulness prompts
  assert set(result["chosen"]) == {"likelihood", "+ colour", "+ colour + shape",
                                   "colour posterior"}
  for row in (result["pool"], result["any"], *result["chosen"].values()):
    assert set(row) == {f"{k}.{s}" for k in ("color", "shape") for s in ("seen", "heldout")}
    assert all(0.0 <= v <= 1.0 for v in row.values())
  assert result["pool"]["color.seen"] <= result["any"]["color.seen"]
  assert "| chosen by likelihood |" in capsys.readouterr().out
  with pytest.raises(SystemExit):
    demo_candidates.main(["--workdir", str(finished), "--candidates", "0"])
