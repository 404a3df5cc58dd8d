"""The datasets of a training run, as the input pipeline hands them to the trainer."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Splits:
  """The datasets of a run.

  Attributes:
    train: the training split (without the validation examples).
    test: the test split, evaluated once at the end of a run.
    validation: examples held out from the training split (``data.validation_fraction``)
      and evaluated during training; None when the fraction is 0.
    notice: what was substituted for the configured dataset, if anything (else None).
  """

  train: Any
  test: Any
  validation: Any | None = None
  notice: str | None = None

  @property
  def name(self) -> str:
    return self.train.name
