"""Which config.data names a text dataset, and the data settings a text run refuses.

Kept apart from `jaxprune.train.text_task` (the feed and evaluation of a text run) so that
`jaxprune.train.settings` can check a config before anything is built.
"""

from __future__ import annotations

from typing import Any

from jaxprune.data.text import TEXT_NAMES, USER_TEXT


def is_text(data: Any) -> bool:
  """Whether ``config.data`` (or its resolved settings) names a text dataset.

  Text datasets are ``"shakespeare"`` and ``"text:PATH"`` (a user's file or directory).

  Example:
    >>> import ml_collections
    >>> is_text(ml_collections.ConfigDict({"name": "text:/tmp/notes.txt"}))
    True
    >>> is_text(ml_collections.ConfigDict({"name": "mnist"}))
    False
  """
  return str(data.name).partition(":")[0] in TEXT_NAMES


def _positive_int(data: Any, key: str) -> int:
  value = getattr(data, key, None)
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(
      f"config.data.{key}={value!r}: a text dataset ({data.name!r}) needs a positive int "
      f"{key}, e.g. --config.data.{key}=128 (configs/shakespeare_lm.py sets it)."
    )
  return value


def check_settings(data: Any) -> None:
  """Refuses ``config.data`` settings a text dataset cannot honour (they would be ignored).

  Raises:
    ValueError: naming the setting and the corrected flag.
  """
  _positive_int(data, "seq_len")
  base, _, path = str(data.name).partition(":")
  if base == USER_TEXT and not path:
    raise ValueError(
      f"config.data.name={data.name!r} needs the path of the text, e.g. "
      "--config.data.name=text:/data/corpus.txt (a file or a directory)."
    )
  image_only = {
    "augment": (getattr(data, "augment", ""), ""),
    "image_size": (getattr(data, "image_size", 0), 0),
    "num_workers": (getattr(data, "num_workers", 0), 0),
    "fallback": (getattr(data, "fallback", ""), ""),
    "source_dir": (getattr(data, "source_dir", ""), ""),
    "download": (getattr(data, "download", False), False),
  }
  if base == USER_TEXT:
    image_only["data_dir"] = (getattr(data, "data_dir", ""), "")
  for key, (value, unset) in image_only.items():
    if value != unset:
      raise ValueError(
        f"config.data.{key}={value!r} would be ignored by the text dataset {data.name!r}; "
        f"set --config.data.{key}={unset!r}."
      )
  fractions = (
    float(getattr(data, "validation_fraction", 0.0)),
    float(getattr(data, "test_fraction", 0.0)),
  )
  if base != USER_TEXT and any(fractions):
    raise ValueError(
      f"{data.name!r} holds out whole plays for validation and test, so "
      f"validation_fraction={fractions[0]} and test_fraction={fractions[1]} would be "
      "ignored; set --config.data.validation_fraction=0 --config.data.test_fraction=0."
    )
  if base == USER_TEXT and not (min(fractions) > 0 and sum(fractions) < 1):
    raise ValueError(
      f"A user's text ({data.name!r}) is split by config.data.validation_fraction="
      f"{fractions[0]} and config.data.test_fraction={fractions[1]}; both must be > 0 and sum "
      "to less than 1, e.g. --config.data.validation_fraction=0.05 "
      "--config.data.test_fraction=0.05."
    )


def check_not_text_settings(data: Any) -> None:
  """Refuses the text-only settings on an image dataset, where they would be ignored."""
  for key, unset in (("seq_len", 0), ("test_fraction", 0.0)):
    value = getattr(data, key, unset)
    if value != unset:
      raise ValueError(
        f"config.data.{key}={value!r} applies only to text datasets ('shakespeare', "
        f"'text:PATH'); {data.name!r} would ignore it. Set --config.data.{key}={unset!r}."
      )
