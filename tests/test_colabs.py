"""The notebooks in colabs/ run end to end with small settings and print what they promise.

The notebooks are stored with the outputs of a full run (real MNIST, full step counts), so
that a reader sees the results and plots before running anything; the stored-notebook
test checks that those outputs are complete, in order, error-free and from a full run.

Each notebook is executed in a fresh ``python3`` kernel (the interpreter running pytest;
ipykernel provides the kernel spec, so nothing is fetched) with
``JAXPRUNE_NOTEBOOK_SMALL=1``: a few steps on the bundled digits data. The stored outputs
are cleared first and the executed copy stays in memory (the file is never rewritten). A
failing cell fails the test with its traceback; the checks then read the cells' printed
output.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

COLABS = Path(__file__).resolve().parents[1] / "colabs"
NOTEBOOKS = ["quick_start.ipynb", "deep_dive.ipynb", "mnist_pruning.ipynb", "rigl.ipynb"]
CELL_TIMEOUT_S = 300


# A line each notebook prints only with its full settings (real MNIST, full step counts).
FULL_RUN_MARKERS = {
  "quick_start.ipynb": "dataset mnist, 3000 steps\n",
  "deep_dive.ipynb": "300 steps per run, 300 batches of 64 examples\n",
  "mnist_pruning.ipynb": "dataset mnist, 3000 steps per run, criteria ['magnitude', 'random',",
  "rigl.ipynb": "dataset mnist, 3000 steps, masks updated every 100\n",
}
# Images (plots) each notebook displays.
IMAGES = {"quick_start.ipynb": 3, "deep_dive.ipynb": 0, "mnist_pruning.ipynb": 1, "rigl.ipynb": 0}


def printed(nb) -> tuple[str, int]:
  """The printed text of a notebook's outputs and the number of images they display."""
  text, images = [], 0
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      if out.output_type == "stream" and out.name == "stdout":
        # One print can arrive in several stream messages: join them as printed.
        text.append(out.text)
      elif out.output_type in ("execute_result", "display_data"):
        images += "image/png" in out.data
        if "image/png" not in out.data:
          text.append("\n" + out.data.get("text/plain", "") + "\n")
    text.append("\n")
  return "".join(text), images


def execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
  """Runs a notebook in small mode, in memory; returns its printed text and image count."""
  monkeypatch.setenv("JAXPRUNE_NOTEBOOK_SMALL", "1")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temporary run folders
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  stored = (COLABS / name).read_bytes()
  nb = nbformat.reads(stored.decode(), as_version=4)
  for cell in nb.cells:  # only this run's outputs are read below
    if cell.cell_type == "code":
      cell.outputs, cell.execution_count = [], None
  client = nbclient.NotebookClient(
    nb,
    timeout=CELL_TIMEOUT_S,
    kernel_name="python3",
    resources={"metadata": {"path": str(tmp_path)}},
  )
  client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
  assert (COLABS / name).read_bytes() == stored, f"executing {name} rewrote the stored file"
  text, images = printed(nb)
  assert FULL_RUN_MARKERS[name] not in text  # the small settings were used
  return text, images


# The small runs test on the 360 images of digits' test split; its largest class has 37, so
# a network that predicts one class scores at most 100 * 37 / 360 = 10.28%.
DIGITS_TEST = 360
CONSTANT_PREDICTION = 100 * 37 / DIGITS_TEST


def is_count_of_test_images(percent: float) -> bool:
  """Whether ``percent`` (printed to 0.01) is k / 360 of the digits test images for a whole k."""
  k = percent * DIGITS_TEST / 100
  return abs(k - round(k)) < DIGITS_TEST * 0.005 / 100 + 1e-9


def floats_after(label: str, text: str) -> list[float]:
  return [float(x) for x in re.findall(rf"{label}\s*([0-9.]+)", text)]


