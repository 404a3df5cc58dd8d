"""Second-order criteria: GraSP (−θ ⊙ Hg), OBD (½·h_qq·w²) and the empirical Fisher.

Curvature enters only through Hessian-vector products, forward-over-reverse:
``jax.jvp(jax.grad(f), (θ,), (v,))`` costs a small multiple of one gradient and O(params)
memory; no Hessian is ever built. All criteria here score ``loss_fn`` on ``batch`` or on
the mean loss over ``batches``.

Configure the estimators either with keyword extras (``hutchinson_samples=``,
``hutchinson_unroll=``, ``fisher_per_example=``, ``fisher_chunk_size=``) or with the
factories `obd_criterion` and `fisher_criterion`, which return configured criteria usable
anywhere a name is:
``jaxprune.prune(params, 0.9, criterion=jaxprune.criteria.obd_criterion(num_samples=64), ...)``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune._tree import float_map
from jaxprune.criteria import registry
from jaxprune.criteria.registry import Criterion, register
from jaxprune.criteria.scoring import LossFn, data_batches, mean_loss

PyTree = Any

# By default `hutchinson_diagonal` unrolls up to this many probes on CPU (and loops above).
UNROLL_LIMIT = 32


def hvp(f: Callable[[PyTree], jax.Array], params: PyTree, v: PyTree) -> PyTree:
  """Hessian-vector product H(θ)·v of a scalar ``f`` by forward-over-reverse differentiation.

    Hv = ∂/∂ε ∇f(θ + ε v) at ε = 0

  Args:
    f: scalar function of ``params``.
    params: the point θ.
    v: the vector, with the structure of ``params``.

  Returns:
    H·v with the structure of ``params``.

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> f = lambda p: jnp.sum(p["x"] ** 3)  # H = diag(6x)
    >>> jaxprune.criteria.hvp(f, {"x": jnp.array([1.0, 2.0])}, {"x": jnp.ones(2)})["x"]
    Array([ 6., 12.], dtype=float32)
  """
  return jax.jvp(jax.grad(f), (params,), (v,))[1]


def hutchinson_diagonal(
  f: Callable[[PyTree], jax.Array],
  params: PyTree,
  key: jax.Array,
  num_samples: int = 16,
  *,
  unroll: bool | None = None,
) -> PyTree:
  """Unbiased estimate of the Hessian diagonal from Rademacher probes (Hutchinson's method).

    diag(H) ≈ (1/k) Σ_i z_i ⊙ (H z_i),   z_i ∈ {−1, +1}^n uniform

  The error shrinks as 1/√k. Probes run one after another either in a `jax.lax.scan`
  (memory O(params), compile time independent of k) or written out in the compiled program
  (``unroll=True``: XLA may keep several probes' buffers alive at once and compiles take
  longer, but XLA on CPU runs convolutions inside loops up to ~25× slower; see
  ``benchmarks/criteria_speed.py``). The default unrolls on CPU when k ≤ `UNROLL_LIMIT`
  and loops otherwise.

  Args:
    f: scalar function of ``params``.
    params: the point θ (float leaves).
    key: PRNG key for the probes.
    num_samples: k, the number of probes (a Python int).
    unroll: unroll the probes (True), loop over them (False), or choose (None).

  Returns:
    The estimated diagonal, with the structure of ``params``.

  Example:
    >>> import jax, jax.numpy as jnp, jaxprune
    >>> f = lambda p: jnp.sum(p["x"] ** 3)  # diagonal Hessian: the estimate is exact
    >>> p = {"x": jnp.array([1.0, 2.0])}
    >>> jaxprune.criteria.hutchinson_diagonal(f, p, jax.random.key(0))["x"]
    Array([ 6., 12.], dtype=float32)

  References:
    Hutchinson. A stochastic estimator of the trace of the influence matrix for Laplacian
    smoothing splines. 1990. Bekas, Kokiopoulou, Saad. An estimator for the diagonal of a
    matrix. 2007.
  """
  if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
    raise ValueError(
      f"num_samples (hutchinson_samples) must be a positive Python int; got {num_samples!r}. "
      "Example: jaxprune.criteria.obd_criterion(num_samples=32)."
    )
  leaves, treedef = jax.tree.flatten(params)

  def add_probe(acc, k):
    keys = jax.random.split(k, len(leaves))
    z = [jax.random.rademacher(kk, x.shape, x.dtype) for kk, x in zip(keys, leaves, strict=True)]
    z = jax.tree.unflatten(treedef, z)
    hz = hvp(f, params, z)
    return jax.tree.map(lambda a, zz, h: a + (zz * h).astype(jnp.float32), acc, z, hz)

  total = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), params)
  keys = jax.random.split(key, num_samples)
  if unroll is None:
    unroll = jax.default_backend() == "cpu" and num_samples <= UNROLL_LIMIT
  if unroll:
    for i in range(num_samples):
      total = add_probe(total, keys[i])
  else:
    total, _ = jax.lax.scan(lambda acc, k: (add_probe(acc, k), None), total, keys)
  return jax.tree.map(lambda t: t / num_samples, total)


def _weights_only(tree: PyTree) -> PyTree:
  """Zeros leaves with ndim ≤ 1 (biases, norm scales), keeping kernels and embeddings."""
  return jax.tree.map(lambda x: x if jnp.ndim(x) > 1 else jnp.zeros_like(x), tree)


@register("grasp", needs=("loss_fn",))
def grasp(
  params: PyTree,
  *,
  loss_fn: LossFn,
  batch: Any = None,
  batches: Sequence[Any] | None = None,
  **extras: Any,
) -> PyTree:
  """GraSP, as a keep-score: θ ⊙ Hg, the NEGATED GraSP score (higher = keep).

  Wang et al. define the GraSP score S(θ) = −θ ⊙ Hg, with g = ∇L and H the Hessian of the
  scoring loss, and remove the weights with the HIGHEST S (removing them least reduces,
  or even increases, the gradient norm after pruning). jaxprune keeps the highest scores,
  so this criterion returns −S = θ ⊙ Hg: the weights removed are exactly those the
  reference removes. Do not negate again.

  As in the reference code, g is the (stop-gradient) gradient of the mean loss over the
  batches restricted to weight tensors (leaves with ndim > 1; biases and norm scales get
  a zero component), and Hg is one Hessian-vector product of the same loss. Use a tempered
  loss, ``classification_loss(apply_fn, temperature=200.0)``, as the reference does.

  Args:
    params: the params pytree (usually at initialisation).
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    batch: one batch.
    batches: a list of batches (the loss is their mean).
    **extras: other extras, ignored.

  Returns:
    θ ⊙ Hg with the params' structure (float32; ``None`` for non-float leaves). Scores may
    be negative; the lowest are removed first, i.e. the highest GraSP scores −θ ⊙ Hg.

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> loss_fn = lambda p, b: jnp.sum((b @ p["w"]) ** 2)
    >>> s = jaxprune.criteria.grasp({"w": jnp.eye(2)}, loss_fn=loss_fn, batch=jnp.eye(2))
    >>> s["w"]  # H = 2I, g = 2w: θ ⊙ Hg = 4w²
    Array([[4., 0.],
           [0., 4.]], dtype=float32)

  References:
    Wang, Zhang, Grosse. Picking Winning Tickets Before Training by Preserving Gradient
    Flow. ICLR 2020. Reference code: github.com/alecwangcq/GraSP (pruner/GraSP.py).
  """
  del extras
  f = mean_loss(loss_fn, data_batches("grasp", loss_fn, batch, batches))
  g = _weights_only(jax.lax.stop_gradient(jax.grad(f)(params)))
  return float_map(lambda w, h: (w * h).astype(jnp.float32), params, hvp(f, params, g))


@register("obd", needs=("loss_fn",))
def obd(
  params: PyTree,
  *,
  loss_fn: LossFn,
  key: jax.Array,
  batch: Any = None,
  batches: Sequence[Any] | None = None,
  hutchinson_samples: int = 16,
  hutchinson_unroll: bool | None = None,
  **extras: Any,
) -> PyTree:
  """Optimal Brain Damage saliency ½ · h_qq · w_q², h_qq estimated by Hutchinson's method.

  At a minimum the loss increase from removing w_q is ≈ ½ h_qq w_q² if the Hessian is
  taken as diagonal. h_qq comes from `hutchinson_diagonal` with ``hutchinson_samples``
  Rademacher probes drawn from ``key`` (supplied by `jaxprune.masked` / `jaxprune.prune`);
  configure k with the extra or with `obd_criterion`. A negative estimate (non-convex
  region, or noise with few probes) gives a negative score, removed first.

  Args:
    params: the params pytree (usually trained).
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    key: PRNG key for the probes.
    batch: one batch.
    batches: a list of batches (the loss is their mean).
    hutchinson_samples: number of probes k (a Python int).
    hutchinson_unroll: unroll the probes (faster for conv nets on CPU, more memory);
      ``None`` lets `hutchinson_diagonal` choose.
    **extras: other extras, ignored.

  Returns:
    ½ · diag(H) · w² with the params' structure (float32).

  Example:
    >>> import jax, jax.numpy as jnp, jaxprune
    >>> loss_fn = lambda p, b: jnp.sum(b * p["w"] ** 2)  # h_qq = 2 b_q
    >>> s = jaxprune.criteria.obd({"w": jnp.array([1.0, 2.0])}, loss_fn=loss_fn,
    ...                           batch=jnp.array([3.0, 1.0]), key=jax.random.key(0))
    >>> s["w"]
    Array([3., 4.], dtype=float32)

  References:
    LeCun, Denker, Solla. Optimal Brain Damage. NeurIPS 1989.
  """
  del extras
  f = mean_loss(loss_fn, data_batches("obd", loss_fn, batch, batches))
  diag = hutchinson_diagonal(f, params, key, hutchinson_samples, unroll=hutchinson_unroll)
  return float_map(lambda w, h: (0.5 * h * jnp.square(w)).astype(jnp.float32), params, diag)


def _sum_squared_example_grads(loss_fn: LossFn, params: PyTree, batch: Any, chunk: int):
  """Σ_i (∂L(θ; example_i)/∂θ)² over the leading axis of ``batch``, ``chunk`` at a time."""
  sizes = {jnp.shape(a)[0] for a in jax.tree.leaves(batch)}
  if len(sizes) != 1:
    raise ValueError(
      f"Per-example Fisher needs every array in the batch to share its leading (example) "
      f"axis; got leading sizes {sorted(sizes)}. Pass fisher_per_example=False to use "
      "per-batch gradients instead."
    )
  n = sizes.pop()
  grad_fn = jax.grad(loss_fn)

  def squared(example):
    g = grad_fn(params, jax.tree.map(lambda a: a[None], example))
    return jax.tree.map(lambda x: jnp.square(x.astype(jnp.float32)), g)

  def chunk_sum(examples):
    return jax.tree.map(lambda x: jnp.sum(x, axis=0), jax.vmap(squared)(examples))

  total = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), params)
  full = (n // chunk) * chunk
  if full:
    chunks = jax.tree.map(lambda a: a[:full].reshape(n // chunk, chunk, *a.shape[1:]), batch)

    def body(acc, c):
      return jax.tree.map(jnp.add, acc, chunk_sum(c)), None

    total, _ = jax.lax.scan(body, total, chunks)
  if full < n:
    total = jax.tree.map(jnp.add, total, chunk_sum(jax.tree.map(lambda a: a[full:], batch)))
  return total, n


@register("fisher", needs=("loss_fn",))
def fisher(
  params: PyTree,
  *,
  loss_fn: LossFn,
  batch: Any = None,
  batches: Sequence[Any] | None = None,
  fisher_per_example: bool = True,
  fisher_chunk_size: int = 32,
  **extras: Any,
) -> PyTree:
  """Empirical-Fisher saliency F_qq · w_q², F the mean of squared gradients.

    per example:  F_qq = (1/N) Σ_i (∂ℓ_i/∂w_q)²   (vmapped, ``fisher_chunk_size`` at a time)
    per batch:    F_qq = (1/B) Σ_b (∂L_b/∂w_q)²    (``fisher_per_example=False``)

  The empirical Fisher stands in for the Hessian in OBD's ½·h_qq·w² (up to the factor ½,
  which does not change the ranking). Per-example gradients apply ``loss_fn`` to batches
  of one example (every array of a batch must have the example axis first); memory is
  O(chunk × params).

  Args:
    params: the params pytree.
    loss_fn: ``loss_fn(params, batch) -> scalar`` (the mean over the batch).
    batch: one batch.
    batches: a list of batches.
    fisher_per_example: squared per-example gradients (True) or per-batch gradients.
    fisher_chunk_size: examples per vmapped chunk (a Python int).
    **extras: other extras, ignored.

  Returns:
    diag(F) · w² with the params' structure (float32).

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> loss_fn = lambda p, b: jnp.mean(b["x"] @ p["w"])  # per-example gradient: x_i
    >>> batch = {"x": jnp.array([[1.0, 0.0], [3.0, 2.0]])}
    >>> jaxprune.criteria.fisher({"w": jnp.array([1.0, 2.0])}, loss_fn=loss_fn, batch=batch)["w"]
    Array([5., 8.], dtype=float32)

  References:
    Theis, Korshunova, Tejani, Huszár. Faster gaze prediction with dense networks and
    Fisher pruning. 2018. Kirkpatrick et al. Overcoming catastrophic forgetting. 2017.
  """
  del extras
  data = data_batches("fisher", loss_fn, batch, batches)
  if fisher_per_example:
    if not isinstance(fisher_chunk_size, int) or fisher_chunk_size < 1:
      raise ValueError(
        f"fisher_chunk_size must be a positive Python int; got {fisher_chunk_size!r}. "
        "Example: jaxprune.criteria.fisher_criterion(chunk_size=32)."
      )
    sums = [_sum_squared_example_grads(loss_fn, params, b, fisher_chunk_size) for b in data]
    count = sum(n for _, n in sums)
    diag = jax.tree.map(lambda *s: sum(s) / count, *[s for s, _ in sums])
  else:
    grad_fn = jax.grad(loss_fn)
    squares = [
      jax.tree.map(lambda x: jnp.square(x.astype(jnp.float32)), grad_fn(params, b)) for b in data
    ]
    diag = jax.tree.map(lambda *s: sum(s) / len(s), *squares)
  return float_map(lambda w, f: (f * jnp.square(w)).astype(jnp.float32), params, diag)


def _configured(name: str, **defaults: Any) -> Criterion:
  crit = registry.get(name)
  return dataclasses.replace(crit, fn=functools.partial(crit.fn, **defaults))


def obd_criterion(num_samples: int = 16, unroll: bool | None = None) -> Criterion:
  """The ``"obd"`` criterion with ``num_samples`` Hutchinson probes.

  Explicit ``hutchinson_samples=`` / ``hutchinson_unroll=`` extras still take precedence.

  Args:
    num_samples: probes k per score (a Python int); the estimate's error shrinks as 1/√k.
    unroll: unroll the probes in the program (see `hutchinson_diagonal`).

  Returns:
    A `Criterion`, usable as ``criterion=`` in `jaxprune.masked` and `jaxprune.prune`.

  Example:
    >>> import jaxprune
    >>> jaxprune.criteria.obd_criterion(num_samples=64).name
    'obd'
  """
  if not isinstance(num_samples, int) or num_samples < 1:
    raise ValueError(
      f"num_samples must be a positive int; got {num_samples!r}. Example: obd_criterion(32)."
    )
  return _configured("obd", hutchinson_samples=num_samples, hutchinson_unroll=unroll)


def fisher_criterion(per_example: bool = True, chunk_size: int = 32) -> Criterion:
  """The ``"fisher"`` criterion with per-example or per-batch gradients.

  Args:
    per_example: squared per-example gradients (vmapped) if True, else per-batch ones.
    chunk_size: examples per vmapped chunk (memory is O(chunk_size × params)).

  Returns:
    A `Criterion`, usable as ``criterion=`` in `jaxprune.masked` and `jaxprune.prune`.

  Example:
    >>> import jaxprune
    >>> jaxprune.criteria.fisher_criterion(per_example=False).name
    'fisher'
  """
  return _configured("fisher", fisher_per_example=per_example, fisher_chunk_size=chunk_size)
