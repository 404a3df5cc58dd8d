"""`read_idx`: IDX files written here byte by byte, plain and gzip-compressed."""

import gzip
import struct

import numpy as np
import pytest

from jaxprune.data import read_idx


def _idx_bytes(array: np.ndarray, code: int, big_endian_dtype: str) -> bytes:
  header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
  return header + array.astype(big_endian_dtype).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_reads_uint8_images(tmp_path, compress):
  images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
  data = _idx_bytes(images, 0x08, "u1")
  path = tmp_path / ("images.gz" if compress else "images")
  path.write_bytes(gzip.compress(data) if compress else data)
  out = read_idx(path)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, images)


def test_reads_big_endian_int32_and_float32(tmp_path):
  ints = np.array([[1, -2, 70000], [3, 4, -5]], np.int32)
  (tmp_path / "ints").write_bytes(_idx_bytes(ints, 0x0C, ">i4"))
  floats = np.array([0.5, -1.25, 3e7], np.float32)
  (tmp_path / "floats").write_bytes(_idx_bytes(floats, 0x0D, ">f4"))
  np.testing.assert_array_equal(read_idx(tmp_path / "ints"), ints)
  np.testing.assert_array_equal(read_idx(tmp_path / "floats"), floats)
  assert read_idx(tmp_path / "ints").dtype.isnative


def test_rejects_a_file_that_is_not_idx(tmp_path):
  (tmp_path / "notes.txt").write_bytes(b"hello, world")
  with pytest.raises(ValueError, match="not an IDX file"):
    read_idx(tmp_path / "notes.txt")


def test_rejects_a_truncated_file(tmp_path):
  data = _idx_bytes(np.zeros((3, 4, 4), np.uint8), 0x08, "u1")
  (tmp_path / "short").write_bytes(data[:-5])
  with pytest.raises(ValueError, match="expected 48"):
    read_idx(tmp_path / "short")
