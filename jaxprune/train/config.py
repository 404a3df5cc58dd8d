"""Loading experiment configs (``configs/<name>.py`` files with ``get_config()``) and overrides.

The command line loads configs with ``ml_collections.config_flags``; this module does the
same from Python (tests, sweeps, notebooks) and lets variant configs build on the default
from any working directory::

  from jaxprune.train.config import load_config

  def get_config():
    config = load_config("default")
    config.pruning.criterion = "snip"
    return config
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections

# configs/ of the project checkout (the package is installed in editable mode).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
_counter = itertools.count()


def config_path(name_or_path: str | os.PathLike) -> Path:
  """Resolves ``"default"`` / ``"snip"`` to ``configs/<name>.py``; paths are returned as is.

  Raises:
    FileNotFoundError: if neither the path nor ``configs/<name>.py`` exists (the message
      lists the configs that do).
  """
  path = Path(name_or_path)
  if path.suffix == ".py" and path.is_file():
    return path
  candidate = CONFIG_DIR / f"{path.stem}.py"
  if path.suffix in ("", ".py") and len(path.parts) == 1 and candidate.is_file():
    return candidate
  known = sorted(p.stem for p in CONFIG_DIR.glob("*.py")) if CONFIG_DIR.is_dir() else []
  raise FileNotFoundError(
    f"No config file {os.fspath(name_or_path)!r}. Pass a path to a file with get_config(), "
    f"e.g. --config configs/default.py, or one of the names {known}."
  )


def override(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
  """Sets dotted fields in place, as ``--config.pruning.sparsity=0.95`` does.

  Args:
    config: the config to change.
    overrides: ``{"pruning.sparsity": 0.95, "train.num_epochs": 2.0}``.

  Raises:
    AttributeError: for a field the config does not have (the message lists the valid
      fields of that block).

  Example:
    >>> import ml_collections
    >>> config = ml_collections.ConfigDict({"pruning": {"sparsity": 0.9}})
    >>> override(config, {"pruning.sparsity": 0.95})
    >>> config.pruning.sparsity
    0.95
  """
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for i, name in enumerate([*parents, leaf]):
      if not isinstance(node, ml_collections.ConfigDict) or name not in node:
        where = ".".join(parents[:i]) or "the config"
        fields = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        raise AttributeError(
          f"Cannot override {dotted!r}: {where} has no field {name!r}. Valid fields: {fields}."
        )
      if name != leaf or i < len(parents):
        node = node[name]
    node[leaf] = value


def load_config(
  name_or_path: str | os.PathLike, overrides: Mapping[str, Any] | None = None
) -> ml_collections.ConfigDict:
  """Runs ``get_config()`` of a config file and applies dotted overrides.

  Args:
    name_or_path: a file path, or the name of a file in ``configs/`` (``"default"``).
    overrides: optional ``{"dotted.field": value}`` (see `override`).

  Returns:
    The config, locked (fields can change, none can be added), like the command line's.

  Example:
    >>> config = load_config("default", {"pruning.sparsity": 0.95})
    >>> config.model.name, config.pruning.sparsity
    ('lenet300100', 0.95)
  """
  path = config_path(name_or_path)
  spec = importlib.util.spec_from_file_location(f"_jaxprune_config_{next(_counter)}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise AttributeError(
      f"{os.fspath(path)!r} has no get_config(); a config file defines "
      "`def get_config() -> ml_collections.ConfigDict`."
    )
  config = module.get_config()
  if overrides:
    override(config, overrides)
  config.lock()
  return config
