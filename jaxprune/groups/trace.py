"""Dependency groups from a model's jaxpr: which parameter axes must be pruned together.

Every axis of every parameter leaf starts as a run of fresh *channel ids*, one per index.
Walking the jaxpr, each intermediate value records, per axis, either the ids of the
channels laid along it, ``None`` (data no parameter axis controls, such as pixels or the
batch) or `_BCAST` (constant along the axis, e.g. a broadcast bias). Equations join ids
with union-find:

* a contraction (``dot_general``, ``conv_general_dilated``) joins the input's channel
  axis with the kernel's input axis, and its output carries the kernel's output ids;
* an elementwise op (bias add, BatchNorm, activations, residual adds) joins the ids its
  operands carry on the same axis;
* reshapes that keep channels apart (a channels-last flatten maps channel ``c`` to rows
  ``c, c + C, ...``), transposes, concatenations and pooling carry ids along;
* a reshape that splits a channel axis over several axes (a projection's output into
  heads x head_dim, ``[B, T, H*D] -> [B, T, H, D]``) makes each position of the leading
  axis one unit: the ids of a head's ``D`` columns are joined, the head axis carries
  them and ``head_dim`` carries none. Attention einsums then join the heads of the
  queries, keys and values (batch axes of ``dot_general``; under grouped-query
  attention a key/value head with its query heads), and the merge back into ``H*D``
  joins them with the output projection's rows;
* a gather along a parameter's axis (``embedding[tokens]``, ``jnp.take``, ``nn.Embed``)
  keeps that axis (a vocabulary is not a channel axis) and carries its whole axes (the
  features) into the result.

Channels that cannot be removed are *kept*: those reaching the model's outputs, summed
over (LayerNorm and RMSNorm statistics, so a transformer's residual width; see
``normalized``), added to data no parameter controls, padded, sliced or broadcast from
size one. A pattern that would move channels in a way the walk cannot follow (a gather
selecting channels of activations, a reshape merging two channel axes) raises
`GroupTraceError` naming the primitive and the parameters, unless
``on_unsupported="keep"`` keeps those channels. A joined class of ids that holds parameter
entries and is not kept is one prunable channel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.extend import core as jcore

from jaxprune._tree import leaves_with_paths
from jaxprune.errors import JaxpruneError

PyTree = Any
_BCAST = "bcast"  # the value is the same at every index of this axis

_ELEMENTWISE = frozenset(
  [
    "add",
    "sub",
    "mul",
    "div",
    "rem",
    "pow",
    "max",
    "min",
    "neg",
    "exp",
    "exp2",
    "log",
    "log1p",
    "expm1",
    "tanh",
    "logistic",
    "sin",
    "cos",
    "tan",
    "sqrt",
    "rsqrt",
    "cbrt",
    "abs",
    "sign",
    "floor",
    "ceil",
    "round",
    "integer_pow",
    "square",
    "erf",
    "erfc",
    "erf_inv",
    "is_finite",
    "select_n",
    "clamp",
    "convert_element_type",
    "copy",
    "copy_p",
    "reduce_precision",
    "stop_gradient",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "xor",
    "atan2",
    "nextafter",
    "real",
    "imag",
    "conj",
    "asinh",
    "acosh",
    "atanh",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "lgamma",
    "digamma",
    "add_any",
  ]
)
_LAYOUT = frozenset(
  [
    "reshape",
    "transpose",
    "broadcast_in_dim",
    "convert_element_type",
    "copy",
    "squeeze",
  ]
)
_REDUCE = frozenset(
  [
    "reduce_sum",
    "reduce_max",
    "reduce_min",
    "reduce_prod",
    "reduce_and",
    "reduce_or",
    "argmax",
    "argmin",
  ]
)
_WINDOW = frozenset(
  [
    "reduce_window_max",
    "reduce_window_min",
    "reduce_window_sum",
  ]
)
_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


class GroupTraceError(JaxpruneError):
  """The model uses an operation that moves channels in a way the group tracing cannot follow.

  The message names the jaxpr primitive and the parameters whose channels reach it. Either
  rewrite that part of the model, or keep those channels unpruned with
  ``jaxprune.groups.trace(apply_fn, variables, x, on_unsupported="keep")``.
  """


def _is_ids(entry: Any) -> bool:
  return isinstance(entry, np.ndarray)


def _constant_along(table: np.ndarray, axis: int) -> bool:
  first = np.take(table, [0], axis=axis)
  return bool(np.array_equal(np.broadcast_to(first, table.shape), table))


class _Walker:
  """Union-find over channel ids plus the per-axis annotations of a jaxpr's values."""

  def __init__(self, paths: list[str], on_unsupported: str, normalized: str = "keep"):
    self.paths = paths
    self.on_unsupported = on_unsupported
    self.normalized = normalized
    self.parent: list[int] = []
    self.origin: list[tuple[int, int, int] | None] = []  # (leaf, axis, index) of a param id
    self.kept: dict[int, str] = {}  # id -> why its channel is kept
    self.env: dict[Any, tuple[Any, ...]] = {}
    self.param_like: set[Any] = set()

  # -- union-find -----------------------------------------------------------------------
  def fresh(self, n: int, origin: tuple[int, int] | None = None) -> np.ndarray:
    start = len(self.parent)
    self.parent.extend(range(start, start + n))
    self.origin.extend([None] * n if origin is None else [(*origin, i) for i in range(n)])
    return np.arange(start, start + n)

  def find(self, e: int) -> int:
    root = e
    while self.parent[root] != root:
      root = self.parent[root]
    while self.parent[e] != root:
      self.parent[e], e = root, self.parent[e]
    return root

  def union(self, a: np.ndarray, b: np.ndarray) -> None:
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
      rx, ry = self.find(x), self.find(y)
      if rx != ry:
        self.parent[max(rx, ry)] = min(rx, ry)

  def keep(self, entry: Any, why: str) -> None:
    if _is_ids(entry):
      for e in entry.tolist():
        self.kept.setdefault(e, why)

  def params_of(self, entries: list[Any]) -> list[str]:
    roots = {self.find(e) for x in entries if _is_ids(x) for e in x.tolist()}
    names = set()
    for e, o in enumerate(self.origin):
      if o is not None and self.find(e) in roots:
        names.add(f"{self.paths[o[0]]} (axis {o[1]})")
    return sorted(names)

  # -- annotations ----------------------------------------------------------------------
  def ann(self, v: Any) -> tuple[Any, ...]:
    shape = tuple(v.aval.shape)
    if isinstance(v, jcore.Literal):
      return (_BCAST,) * len(shape)
    return self.env.get(v, (None,) * len(shape))

  def is_param(self, v: Any) -> bool:
    return not isinstance(v, jcore.Literal) and v in self.param_like

  def unsupported(self, eqn: Any, anns: list[tuple[Any, ...]], detail: str) -> None:
    entries = [e for a in anns for e in a if _is_ids(e)]
    if not entries:
      return
    if self.on_unsupported == "keep":
      for e in entries:
        self.keep(e, f"{eqn.primitive.name}: {detail}")
      return
    params = self.params_of(entries)
    raise GroupTraceError(
      f"Cannot trace dependency groups through the jaxpr primitive '{eqn.primitive.name}': "
      f"{detail}. Channels of these parameters reach it: {', '.join(params) or '(none)'}.\n"
      f"  equation: {str(eqn)[:300]}\n"
      "Rewrite that part of the model with supported operations (elementwise ops, dot_general, "
      "convolutions, reshapes and transposes that keep channels apart, concatenate, pooling), "
      "or keep those channels unpruned:\n"
      "  jaxprune.groups.trace(apply_fn, variables, x, on_unsupported='keep')"
    )

  def combine(self, entries: list[Any], size: int, what: str) -> Any:
    """Joins the entries several operands carry on one output axis of length ``size``."""
    ids, has_data = [], False
    for e in entries:
      if _is_ids(e) and len(e) != size:  # broadcast from size one
        self.keep(e, f"{what} broadcasts it from size one")
        e = _BCAST
      if _is_ids(e):
        ids.append(e)
      elif e is None and size > 1:
        has_data = True
    if not ids:
      return None if has_data else _BCAST
    for other in ids[1:]:
      self.union(ids[0], other)
    if has_data:
      self.keep(ids[0], f"{what} combines it with data no parameter controls")
    return ids[0]

  # -- the walk -------------------------------------------------------------------------
  def run(self, jaxpr: Any, in_anns: list[tuple[Any, ...]], in_param: list[bool]) -> list[Any]:
    for v, a, p in zip(jaxpr.invars, in_anns, in_param, strict=True):
      self.env[v] = a
      if p:
        self.param_like.add(v)
    for eqn in jaxpr.eqns:
      self.equation(eqn)
    return [self.ann(v) for v in jaxpr.outvars]

  def equation(self, eqn: Any) -> None:
    name, params = eqn.primitive.name, eqn.params
    anns = [self.ann(v) for v in eqn.invars]
    outs = [tuple(v.aval.shape) for v in eqn.outvars]
    inner = next((params[k] for k in _CALL_PARAMS if k in params), None)
    if inner is not None:
      closed = inner if hasattr(inner, "jaxpr") else None
      jaxpr = closed.jaxpr if closed is not None else inner
      if len(jaxpr.invars) == len(eqn.invars) and len(jaxpr.outvars) == len(eqn.outvars):
        for c in jaxpr.constvars:
          self.env[c] = (None,) * len(c.aval.shape)
        flags = [self.is_param(v) for v in eqn.invars]
        res = self.run(jaxpr, anns, flags)
        for v, a, iv in zip(eqn.outvars, res, jaxpr.outvars, strict=True):
          self.env[v] = a
          if iv in self.param_like:
            self.param_like.add(v)
        return
    if name in _ELEMENTWISE:
      shape = outs[0]
      per_op = [a if len(a) == len(shape) else (_BCAST,) * len(shape) for a in anns]
      out = tuple(self.combine([a[d] for a in per_op], shape[d], name) for d in range(len(shape)))
    elif name == "broadcast_in_dim":
      out = self.broadcast(anns[0], tuple(eqn.invars[0].aval.shape), outs[0], params)
    elif name == "reshape":
      out = self.reshape(eqn, anns[0], tuple(eqn.invars[0].aval.shape), outs[0])
    elif name == "transpose":
      out = tuple(anns[0][p] for p in params["permutation"])
    elif name == "squeeze":
      dims = {d % len(anns[0]) for d in params["dimensions"]}
      for d in dims:
        self.keep(anns[0][d], "squeeze drops its axis")
      out = tuple(a for d, a in enumerate(anns[0]) if d not in dims)
    elif name == "dot_general":
      out = self.dot_general(eqn, anns)
    elif name == "conv_general_dilated":
      out = self.conv(eqn, anns)
    elif name == "gather":
      out = self.gather(eqn, anns)
    elif name in _REDUCE:
      axes = set(params["axes"])
      for d in axes:
        if name != "reduce_sum" or self.normalized == "keep":
          self.keep(anns[0][d], f"{name} reduces over it")
      out = tuple(a for d, a in enumerate(anns[0]) if d not in axes)
    elif name in _WINDOW:
      out = self.window(eqn, anns[0])
    elif name == "concatenate":
      out = self.concatenate(anns, [tuple(v.aval.shape) for v in eqn.invars], params, outs[0])
    elif name == "pad":
      out = self.pad(anns[0], params["padding_config"])
    elif name == "slice":
      out = self.slice(anns[0], tuple(eqn.invars[0].aval.shape), params)
    else:
      self.unsupported(eqn, anns, "it is not one of the operations the tracing follows")
      out = None
    for i, v in enumerate(eqn.outvars):
      self.env[v] = out if (out is not None and i == 0) else (None,) * len(outs[i])
    if name in _LAYOUT and self.is_param(eqn.invars[0]):
      self.param_like.add(eqn.outvars[0])

  def broadcast(self, a, in_shape, out_shape, params) -> tuple[Any, ...]:
    out: list[Any] = [_BCAST] * len(out_shape)
    for i, d in enumerate(params["broadcast_dimensions"]):
      if in_shape[i] == out_shape[d]:
        out[d] = a[i]
      else:
        self.keep(a[i], "broadcast_in_dim broadcasts it from size one")
    return tuple(out)

  def reshape(self, eqn, a, in_shape, out_shape) -> tuple[Any, ...]:
    out: list[Any] = [_BCAST] * len(out_shape)
    ins = [d for d in range(len(in_shape)) if in_shape[d] != 1]
    outs = [d for d in range(len(out_shape)) if out_shape[d] != 1]
    for d in range(len(in_shape)):
      if in_shape[d] == 1:
        self.keep(a[d], "reshape drops its size-one axis")
    i = j = 0
    while i < len(ins):
      bi, bj = [ins[i]], [outs[j]]
      pi, pj = in_shape[ins[i]], out_shape[outs[j]]
      while pi != pj:
        if pi < pj:
          i += 1
          bi.append(ins[i])
          pi *= in_shape[ins[i]]
        else:
          j += 1
          bj.append(outs[j])
          pj *= out_shape[outs[j]]
      i, j = i + 1, j + 1
      entries = [a[d] for d in bi]
      carriers = [k for k, e in enumerate(entries) if _is_ids(e)]
      if not carriers:
        fill = _BCAST if all(e is _BCAST for e in entries) else None
        for d in bj:
          out[d] = fill
        continue
      for d in bj:
        out[d] = None
      if len(carriers) > 1:
        sizes = " and ".join(str(in_shape[bi[k]]) for k in carriers)
        self.unsupported(
          eqn,
          [tuple(entries)],
          f"the reshape merges two channel axes (of sizes {sizes}) into one, so an entry of the "
          "result belongs to two channels at once (reshapes that split one channel axis, e.g. "
          "into heads x head_dim, or merge it with data axes are followed)",
        )
        continue
      k = carriers[0]
      block_in = [in_shape[d] for d in bi]
      table = np.broadcast_to(
        entries[k].reshape([n if m == k else 1 for m, n in enumerate(block_in)]), block_in
      ).reshape([out_shape[d] for d in bj])
      varying = [m for m in range(len(bj)) if not _constant_along(table, m)]
      m = varying[0] if varying else 0
      out[bj[m]] = self.split(table, m)
    return tuple(out)

  def split(self, table: np.ndarray, axis: int) -> np.ndarray:
    """Channel ids along ``axis`` of a reshaped block; ``table`` holds the id of every entry.

    When the ids vary along ``axis`` only (a merge with data axes, a channels-last
    flatten) each position carries its id. When they vary along later axes too (a
    projection's output split into heads x head_dim), the entries sharing a position of
    ``axis`` become one unit (a head: its ``head_dim`` columns), the ids of each unit are
    joined and the later axes carry no channel.
    """
    rows = np.moveaxis(table, axis, 0).reshape(table.shape[axis], -1)
    for row in rows:
      ids = np.unique(row)
      self.union(np.full(len(ids) - 1, ids[0]), ids[1:])
    return np.ascontiguousarray(rows[:, 0])

  def free_axes(self, a, free: list[int], param_like: bool, what: str) -> list[Any]:
    """A kernel with several output axes is pruned along its first (e.g. heads, not head_dim)."""
    out = [a[d] for d in free]
    if param_like:
      carriers = [k for k, e in enumerate(out) if _is_ids(e) and len(e) > 1]
      for k in carriers[1:]:
        self.keep(out[k], f"{what}: only the first output axis of a kernel is pruned")
        out[k] = None
    return out

  def contract(self, x: Any, y: Any, ok: bool, what: str) -> None:
    if _is_ids(x) and _is_ids(y) and ok:
      self.union(x, y)
      return
    reason = f"{what} sums it against " + ("activations" if _is_ids(x) and _is_ids(y) else "data")
    self.keep(x, reason)
    self.keep(y, reason)

  def dot_general(self, eqn, anns) -> tuple[Any, ...]:
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    la, ra = anns
    lp, rp = (self.is_param(v) for v in eqn.invars)
    shape = tuple(eqn.outvars[0].aval.shape)
    batch = [
      self.combine([la[i], ra[j]], shape[k], "dot_general")
      for k, (i, j) in enumerate(zip(lb, rb, strict=True))
    ]
    for i, j in zip(lc, rc, strict=True):
      self.contract(la[i], ra[j], lp or rp, "dot_general")
    lfree = [d for d in range(len(la)) if d not in lc and d not in lb]
    rfree = [d for d in range(len(ra)) if d not in rc and d not in rb]
    return tuple(
      batch
      + self.free_axes(la, lfree, lp, "dot_general")
      + self.free_axes(ra, rfree, rp, "dot_general")
    )

  def conv(self, eqn, anns) -> tuple[Any, ...]:
    p = eqn.params
    la, ra = anns
    lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
    rshape = tuple(eqn.invars[1].aval.shape)
    lshape = tuple(eqn.invars[0].aval.shape)
    groups = p["feature_group_count"]
    if p["batch_group_count"] != 1:
      self.unsupported(eqn, anns, "batch_group_count > 1")
    for d in lhs_spec[2:]:
      self.keep(la[d], "a convolution window slides along it")
    for d in rhs_spec[2:]:
      self.keep(ra[d], "a convolution window slides along it")
    fin, rin, rout = lhs_spec[1], rhs_spec[1], rhs_spec[0]
    out: list[Any] = [None] * len(out_spec)
    out[out_spec[0]] = la[lhs_spec[0]]
    if groups == 1:
      self.contract(la[fin], ra[rin], self.is_param(eqn.invars[1]), "a convolution")
      out[out_spec[1]] = ra[rout]
    elif groups == lshape[fin] == rshape[rout] and rshape[rin] == 1 and _is_ids(la[fin]):
      self.keep(ra[rin], "a depthwise kernel's input axis has size one")  # depthwise, mult. 1
      if _is_ids(ra[rout]):
        self.union(la[fin], ra[rout])
      out[out_spec[1]] = la[fin]
    else:
      self.unsupported(eqn, anns, f"feature_group_count={groups} (grouped convolution)")
      out[out_spec[1]] = None
      self.keep(ra[rout], "grouped convolution")
    return tuple(out)

  def gather(self, eqn, anns) -> tuple[Any, ...]:
    """Indexing (``table[tokens]``, ``jnp.take``): whole slices keep their channels.

    An axis of a parameter that the indices select along (an embedding's vocabulary, a
    lookup table's rows) is not a channel axis: its entries are kept. Activations whose
    channels are selected by index (a permutation, a top-k) cannot be followed.
    """
    dn, sizes = eqn.params["dimension_numbers"], eqn.params["slice_sizes"]
    op, idx = anns
    op_shape = tuple(eqn.invars[0].aval.shape)
    out_shape = tuple(eqn.outvars[0].aval.shape)
    self.keep(idx[-1], "gather reads indices from it")
    out: list[Any] = [None] * len(out_shape)
    pairs = dict(zip(dn.start_indices_batching_dims, dn.operand_batching_dims, strict=True))
    batch_out = [d for d in range(len(out_shape)) if d not in dn.offset_dims]
    for k, i in zip(batch_out, range(len(idx) - 1), strict=True):
      entries = [idx[i]] + ([op[pairs[i]]] if i in pairs else [])
      out[k] = self.combine(entries, out_shape[k], "gather")
    sliced = [
      d
      for d in range(len(op_shape))
      if d not in dn.collapsed_slice_dims and d not in dn.operand_batching_dims
    ]
    whole = {d for d in sliced if d not in dn.start_index_map and sizes[d] == op_shape[d]}
    for k, d in zip(dn.offset_dims, sliced, strict=True):
      if d in whole:
        out[k] = op[d]
    selected = [
      d for d in range(len(op_shape)) if d not in whole and d not in dn.operand_batching_dims
    ]
    for d in selected:
      if not self.is_param(eqn.invars[0]):
        self.unsupported(eqn, [(op[d],)], "the gather selects channels of activations by index")
      else:
        self.keep(op[d], "a gather indexes it (an embedding's vocabulary, a table's rows)")
    return tuple(out)

  def window(self, eqn, a) -> tuple[Any, ...]:
    p = eqn.params
    out = list(a)
    for d, (w, s, pad) in enumerate(
      zip(p["window_dimensions"], p["window_strides"], p["padding"], strict=True)
    ):
      if (w, s, tuple(pad)) != (1, 1, (0, 0)):
        if _is_ids(a[d]):
          self.unsupported(eqn, [(a[d],)], "a pooling window slides along a channel axis")
        out[d] = None
    return tuple(out)

  def concatenate(self, anns, shapes, params, out_shape) -> tuple[Any, ...]:
    axis = params["dimension"]
    out = []
    for d in range(len(out_shape)):
      if d != axis:
        out.append(self.combine([a[d] for a in anns], out_shape[d], "concatenate"))
        continue
      if not any(_is_ids(a[d]) for a in anns):  # e.g. the halves of a rotary embedding
        out.append(None)
        continue
      parts = []
      for a, s in zip(anns, shapes, strict=True):
        if _is_ids(a[d]):
          parts.append(a[d])
        else:  # data or constants: their positions are kept
          fresh = self.fresh(s[d])
          self.keep(fresh, "concatenate joins it with data no parameter controls")
          parts.append(fresh)
      out.append(np.concatenate(parts))
    return tuple(out)

  def pad(self, a, config) -> tuple[Any, ...]:
    out = []
    for e, (lo, hi, interior) in zip(a, config, strict=True):
      if not _is_ids(e) or (lo, hi, interior) == (0, 0, 0):
        out.append(None if e is not None and not _is_ids(e) and (lo or hi) else e)
        continue
      if interior or lo < 0 or hi < 0:
        self.keep(e, "pad interleaves or crops it")
        out.append(None)
        continue
      before, after = self.fresh(lo), self.fresh(hi)
      self.keep(before, "pad inserts constant channels here")
      self.keep(after, "pad inserts constant channels here")
      out.append(np.concatenate([before, e, after]))
    return tuple(out)

  def slice(self, a, shape, params) -> tuple[Any, ...]:
    out = []
    strides = params["strides"] or (1,) * len(shape)
    for d, e in enumerate(a):
      lo, hi, st = params["start_indices"][d], params["limit_indices"][d], strides[d]
      if _is_ids(e) and (lo, hi, st) != (0, shape[d], 1):
        self.keep(e, "slice selects some of its channels")
        out.append(None)
      else:
        out.append(e)
    return tuple(out)


