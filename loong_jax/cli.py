"""Shared entry-point plumbing: `--config FILE:arg` with `--config.a.b=v` overrides, clear errors.

ml_collections reports an override of an unknown field as a bare `AttributeError: "'foo'"`; this
turns it into a message that names the whole field and the fields that do exist.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags


def define_config_flag(default: str | None = None):
  """`--config` (lock_config: an override of an unknown field is an error)."""
  return config_flags.DEFINE_config_file("config", default, "Config file and variant, e.g. "
                                         "configs/lm/llama.py:tiny", lock_config=True)


def load_config_file(spec: str):
  """`'path/to/file.py:arg'` -> the ConfigDict its `get_config(arg)` returns; `'run/config.json'`
  (the config a training run wrote) -> that config."""
  path, _, arg = spec.partition(":")
  if path.endswith(".json"):
    if arg:
      raise ValueError(f"--config: {spec!r}: a .json config takes no ':' argument")
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  module_spec = importlib.util.spec_from_file_location("_loong_config", path)
  if module_spec is None:
    raise FileNotFoundError(f"--config: no config file at {path!r}")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def unknown_override(argv: list[str]) -> str | None:
  """The first `--config.a.b=v` in argv whose field does not exist, described; None if all do."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec is None and "--config" in argv:
    spec = argv[argv.index("--config") + 1]
  if spec is None:
    return None
  config = load_config_file(spec)
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    node, walked = config, "config"
    for key in arg[len("--config."):].split("=", 1)[0].split("."):
      if not hasattr(node, "keys") or key not in node:
        known = sorted(node.keys()) if hasattr(node, "keys") else []
        return f"{arg}: {walked} has no field {key!r}; known: {known}"
      node, walked = node[key], f"{walked}.{key}"
  return None


def parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, flags.Error) as e:
    problem = unknown_override(argv)
    sys.exit(f"error: {problem or e}")


def run(main):
  """`absl.app.run(main)` with the config-aware flag parser.

  Library INFO logs (orbax writes several lines per checkpoint) are hidden unless `--verbosity`
  is given; progress goes to stdout through `train.metrics`.
  """
  if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
    logging.set_verbosity(logging.WARNING)
  app.run(main, flags_parser=parse_flags)
