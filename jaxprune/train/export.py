"""Pytrees of arrays as ``.npz`` files keyed by "/"-joined paths: masks and params to share.

A run's masks (``jaxprune.masks_of(state.opt_state)``) saved with `save_tree` can start any
other run through ``--config.pruning.initial_masks=<file>``, and params saved the same way
(a lottery ticket's rewind point) through ``--config.model.initial_params=<file>``. The
file holds one array per leaf, named by its path (``"Dense_0/kernel"``), so it is
readable with plain ``numpy.load`` and independent of JAX versions and pytree classes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxprune._tree import leaves_with_paths
from jaxprune.train.files import atomic_open

PyTree = Any


def save_tree(path: str | os.PathLike, tree: PyTree) -> None:
  """Writes the leaves of ``tree`` to ``path`` (``.npz``), atomically (temporary file, rename).

  Args:
    path: the file to write.
    tree: a pytree of arrays (params, masks).

  Example:
    >>> import jax.numpy as jnp, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "masks.npz")
    >>> save_tree(path, {"Dense_0": {"kernel": jnp.array([[True, False]])}})
    >>> sorted(np.load(path).files)
    ['Dense_0/kernel']
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = {name: np.asarray(jax.device_get(x)) for name, x in leaves_with_paths(tree)}
  with atomic_open(path, "wb") as f:
    np.savez(f, **arrays)


def load_tree(path: str | os.PathLike, like: PyTree, *, what: str = "arrays") -> PyTree:
  """Reads a `save_tree` file into the structure of ``like`` (shapes checked, dtypes kept).

  Args:
    path: the ``.npz`` file.
    like: a pytree with the wanted structure and leaf shapes (arrays or
      ``jax.ShapeDtypeStruct``), e.g. the params of the run that loads it.
    what: what the file holds, for error messages (``"masks"``, ``"params"``).

  Returns:
    A pytree like ``like`` whose leaves are the file's numpy arrays.

  Raises:
    FileNotFoundError: if ``path`` does not exist.
    ValueError: if the file's names or shapes differ from ``like``'s.

  Example:
    >>> import jax.numpy as jnp, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> save_tree(path, {"w": jnp.arange(3.0)})
    >>> load_tree(path, {"w": jnp.zeros(3)})["w"].tolist()
    [0.0, 1.0, 2.0]
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(
      f"No {what} file at {os.fspath(path)!r}; expected an .npz written by "
      "jaxprune.train.export.save_tree, e.g. <lottery workdir>/round_3/masks.npz."
    )
  named = leaves_with_paths(like)
  with np.load(path) as data:
    arrays = {name: data[name] for name in data.files}
  expected = [name for name, _ in named]
  if sorted(arrays) != sorted(expected):
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    raise ValueError(
      f"{os.fspath(path)!r} does not hold the {what} of this model: missing {missing}, "
      f"unexpected {extra}. Expected one array per parameter path: {expected}. Export the "
      f"{what} of a run of the same model (same config.model)."
    )
  out = []
  for name, leaf in named:
    if tuple(arrays[name].shape) != tuple(np.shape(leaf)):
      raise ValueError(
        f"{what} {name!r} in {os.fspath(path)!r} has shape {arrays[name].shape}, but this "
        f"model's {name!r} has shape {tuple(np.shape(leaf))}. Export the {what} of a run of "
        "the same model (same config.model and data)."
      )
    out.append(arrays[name])
  return jax.tree.unflatten(jax.tree.structure(like), out)