def walk(
  apply_fn: Callable[..., Any],
  variables: PyTree,
  example_input: Any,
  on_unsupported: str = "raise",
  normalized: str = "keep",
  **apply_kwargs: Any,
) -> tuple[list[tuple[str, tuple[int, ...]]], list[tuple[tuple[int, int, int], ...]], dict]:
  """Traces ``apply_fn`` and returns the leaves, the prunable channel classes and kept reasons.

  Returns ``(leaves, classes, kept)``: ``leaves`` lists ``(path, shape)`` in flattening order;
  each class is a tuple of ``(leaf, axis, index)`` entries removed together; ``kept`` maps
  ``(path, axis)`` to the first reason some channel of that axis cannot be pruned.
  """
  if on_unsupported not in ("raise", "keep"):
    raise ValueError(f"on_unsupported must be 'raise' or 'keep', got {on_unsupported!r}.")
  if normalized not in ("keep", "group"):
    raise ValueError(
      f"normalized must be 'keep' or 'group', got {normalized!r}; e.g. "
      "jaxprune.groups.trace(apply_fn, variables, x, normalized='group')."
    )
  pairs = leaves_with_paths(variables)
  paths = [p for p, _ in pairs]
  shapes = [tuple(np.shape(x)) for _, x in pairs]
  closed = jax.make_jaxpr(lambda v, x: apply_fn(v, x, **apply_kwargs))(variables, example_input)
  w = _Walker(paths, on_unsupported, normalized)
  n_params = len(pairs)
  in_anns, flags = [], []
  for li, shape in enumerate(shapes):
    in_anns.append(tuple(w.fresh(n, (li, ax)) for ax, n in enumerate(shape)))
    flags.append(True)
  for v in closed.jaxpr.invars[n_params:]:
    in_anns.append((None,) * len(v.aval.shape))
    flags.append(False)
  for c in closed.jaxpr.constvars:
    w.env[c] = (None,) * len(c.aval.shape)
  for a in w.run(closed.jaxpr, in_anns, flags):
    for e in a:
      w.keep(e, "it reaches the model's output")
  kept_roots: dict[int, str] = {}
  for e, why in w.kept.items():
    kept_roots.setdefault(w.find(e), why)
  classes: dict[int, list[tuple[int, int, int]]] = {}
  kept: dict[tuple[str, int], str] = {}
  for e, o in enumerate(w.origin):
    if o is None:
      continue
    root = w.find(e)
    if root in kept_roots:
      kept.setdefault((paths[o[0]], o[1]), kept_roots[root])
    else:
      classes.setdefault(root, []).append(o)
  leaves = list(zip(paths, shapes, strict=True))
  return leaves, [tuple(c) for c in classes.values()], kept
