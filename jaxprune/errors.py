"""Error classes with stable names, for mistakes that need more than a line to explain."""

from __future__ import annotations


class JaxpruneError(ValueError):
  """Base class of jaxprune's own errors (a `ValueError`, so callers may catch either)."""


class MissingExtraError(JaxpruneError):
  """A criterion needs a keyword extra (``grads``, ``loss_fn``, ``batch``...) that was not passed.

  Example of the fix the message shows::

    updates, state = tx.update(grads, state, params, loss_fn=loss_fn, batch=batch)
  """


class MaskMismatchError(JaxpruneError):
  """A mask tree does not have the structure or shapes of the params it should mask."""


class SparsityError(JaxpruneError):
  """Entries that the masks prune are not exactly zero in the params (see `check_sparse`)."""
