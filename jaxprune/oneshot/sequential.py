"""Sequential one-shot pruning, block by block, as SparseGPT does it.

The calibration windows are embedded once; then, for each block in order:

1. stream the calibration batches through the block and accumulate XᵀX (float32) of the
   input of every kernel to prune (`capture.call_with_grams`, one `lax.scan` over batches);
2. prune each kernel from its Gram matrix (`linear.prune_linear`); with
   ``Settings(sequential=True)`` steps 1-2 run once per stage (q/k/v, o, gate/up, down) on
   the partly pruned block, else once on the dense block;
3. recompute the calibration activations through the pruned block; they are the next
   block's inputs.

Held at any time: the calibration hidden states ``[N, T, D]``, one batch's activations inside
the block, and the Gram matrices of one block. Every block shares one compiled program per
pass (same shapes), so compile time does not grow with depth. Kernels outside the blocks are
pruned only if ``targets`` names them: head kernels (``lm_head``, a tied embedding used as the
head) after the last block from the final hidden states, other kernels (a token embedding on
its own) at the start, with magnitude.

Sharding: pass params sharded as you like (e.g. FSDP) and a ``mesh``; the calibration batch
is split over the mesh's ``data_axis``, XLA all-reduces the Gram matrices, and every pruned
kernel keeps its input sharding.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxprune._tree import leaves_with_paths
from jaxprune.oneshot.blockwise import Blockwise
from jaxprune.oneshot.capture import CaptureError, Linear, call_with_grams, find_linears
from jaxprune.oneshot.linear import LayerSpec, prune_linear
from jaxprune.oneshot.report import LayerReport, OneShotResult, StageReport
from jaxprune.oneshot.settings import Settings
from jaxprune.oneshot.targets import Targets, resolve_targets

PyTree = Any
Callback = Callable[[StageReport, list[LayerReport]], None]


def _gram_pass(fn, params, hidden, *, collect):
  """Σ over the calibration batches ``hidden [nb, bs, ...]`` of the XᵀX of ``collect``."""
  grams_of = lambda p, h: call_with_grams(fn, p, h, collect=collect)[1]
  shapes = jax.eval_shape(grams_of, params, hidden[0])
  init = {k: jnp.zeros(v.shape, v.dtype) for k, v in shapes.items()}

  def step(acc, h):
    grams = grams_of(params, h)
    return {k: acc[k] + grams[k] for k in acc}, None

  return jax.lax.scan(step, init, hidden)[0]


@functools.lru_cache(maxsize=16)
def _programs(model: Blockwise) -> dict[str, Callable[..., Any]]:
  """The jitted passes of one model (cached, so repeated runs reuse the compilations)."""
  return {
    "embed": jax.jit(lambda p, t: jax.lax.map(lambda x: model.embed(p, x), t)),
    "forward": jax.jit(lambda p, h: jax.lax.map(lambda x: model.block(p, x), h)),
    "block_grams": jax.jit(
      functools.partial(_gram_pass, model.block), static_argnames=("collect",)
    ),
    "head_grams": jax.jit(functools.partial(_gram_pass, model.head), static_argnames=("collect",)),
  }


def _signature(tree: PyTree) -> tuple[Any, ...]:
  leaves = jax.tree.leaves(tree)
  return jax.tree.structure(tree), tuple((tuple(x.shape), x.dtype) for x in leaves)


class _Run:
  """The state of one sequential run: params, masks and reports so far."""

  def __init__(self, params, specs, settings, sharding):
    self.params = params
    self.specs = specs
    self.settings = settings
    self.sharding = sharding
    self.masks: dict[str, jax.Array] = {}
    self.layers: list[LayerReport] = []
    self.stages: list[StageReport] = []
    self.linears_cache: dict[Any, Any] = {}

  def place(self, hidden: jax.Array) -> jax.Array:
    return hidden if self.sharding is None else jax.device_put(hidden, self.sharding)

  def linears(self, fn, params, hidden):
    key = (fn, _signature(params), hidden.shape[1:], hidden.dtype)
    if key not in self.linears_cache:
      sds = jax.ShapeDtypeStruct(hidden.shape[1:], hidden.dtype)
      self.linears_cache[key] = find_linears(fn, params, sds)
    return self.linears_cache[key]

  def prune_kernel(self, stage: str, path: str, lin: Linear, leaf, gram, spec: LayerSpec):
    start = time.perf_counter()
    w_hat, keep, err = prune_linear(
      lin.view.to_2d(leaf),
      gram,
      spec,
      damp=self.settings.damp,
      block_size=self.settings.block_size,
    )
    if not bool(jnp.isfinite(w_hat).all()):
      raise ValueError(
        f"{spec.method} produced non-finite weights for {path!r}. With sparsegpt, its damped "
        f"Hessian is not positive definite in float32 (damp={self.settings.damp}): raise the "
        "damping, e.g. Settings(damp=0.1), or calibrate on more tokens; otherwise the kernel "
        "or its calibration inputs hold NaN or inf."
      )
    new = lin.view.from_2d(w_hat).astype(leaf.dtype)
    mask = lin.view.from_2d(keep)
    if isinstance(getattr(leaf, "sharding", None), NamedSharding):
      new, mask = jax.device_put((new, mask), leaf.sharding)
    new = jax.block_until_ready(new)
    report = LayerReport(
      path,
      stage,
      spec,
      (lin.view.in_features, lin.view.out_features),
      1.0 - float(jnp.mean(mask)),
      float(err),
      time.perf_counter() - start,
    )
    self.masks[path] = mask
    self.layers.append(report)
    return new, report

  def prune_stage(self, name, grams_fn, fn, params, hidden, prefix: str):
    """Prunes the targeted kernels of ``fn(params, hidden)``.

    Returns ``(params, hessian_seconds, prune_seconds, layer_reports)``.
    """
    found = self.linears(fn, params, hidden)
    paths = [p for p, _ in leaves_with_paths(params)]
    todo = []
    linear_paths = {lin.path for lin in found.linears}
    leaves, treedef = jax.tree.flatten(params)
    for i, path in enumerate(paths):
      full = f"{prefix}{path}"
      if full not in self.specs:
        continue
      if path not in linear_paths and self.specs[full].method == "magnitude":
        leaves[i] = self.data_free(full, leaves[i], self.specs[full], name)
        continue
      lin = found.get(path)  # a CaptureError with the reason if its input is unknown
      self.specs[full].check(lin.view.in_features, full)
      todo.append((lin, full, self.specs.pop(full)))
    params = jax.tree.unflatten(treedef, leaves)
    rank = {lin.index: r for r, lin in enumerate(found.linears)}
    todo.sort(key=lambda t: rank[t[0].index])
    groups = (
      [[t for t in todo if t[0].stage == s] for s in sorted({t[0].stage for t in todo})]
      if self.settings.sequential
      else [todo]
    )
    hessian = prune = 0.0
    reports = []
    for group in groups:
      if not group:
        continue
      start = time.perf_counter()
      grams = grams_fn(params, hidden, collect=frozenset(lin.index for lin, _, _ in group))
      grams = jax.block_until_ready(grams)
      hessian += time.perf_counter() - start
      leaves, treedef = jax.tree.flatten(params)
      for lin, full, spec in group:
        leaves[lin.index], report = self.prune_kernel(
          name, full, lin, leaves[lin.index], grams[lin.index], spec
        )
        prune += report.seconds
        reports.append(report)
      params = jax.tree.unflatten(treedef, leaves)
    return params, hessian, prune, reports

  def data_free(self, path: str, leaf: jax.Array, spec: LayerSpec, stage: str) -> jax.Array:
    """Magnitude-prunes a kernel that has no calibration input (e.g. a token embedding)."""
    if spec.method != "magnitude":
      raise CaptureError(
        f"targets gives {path!r} the method {spec.method!r}, but it is neither the kernel of "
        "a matrix product in a block nor in the head, so it has no calibration input (e.g. a "
        f"token embedding's lookup). Prune it with magnitude: targets={{{path!r}: "
        f"LayerSpec('magnitude', {spec.sparsity})}}, or leave it dense."
      )
    start = time.perf_counter()
    st = spec.structure
    st.validate(tuple(jnp.shape(leaf)), path)
    keep = st.make(jnp.abs(leaf.astype(jnp.float32)), spec.sparsity)
    new = jax.block_until_ready(jnp.where(keep, leaf, 0).astype(leaf.dtype))
    self.masks[path] = keep
    self.layers.append(
      LayerReport(
        path,
        stage,
        spec,
        tuple(jnp.shape(leaf)),
        1.0 - float(jnp.mean(keep)),
        float("nan"),
        time.perf_counter() - start,
      )
    )
    del self.specs[path]
    return new


def prune_sequential(
  model: Blockwise,
  params: PyTree,
  calibration: Any,
  *,
  method: str = "sparsegpt",
  sparsity: float | None = None,
  structure: Any = None,
  targets: Targets = None,
  settings: Settings | None = None,
  mesh: Mesh | None = None,
  data_axis: str = "data",
  callback: Callback | None = None,
) -> OneShotResult:
  """Calibrated one-shot pruning of a whole model, block by block (see the module docstring).

  Args:
    model: the model as a `Blockwise` (e.g. `blockwise_from_decoder_lm`).
    params: its params.
    calibration: int tokens: a 1-D stream (windows are drawn from it with
      ``settings.seed``) or windows ``[N, T]``.
    method: ``"sparsegpt"``, ``"wanda"`` or ``"magnitude"`` (the default `LayerSpec`).
    sparsity: fraction removed per kernel (``None``: 0.5, or 1 − N/M for N:M).
    structure: ``"layer"``, ``"output"``, ``"N:M"`` or a structure object (``None``: the
      method's reference choice: per output for Wanda, per layer otherwise).
    targets: which kernels get which spec (`jaxprune.oneshot.targets`); by default every
      kernel inside the blocks, the embedding and head dense.
    settings: calibration and solver settings (`Settings`).
    mesh: shards the calibration batch over ``data_axis`` of this mesh.
    data_axis: the mesh axis of the calibration batch.
    callback: called after each block (and the head) with its `StageReport` and its
      `LayerReport`s, e.g. to advance a progress bar.

  Returns:
    `OneShotResult`: pruned params, masks, per-layer and per-block reports.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune import oneshot
    >>> bw = oneshot.Blockwise(embed=lambda p, t: p["emb"][t],
    ...                        block=lambda p, h: h + jnp.tanh(h @ p["w"]),
    ...                        head=lambda p, h: h @ p["emb"].T, block_paths=("b0", "b1"))
    >>> k = jax.random.split(jax.random.key(0), 3)
    >>> params = {"emb": jax.random.normal(k[0], (16, 8)),
    ...           "b0": {"w": jax.random.normal(k[1], (8, 8))},
    ...           "b1": {"w": jax.random.normal(k[2], (8, 8))}}
    >>> tokens = jax.random.randint(k[0], (8, 4), 0, 16)
    >>> out = oneshot.prune_sequential(bw, params, tokens, sparsity=0.5,
    ...                                settings=oneshot.Settings(batch_size=4))
    >>> [(r.path, r.sparsity) for r in out.layers]
    [('b0/w', 0.5), ('b1/w', 0.5)]
    >>> bool((out.params["emb"] == params["emb"]).all())  # embedding and head stay dense
    True
  """
  start = time.perf_counter()
  if not isinstance(model, Blockwise):
    raise TypeError(
      f"model must be a jaxprune.oneshot.Blockwise; got {type(model).__name__}. For a Linen "
      "decoder LM: model=jaxprune.oneshot.blockwise_from_decoder_lm(lm)."
    )
  settings = Settings() if settings is None else settings
  if not isinstance(settings, Settings):
    raise TypeError(f"settings must be a jaxprune.oneshot.Settings; got {settings!r}.")
  default = LayerSpec(method, sparsity, structure).resolved()
  windows = settings.windows(calibration, model.max_len)
  bs = settings.batch_size
  sharding = None
  if mesh is not None:
    if data_axis not in mesh.axis_names:
      raise ValueError(f"data_axis={data_axis!r} is not an axis of the mesh {mesh.axis_names}.")
    if bs % mesh.shape[data_axis]:
      raise ValueError(
        f"Settings.batch_size={bs} does not split over the {mesh.shape[data_axis]} devices of "
        f"mesh axis {data_axis!r}; use a multiple, e.g. batch_size={mesh.shape[data_axis]}."
      )
    sharding = NamedSharding(mesh, P(None, data_axis))
  specs = resolve_targets(params, model.block_paths, default, targets)
  run = _Run(params, specs, settings, sharding)
  programs = _programs(model)
  tokens = run.place(jnp.asarray(windows.reshape(-1, bs, windows.shape[1])))

  head_paths: set[str] = set()
  outside = [p for p in specs if not p.startswith(tuple(b + "/" for b in model.block_paths))]
  if outside:
    shape = jax.eval_shape(programs["embed"], run.params, tokens)
    head_paths = {lin.path for lin in run.linears(model.head, run.params, shape).linears}
    leaves, treedef = jax.tree.flatten(run.params)
    for i, (path, leaf) in enumerate(leaves_with_paths(run.params)):
      if path in outside and path not in head_paths:
        leaves[i] = run.data_free(path, leaf, specs[path], "start")
    run.params = jax.tree.unflatten(treedef, leaves)
  hidden = run.place(programs["embed"](run.params, tokens))

  for i, name in enumerate(model.block_paths):
    block = model.block_params(run.params, i)
    block, hessian, prune, reports = run.prune_stage(
      name, programs["block_grams"], model.block, block, hidden, name + "/"
    )
    run.params = model.replace_block(run.params, i, block)
    t = time.perf_counter()
    hidden = jax.block_until_ready(run.place(programs["forward"](block, hidden)))
    stage = StageReport(name, hessian, prune, time.perf_counter() - t)
    run.stages.append(stage)
    if callback is not None:
      callback(stage, reports)

  if head_paths:
    run.params, hessian, prune, reports = run.prune_stage(
      "head", programs["head_grams"], model.head, run.params, hidden, ""
    )
    run.stages.append(StageReport("head", hessian, prune, 0.0))
    if callback is not None:
      callback(run.stages[-1], reports)
  assert not run.specs, run.specs

  pairs = leaves_with_paths(run.params)
  mask_leaves = [run.masks[p] if p in run.masks else jnp.ones(jnp.shape(x), bool) for p, x in pairs]
  masks = jax.tree.unflatten(jax.tree.structure(run.params), mask_leaves)
  return OneShotResult(
    run.params, masks, tuple(run.layers), tuple(run.stages), time.perf_counter() - start
  )
