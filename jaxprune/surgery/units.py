"""`remove_units`: physically remove dead neurons and filters from a chain of layers.

A unit (output neuron of a Dense layer, output filter of a Conv layer) whose incoming
weights are all zero, e.g. after `jaxprune.structures.channels` pruning, outputs the
constant ``act(bias)``. Removing it shrinks its layer (kernel column, bias entry) and the
next layer (the kernel rows that read it), and adds the constant's contribution to the
next layer's bias, so the smaller network computes the same function. The result is a
params dict for the same architecture built with fewer units (see the returned widths).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Activation = Callable[[jax.Array], jax.Array]


def _layer(params: Mapping[str, Any], name: str) -> tuple[np.ndarray, np.ndarray | None]:
  if name not in params or "kernel" not in params[name]:
    raise ValueError(
      f"remove_units: no layer {name!r} with a 'kernel' in params (layers there: "
      f"{sorted(params)}). Pass the names of the Dense/Conv layers in the order the input "
      "flows through them, e.g. remove_units(params, ['Dense_0', 'Dense_1', 'Dense_2'])."
    )
  kernel = np.asarray(params[name]["kernel"])
  if kernel.ndim not in (2, 4):
    raise ValueError(
      f"remove_units: {name}/kernel has shape {kernel.shape}; only Dense (in, out) and 2-D "
      "Conv (h, w, in, out) kernels are supported."
    )
  bias = params[name].get("bias")
  return kernel, None if bias is None else np.asarray(bias)


def _check_link(kernel: np.ndarray, nxt: np.ndarray, names: tuple[str, str]) -> None:
  """``nxt`` reads the outputs of ``kernel`` directly, or (Conv into Dense) through a
  channels-last flatten, where input row r reads unit ``r % units``."""
  units, inputs = kernel.shape[-1], nxt.shape[-2]
  if kernel.ndim == nxt.ndim and inputs == units:
    return
  if kernel.ndim == 4 and nxt.ndim == 2 and inputs % units == 0:
    return
  raise ValueError(
    f"remove_units: {names[0]} has {units} outputs but {names[1]}/kernel of shape "
    f"{nxt.shape} reads {inputs} inputs; consecutive layers must connect directly (or a Conv "
    "through a flatten into a Dense layer). Check the order of the layer names."
  )


def remove_units(
  params: Mapping[str, Any],
  layers: Sequence[str],
  *,
  activations: Activation | Sequence[Activation] = jax.nn.relu,
  conv_padding: str = "SAME",
) -> tuple[dict[str, Any], dict[str, int]]:
  """Removes the units of ``layers[:-1]`` whose incoming weights are all zero.

  The constant output ``act(bias)`` of a removed unit is folded into the next layer's
  bias: exact when the next layer is Dense (also after a channels-last flatten and
  pooling) or a ``"VALID"`` convolution. Before a ``"SAME"`` convolution the zero padding
  breaks the fold, so there a removed unit's constant must be 0 (e.g. ReLU of a
  non-positive bias) or a ``ValueError`` says which units are in the way. Units removed
  from one layer can make units of the next dead in turn; those go too.

  Args:
    params: Flax Linen params (``variables["params"]``): layer name -> {"kernel", "bias"}.
    layers: names of the Dense/Conv layers in the order the input flows through them;
      the last layer's outputs (e.g. the logits) are kept.
    activations: the activation after each of ``layers[:-1]`` (one callable for all, or
      one per layer; ``lambda x: x`` for none).
    conv_padding: padding of the convolutions in the chain, ``"SAME"`` or ``"VALID"``.

  Returns:
    ``(new_params, widths)``: params with the smaller kernels and biases (other entries
    unchanged), and the number of units left in each of ``layers[:-1]``, to build the
    smaller model with.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.surgery import remove_units
    >>> params = {"a": {"kernel": jnp.array([[1.0, 0.0, 2.0]]), "bias": jnp.array([0.0, 1.0, 0.0])},
    ...           "b": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}
    >>> small, widths = remove_units(params, ["a", "b"])
    >>> widths, small["a"]["kernel"].shape, small["b"]["bias"].tolist()
    ({'a': 2}, (1, 2), [1.0, 1.0])
  """
  if conv_padding not in ("SAME", "VALID"):
    raise ValueError(f"conv_padding must be 'SAME' or 'VALID', got {conv_padding!r}.")
  layers = list(layers)
  if len(layers) < 2:
    raise ValueError(
      f"remove_units needs at least two layers (a layer's units are removed from it and "
      f"from the layer that reads them); got {layers}."
    )
  acts = (
    list(activations) if isinstance(activations, Sequence) else [activations] * (len(layers) - 1)
  )
  if len(acts) != len(layers) - 1:
    raise ValueError(
      f"activations has {len(acts)} entries for {len(layers) - 1} layers before the last; "
      "give one callable for all or one per layer in layers[:-1]."
    )
  arrays = {name: _layer(params, name) for name in layers}
  widths = {}
  for name, nxt_name, act in zip(layers[:-1], layers[1:], acts, strict=True):
    kernel, bias = arrays[name]
    nxt, nxt_bias = arrays[nxt_name]
    _check_link(kernel, nxt, (name, nxt_name))
    dead = ~np.any(kernel.reshape(-1, kernel.shape[-1]) != 0, axis=0)
    pre = np.zeros(kernel.shape[-1], kernel.dtype) if bias is None else bias
    const = np.where(dead, np.asarray(act(jnp.asarray(pre))), 0).astype(kernel.dtype)
    # Input row r of the next layer reads unit r % units (channels-last flatten).
    row_unit = np.arange(nxt.shape[-2]) % kernel.shape[-1]
    if nxt.ndim == 4 and conv_padding == "SAME" and np.any(const != 0):
      raise ValueError(
        f"remove_units: units {np.flatnonzero(const != 0).tolist()} of {name} have all-zero "
        f"weights but output a nonzero constant, which the SAME-padded convolution "
        f"{nxt_name} does not see at its borders, so it cannot be folded into its bias. "
        "Zero their biases first, or pass conv_padding='VALID' if the convolutions are VALID."
      )
    shift = None
    if np.any(const != 0):  # every tap of the next layer that reads a constant unit
      shift = (nxt * const[row_unit][:, None]).reshape(-1, nxt.shape[-1]).sum(axis=0)
    if shift is not None and nxt_bias is None:
      raise ValueError(
        f"remove_units: the removed units of {name} output a nonzero constant, but "
        f"{nxt_name} has no bias to fold it into; zero their biases or keep the units."
      )
    keep_rows = ~dead[row_unit]
    arrays[name] = (kernel[..., ~dead], None if bias is None else bias[~dead])
    arrays[nxt_name] = (
      nxt[..., keep_rows, :],
      nxt_bias if shift is None else (nxt_bias + shift).astype(nxt_bias.dtype),
    )
    widths[name] = int(np.sum(~dead))
  out = {k: dict(v) if k in arrays else v for k, v in params.items()}
  for name, (kernel, bias) in arrays.items():
    out[name]["kernel"] = jnp.asarray(kernel)
    if bias is not None:
      out[name]["bias"] = jnp.asarray(bias)
  return out, widths
