"""A model seen block by block: embed, a stack of same-shaped blocks, head.

Sequential pruning needs only three pure functions and where each block's params live:
``embed(params, tokens) -> hidden``, ``block(block_params, hidden) -> hidden`` (one function
for every block, so it compiles once) and ``head(params, hidden) -> logits``.
`blockwise_from_decoder_lm` builds that description for the zoo's decoder LM (or any Flax
Linen module with ``embed``/``head`` methods and ``block_0`` ... ``block_{L-1}`` submodules of
one class).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

PyTree = Any
_BLOCK = re.compile(r"block_(\d+)")


def _get(tree: PyTree, path: str) -> PyTree:
  for key in path.split("/"):
    if not isinstance(tree, Mapping) or key not in tree:
      have = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
      raise ValueError(f"The params have no entry {path!r} (at {key!r}: keys {have}).")
    tree = tree[key]
  return tree


def _set(tree: PyTree, path: str, value: PyTree) -> PyTree:
  key, _, rest = path.partition("/")
  out = dict(tree)
  out[key] = _set(tree[key], rest, value) if rest else value
  return out


@dataclasses.dataclass(frozen=True)
class Blockwise:
  """A model as embed → blocks in order → head, for block-by-block calibration.

  Attributes:
    embed: ``embed(params, tokens [B, T]) -> hidden``.
    block: ``block(block_params, hidden) -> hidden``, the same function for every block.
    head: ``head(params, hidden) -> logits``.
    block_paths: "/"-joined paths of the blocks' params in ``params``, in order.
    max_len: the model's context length, the default calibration length (or ``None``).

  Example:
    >>> import jax.numpy as jnp
    >>> bw = Blockwise(embed=lambda p, t: p["emb"][t], block=lambda p, h: h @ p["w"],
    ...                head=lambda p, h: h @ p["emb"].T, block_paths=("b0", "b1"))
    >>> p = {"emb": jnp.eye(3), "b0": {"w": 2 * jnp.eye(3)}, "b1": {"w": jnp.eye(3)}}
    >>> bw.apply(p, jnp.array([[1]]))
    Array([[[0., 2., 0.]]], dtype=float32)
  """

  embed: Callable[[PyTree, jax.Array], jax.Array]
  block: Callable[[PyTree, jax.Array], jax.Array]
  head: Callable[[PyTree, jax.Array], jax.Array]
  block_paths: tuple[str, ...]
  max_len: int | None = None

  def __post_init__(self):
    for name in ("embed", "block", "head"):
      if not callable(getattr(self, name)):
        raise TypeError(
          f"Blockwise.{name} must be a function (params, x) -> y; got "
          f"{type(getattr(self, name)).__name__}."
        )
    paths = self.block_paths
    if isinstance(paths, str) or not paths or not all(isinstance(p, str) and p for p in paths):
      raise TypeError(
        f"Blockwise.block_paths must be a non-empty tuple of '/'-joined param paths; got "
        f"{paths!r}. Example: block_paths=('block_0', 'block_1')."
      )
    object.__setattr__(self, "block_paths", tuple(paths))

  def block_params(self, params: PyTree, i: int) -> PyTree:
    """The params of block ``i``."""
    return _get(params, self.block_paths[i])

  def replace_block(self, params: PyTree, i: int, block_params: PyTree) -> PyTree:
    """``params`` with block ``i``'s params replaced (the other entries are shared)."""
    return _set(params, self.block_paths[i], block_params)

  def apply(self, params: PyTree, tokens: jax.Array) -> jax.Array:
    """The whole model: head(blocks(embed(tokens)))."""
    hidden = self.embed(params, tokens)
    for i in range(len(self.block_paths)):
      hidden = self.block(self.block_params(params, i), hidden)
    return self.head(params, hidden)


def _is_static(x: Any) -> bool:
  return x is None or isinstance(x, bool | int | float | str)


