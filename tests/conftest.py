"""Shared test settings: CPU only, hypothesis profile sized for a 2-core machine."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
  "default",
  max_examples=40,
  deadline=None,
  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config):
  """One persistent XLA compilation cache per test run, shared by the xdist workers.

  Many tests compile the same steps (the trainer's small config, the same masked update);
  compiling each once per run instead of once per test saves minutes on two cores. The
  cache starts empty in every run, so nothing carries over between runs.
  """
  import tempfile

  import jax

  uid = getattr(config, "workerinput", {}).get("testrunuid", f"pid{os.getpid()}")
  cache = os.path.join(tempfile.gettempdir(), f"jaxprune-test-xla-cache-{uid}")
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


import contextlib  # noqa: E402
import json  # noqa: E402

import pytest  # noqa: E402


def _getitems(*args, generator, serialized=False):
  """TFDS's mock ``__getitems__`` without the ``self`` its MagicMock does not pass."""
  assert not serialized
  return [generator[int(k)] for k in args[-1]]


@pytest.fixture
def mock_tfds(tmp_path, monkeypatch):
  """``prepare(name, num_examples) -> data_dir``: a TFDS dataset mocked offline.

  Writes the marker of a prepared array_record dataset (its ``dataset_info.json``, no
  shards) under a temporary data directory, so jaxprune's preparation check passes, and
  enters ``tfds.testing.mock_data`` so ``tfds.data_source`` yields random examples of the
  dataset's real features (e.g. CIFAR-10's 32x32x3 images; ImageNet's of random sizes).
  """
  import tensorflow_datasets as tfds
  from tensorflow_datasets.testing import mocking

  from jaxprune.data.specs import SPECS

  # TFDS 4.9.10 sets the mock's __getitems__ as a plain attribute, called without self.
  monkeypatch.setattr(mocking, "_getitems", _getitems)
  with contextlib.ExitStack() as stack:

    def prepare(name: str, num_examples: int) -> str:
      data_dir = tmp_path / "tfds"
      version = str(tfds.builder_cls(name).VERSION)
      folder = data_dir / name / version
      folder.mkdir(parents=True, exist_ok=True)
      splits = [{"name": s, "shardLengths": []} for s in SPECS[name].splits]
      info = {"name": name, "fileFormat": "array_record", "splits": splits}
      (folder / "dataset_info.json").write_text(json.dumps(info))
      policy = tfds.testing.MockPolicy.USE_CODE
      stack.enter_context(tfds.testing.mock_data(num_examples=num_examples, policy=policy))
      return str(data_dir)

    yield prepare


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
  """Starts the longest tests first and keeps each ``xdist_group`` in one worker.

  ``./run.sh test`` hands tests to its 2 workers in collection order, one at a time, so a
  long test collected last keeps one worker busy after the other has finished. Items
  marked ``slow(seconds=N)`` are sorted to the front, longest first; the sort is stable,
  so all other tests keep their collected order, the same in every worker (xdist checks
  that all workers collected the same list).

  ``--dist loadgroup`` sends the tests of one ``xdist_group`` to one worker by reading the
  group from the end of their node ids (``...::test@group``). pytest-xdist 3.8 appends it
  by assigning ``item._nodeid``, which pytest 9 no longer reads, so every group was split
  over the workers and each worker trained the groups' shared fixtures again. The suffix
  is appended here when it is missing (a no-op with an xdist that adds it itself).
  """

  def seconds(item) -> float:
    mark = item.get_closest_marker("slow")
    return float(mark.kwargs.get("seconds", 0)) if mark is not None else 0.0

  items.sort(key=lambda item: -seconds(item))
  if getattr(config, "workerinput", None) is None or not config.getvalue("loadgroup"):
    return
  from _pytest.nodeid import NodeId

  for item in items:
    marks = item.iter_markers("xdist_group")
    groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in marks})
    if groups and item.nodeid.rfind("@") <= item.nodeid.rfind("]"):
      item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")
