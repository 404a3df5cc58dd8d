"""Language models in and out of one-shot pruning: checkpoints, held-out perplexity, outputs.

A checkpoint is one of:

* a Hugging Face folder (``config.json`` and ``model.safetensors``, possibly sharded) of a
  GPT-2 or Llama-family model, read by `jaxprune.train.models.hf.load_hf`;
* a ``jaxprune-train`` workdir (``config.json`` and ``checkpoints/``) of a run that trained
  the zoo's ``decoder_lm``, restored with `jaxprune.train.experiment.load_state`.

Perplexity is measured on contiguous windows that score every byte of a split once
(`jaxprune.data.text_eval_batches`), summed over batches with
`jaxprune.train.lm_metrics.cross_entropy_sum` and divided once.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxprune.data.text import TextDataset
from jaxprune.data.text_batches import text_eval_batches
from jaxprune.train import experiment, lm_metrics
from jaxprune.train.models.hf import load_hf, save_hf

PyTree = Any
HUGGING_FACE = "huggingface"
WORKDIR = "workdir"
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def checkpoint_kind(path: str | os.PathLike) -> str:
  """``"huggingface"`` or ``"workdir"``: what the folder ``path`` holds.

  Raises:
    ValueError: if ``path`` is neither (the message says what each needs).

  Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "checkpoints").mkdir()
    >>> checkpoint_kind(folder)
    'workdir'
  """
  path = Path(path)
  if not path.is_dir():
    raise ValueError(
      f"Checkpoint {os.fspath(path)!r} is not a folder; pass a Hugging Face checkpoint folder "
      "(config.json, model.safetensors) or the --workdir of a jaxprune-train run."
    )
  if (path / "checkpoints").is_dir():
    return WORKDIR
  if (path / "config.json").is_file() and any((path / name).is_file() for name in _WEIGHTS):
    return HUGGING_FACE
  raise ValueError(
    f"{os.fspath(path)!r} is neither a Hugging Face checkpoint folder (config.json and "
    "model.safetensors or model.safetensors.index.json) nor a jaxprune-train workdir (a "
    f"checkpoints/ folder); it holds {sorted(p.name for p in path.iterdir())[:10]}."
  )


@dataclasses.dataclass(frozen=True)
class LoadedLM:
  """A language model read from a checkpoint.

  Attributes:
    model: the `jaxprune.train.models.lm.DecoderLM`.
    params: its params (NumPy or JAX arrays).
    kind: ``"huggingface"`` or ``"workdir"``.
    source: the folder it was read from.
    step: the restored training step (workdirs), else None.
    data: the run's text data settings (workdirs: ``name``, ``validation_fraction``,
      ``test_fraction``), else None.
  """

  model: Any
  params: PyTree
  kind: str
  source: str
  step: int | None = None
  data: dict[str, Any] | None = None


def run_config(workdir: str | os.PathLike) -> Any:
  """The config a ``jaxprune-train`` run saved in ``<workdir>/config.json``, as a ConfigDict."""

  path = Path(workdir) / "config.json"
  if not path.is_file():
    raise ValueError(
      f"{os.fspath(workdir)!r} has checkpoints but no config.json; it is not the workdir of a "
      "jaxprune-train run (the trainer writes config.json when it starts)."
    )
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def load_lm(path: str | os.PathLike, *, step: int | None = None) -> LoadedLM:
  """Reads a Hugging Face folder or a trainer workdir (see the module docstring).

  Args:
    path: the folder.
    step: which checkpoint of a workdir (default: the latest); not for Hugging Face folders.

  Returns:
    The `LoadedLM`.

  Raises:
    ValueError: for a folder of neither kind, a ``step`` given for a Hugging Face folder, or
      a workdir whose model is not the zoo's ``decoder_lm``.
  """
  kind = checkpoint_kind(path)
  if kind == HUGGING_FACE:
    if step is not None:
      raise ValueError(
        f"step={step} would be ignored: {os.fspath(path)!r} is a Hugging Face folder with one "
        "set of weights. Drop the step (it selects a checkpoint of a jaxprune-train workdir)."
      )

    model, params = load_hf(path)
    return LoadedLM(model, params, kind, os.fspath(path))

  config = run_config(path)
  if config.model.name != "decoder_lm":
    raise ValueError(
      f"The run in {os.fspath(path)!r} trained model {config.model.name!r}; one-shot pruning "
      "of language models needs the zoo's 'decoder_lm' (configs/shakespeare_lm.py)."
    )
  steps = sorted(int(p.name) for p in (Path(path) / "checkpoints").iterdir() if p.name.isdigit())
  if step is not None and step not in steps:
    raise ValueError(
      f"{os.fspath(path)!r} has no checkpoint of step {step}; its steps are {steps}. Pass one "
      "of them, or no step for the latest."
    )
  model = experiment.build(config, verbose=False).model
  state = experiment.load_state(config, path, step)
  data = {
    "name": str(config.data.name),
    "validation_fraction": config.data.get("validation_fraction"),
    "test_fraction": config.data.get("test_fraction"),
  }
  return LoadedLM(model, state.params, kind, os.fspath(path), int(state.step), data)


@functools.lru_cache(maxsize=8)
def _loss_sums(model: Any) -> Callable[..., tuple[jax.Array, jax.Array]]:
  def sums(params, batch):
    logits = model.apply({"params": params}, batch["inputs"], train=False)
    return lm_metrics.cross_entropy_sum(logits, batch["targets"], batch["mask"])

  return jax.jit(sums)


def evaluate_lm(
  model: Any,
  params: PyTree,
  dataset: TextDataset,
  *,
  seq_len: int,
  batch_size: int = 8,
  max_windows: int | None = None,
  progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
) -> dict[str, float]:
  """Next-byte loss of ``model`` on a text split: every byte scored once (or the first
  ``max_windows`` windows of ``seq_len``).

  Args:
    model: a Linen LM called as ``model.apply({"params": p}, tokens, train=False)``.
    params: its params.
    dataset: the split (`jaxprune.data.load_text`).
    seq_len: targets per window (at most the model's ``max_len``).
    batch_size: windows per batch.
    max_windows: evaluate only this many windows from the start of the split.
    progress: wraps the batches, e.g. ``lambda it, n: tqdm(it, total=n)``.

  Returns:
    ``{"nats_per_byte", "bits_per_byte", "perplexity", "tokens"}`` (one token is one byte).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxprune.data.text import TextSpec
    >>> from jaxprune.train.models.lm import DecoderLM, LMConfig
    >>> model = DecoderLM.from_config(LMConfig.tiny(num_layers=1, width=32, max_len=8))
    >>> params = jax.tree.map(jnp.zeros_like,
    ...                       model.init(jax.random.key(0), jnp.zeros((1, 8), int))["params"])
    >>> split = TextDataset(TextSpec("text", {"test": 40}, {}, ""), "test",
    ...                     np.arange(40, dtype=np.uint8))
    >>> out = evaluate_lm(model, params, split, seq_len=8)  # all-zero logits: uniform
    >>> round(out["bits_per_byte"], 4), out["tokens"]
    (8.0, 39)
  """
  step = _loss_sums(model)
  total, count = 0.0, 0.0
  batches = text_eval_batches(dataset, batch_size, seq_len, max_windows=max_windows)
  if progress is not None:
    windows = dataset.num_windows(seq_len)
    windows = windows if max_windows is None else min(windows, max_windows)
    batches = progress(batches, -(-windows // batch_size))
  for batch in batches:
    nats, n = jax.device_get(step(params, batch))
    total += float(nats)
    count += float(n)
  return lm_metrics.byte_metrics(total, count)


def save_pruned(
  folder: str | os.PathLike, model: Any, params: PyTree, masks: PyTree
) -> dict[str, str]:
  """Writes the pruned model as a Hugging Face folder ``<folder>/hf`` and as an orbax
  checkpoint ``<folder>/orbax`` of ``{"params": params, "masks": masks}``.

  The orbax checkpoint restores with
  ``orbax.checkpoint.StandardCheckpointer().restore(path)``; the model's config is in
  ``<folder>/hf/config.json``.

  Returns:
    ``{"huggingface": path, "orbax": path}``.
  """
  import orbax.checkpoint as ocp  # heavy; only writing the orbax copy needs it

  folder = Path(folder).absolute()
  hf, orbax_dir = folder / "hf", folder / "orbax"
  host = jax.device_get(params)
  save_hf(hf, model, host, overwrite=True)
  tree = {"params": jax.tree.map(np.asarray, host), "masks": jax.tree.map(np.asarray, masks)}
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(orbax_dir, tree, force=True)
    ckpt.wait_until_finished()
  return {HUGGING_FACE: os.fspath(hf), "orbax": os.fspath(orbax_dir)}
