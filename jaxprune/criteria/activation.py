"""Activation-aware criteria: Wanda, and capturing the inputs of Dense layers.

Wanda scores a Dense weight by its magnitude times the norm of the input feature it
multiplies, over calibration data. The inputs come as the ``activations`` extra: a mapping
from a kernel's parameter path (``"Dense_0/kernel"``, as `jaxprune.prune` names leaves) to
the inputs that layer saw, ``[..., in_features]``. `capture_inputs` (Flax Linen) and
`capture_inputs_nnx` (Flax NNX) record them from a forward pass without changing the model.

A Flax Dense kernel is ``(in, out)`` (y = x @ W), so Wanda's per-output comparison is
over each kernel column: use ``structure=jaxprune.structures.unstructured(within=-1)``
(exact count per output) or ``n_of_m(2, 4)`` (groups along the input axis).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from jaxprune._tree import is_float_array, leaves_with_paths
from jaxprune.criteria.registry import register

PyTree = Any
_COLLECTION = "jaxprune_inputs"


def _strip(path: str) -> str:
  return path[: -len("/value")] if path.endswith("/value") else path  # NNX: ".../kernel/value"


def inputs_by_leaf(
  name: str, params: PyTree, activations: Mapping[str, Any]
) -> list[jax.Array | None]:
  """Matches ``activations`` keys to params leaves; returns ``[X [N, in] or None]`` per leaf.

  A key matches a leaf whose path equals it, ends with ``"/" + key``, or (for a module
  path such as ``"Dense_0"``) ends with ``key + "/kernel"``. Every key must match exactly
  one 2-D float leaf whose first dimension is the inputs' last one. Every 2-D leaf named
  ``kernel`` must be covered (map it to ``None`` to leave it unscored).
  """
  pairs = leaves_with_paths(params)
  paths = [_strip(p) for p, _ in pairs]
  out: list[Any] = [None] * len(pairs)
  covered = set()
  if not isinstance(activations, Mapping):
    raise TypeError(
      f"Criterion {name!r}: activations must be a mapping from kernel paths to layer inputs; "
      f"got {type(activations).__name__}. Example: activations="
      "jaxprune.criteria.capture_inputs(model.apply, variables, x)."
    )
  for key, x in activations.items():
    key = key.strip("/")
    names = (key, f"{key}/kernel")
    hits = [i for i, p in enumerate(paths) if any(p == k or p.endswith("/" + k) for k in names)]
    if len(hits) != 1:
      shown = ", ".join(p for p in paths if p.endswith("kernel")) or ", ".join(paths)
      raise ValueError(
        f"Criterion {name!r}: activations key {key!r} matches "
        f"{'no parameter' if not hits else f'{len(hits)} parameters'}; it must name exactly "
        f"one Dense kernel. Kernel paths: {shown}. Example: activations={{'Dense_0/kernel': "
        "inputs}} or activations=jaxprune.criteria.capture_inputs(model.apply, variables, x)."
      )
    i = hits[0]
    covered.add(i)
    if x is None:
      continue
    leaf = pairs[i][1]
    x = jnp.asarray(x)
    if jnp.ndim(leaf) != 2 or x.ndim < 1 or x.shape[-1] != leaf.shape[0]:
      raise ValueError(
        f"Criterion {name!r}: activations[{key!r}] has shape {tuple(x.shape)} but the kernel "
        f"{pairs[i][0]!r} has shape {tuple(jnp.shape(leaf))}; expected a 2-D (in, out) Dense "
        f"kernel and inputs [..., in] with in = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else '?'}."
      )
    out[i] = x.reshape(-1, x.shape[-1])
  missing = [
    pairs[i][0]
    for i, (p, leaf) in enumerate(zip(paths, (x for _, x in pairs), strict=True))
    if i not in covered and p.endswith("kernel") and is_float_array(leaf) and leaf.ndim == 2
  ]
  if missing:
    raise ValueError(
      f"Criterion {name!r} has no activations for the Dense kernel(s) {', '.join(missing)}. "
      "Capture all of them with activations=jaxprune.criteria.capture_inputs(model.apply, "
      "variables, x), or map a kernel to None to leave it unscored (dense): "
      f"activations={{..., {missing[0]!r}: None}}."
    )
  return out


def input_norms(x: jax.Array) -> jax.Array:
  """‖X_j‖₂ per input feature j of inputs ``x [N, in]`` (float32)."""
  x = x.astype(jnp.float32)
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=0))


@register("wanda", needs=("activations",))
def wanda(params: PyTree, *, activations: Mapping[str, Any], **extras: Any) -> PyTree:
  """Wanda: |W_ij| · ‖X_i‖₂, weight magnitude times the norm of its input feature.

  For a Flax kernel W [in, out] (y = x @ W) and calibration inputs X [N, in],

    s_ij = |W_ij| · (Σ_n X_ni²)^½

  compared within each output j in the paper: use
  ``structure=jaxprune.structures.unstructured(within=-1)`` or ``n_of_m(2, 4)``. Only
  leaves with activations are scored; others are ``None`` (dense).

  Args:
    params: the params pytree (trained).
    activations: ``{kernel path: inputs [..., in]}``, e.g. from `capture_inputs`.
    **extras: other extras, ignored.

  Returns:
    Scores with the params' structure (float32; ``None`` for leaves without activations).

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> params = {"Dense_0": {"kernel": jnp.array([[1.0, -2.0], [3.0, 1.0]])}}
    >>> x = jnp.array([[3.0, 0.0], [4.0, 1.0]])  # input norms: 5, 1
    >>> jaxprune.criteria.wanda(params, activations={"Dense_0/kernel": x})["Dense_0"]["kernel"]
    Array([[ 5., 10.],
           [ 3.,  1.]], dtype=float32)

  References:
    Sun, Liu, Bair, Kolter. A Simple and Effective Pruning Approach for Large Language
    Models. ICLR 2024.
  """
  del extras
  leaves, treedef = jax.tree.flatten(params)
  xs = inputs_by_leaf("wanda", params, activations)
  out = [
    None if x is None else jnp.abs(w.astype(jnp.float32)) * input_norms(x)[:, None]
    for w, x in zip(leaves, xs, strict=True)
  ]
  return jax.tree.unflatten(treedef, out)


def _gather(tree: Mapping[str, Any], prefix: tuple[str, ...], out: dict[str, Any]) -> None:
  for k, v in tree.items():
    if k == "inputs" and isinstance(v, tuple):
      xs = [jnp.reshape(x, (-1, x.shape[-1])) for x in v]
      out["/".join((*prefix, "kernel"))] = jnp.concatenate(xs) if len(xs) > 1 else xs[0]
    elif isinstance(v, Mapping):
      _gather(v, (*prefix, k), out)


def capture_inputs(
  apply_fn: Callable[..., Any] | nn.Module,
  variables: PyTree,
  x: Any,
  *args: Any,
  modules: tuple[type, ...] = (nn.Dense,),
  **kwargs: Any,
) -> dict[str, jax.Array]:
  """Records the inputs of every Dense layer of a Flax Linen model in one forward pass.

  Uses `flax.linen.intercept_methods`, so the model code is unchanged; works under
  `jax.jit`. A layer called several times gets its inputs concatenated.

  Args:
    apply_fn: the model's ``apply`` (or the Linen module itself); it is called as
      ``apply_fn(variables, x, *args, mutable=[...], **kwargs)``.
    variables: the model variables, ``{"params": ...}`` (plus e.g. ``batch_stats``).
    x: calibration inputs.
    *args: further positional arguments of the model.
    modules: Linen module classes whose ``__call__`` inputs are recorded.
    **kwargs: further keyword arguments of the model (e.g. ``train=False``).

  Returns:
    ``{"<module path>/kernel": inputs [N, in]}``, paths relative to ``variables["params"]``
    (the `wanda` / ``"obs"`` ``activations`` extra).

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, jaxprune
    >>> model = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(2)])
    >>> variables = model.init(jax.random.key(0), jnp.ones((1, 4)))
    >>> acts = jaxprune.criteria.capture_inputs(model.apply, variables, jnp.ones((5, 4)))
    >>> {k: v.shape for k, v in acts.items()}
    {'layers_0/kernel': (5, 4), 'layers_2/kernel': (5, 8)}
  """
  if isinstance(apply_fn, nn.Module):
    apply_fn = apply_fn.apply

  def interceptor(next_fun, call_args, call_kwargs, context):
    if context.method_name == "__call__" and isinstance(context.module, modules):
      inputs = call_args[0] if call_args else call_kwargs.get("inputs")
      if inputs is not None:
        context.module.sow(_COLLECTION, "inputs", inputs)
    return next_fun(*call_args, **call_kwargs)

  with nn.intercept_methods(interceptor):
    _, state = apply_fn(variables, x, *args, mutable=[_COLLECTION], **kwargs)
  out: dict[str, jax.Array] = {}
  _gather(state.get(_COLLECTION, {}), (), out)
  return out


def capture_inputs_nnx(
  model: nnx.Module,
  x: Any,
  *args: Any,
  modules: tuple[type, ...] = (nnx.Linear,),
  **kwargs: Any,
) -> dict[str, jax.Array]:
  """Records the inputs of every ``nnx.Linear`` of a Flax NNX model in one forward pass.

  The layer classes' ``__call__`` is wrapped for the duration of the call (and restored
  afterwards), so the model code is unchanged. Run it eagerly, not under `jax.jit`, and
  not concurrently with other calls of the same layer classes.

  Args:
    model: the NNX model.
    x: calibration inputs.
    *args: further positional arguments of the model.
    modules: NNX layer classes whose inputs are recorded (their first argument).
    **kwargs: further keyword arguments of the model.

  Returns:
    ``{"<attribute path>/kernel": inputs [N, in]}``, matching the paths of
    ``nnx.state(model, nnx.Param)``.

  Example:
    >>> import jax.numpy as jnp, jaxprune
    >>> from flax import nnx
    >>> model = nnx.Sequential(nnx.Linear(4, 8, rngs=nnx.Rngs(0)), nnx.relu,
    ...                        nnx.Linear(8, 2, rngs=nnx.Rngs(1)))
    >>> acts = jaxprune.criteria.capture_inputs_nnx(model, jnp.ones((5, 4)))
    >>> {k: v.shape for k, v in acts.items()}
    {'layers/0/kernel': (5, 4), 'layers/2/kernel': (5, 8)}
  """
  owners = {
    id(m): "/".join(map(str, path)) for path, m in nnx.iter_modules(model) if isinstance(m, modules)
  }
  seen: dict[str, list[jax.Array]] = collections.defaultdict(list)
  originals = {
    cls: cls.__call__
    for cls in {type(m) for _, m in nnx.iter_modules(model)}
    if issubclass(cls, modules)
  }

  def wrap(call):
    def recording(self, inputs, *a, **k):
      if id(self) in owners:
        seen[owners[id(self)]].append(jnp.reshape(inputs, (-1, jnp.shape(inputs)[-1])))
      return call(self, inputs, *a, **k)

    return recording

  own = {cls: "__call__" in vars(cls) for cls in originals}
  try:
    for cls, call in originals.items():
      cls.__call__ = wrap(call)
    model(x, *args, **kwargs)
  finally:
    for cls, call in originals.items():
      if own[cls]:
        cls.__call__ = call
      else:
        del cls.__call__  # it was inherited
  return {
    f"{path}/kernel": jnp.concatenate(xs) if len(xs) > 1 else xs[0]
    for path, xs in sorted(seen.items())
  }
