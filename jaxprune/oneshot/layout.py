"""Kernel layouts: how a parameter leaf maps onto the ``[in, out]`` matrix of a linear layer.

A linear layer's kernel may reach its matrix product through views: a DenseGeneral kernel
``[d, heads, head_dim]`` contracts one axis, an output projection ``[heads, head_dim, d]``
contracts two, a tied LM head multiplies by the transposed embedding ``[vocab, d]``. A
`KernelView` records those views (reshapes and transposes, in order) and the product's
contracting axes, so the kernel is read as the 2-D matrix ``W [in, out]`` that the product
computes with (``y = x @ W``, inputs flattened in the product's order) and written back
exactly: `KernelView.from_2d` inverts `KernelView.to_2d`.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

Op = tuple  # ("reshape", from_shape, to_shape) | ("transpose", permutation)


@dataclasses.dataclass(frozen=True)
class KernelView:
  """A chain of reshapes and transposes from a kernel leaf of ``shape`` to ``current``.

  Example:
    >>> import jax.numpy as jnp
    >>> view = KernelView.of((2, 3, 4)).matrix(contracting=(0, 1))  # o_proj [heads, hd, d]
    >>> view.in_features, view.out_features
    (6, 4)
    >>> k = jnp.arange(24.0).reshape(2, 3, 4)
    >>> bool((view.from_2d(view.to_2d(k)) == k).all())
    True
  """

  shape: tuple[int, ...]
  current: tuple[int, ...]
  ops: tuple[Op, ...] = ()

  @classmethod
  def of(cls, shape: tuple[int, ...]) -> KernelView:
    """The identity view of a leaf of ``shape``."""
    shape = tuple(int(d) for d in shape)
    return cls(shape, shape)

  def reshape(self, new: tuple[int, ...]) -> KernelView:
    """This view followed by a reshape to ``new`` (consecutive reshapes merge)."""
    new = tuple(int(d) for d in new)
    if new == self.current:
      return self
    ops = self.ops
    start = self.current
    if ops and ops[-1][0] == "reshape":
      start, ops = ops[-1][1], ops[:-1]
    op = () if start == new else (("reshape", start, new),)
    return KernelView(self.shape, new, ops + op)

  def transpose(self, perm: tuple[int, ...]) -> KernelView:
    """This view followed by ``jnp.transpose(·, perm)`` (the identity is dropped)."""
    perm = tuple(int(p) for p in perm)
    if perm == tuple(range(len(perm))):
      return self
    return KernelView(
      self.shape, tuple(self.current[p] for p in perm), (*self.ops, ("transpose", perm))
    )

  def matrix(self, contracting: tuple[int, ...]) -> KernelView:
    """The ``[in, out]`` view: ``contracting`` axes of this view, in that order, become ``in``."""
    free = tuple(a for a in range(len(self.current)) if a not in contracting)
    moved = self.transpose((*contracting, *free))
    n_in = math.prod(self.current[a] for a in contracting)
    return moved.reshape((n_in, math.prod(self.current[a] for a in free)))

  @property
  def in_features(self) -> int:
    return self.current[0]

  @property
  def out_features(self) -> int:
    return self.current[1]

  def to_2d(self, kernel: jax.Array) -> jax.Array:
    """The kernel seen through this view."""
    x = kernel
    for op in self.ops:
      x = jnp.reshape(x, op[2]) if op[0] == "reshape" else jnp.transpose(x, op[1])
    return x

  def from_2d(self, matrix: jax.Array) -> jax.Array:
    """The inverse of `to_2d`: an array of this view's shape back in the kernel's layout."""
    x = matrix
    for op in reversed(self.ops):
      x = jnp.reshape(x, op[1]) if op[0] == "reshape" else jnp.transpose(x, np.argsort(op[1]))
    return x
