"""Standard preprocessing and augmentation per dataset family, in numpy and Pillow.

Three families, chosen with ``config.data.augment`` (``""`` = the dataset's own, see
`jaxprune.data.specs.DatasetSpec.augment`):

- ``"none"``: normalisation only, ``pixel * scale - shift`` (per channel where the
  dataset has per-channel statistics).
- ``"cifar"``: training images are zero-padded by 4 pixels on each side, randomly
  cropped back to their size and flipped left-right with probability 1/2 (He et al.,
  2016); evaluation images are only normalised.
- ``"imagenet"``: training images get an Inception-style random resized crop (area
  8-100% of the image, aspect ratio 3/4-4/3, up to 10 tries, else a centre crop;
  Szegedy et al., 2015) resized to ``image_shape`` and flipped left-right with
  probability 1/2; evaluation images are resized so their shorter side is
  ``size / 0.875`` and centre-cropped to ``size`` (224 from 256).

Randomness is split from the work: `Preprocess.draw` draws every random number of a
*global* batch from one generator, and `Preprocess.apply` applies a slice of those
draws to a slice of the images. A host that feeds rows ``[i, j)`` of a global batch then
produces exactly those rows of a single-host run, whatever the number of hosts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from jaxprune.data.specs import DatasetSpec

FAMILIES = ("none", "cifar", "imagenet")
CIFAR_PAD = 4
CROP_AREA = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_TRIES = 10
CENTRE_FRACTION = 0.875

Images = np.ndarray | Sequence[np.ndarray]
Draws = dict[str, np.ndarray]


def check_family(family: str) -> str:
  """Returns ``family`` if it is one of `FAMILIES`, else raises a `ValueError` listing them."""
  if family not in FAMILIES:
    raise ValueError(
      f"Unknown augmentation {family!r}; expected one of {FAMILIES} (or '' for the "
      "dataset's own), e.g. --config.data.augment=cifar."
    )
  return family


class Preprocess:
  """Turns raw uint8 images into the normalised float32 batch a model sees.

  Args:
    spec: the dataset's spec (image shape and normalisation constants).
    family: ``"none"``, ``"cifar"`` or ``"imagenet"``.
    train: training (random augmentation) or evaluation (deterministic) preprocessing.

  Example:
    >>> from jaxprune.data.specs import SPECS
    >>> train = Preprocess(SPECS["cifar10"], "cifar", train=True)
    >>> images = np.full((4, 32, 32, 3), 255, np.uint8)
    >>> draws = train.draw(np.random.default_rng(0), 4)
    >>> batch = train.apply(images, draws)
    >>> batch.shape, batch.dtype
    ((4, 32, 32, 3), dtype('float32'))
    >>> bool((batch == batch[:, 16:17, 16:17]).all())  # padding shows only near the borders
    False
  """

  def __init__(self, spec: DatasetSpec, family: str, *, train: bool):
    self.spec = spec
    self.family = check_family(family)
    self.train = bool(train)
    self.scale, self.shift = spec.normalisation()

  @property
  def random(self) -> bool:
    """Whether this preprocessing draws random numbers."""
    return self.train and self.family != "none"

  def draw(self, rng: np.random.Generator, n: int) -> Draws:
    """The random numbers for ``n`` examples (empty for deterministic preprocessing)."""
    if not self.random:
      return {}
    flip = rng.random(n) < 0.5
    if self.family == "cifar":
      offsets = rng.integers(0, 2 * CIFAR_PAD + 1, size=(n, 2))
      return {"offset": offsets, "flip": flip}
    return {
      "area": rng.uniform(*CROP_AREA, size=(n, CROP_TRIES)),
      "log_ratio": rng.uniform(*np.log(CROP_RATIO), size=(n, CROP_TRIES)),
      "x": rng.random((n, CROP_TRIES)),
      "y": rng.random((n, CROP_TRIES)),
      "flip": flip,
    }

  def __call__(self, images: Images, rng: np.random.Generator | None = None) -> np.ndarray:
    """``apply(images, draw(rng, len(images)))``; ``rng`` only for random preprocessing."""
    if self.random and rng is None:
      raise ValueError(
        f"Training preprocessing {self.family!r} is random; pass a generator, e.g. "
        "preprocess(images, np.random.default_rng(0))."
      )
    return self.apply(images, self.draw(rng, len(images)) if self.random else {})

  def apply(self, images: Images, draws: Draws) -> np.ndarray:
    """Preprocesses ``images`` (uint8 ``[b, H, W, C]``, or a list of ``[H, W, C]``).

    ``normalise(augment(images, draws))``.
    """
    return self.normalise(self.augment(images, draws))

  def augment(self, images: Images, draws: Draws) -> np.ndarray:
    """The crops, flips and resizes of `apply`, without normalisation: uint8 ``[b, *image_shape]``.

    A quarter of the bytes of the float32 result: worker processes hand these over and
    `normalise` runs where the batch is consumed.
    """
    if self.family == "imagenet":
      out = np.stack([self._imagenet(img, draws, i) for i, img in enumerate(images)])
    else:
      out = _stack(images, self.spec)
      if self.random:
        out = _cifar(out, draws["offset"], draws["flip"])
    return out.reshape((-1, *self.spec.image_shape))

  def normalise(self, images: np.ndarray) -> np.ndarray:
    """``pixel * scale - shift`` in float32, for uint8 images from `augment`."""
    out = images.astype(np.float32)
    np.multiply(out, self.scale, out=out)
    return np.subtract(out, self.shift, out=out)

  def _imagenet(self, image: np.ndarray, draws: Draws, i: int) -> np.ndarray:
    image = np.asarray(image)
    height, width = image.shape[:2]
    size_h, size_w, _ = self.spec.image_shape
    if self.train:
      box = _crop_box(height, width, {k: v[i] for k, v in draws.items()})
      flip = bool(draws["flip"][i])
    else:
      box = _centre_box(height, width, size_h, size_w)
      flip = False
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    out = np.asarray(pil.resize((size_w, size_h), Image.BILINEAR, box=box))
    out = out.reshape(size_h, size_w, -1)
    return out[:, ::-1] if flip else out


def _stack(images: Images, spec: DatasetSpec) -> np.ndarray:
  if isinstance(images, np.ndarray):
    return images
  return np.stack([np.asarray(i).reshape(spec.image_shape) for i in images])


def _cifar(images: np.ndarray, offsets: np.ndarray, flip: np.ndarray) -> np.ndarray:
  """Zero-pads by `CIFAR_PAD`, crops at ``offsets`` ``[b, 2]``, flips where ``flip``."""
  b, h, w = images.shape[:3]
  p = CIFAR_PAD
  padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
  rows = offsets[:, 0, None] + np.arange(h)
  cols = offsets[:, 1, None] + np.arange(w)
  cols = np.where(flip[:, None], cols[:, ::-1], cols)
  return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _crop_box(height: int, width: int, draws: Draws) -> tuple[float, float, float, float]:
  """Inception-style random crop ``(left, top, right, bottom)``; centre crop if none fits."""
  area = height * width
  for t in range(CROP_TRIES):
    target = area * draws["area"][t]
    ratio = math.exp(draws["log_ratio"][t])
    w = int(round(math.sqrt(target * ratio)))
    h = int(round(math.sqrt(target / ratio)))
    if 0 < w <= width and 0 < h <= height:
      left = int(draws["x"][t] * (width - w + 1))
      top = int(draws["y"][t] * (height - h + 1))
      return (left, top, left + w, top + h)
  # Fallback: the largest centre crop with the ratio clipped to the allowed range.
  ratio = min(max(width / height, CROP_RATIO[0]), CROP_RATIO[1])
  w, h = (width, int(round(width / ratio))) if width / height < ratio else (0, height)
  if w == 0:
    w = int(round(height * ratio))
  w, h = min(w, width), min(h, height)
  left, top = (width - w) // 2, (height - h) // 2
  return (left, top, left + w, top + h)


def _centre_box(height: int, width: int, size_h: int, size_w: int) -> tuple[float, ...]:
  """The centre crop that, resized to ``size``, equals resize-shorter-side-then-crop."""
  shorter = min(height, width)
  scale = (min(size_h, size_w) / CENTRE_FRACTION) / shorter  # resize factor
  crop_h, crop_w = size_h / scale, size_w / scale
  top, left = (height - crop_h) / 2, (width - crop_w) / 2
  return (left, top, left + crop_w, top + crop_h)