def dicts_after(label: str, text: str) -> list[dict]:
  return [ast.literal_eval(m) for m in re.findall(rf"{label}\s*(\{{[^}}]*\}})", text)]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_stored_with_full_run_outputs_and_read_the_small_switch(name):
  nb = nbformat.read(COLABS / name, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  # Every code cell ran, once, top to bottom, in one kernel.
  counts = [c.execution_count for c in code]
  assert counts == list(range(1, len(code) + 1)), f"{name}: execution counts {counts}"
  for i, cell in enumerate(code, 1):
    for out in cell.outputs:
      assert out.output_type != "error", f"{name}, code cell {i}: {out.ename}: {out.evalue}"
      stderr = out.output_type == "stream" and out.name == "stderr"
      assert not stderr, f"{name}, code cell {i} printed to stderr: {out.text[:300]!r}"
      if "execution_count" in out:
        assert out.execution_count == cell.execution_count, (name, i)
  text, images = printed(nb)
  assert FULL_RUN_MARKERS[name] in text, f"{name}: not the outputs of a full run"
  assert images == IMAGES[name], (name, images)
  assert "Traceback" not in text and "/work/" not in text  # no machine paths or tracebacks
  first = code[0].source
  assert 'os.environ.get("JAXPRUNE_NOTEBOOK_SMALL") == "1"' in first
  assert 'find_spec("jaxprune") is None' in first  # the Colab install is skipped here
  # jaxprune is not on PyPI: the install names the repository (REPO_URL), never the bare name.
  assert 'REPO_URL = "' in first and "%pip install -q {SOURCE}" in first
  assert "pip install -q jaxprune" not in first


@pytest.mark.slow
def test_quick_start(tmp_path, monkeypatch):
  text, images = execute("quick_start.ipynb", tmp_path, monkeypatch)
  # The toy problem keeps exactly the 8 informative weights.
  kept = re.search(r"kept inputs:\s*(\[.*\])", text).group(1)
  support = re.search(r"true support:\s*(\[.*\])", text).group(1)
  assert ast.literal_eval(kept) == ast.literal_eval(support)
  # LeNet: every kernel at exactly the 90% target after the polynomial schedule.
  kernel = floats_after(r"Dense_\d/kernel sparsity", text)
  assert kernel == [0.9, 0.9, 0.9]
  accuracy = floats_after(r"test accuracy at 90% sparsity:", text)
  assert len(accuracy) == 1 and accuracy[0] > 50.0  # the small run reaches about 77%
  assert is_count_of_test_images(accuracy[0])
  # Uniform and ERK reach the same total over the kernels; ERK spreads it unevenly.
  assert floats_after(r"all kernels:", text) == [0.9, 0.9]
  erk = ast.literal_eval(re.search(r"erk\s+per layer: (\[.*?\])", text).group(1))
  assert max(erk) - min(erk) > 0.1
  # Packed masks: the same masks in an eighth of the bytes.
  bool_bytes = int(re.search(r"bool\s+masks: ([\d,]+) bytes", text).group(1).replace(",", ""))
  packed = int(re.search(r"packed masks: ([\d,]+) bytes", text).group(1).replace(",", ""))
  assert bool_bytes == 50_200 and packed * 8 == bool_bytes
  assert "identical masks: True" in text
  one_shot = floats_after(r"one-shot magnitude to \d+%: test accuracy", text)
  assert len(one_shot) == 3 and one_shot[0] == accuracy[0]  # re-pruning to 90% changes nothing
  # 95% and 98% cost accuracy (about 49% and 16% in the small run).
  assert one_shot[0] > one_shot[1] + 10.0 and one_shot[1] > one_shot[2] + 10.0
  assert all(is_count_of_test_images(a) for a in one_shot)
  assert images == IMAGES["quick_start.ipynb"]  # schedules, distributions, structures


@pytest.mark.slow
def test_deep_dive(tmp_path, monkeypatch):
  text, _ = execute("deep_dive.ipynb", tmp_path, monkeypatch)
  assert "MaskedState ('count', 'masks', 'key', 'inner_state')" in text
  assert dicts_after("sparsity after apply_updates:", text) == [{"layer0": 0.75, "layer1": 0.75}]
  # inject_hyperparams: the sparsity follows the injected target.
  injected = re.findall(r"target (0\.\d+) -> sparsity (\{[^}]*\})", text)
  assert len(injected) == 5
  for target, sparsity in injected:
    assert all(abs(s - float(target)) < 0.01 for s in ast.literal_eval(sparsity).values())
  # MultiSteps: masks change on the 8th micro-batch (the wrapper's step 1), not before.
  multi = dict(re.findall(r"call (\d): masked step counter \d, sparsity (\{[^}]*\})", text))
  assert ast.literal_eval(multi["7"]) == {"layer0": 0.0, "layer1": 0.0}
  assert ast.literal_eval(multi["8"]) == {"layer0": 0.75, "layer1": 0.75}
  # The registered criteria work inside masked and in prune.
  assert "'movement'" in text and "loss_sensitivity" in text
  assert dicts_after("jaxprune.prune with the same criterion:", text) == [
    {"layer0": 0.75, "layer1": 0.75}
  ]
  # The missing-extras error names both extras and shows the corrected call.
  error = text[text.index("MissingExtraError:") :]
  assert "'loss_fn'" in error and "'batch'" in error
  assert "tx.update(grads, state, params, loss_fn=loss_fn, batch=batch)" in error
  assert "traces: 1" in text
  assert "masks identical to the uninterrupted run:  True" in text
  assert "params identical to the uninterrupted run: True" in text


@pytest.mark.slow(seconds=36)
def test_mnist_pruning(tmp_path, monkeypatch):
  text, images = execute("mnist_pruning.ipynb", tmp_path, monkeypatch)
  runs = re.findall(
    r"(\w+)\s+target ([0-9.]+)\s+sparsity ([0-9.]+)\s+test accuracy ([0-9.]+)%", text
  )
  assert len(runs) >= 4 and {r[0] for r in runs} >= {"magnitude"}
  for criterion, target, sparsity, accuracy in runs:
    assert abs(float(sparsity) - float(target)) < 1e-3, (criterion, target, sparsity)
    # Every run beats predicting one class (the worst small run, GraSP at 90%, has 15%).
    assert float(accuracy) > CONSTANT_PREDICTION, (criterion, target, accuracy)
    assert is_count_of_test_images(float(accuracy)), (criterion, target, accuracy)
  magnitude = {float(r[1]): float(r[3]) for r in runs if r[0] == "magnitude"}
  assert magnitude[0.5] > 50.0  # well above chance (the small run: about 76%)
  assert magnitude[0.5] > magnitude[0.9] + 20.0  # 20 steps do not recover from 90% (24%)
  dense = floats_after(r"dense baseline: test accuracy", text)
  assert len(dense) == 1 and dense[0] > 50.0  # about 80%
  assert "theoretical speedup 10.00x" in text  # the 90% run's table
  # The table is the 90% magnitude run's: the same test accuracy as its line above.
  assert floats_after(r"test error [0-9.]+% \(accuracy", text) == [magnitude[0.9]]
  assert images == IMAGES["mnist_pruning.ipynb"]


@pytest.mark.slow
def test_rigl(tmp_path, monkeypatch):
  text, _ = execute("rigl.ipynb", tmp_path, monkeypatch)
  rows = re.findall(r"(Dense_\d)/kernel kept (\d+) -> (\d+), moved (\d+)", text)
  assert [r[0] for r in rows] == ["Dense_0", "Dense_1", "Dense_2"]
  for _, before, after, _ in rows:
    assert before == after  # drop and grow keep every layer's count
  assert sum(int(r[3]) for r in rows) > 0  # connections did move
  assert "params exactly zero outside the masks: True" in text
  accuracy = floats_after(r"test accuracy at 90% sparsity \(RigL\):", text)
  assert len(accuracy) == 1 and accuracy[0] > 30.0  # well above chance (10%)
