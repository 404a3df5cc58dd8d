"""Reading IDX files, the format of MNIST and Fashion-MNIST, optionally gzip-compressed.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim``
big-endian uint32 dimension sizes, then the array in C order, big-endian.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

# IDX type code -> big-endian numpy dtype.
_DTYPES = {
  0x08: np.dtype(np.uint8),
  0x09: np.dtype(np.int8),
  0x0B: np.dtype(">i2"),
  0x0C: np.dtype(">i4"),
  0x0D: np.dtype(">f4"),
  0x0E: np.dtype(">f8"),
}


def _read_bytes(path: str | os.PathLike) -> bytes:
  with open(path, "rb") as f:
    head = f.read(2)
  opener = gzip.open if head == b"\x1f\x8b" else open
  with opener(path, "rb") as f:
    return f.read()


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file (plain or gzip-compressed, detected from its content) into numpy.

  Args:
    path: path to an IDX file such as ``train-images-idx3-ubyte`` or
      ``train-images-idx3-ubyte.gz``.

  Returns:
    The array, with the shape stored in the file and a native-endian dtype (``uint8``
    for MNIST images and labels).

  Raises:
    ValueError: if the file is not a well-formed IDX file.

  Example:
    images = read_idx("../shared/data/mnist/t10k-images-idx3-ubyte.gz")
    images.shape, images.dtype
    ((10000, 28, 28), dtype('uint8'))
  """
  data = _read_bytes(path)
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
    raise ValueError(
      f"{os.fspath(path)!r} is not an IDX file: its first bytes are {data[:4]!r}, expected "
      "b'\\x00\\x00<type code><ndim>' (type code one of "
      f"{sorted(hex(c) for c in _DTYPES)}). Pass an MNIST-style file, e.g. "
      "read_idx('train-images-idx3-ubyte.gz')."
    )
  dtype, ndim = _DTYPES[data[2]], data[3]
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"{os.fspath(path)!r} is truncated: its IDX header needs {header} bytes.")
  shape = struct.unpack(f">{ndim}I", data[4:header])
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(data) - header != expected:
    raise ValueError(
      f"{os.fspath(path)!r} holds {len(data) - header} bytes of data, expected {expected} "
      f"for shape {shape} and dtype {dtype}; the file is truncated or corrupt."
    )
  array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
  return array.astype(dtype.newbyteorder("="), copy=True)
