"""Parameter counts and the theoretical forward-pass cost (MACs) of dense and pruned models."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import bayes
from jaxprune._tree import leaves_with_paths
from jaxprune.errors import MaskMismatchError

PyTree = Any

# Modules whose kernel is applied once per output position (Dense on every leading
# position, Conv on every output pixel); ConvTranspose is applied once per input pixel.
_PER_OUTPUT = (
  nn.Dense,
  nn.DenseGeneral,
  nn.Conv,
  bayes.VariationalDense,
  bayes.VariationalConv,
  bayes.L0Dense,
  bayes.L0Conv,
)


def _array_leaves(tree: PyTree) -> list[Any]:
  return [x for x in jax.tree.leaves(tree) if hasattr(x, "shape")]


def count_params(params: PyTree) -> int:
  """Returns the number of scalar entries in a pytree of arrays (``None`` leaves count 0).

  Args:
    params: Any pytree, usually ``variables["params"]``; pass the whole ``variables``
      to include BatchNorm statistics as well.

  Returns:
    The sum of the leaves' sizes, as a Python int.

  Example:
    >>> import jax.numpy as jnp
    >>> count_params({"Dense_0": {"kernel": jnp.ones((784, 300)), "bias": jnp.ones(300)}})
    235500
  """
  return int(sum(math.prod(x.shape) for x in _array_leaves(params)))


def count_nonzero(params: PyTree) -> int:
  """Returns the number of non-zero scalar entries (or True entries of bool masks).

  Args:
    params: Any pytree of arrays, e.g. pruned ``variables["params"]`` or a mask tree.

  Returns:
    The number of entries that are not exactly zero, as a Python int.

  Example:
    >>> import jax.numpy as jnp
    >>> count_nonzero({"w": jnp.array([[0.0, 1.0], [0.0, 2.0]]), "b": jnp.zeros(3)})
    2
  """
  return int(sum(np.count_nonzero(np.asarray(x)) for x in _array_leaves(params)))


def _lookup(tree: Any, path: tuple[str, ...]) -> Any:
  for key in path:
    if not isinstance(tree, Mapping) or key not in tree:
      raise KeyError(path)
    tree = tree[key]
  return tree


def _trace_layers(
  model: nn.Module, variables: PyTree, input_shape: tuple[int, ...]
) -> tuple[dict[tuple[str, ...], int], dict[tuple[str, ...], int]]:
  """Runs the model abstractly on one example; returns kernel positions and attention MACs.

  The first dict maps a module path to how many times its kernel is applied (summed over
  calls); the second maps an attention module's path to the MACs of its two matmuls.
  """
  positions: dict[tuple[str, ...], int] = {}
  attention: dict[tuple[str, ...], int] = {}

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name != "__call__":
      return out
    module, path = context.module, tuple(context.module.path)
    if isinstance(module, _PER_OUTPUT):
      features = module.features if isinstance(module.features, tuple) else (module.features,)
      positions[path] = positions.get(path, 0) + out.size // math.prod(features)
    elif isinstance(module, nn.ConvTranspose):
      x = args[0] if args else kwargs["inputs"]
      positions[path] = positions.get(path, 0) + x.size // x.shape[-1]
    elif isinstance(module, nn.MultiHeadDotProductAttention):
      q = args[0] if args else kwargs["inputs_q"]
      candidates = [*args[1:2], kwargs.get("inputs_k"), kwargs.get("inputs_kv"), q]
      k = next(c for c in candidates if c is not None)  # keys (self-attention: the queries)
      width = module.qkv_features or q.shape[-1]
      rows = q.size // q.shape[-1]  # query positions (times any extra batch axes)
      # scores = q·kᵀ and outputs = softmax(scores)·v: two matmuls of rows × keys × width.
      attention[path] = attention.get(path, 0) + 2 * rows * k.shape[-2] * width
    return out

  def apply(variables, x):
    with nn.intercept_methods(interceptor):
      return model.apply(variables, x, train=False)

  dtype = getattr(model, "input_dtype", jnp.float32)  # a model of tokens says int32
  jax.eval_shape(apply, variables, jax.ShapeDtypeStruct((1, *input_shape), dtype))
  return positions, attention


def flops_per_example(
  model: nn.Module,
  variables: PyTree,
  input_shape: tuple[int, ...],
  masks: PyTree | None = None,
) -> dict[str, Any]:
  """Counts the multiply-accumulates (MACs) of one forward pass, dense and after pruning.

  What is counted: the MACs of every ``nn.Dense``, ``nn.DenseGeneral``, ``nn.Conv`` and
  ``nn.ConvTranspose`` kernel and of the variational and L0 layers of `jaxprune.bayes`
  (``positions × kernel.size``, where positions is how often the kernel is applied: output
  pixels of a conv, tokens of a dense layer on a sequence), and
  the two matmuls of ``nn.MultiHeadDotProductAttention`` (``2 · queries · keys · width``,
  never pruned, any attention mask ignored). Biases, normalisation, activations, pooling
  and other elementwise ops are not counted; one MAC is often reported as two FLOPs.

  The remaining MACs of a layer follow the standard theoretical accounting for
  unstructured sparsity: ``dense MACs × nonzeros(kernel) / kernel.size``. This is the
  work a sparse kernel would need, not a measured speedup on dense hardware. Layer
  output sizes come from tracing the model abstractly (`jax.eval_shape`, no compute) on
  one example with ``train=False``.

  Args:
    model: A Flax Linen module called as ``model.apply(variables, x, train=False)``.
    variables: Its variables from ``model.init`` (a dict with a ``"params"`` collection).
    input_shape: The shape of one example without the batch axis, e.g. ``(28, 28, 1)``.
    masks: Bool masks mirroring ``variables["params"]`` (as from `jaxprune.masks_of`),
      ``None`` leaves being dense; ``None`` uses the nonzero pattern of the params.

  Returns:
    A dict with ``"layers"``: ``{kernel path: {"dense", "remaining", "density"}}`` (paths
    like ``"Dense_0/kernel"``), ``"attention"``: ``{module path: MACs}``, ``"dense"`` and
    ``"remaining"``: the totals of both, ``"speedup"``: dense / remaining, and
    ``"uncounted"``: paths of kernels the tracing did not attribute to a counted layer.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.train.models import LeNet300100
    >>> model = LeNet300100(num_classes=10)
    >>> variables = model.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    >>> report = flops_per_example(model, variables, (28, 28, 1))
    >>> report["dense"], report["layers"]["Dense_0/kernel"]["dense"]
    (266200, 235200)
  """
  if not isinstance(variables, Mapping) or "params" not in variables:
    got = list(variables) if isinstance(variables, Mapping) else type(variables).__name__
    raise ValueError(
      f"flops_per_example expects the variables returned by model.init (a dict with a "
      f"'params' collection) but got {got}. Pass all variables, e.g. "
      f"flops_per_example(model, {{'params': params, **other_collections}}, (28, 28, 1))."
    )
  params = variables["params"]
  if isinstance(masks, Mapping) and "params" in masks and "params" not in params:
    masks = masks["params"]
  positions, attention = _trace_layers(model, variables, tuple(input_shape))

  layers: dict[str, dict[str, float]] = {}
  for path, count in positions.items():
    try:
      kernel = _lookup(params, (*path, "kernel"))
    except KeyError:
      continue
    size = math.prod(kernel.shape)
    if masks is None:
      nonzero = int(np.count_nonzero(np.asarray(kernel)))
    else:
      try:
        mask = _lookup(masks, (*path, "kernel"))
      except KeyError:
        raise MaskMismatchError(
          f"masks has no entry {'/'.join((*path, 'kernel'))!r}; masks must mirror "
          f"variables['params'], e.g. masks = jaxprune.masks_of(opt_state), or None to "
          f"use the nonzero pattern of the params."
        ) from None
      nonzero = size if mask is None else int(np.count_nonzero(np.asarray(mask)))
    dense = count * size
    layers["/".join((*path, "kernel"))] = {
      "dense": dense,
      "remaining": dense * nonzero / size,
      "density": nonzero / size,
    }

  attention_macs = {"/".join(path): macs for path, macs in attention.items()}
  dense_total = sum(v["dense"] for v in layers.values()) + sum(attention_macs.values())
  remaining = sum(v["remaining"] for v in layers.values()) + sum(attention_macs.values())
  kernel_paths = [p for p, _ in leaves_with_paths(params) if p.split("/")[-1] == "kernel"]
  return {
    "layers": layers,
    "attention": attention_macs,
    "dense": int(dense_total),
    "remaining": float(remaining),
    "speedup": dense_total / remaining if remaining else math.inf,
    "uncounted": tuple(p for p in kernel_paths if p not in layers),
  }
