"""report.json: required keys, numbers not strings, errors that name the key."""

import json

import pytest

from loong_jax.eval import report


def full_report():
  out = {"timings": {"demo_total_s": 12.5}}
  for key in report.REQUIRED:
    report.set_key(out, key, [1.0, 0.9] if key in report.LIST_KEYS else 0.5)
  return out


def test_a_full_report_validates_and_round_trips(tmp_path):
  path = str(tmp_path / "report.json")
  report.write(path, full_report())
  loaded = report.read(path)
  assert loaded["faithfulness"]["color"]["heldout"] == 0.5
  assert loaded["long_video"]["presence"]["reencode"] == [1.0, 0.9]
  assert report.missing(loaded) == []


@pytest.mark.parametrize("key", ["tokenizer.ssim", "faithfulness.direction.heldout",
                                 "long_video.presence.no_reencode"])
def test_a_missing_key_is_named(key):
  rep = full_report()
  *parents, leaf = key.split(".")
  del report.get_key(rep, ".".join(parents))[leaf]
  with pytest.raises(ValueError, match=f"missing {key}"):
    report.validate(rep)
  report.validate(rep, require_all=False)  # types alone are fine


def test_missing_timings_are_named():
  rep = full_report()
  del rep["timings"]
  with pytest.raises(ValueError, match=r"missing timings.<step>_s"):
    report.validate(rep)


@pytest.mark.parametrize("key,value", [("tokenizer.psnr", "28.1"), ("probe.accuracy", True),
                                       ("tokenizer.ssim", float("nan")),
                                       ("long_video.presence.reencode", [1.0, "x"])])
def test_a_non_numeric_value_is_named(key, value):
  rep = full_report()
  report.set_key(rep, key, value)
  with pytest.raises(ValueError, match=f"{key} = .* is not a finite number"):
    report.validate(rep, require_all=False)


def test_window_values_must_be_a_list_and_timings_seconds():
  rep = full_report()
  report.set_key(rep, "long_video.presence.reencode", 1.0)
  with pytest.raises(ValueError, match="long_video.presence.reencode must be a non-empty list"):
    report.validate(rep)
  rep = full_report()
  rep["timings"]["demo"] = 3.0
  with pytest.raises(ValueError, match="timings.demo: timings are seconds"):
    report.validate(rep)


def test_written_numbers_stay_numbers(tmp_path):
  path = tmp_path / "r.json"
  report.write(str(path), full_report())
  text = path.read_text()
  assert '"psnr": 0.5' in text and json.loads(text)["timings"]["demo_total_s"] == 12.5
