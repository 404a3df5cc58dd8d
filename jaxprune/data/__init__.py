"""Data for training: TFDS datasets prepared offline, in-memory or streamed through grain.

Datasets: any TFDS image-classification dataset prepared in the array_record format
(read with ``tfds.data_source``, no TensorFlow): ``"cifar10"``, ``"cifar100"``,
``"imagenet2012"``, ``"imagenette"`` carry their normalisation and augmentation
(`jaxprune.data.augment`); ``"mnist"`` and ``"fashion_mnist"`` can be prepared from the
IDX files with ``python -m jaxprune.data prepare mnist --from DIR``; ``"digits"``
(scikit-learn's bundled 8x8 digits) needs nothing. Training batches stream through grain
worker processes (`StreamedBatches`).

Text for language models (byte tokens, vocabulary 256): ``"shakespeare"``, prepared with
``python -m jaxprune.data prepare shakespeare --download``, or a user's own text
(``"text:PATH"``), loaded with `load_text` and batched by `TextBatches` (training) and
`text_eval_batches` (evaluation); see `jaxprune.data.text`.

Example:
  >>> import jaxprune.data as jdata
  >>> train = jdata.load("digits", "train")
  >>> batch = next(jdata.BatchIterator(train, batch_size=32, seed=0))
  >>> batch["image"].shape, batch["label"].shape
  ((32, 8, 8, 1), (32,))
"""

from jaxprune.data.augment import Preprocess
from jaxprune.data.batching import BatchIterator, eval_batches
from jaxprune.data.dataset import Dataset, split_validation
from jaxprune.data.idx import read_idx
from jaxprune.data.loading import load
from jaxprune.data.prefetch import prefetch_to_device
from jaxprune.data.preparation import (
  DatasetNotPreparedError,
  default_data_dir,
  ensure_prepared,
  is_prepared,
  prepare,
)
from jaxprune.data.shakespeare import is_shakespeare_prepared, prepare_shakespeare, strip_gutenberg
from jaxprune.data.streaming import HostBatches, StreamedBatches
from jaxprune.data.text import TextDataset, TextSpec, load_text, text_spec
from jaxprune.data.text_batches import TextBatches, text_eval_batches

__all__ = [
  "BatchIterator",
  "Dataset",
  "DatasetNotPreparedError",
  "HostBatches",
  "Preprocess",
  "StreamedBatches",
  "TextBatches",
  "TextDataset",
  "TextSpec",
  "default_data_dir",
  "ensure_prepared",
  "eval_batches",
  "is_prepared",
  "is_shakespeare_prepared",
  "load",
  "load_text",
  "prefetch_to_device",
  "prepare",
  "prepare_shakespeare",
  "read_idx",
  "split_validation",
  "strip_gutenberg",
  "text_eval_batches",
  "text_spec",
]
