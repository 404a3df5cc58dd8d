"""Layer-wise Optimal Brain Surgeon for Dense kernels, in the manner of SparseGPT.

For a Dense layer y = x @ W (Flax kernel W [in, out]) and calibration inputs X [N, in],
pruning minimises the reconstruction error ‖XW − XŴ‖² one output at a time. Every output
column W[:, j] shares the Hessian H = XᵀX + λI (λ = 1% of its mean diagonal), so one
Cholesky factor U of H⁻¹ (upper, H⁻¹ = UᵀU) serves all of them. Inputs are eliminated in
order i = 0, 1, ...: pruned entries of row i are set to 0 and the error is spread over the
rows not yet processed,

  W[i:, :] −= U[i, i:]ᵀ ⊗ (W[i, :] − Q[i, :]) / U_ii,

with lazy updates per block of ``block_size`` rows (SparseGPT's "columns": its W is our
Wᵀ). Masks are chosen adaptively when a block starts: unstructured, the smallest
w²/U_ii² of the block, with the exact count per block so the layer keeps exactly
n − round(s·n) weights (or per output with ``unstructured(within=-1)``); N:M, the best n
of every m rows per output, chosen as each group of m is reached.

One-shot and post-training: use it through ``jaxprune.prune(params, s, criterion="obs",
activations=...)``, which returns the updated weights and the masks.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import structures
from jaxprune.criteria import registry
from jaxprune.criteria.activation import inputs_by_leaf
from jaxprune.criteria.registry import Criterion, register
from jaxprune.masks import _removed_traced, num_to_keep, topk_mask

PyTree = Any


def input_hessian(x: jax.Array, damp: float = 0.01) -> jax.Array:
  """H = XᵀX + λI with λ = ``damp`` · mean(diag); inputs that are always 0 get H_ii = 1 first.

  Example:
    >>> import jax.numpy as jnp
    >>> input_hessian(jnp.array([[1.0, 0.0], [1.0, 0.0]]), damp=0.5)
    Array([[2.75, 0.  ],
           [0.  , 1.75]], dtype=float32)
  """
  x = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
  return damped_hessian(jnp.matmul(x.T, x, precision=jax.lax.Precision.HIGHEST), damp)


def damped_hessian(gram: jax.Array, damp: float = 0.01) -> jax.Array:
  """The Gram matrix XᵀX made positive definite as SparseGPT does: dead inputs (H_ii = 0) get
  H_ii = 1, then λ = ``damp`` · mean(diag) is added to the diagonal.

  Example:
    >>> import jax.numpy as jnp
    >>> damped_hessian(jnp.array([[2.0, 0.0], [0.0, 0.0]]), damp=0.5)
    Array([[2.75, 0.  ],
           [0.  , 1.75]], dtype=float32)
  """
  h = jnp.asarray(gram, jnp.float32)
  h = h + jnp.diag((jnp.diag(h) == 0).astype(h.dtype))
  return h + damp * jnp.mean(jnp.diag(h)) * jnp.eye(h.shape[0], dtype=h.dtype)


def _removed_at(sparsity: jax.Array, size: int, bounds: Any) -> jax.Array:
  """Entries pruned among the first ``upto`` rows of ``size`` entries, for every ``upto`` in
  ``bounds``: round(s · size · upto), exact at every count (`jaxprune.masks.num_to_keep`'s
  rule for a traced sparsity), as one vectorised computation."""
  sizes = size * np.asarray(bounds, np.int64)
  num_to_keep(int(sizes.max()), 0.0)  # the size check: int32 counts
  s = jnp.broadcast_to(jnp.asarray(sparsity, jnp.float32), sizes.shape)
  return _removed_traced(sizes, s)


def _upper_inverse_factor(h: jax.Array) -> jax.Array:
  """The upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU, positive diagonal), from one Cholesky.

  With J the reversal permutation, L = chol(JHJ) gives H⁻¹ = J L⁻ᵀ L⁻¹ J = UᵀU for the upper
  triangular U = J L⁻¹ J: one Cholesky and one triangular inverse, instead of inverting H and
  factoring H⁻¹.

  Example:
    >>> import jax.numpy as jnp
    >>> h = jnp.array([[4.0, 2.0], [2.0, 2.0]])
    >>> u = _upper_inverse_factor(h)
    >>> bool(u[1, 0] == 0), bool(jnp.allclose(u.T @ u, jnp.linalg.inv(h)))
    (True, True)
  """
  h = jnp.asarray(h, jnp.float32)
  low = jnp.linalg.cholesky(h[::-1, ::-1])
  eye = jnp.eye(h.shape[0], dtype=h.dtype)
  return jax.scipy.linalg.solve_triangular(low, eye, lower=True)[::-1, ::-1]


def _block(w, keep, u, r1, size, pruned, *, mode, n, m):
  """Prunes rows ``r1 : r1 + size`` of ``w`` (OBS updates inside the block); returns the
  updated ``w``, ``keep`` and the block's scaled errors ``[size, cols]`` for the lazy update."""
  cols = w.shape[1]
  w1 = jax.lax.dynamic_slice_in_dim(w, r1, size, 0)
  u1 = jax.lax.dynamic_slice(u, (r1, r1), (size, size))
  d = jnp.diag(u1)
  saliency = jnp.square(w1) / jnp.square(d)[:, None]
  if mode == "global":
    keep1 = topk_mask(saliency, size * cols - pruned)
  elif mode == "within":
    keep1 = jax.vmap(lambda s: topk_mask(s, size - pruned), 1, 1)(saliency)
  else:
    keep1 = jnp.ones((size, cols), bool)
  group = m if mode == "nm" else 1

  def step(g, carry):
    w1, keep1, err1 = carry
    i0 = g * group
    if mode == "nm":  # choose this group's n of m per output from the updated weights
      wg = jax.lax.dynamic_slice_in_dim(w1, i0, m, 0)
      dg = jax.lax.dynamic_slice_in_dim(d, i0, m, 0)
      kg = structures.n_of_m(n, m, axis=0).make(jnp.square(wg) / jnp.square(dg)[:, None], 1.0)
      keep1 = jax.lax.dynamic_update_slice_in_dim(keep1, kg, i0, 0)
    for j in range(group):
      i = i0 + j
      wi = w1[i]
      qi = jnp.where(keep1[i], wi, 0.0)
      e = (wi - qi) / d[i]
      w1 = w1 - u1[i][:, None] * e[None, :]  # rows < i untouched: u1 is upper triangular
      err1 = err1.at[i].set(e)
    return w1, keep1, err1

  carry = (w1, keep1, jnp.zeros((size, cols), jnp.float32))
  w1, keep1, err1 = jax.lax.fori_loop(0, size // group, step, carry)
  w = jax.lax.dynamic_update_slice_in_dim(w, jnp.where(keep1, w1, 0.0), r1, 0)
  keep = jax.lax.dynamic_update_slice_in_dim(keep, keep1, r1, 0)
  return w, keep, err1


@functools.partial(jax.jit, static_argnames=("mode", "n", "m", "block_size"))
def _sparsegpt(
  w: jax.Array,
  h: jax.Array,
  sparsity: jax.Array,
  *,
  mode: str,
  n: int,
  m: int,
  block_size: int,
) -> tuple[jax.Array, jax.Array]:
  """Prunes kernel ``w [in, out]`` given the damped input Hessian ``h [in, in]``.

  The full blocks run as one ``lax.fori_loop`` body, so the compiled program does not grow
  with ``in / block_size``; a shorter last block runs once after it. Each full block's lazy
  update of the later rows is one product with U's block rows, their columns up to the block's
  end set to 0 (2·B·in·out FLOPs per block, about twice the exact trailing product's
  2·B·(in − r2)·out summed over blocks; the rows it updates get exactly the trailing product).
  """
  rows, cols = w.shape  # rows: inputs (eliminated in order); cols: outputs
  w = w.astype(jnp.float32)
  u = _upper_inverse_factor(h)
  keep = jnp.ones((rows, cols), bool)
  full, tail = divmod(rows, block_size)
  bounds = [*range(0, full * block_size + 1, block_size), rows]
  removed = _removed_at(sparsity, 1 if mode == "within" else cols, bounds)
  index = jnp.arange(rows)
  solve = functools.partial(_block, mode=mode, n=n, m=m)

  def body(b, carry):
    w, keep = carry
    r1 = b * block_size
    w, keep, err1 = solve(w, keep, u, r1, block_size, removed[b + 1] - removed[b])
    later = jnp.where(
      index[None, :] >= r1 + block_size, jax.lax.dynamic_slice_in_dim(u, r1, block_size, 0), 0.0
    )
    upd = jnp.matmul(later.T, err1, precision=jax.lax.Precision.HIGHEST)
    return w - upd, keep

  if full:
    w, keep = jax.lax.fori_loop(0, full, body, (w, keep))
  if tail:
    w, keep, _ = solve(w, keep, u, full * block_size, tail, removed[-1] - removed[-2])
  return w, keep


def _mode(structure: Any, path: str) -> tuple[str, int, int]:
  if structure is None or isinstance(structure, structures.Unstructured):
    within = None if structure is None else structure.within
    if within is None:
      return "global", 0, 0
    if within in (-1, 1):
      return "within", 0, 0
  if isinstance(structure, structures.NOfM) and structure.axis in (None, 0, -2):
    return "nm", structure.n, structure.m
  raise ValueError(
    f"criterion='obs' supports structure=None / unstructured() / unstructured(within=-1) and "
    f"n_of_m(n, m) along the input axis of Dense kernels; got {structure!r} for {path!r}. "
    "Example: jaxprune.prune(params, 0.5, criterion='obs', activations=acts, "
    "structure=jaxprune.structures.n_of_m(2, 4))."
  )


def sparsegpt_update(
  w: jax.Array,
  gram: jax.Array,
  sparsity: jax.Array | float,
  structure: Any = None,
  *,
  damp: float = 0.01,
  block_size: int = 128,
  path: str = "kernel",
) -> tuple[jax.Array, jax.Array]:
  """SparseGPT on one kernel ``w [in, out]`` given its inputs' Gram matrix XᵀX ``[in, in]``.

  The Gram matrix is damped by `damped_hessian`; the rows of inputs that were never active
  (XᵀX_ii = 0) are set to 0 first, as in the reference implementation. See the module
  docstring for the algorithm. Works under `jax.jit` (``sparsity`` may be traced).

  Args:
    w: the kernel, ``[in, out]``.
    gram: XᵀX of the calibration inputs, ``[in, in]`` (undamped, float32).
    sparsity: fraction of weights removed (unused by N:M, whose sparsity is ``1 - n/m``).
    structure: ``None``/`unstructured()` (exact count over the layer),
      ``unstructured(within=-1)`` (exact count per output) or ``n_of_m(n, m)`` (groups of m
      consecutive inputs).
    damp: λ as a fraction of the mean diagonal.
    block_size: rows (inputs) per lazy-update block (rounded down to a multiple of m for N:M).
    path: the kernel's name, for error messages.

  Returns:
    ``(w, keep)``: the updated float32 kernel (pruned entries exactly 0) and the bool mask.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jax.random.normal(jax.random.key(0), (64, 8))
    >>> w = jax.random.normal(jax.random.key(1), (8, 4))
    >>> new, keep = sparsegpt_update(w, x.T @ x, 0.5)
    >>> int(keep.sum()), bool((new[~keep] == 0).all())
    (16, True)
  """
  mode, n, m = _mode(structure, path)
  if mode == "nm":
    block_size = max(m, (block_size // m) * m)
  gram = jnp.asarray(gram, jnp.float32)
  w0 = jnp.where((jnp.diag(gram) == 0)[:, None], 0.0, w)  # inputs never seen carry no signal
  s = jnp.asarray(sparsity, jnp.float32)
  h = damped_hessian(gram, damp)
  return _sparsegpt(w0, h, s, mode=mode, n=n, m=m, block_size=block_size)


def obs_prune(
  params: PyTree,
  targets: PyTree,
  structure: Any,
  *,
  activations: Mapping[str, Any],
  obs_damp: float = 0.01,
  obs_block_size: int = 128,
  **extras: Any,
) -> tuple[PyTree, PyTree]:
  """SparseGPT-style layer-wise OBS: prunes each targeted Dense kernel and updates the rest.

  Called by `jaxprune.prune` for ``criterion="obs"``; see the module docstring for the
  algorithm.

  Args:
    params: the params pytree (trained).
    targets: a pytree mirroring params: a sparsity per pruned leaf, ``None`` for dense ones.
    structure: the structure object (``None``/unstructured, ``unstructured(within=-1)``, N:M).
    activations: ``{kernel path: inputs [..., in]}`` for every pruned kernel.
    obs_damp: λ as a fraction of the mean diagonal of XᵀX.
    obs_block_size: rows (inputs) per lazy-update block.
    **extras: other extras, ignored.

  Returns:
    ``(params, masks)``: pruned entries are exactly 0, kept ones are OBS-updated; masks are
    bool arrays mirroring params (all True for dense leaves).

  Example:
    >>> import jax, jax.numpy as jnp, jaxprune
    >>> params = {"Dense_0": {"kernel": jax.random.normal(jax.random.key(0), (8, 4))}}
    >>> x = jax.random.normal(jax.random.key(1), (64, 8))
    >>> pruned, masks = jaxprune.prune(params, 0.5, criterion="obs",
    ...                                activations={"Dense_0/kernel": x})
    >>> int(masks["Dense_0"]["kernel"].sum())
    16
  """
  del extras
  if not isinstance(obs_block_size, int) or obs_block_size < 1:
    raise ValueError(
      f"obs_block_size must be a positive int; got {obs_block_size!r}. "
      "Example: jaxprune.criteria.obs_criterion(block_size=128)."
    )
  pairs = jax.tree_util.tree_flatten_with_path(params)[0]
  leaves, treedef = jax.tree.flatten(params)
  target_leaves = treedef.flatten_up_to(targets)
  xs = inputs_by_leaf("obs", params, activations)
  new, masks = [], []
  for (path, w), t, x in zip(pairs, target_leaves, xs, strict=True):
    name = jax.tree_util.keystr(path)
    if t is None:
      new.append(w)
      masks.append(jnp.ones(jnp.shape(w), bool))
      continue
    if x is None or jnp.ndim(w) != 2:
      raise ValueError(
        f"criterion='obs' prunes 2-D Dense kernels given their inputs, but leaf {name} (shape "
        f"{tuple(jnp.shape(w))}) is targeted and has no activations. Pass its inputs "
        "(activations=jaxprune.criteria.capture_inputs(model.apply, variables, x)) or leave "
        "it dense: distribution={'.*Dense_0/kernel': 0.5, ...}."
      )
    x = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
    gram = jnp.matmul(x.T, x, precision=jax.lax.Precision.HIGHEST)
    s = jnp.asarray(t, jnp.float32)
    pw, keep = sparsegpt_update(
      w, gram, s, structure, damp=obs_damp, block_size=obs_block_size, path=name
    )
    active = s > 0
    keep = jnp.where(active, keep, True)
    new.append(jnp.where(active, pw, w).astype(w.dtype))
    masks.append(keep)
  return jax.tree.unflatten(treedef, new), jax.tree.unflatten(treedef, masks)


@register("obs", needs=("activations",), prune_fn=obs_prune)
def obs(
  params: PyTree, *, activations: Mapping[str, Any], obs_damp: float = 0.01, **extras: Any
) -> PyTree:
  """Layer-wise OBS saliency ½ · W_ij² / [H⁻¹]_ii, H = XᵀX + λI (no weight update).

  This is the score of removing one weight alone with the optimal update of the others
  (Hassibi & Stork 1993). ``jaxprune.prune(params, s, criterion="obs", activations=...)``
  runs the full sequential solver instead (`obs_prune`), which also updates kept weights;
  inside `jaxprune.masked` the criterion is refused, as it is one-shot.

  Args:
    params: the params pytree.
    activations: ``{kernel path: inputs [..., in]}``.
    obs_damp: λ as a fraction of the mean diagonal of XᵀX.
    **extras: other extras, ignored.

  Returns:
    Scores with the params' structure (float32; ``None`` for leaves without activations).

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> params = {"Dense_0": {"kernel": jnp.array([[1.0], [1.0]])}}
    >>> x = jnp.array([[2.0, 0.0], [0.0, 1.0]])  # H = diag(4, 1) + λI
    >>> s = jaxprune.criteria.obs(params, activations={"Dense_0/kernel": x}, obs_damp=0.0)
    >>> s["Dense_0"]["kernel"][:, 0]
    Array([2. , 0.5], dtype=float32)

  References:
    Hassibi, Stork. Second order derivatives for network pruning: Optimal Brain Surgeon.
    NeurIPS 1992. Frantar, Alistarh. SparseGPT: Massive Language Models Can Be Accurately
    Pruned in One-Shot. ICML 2023.
  """
  del extras
  leaves, treedef = jax.tree.flatten(params)
  out = []
  for w, x in zip(leaves, inputs_by_leaf("obs", params, activations), strict=True):
    if x is None:
      out.append(None)
      continue
    h = input_hessian(x, obs_damp)
    hinv_diag = jnp.diag(
      jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(h), True), jnp.eye(h.shape[0], dtype=h.dtype))
    )
    out.append(0.5 * jnp.square(w.astype(jnp.float32)) / hinv_diag[:, None])
  return jax.tree.unflatten(treedef, out)


def obs_criterion(damp: float = 0.01, block_size: int = 128) -> Criterion:
  """The ``"obs"`` criterion with dampening ``damp`` and lazy-update ``block_size``.

  Args:
    damp: λ as a fraction of the mean diagonal of XᵀX (SparseGPT: 0.01).
    block_size: inputs per lazy-update block (rounded down to a multiple of m for N:M).

  Returns:
    A `Criterion` for ``jaxprune.prune(..., criterion=obs_criterion(...))``.

  Example:
    >>> import jaxprune
    >>> jaxprune.criteria.obs_criterion(damp=0.1).name
    'obs'
  """
  crit = registry.get("obs")
  return dataclasses.replace(
    crit,
    fn=functools.partial(crit.fn, obs_damp=damp),
    prune_fn=functools.partial(obs_prune, obs_damp=damp, obs_block_size=block_size),
  )