def blockwise_from_decoder_lm(model: nn.Module) -> Blockwise:
  """The `Blockwise` view of a Linen decoder LM (the zoo's ``DecoderLM``).

  Equal (hashable) models get the same `Blockwise`, so repeated runs on one model reuse
  `prune_sequential`'s compiled passes.

  The model must have methods ``embed(tokens) -> hidden`` and ``head(hidden) -> logits`` and
  top-level submodules ``block_0`` ... ``block_{L-1}`` of one class with equal attributes,
  called as ``block(hidden)`` (static keyword arguments such as ``deterministic=True`` are
  kept). One forward pass is traced abstractly (`jax.eval_shape`) to find the blocks.

  Args:
    model: the Linen module, called as ``model.apply({"params": p}, tokens, train=False)``.

  Returns:
    A `Blockwise` whose functions take the ``"params"`` collection.

  Example:
    >>> import flax.linen as nn, jax, jax.numpy as jnp
    >>> class Block(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, h):
    ...     return h + nn.Dense(h.shape[-1], name="up_proj")(h)
    >>> class LM(nn.Module):
    ...   def setup(self):
    ...     self.tok = nn.Embed(10, 4)
    ...     self.block_0, self.block_1 = Block(), Block()
    ...   def embed(self, t): return self.tok(t)
    ...   def head(self, h): return self.tok.attend(h)
    ...   def __call__(self, t, train=False):
    ...     return self.head(self.block_1(self.block_0(self.embed(t))))
    >>> blockwise_from_decoder_lm(LM()).block_paths
    ('block_0', 'block_1')
  """
  if not isinstance(model, nn.Module):
    raise TypeError(f"Expected a flax.linen Module; got {type(model).__name__}.")
  try:
    hash(model)
  except TypeError:  # a module with unhashable attributes: no cache
    return _blockwise(model)
  return _cached_blockwise(model)


@functools.lru_cache(maxsize=16)
def _cached_blockwise(model: nn.Module) -> Blockwise:
  return _blockwise(model)


def _blockwise(model: nn.Module) -> Blockwise:
  for method in ("embed", "head"):
    if not callable(getattr(model, method, None)):
      raise TypeError(
        f"{type(model).__name__} has no method {method!r}; blockwise_from_decoder_lm needs "
        "embed(tokens) -> hidden and head(hidden) -> logits. Describe other models with "
        "jaxprune.oneshot.Blockwise(embed=..., block=..., head=..., block_paths=...)."
      )
  found: dict[int, tuple[nn.Module, tuple[Any, ...], dict[str, Any]]] = {}

  def interceptor(next_fun, args, kwargs, context):
    scope = context.module.scope
    path = tuple(scope.path) if scope is not None else ()
    if context.method_name == "__call__" and len(path) == 1 and _BLOCK.fullmatch(path[0]):
      found.setdefault(int(_BLOCK.fullmatch(path[0])[1]), (context.module, args[1:], kwargs))
    return next_fun(*args, **kwargs)

  tokens = jnp.zeros((1, 1), jnp.int32)
  with nn.intercept_methods(interceptor):
    jax.eval_shape(lambda t: model.init(jax.random.key(0), t, train=False), tokens)
  if not found or sorted(found) != list(range(len(found))):
    raise ValueError(
      f"{type(model).__name__} must call top-level submodules block_0 ... block_{{L-1}}; found "
      f"{sorted(f'block_{i}' for i in found) or 'none'}."
    )
  first, extra_args, extra_kwargs = found[0]
  if not all(_is_static(a) for a in (*extra_args, *extra_kwargs.values())):
    raise ValueError(
      f"block_0 is called with array arguments besides the hidden state ({extra_args!r}, "
      f"{sorted(extra_kwargs)}); a block must be a function of its params and hidden alone. "
      "Describe the model with jaxprune.oneshot.Blockwise(...) and close over the rest."
    )
  template = first.clone(parent=None, name=None)
  for i, (module, args, kwargs) in found.items():
    if module.clone(parent=None, name=None) != template or (args, kwargs) != (
      extra_args,
      extra_kwargs,
    ):
      raise ValueError(
        f"block_{i} differs from block_0 (class, attributes or call arguments); sequential "
        "pruning runs one block function for every block."
      )

  def block(block_params: PyTree, hidden: jax.Array) -> jax.Array:
    return template.apply({"params": block_params}, hidden, *extra_args, **extra_kwargs)

  def embed(params: PyTree, tokens: jax.Array) -> jax.Array:
    return model.apply({"params": params}, tokens, method="embed")

  def head(params: PyTree, hidden: jax.Array) -> jax.Array:
    return model.apply({"params": params}, hidden, method="head")

  config = getattr(model, "config", None)
  max_len = getattr(model, "max_len", None) or getattr(config, "max_len", None)
  return Blockwise(embed, block, head, tuple(f"block_{i}" for i in sorted(found)), max_len)
