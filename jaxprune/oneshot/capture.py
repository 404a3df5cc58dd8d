"""The linear layers of a pure function and the Gram matrices XᵀX of their inputs, from its jaxpr.

A block ``fn(params, hidden)`` is traced to a jaxpr and evaluated equation by equation. A
floating leaf of ``params`` with at least two dimensions is a candidate kernel; it is
followed through views (``convert_element_type``, ``reshape``, ``transpose``, ``squeeze``,
a ``broadcast_in_dim`` that only adds unit axes, ``copy``) and through calls (``jit`` as
``jnp.einsum`` emits, ``closed_call``, ``remat``, ``custom_jvp_call``/``custom_vjp_call``). A
``dot_general`` with such a view as one operand is a linear layer; its other operand is the
layer's input, flattened to ``X [rows, in]`` in the product's contraction order (`KernelView`).
This finds `flax.linen.Dense`, ``DenseGeneral`` with 3-D kernels, ``x @ w``,
``jnp.einsum("btd,dhk->bthk", x, w)`` and ``h @ embedding.T`` alike, without knowing the
module classes.

Each linear also gets a *stage*: 0 if its input depends on no other linear of the block, else
one more than the largest stage among the linears its input depends on (q/k/v: 0, o: 1,
gate/up: 2, down: 3 in a Llama block). Pruning stage by stage, with the inputs recomputed
through the layers already pruned, is SparseGPT's "true sequential" order.

Limits: a kernel whose product the walk cannot see has no linear, and pruning it with a
calibrated method is an error naming the reason: a kernel that is scaled, masked or sliced
before its product, one that enters ``lax.scan``/``while``/``cond`` (e.g. ``nn.scan`` over
layers), a product with batch dimensions on the kernel (one matrix per head), or a kernel
used in several products with different layouts. A kernel used in several products with the
same layout (weight sharing) gets the sum of their Gram matrices, as if the inputs were
concatenated.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from jaxprune._tree import is_float_array, leaves_with_paths
from jaxprune.errors import JaxpruneError
from jaxprune.oneshot.layout import KernelView

PyTree = Any
_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")
_CALLS = frozenset(  # primitives that evaluate their jaxpr once, on their operands as given
  [
    "jit",
    "pjit",
    "closed_call",
    "core_call",
    "remat",
    "remat2",
    "checkpoint",
    "custom_jvp_call",
    "custom_vjp_call",
    "custom_vjp_call_jaxpr",
  ]
)
_SAME = frozenset(
  ["convert_element_type", "copy", "copy_p", "sharding_constraint", "reduce_precision"]
)


class CaptureError(JaxpruneError):
  """A kernel chosen for calibrated pruning has no input the jaxpr walk can find.

  The message names the kernel and the reason (see `jaxprune.oneshot.capture`'s limits);
  prune that kernel with ``method="magnitude"``, leave it dense, or rewrite the product as
  ``x @ kernel`` / ``jnp.einsum`` on the parameter itself.
  """


@dataclasses.dataclass(frozen=True)
class Linear:
  """One linear layer found in a traced function.

  Attributes:
    path: the kernel's "/"-joined path in the traced params.
    index: the kernel's position in ``jax.tree.leaves(params)``.
    view: how the kernel reads as the ``[in, out]`` matrix of its product.
    stage: 0 if its input depends on no other linear, else 1 + the largest such stage.
    uses: matrix products it appears in (their Gram matrices are summed).
  """

  path: str
  index: int
  view: KernelView
  stage: int
  uses: int = 1


@dataclasses.dataclass(frozen=True)
class Linears:
  """The linears of a traced function, and why the other candidate kernels are not linears."""

  linears: tuple[Linear, ...]
  problems: Mapping[str, str]

  def get(self, path: str) -> Linear:
    """The linear of kernel ``path``; a `CaptureError` saying why if it is not one."""
    for lin in self.linears:
      if lin.path == path:
        return lin
    why = self.problems.get(path, "it is not a floating array with two or more dimensions")
    found = ", ".join(lin.path for lin in self.linears) or "(none)"
    raise CaptureError(
      f"Cannot find the input of kernel {path!r}: {why}. Calibrated pruning (wanda, "
      f"sparsegpt) needs the input of its matrix product. Linears found: {found}. Prune it "
      f"with method='magnitude', leave it dense (targets={{'.*{path}': None, ...}}), or "
      "compute the product on the parameter itself (x @ kernel, jnp.einsum(..., x, kernel), "
      "nn.Dense, nn.DenseGeneral)."
    )

  @property
  def stages(self) -> tuple[int, ...]:
    return tuple(sorted({lin.stage for lin in self.linears}))


def _read(env: dict[Any, Any], v: Any) -> tuple[Any, Any, frozenset[int]]:
  if isinstance(v, jcore.Literal):
    return v.val, None, frozenset()
  return env[v]


def _inner(eqn: Any) -> tuple[Any, list[Any]] | None:
  """The jaxpr (and its consts) that a call-like equation evaluates, if it maps 1:1."""
  inner = next((eqn.params[k] for k in _CALL_PARAMS if k in eqn.params), None)
  if inner is None or eqn.primitive.name not in _CALLS:
    return None
  jaxpr, consts = (inner.jaxpr, list(inner.consts)) if hasattr(inner, "jaxpr") else (inner, [])
  if len(jaxpr.invars) != len(eqn.invars) or len(jaxpr.outvars) != len(eqn.outvars):
    return None
  return jaxpr, consts


class _Walk:
  """Evaluates a jaxpr, following kernel views to their products and recording XᵀX."""

  def __init__(self, collect: frozenset[int]):
    self.collect = collect
    self.views: dict[int, list[KernelView]] = collections.defaultdict(list)
    self.input_deps: dict[int, set[int]] = collections.defaultdict(set)
    self.fatal: dict[int, str] = {}
    self.notes: dict[int, str] = {}
    self.grams: dict[int, jax.Array] = {}
    self.order: dict[int, int] = {}  # leaf -> rank of its first matrix product

  def run(self, jaxpr: Any, consts: list[Any], args: list[tuple[Any, Any, frozenset[int]]]):
    env: dict[Any, Any] = {}
    for v, c in zip(jaxpr.constvars, consts, strict=True):
      env[v] = (c, None, frozenset())
    for v, a in zip(jaxpr.invars, args, strict=True):
      env[v] = a
    for eqn in jaxpr.eqns:
      ins = [_read(env, v) for v in eqn.invars]
      for v, out in zip(eqn.outvars, self.equation(eqn, ins), strict=True):
        env[v] = out
    return [_read(env, v) for v in jaxpr.outvars]

  def bind(self, eqn: Any, values: list[Any]) -> list[Any]:
    params = eqn.primitive.get_bind_params(eqn.params)
    with eqn.ctx.manager:
      out = eqn.primitive.bind(*values, **params)
    return list(out) if eqn.primitive.multiple_results else [out]

  def equation(self, eqn: Any, ins: list[tuple[Any, Any, frozenset[int]]]):
    name = eqn.primitive.name
    tagged = [t for _, t, _ in ins if t is not None]
    deps = frozenset().union(*(d for _, _, d in ins))
    if tagged and name == "dot_general":
      return self.dot(eqn, ins)
    if tagged and name in _SAME | {"reshape", "transpose", "squeeze", "broadcast_in_dim"}:
      view = self.view(eqn, ins[0])
      if view is not None:
        return [(self.bind(eqn, [v for v, _, _ in ins])[0], view, deps)]
    if tagged and (inner := _inner(eqn)) is not None:
      return self.run(inner[0], inner[1], ins)
    opaque = any(isinstance(v, jcore.Jaxpr | jcore.ClosedJaxpr) for v in eqn.params.values())
    opaque = opaque or any(k.endswith("jaxpr") or k == "branches" for k in eqn.params)
    for leaf, _ in tagged:
      if opaque:
        self.fatal.setdefault(leaf, f"it enters `{name}`, whose body is not followed")
      else:
        self.notes.setdefault(leaf, f"it reaches `{name}` before any matrix product")
    return [(v, None, deps) for v in self.bind(eqn, [v for v, _, _ in ins])]

  def view(self, eqn: Any, arg: tuple[Any, Any, frozenset[int]]) -> tuple[int, KernelView] | None:
    name, params = eqn.primitive.name, eqn.params
    leaf, view = arg[1]
    out_shape = tuple(eqn.outvars[0].aval.shape)
    if name in _SAME:
      return leaf, view
    if name == "transpose":
      return leaf, view.transpose(tuple(params["permutation"]))
    if name == "reshape" and params.get("dimensions") is None:
      return leaf, view.reshape(out_shape)
    if name == "squeeze":
      return leaf, view.reshape(out_shape)
    if name == "broadcast_in_dim":
      dims = tuple(params["broadcast_dimensions"])
      same = [out_shape[d] for d in dims] == list(view.current)
      if same and dims == tuple(sorted(dims)) and math.prod(out_shape) == math.prod(view.current):
        return leaf, view.reshape(out_shape)  # only unit axes are added
    self.notes.setdefault(leaf, f"it reaches `{name}` before any matrix product")
    return None

  def dot(self, eqn: Any, ins: list[tuple[Any, Any, frozenset[int]]]):
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    values = [v for v, _, _ in ins]
    out = self.bind(eqn, values)[0]
    deps = frozenset().union(*(d for _, _, d in ins))
    tags = [t for _, t, _ in ins]
    if tags[0] is not None and tags[1] is not None:
      for leaf, _ in tags:
        self.fatal[leaf] = "it is multiplied by another kernel, not by an input"
      return [(out, None, deps)]
    k = 0 if tags[0] is not None else 1
    leaf, view = tags[k]
    if lb or rb:
      self.fatal[leaf] = (
        "its matrix product has batch dimensions on the kernel (one matrix per head or "
        "expert), which is not one linear layer"
      )
      return [(out, None, deps)]
    kc, xc = (lc, rc)[k], (lc, rc)[1 - k]
    matrix = view.matrix(tuple(kc))
    self.order.setdefault(leaf, len(self.order))
    self.views[leaf].append(matrix)
    x, _, x_deps = ins[1 - k]
    self.input_deps[leaf] |= x_deps
    if leaf in self.collect:
      free = tuple(a for a in range(jnp.ndim(x)) if a not in xc)
      x2 = jnp.transpose(x, (*free, *xc)).reshape(-1, matrix.in_features).astype(jnp.float32)
      gram = jnp.matmul(x2.T, x2, precision=jax.lax.Precision.HIGHEST)
      self.grams[leaf] = gram if leaf not in self.grams else self.grams[leaf] + gram
    return [(out, None, deps | {leaf})]


def _walk(
  fn: Callable[..., Any], params: PyTree, args: tuple[Any, ...], collect: frozenset[int]
) -> tuple[_Walk, Any]:
  closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(params, *args)
  leaves = jax.tree.leaves(params)
  inputs = []
  for i, x in enumerate(leaves):
    kernel = is_float_array(x) and jnp.ndim(x) >= 2
    inputs.append((x, (i, KernelView.of(jnp.shape(x))) if kernel else None, frozenset()))
  inputs += [(x, None, frozenset()) for x in jax.tree.leaves(args)]
  walk = _Walk(collect)
  outs = walk.run(closed.jaxpr, list(closed.consts), inputs)
  return walk, jax.tree.unflatten(jax.tree.structure(out_shape), [v for v, _, _ in outs])


def find_linears(fn: Callable[..., Any], params: PyTree, *args: Any) -> Linears:
  """The linear layers of ``fn(params, *args)`` (traced abstractly; nothing is computed).

  Args:
    fn: a pure function of the params and its inputs, e.g. one decoder block.
    params: its params (arrays or `jax.ShapeDtypeStruct`s).
    *args: its inputs (arrays or `jax.ShapeDtypeStruct`s).

  Returns:
    `Linears`: one `Linear` per kernel found, in the order of their first products, and for
    every other candidate kernel (floating, ≥ 2 dimensions) the reason it is not one.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> def block(p, x):
    ...   h = jax.nn.relu(jnp.einsum("btd,dhk->bthk", x, p["qkv"]))
    ...   return h.reshape(*x.shape[:2], -1) @ p["out"]
    >>> p = {"qkv": jnp.ones((8, 2, 4)), "out": jnp.ones((8, 8))}
    >>> lin = find_linears(block, p, jnp.ones((1, 3, 8))).linears
    >>> [(l.path, l.view.in_features, l.view.out_features, l.stage) for l in lin]
    [('qkv', 8, 8, 0), ('out', 8, 8, 1)]
  """
  holder = {}

  def trace(p, *a):
    holder["walk"] = _walk(fn, p, a, frozenset())[0]
    return 0

  jax.eval_shape(trace, params, *args)
  walk = holder["walk"]
  paths = [p for p, _ in leaves_with_paths(params)]
  leaves = jax.tree.leaves(params)
  stages: dict[int, int] = {}

  def stage(i: int, visiting: frozenset[int] = frozenset()) -> int:
    if i not in stages:  # a shared kernel may feed its own input: that dependency is skipped
      inner = visiting | {i}
      before = [stage(j, inner) for j in walk.input_deps[i] if j in walk.views and j not in inner]
      stages[i] = 1 + max(before) if before else 0
    return stages[i]

  linears, problems = [], {}
  for i, (path, x) in enumerate(zip(paths, leaves, strict=True)):
    if not (is_float_array(x) and jnp.ndim(x) >= 2):
      continue
    views = walk.views.get(i, [])
    why = walk.fatal.get(i)
    if why is None and views and any(v != views[0] for v in views[1:]):
      why = f"it is used in {len(views)} matrix products with different layouts"
    if why is None and not views:
      why = walk.notes.get(i, "it reaches no matrix product")
    if why is not None:
      problems[path] = why
      continue
    linears.append(Linear(path, i, views[0], stage(i), len(views)))
  linears.sort(key=lambda lin: walk.order[lin.index])
  return Linears(tuple(linears), problems)


def call_with_grams(
  fn: Callable[..., Any], params: PyTree, *args: Any, collect: frozenset[int]
) -> tuple[Any, dict[int, jax.Array]]:
  """Evaluates ``fn(params, *args)`` and the Gram matrices XᵀX of the inputs of some linears.

  Traceable (use it under `jax.jit`); the outputs equal ``fn(params, *args)``.

  Args:
    fn: the function given to `find_linears`.
    params: its params.
    *args: its inputs.
    collect: leaf indices (`Linear.index`) whose input Gram matrices are wanted.

  Returns:
    ``(outputs, {leaf index: XᵀX [in, in] float32})``.

  Example:
    >>> import jax.numpy as jnp
    >>> p = {"w": jnp.ones((2, 3))}
    >>> out, grams = call_with_grams(lambda p, x: x @ p["w"], p, jnp.array([[1.0, 2.0]]),
    ...                              collect=frozenset({0}))
    >>> grams[0]
    Array([[1., 2.],
           [2., 4.]], dtype=float32)
  """
  walk, out = _walk(fn, params, args, frozenset(collect))
  missing = set(collect) - set(walk.grams)
  if missing:
    raise CaptureError(f"No matrix product found for leaves {sorted(missing)} of the params.")
  return out, walk.grams
