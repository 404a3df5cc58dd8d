"""Argument checks shared by the public entry points, each naming its own corrected call."""

from __future__ import annotations

import numbers
from typing import Any


def check_sparsity(sparsity: Any, example: str) -> None:
  """Raises unless ``sparsity`` is a number in [0, 1) or an array (which may be traced).

  Args:
    sparsity: the value received.
    example: the caller's corrected call at 90% sparsity, shown in the message, e.g.
      ``"jaxprune.prune(params, 0.9)"``.

  Example:
    >>> check_sparsity(0.9, "jaxprune.prune(params, 0.9)")
    >>> check_sparsity(90, "jaxprune.prune(params, 0.9)")
    Traceback (most recent call last):
    ...
    ValueError: sparsity must be a fraction in [0, 1) ... jaxprune.prune(params, 0.9).
  """
  if isinstance(sparsity, numbers.Number) and not isinstance(sparsity, bool):
    if not 0.0 <= float(sparsity) < 1.0:
      raise ValueError(
        f"sparsity must be a fraction in [0, 1) (the share of weights removed); got "
        f"{sparsity!r}. For 90% sparsity: {example}."
      )
  elif not hasattr(sparsity, "dtype"):
    raise TypeError(
      f"sparsity must be a number in [0, 1); got {type(sparsity).__name__}: {sparsity!r}. "
      f"Example: {example}."
    )
