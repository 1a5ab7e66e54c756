"""The compiled kernels (bertconv/_kernels.c) against independent references: the transpose, and
the NumPy tiles used without a compiler, against NumPy's own transpose, bit for bit, for every
shape and element size; CRC-32C against google-crc32c; the transforms as byte moves against the
transforms on arrays."""
from __future__ import annotations

import importlib

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

convert_module = importlib.import_module("bertconv.conversion.datapath")
contiguous = convert_module.contiguous

needs_native = pytest.mark.skipif(
    not convert_module.native_transpose_available(),
    reason="bertconv._kernels was not built (no C compiler at install time); the NumPy path is tested")
needs_crc = pytest.mark.skipif(
    not convert_module.compiled_data_path_available(),
    reason="no compiled kernels, or no CRC-32C instruction on this CPU; google-crc32c is used instead")

DTYPES = [np.float32, np.float16, ml_dtypes.bfloat16, np.float64, np.int8, np.uint16, np.int64,
          ml_dtypes.float8_e4m3fn]


def _random_bits(shape, dtype, seed) -> np.ndarray:
    """Arbitrary bit patterns of the dtype's size: NaNs with payloads, infinities, subnormals."""
    dtype = np.dtype(dtype)
    raw = np.random.default_rng(seed).integers(0, 256, size=int(np.prod(shape)) * dtype.itemsize,
                                               dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


@settings(max_examples=150, deadline=None)
@given(rows=st.integers(0, 140), cols=st.integers(0, 140), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**32 - 1))
def test_both_paths_equal_numpy_bit_for_bit(rows, cols, dtype, seed):
    stored = _random_bits((rows, cols), dtype, seed)
    expected = np.ascontiguousarray(stored.T).tobytes()
    for native in (True, False):
        out = contiguous(stored.T, native=native)
        assert out.flags.c_contiguous and out.shape == (cols, rows) and out.dtype == stored.dtype
        assert out.tobytes() == expected


@pytest.mark.parametrize("shape", [(768, 3072), (3072, 768), (1024, 1024), (1027, 4099)])
def test_bert_sized_kernels(shape):
    stored = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    assert np.array_equal(contiguous(stored.T), stored.T)
    assert np.array_equal(contiguous(stored.T, native=False), stored.T)


def test_unaligned_source_from_a_packed_file():
    # TensorFlow packs tensors back to back: a float32 kernel can start at an odd offset.
    raw = np.random.default_rng(1).integers(0, 256, size=1 + 37 * 41 * 4, dtype=np.uint8)
    stored = np.frombuffer(raw.tobytes(), dtype=np.uint8, offset=1).view(np.float32).reshape(37, 41)
    assert not stored.flags.aligned
    assert contiguous(stored.T).tobytes() == np.ascontiguousarray(stored.T).tobytes()


def test_views_that_are_not_a_plain_transpose_still_copy_correctly():
    stored = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    for view in (stored.transpose(2, 0, 1), stored[:, ::2], stored.T[1:]):
        assert np.array_equal(contiguous(view), view)
    flat = np.arange(10, dtype=np.float32)
    assert contiguous(flat) is flat


@needs_native
def test_native_refuses_bad_arguments():
    from bertconv._kernels import transpose
    src = np.zeros((4, 6), np.float32)
    dst = np.zeros((6, 4), np.float32)
    transpose(src, dst.view(np.uint8), 4, 6, 4)
    with pytest.raises(ValueError, match="sizes"):
        transpose(src, dst.view(np.uint8), 4, 5, 4)
    with pytest.raises(ValueError, match="itemsize"):
        transpose(src, dst.view(np.uint8), 4, 2, 12)
    with pytest.raises(ValueError, match="negative"):
        transpose(src, dst.view(np.uint8), -4, -6, 4)
    with pytest.raises(ValueError, match="overlap"):
        transpose(src, src.view(np.uint8), 4, 6, 4)
    with pytest.raises(TypeError):
        transpose(src, bytes(96), 4, 6, 4)  # read-only destination
    with pytest.raises(ValueError, match="overflows"):
        transpose(src, dst.view(np.uint8), 2**62, 2**62, 8)


@needs_crc
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=40_000), skip=st.integers(0, 15), start=st.integers(0, 2**32 - 1))
def test_crc32c_equals_google_crc32c(data, skip, start):
    import google_crc32c
    from bertconv._kernels import crc32c

    # every alignment of the start, lengths across the three-stream chunks (3 x 4096 bytes)
    view = memoryview(data)[min(skip, len(data)):]
    assert crc32c(view) == google_crc32c.value(bytes(view))
    assert crc32c(view, start) == google_crc32c.extend(start, bytes(view))


@needs_crc
def test_crc32c_of_a_memory_mapped_file(tmp_path):
    import mmap

    import google_crc32c
    from bertconv._kernels import crc32c

    payload = np.random.default_rng(3).integers(0, 256, size=3 * 4096 * 7 + 5, dtype=np.uint8).tobytes()
    (tmp_path / "blob").write_bytes(payload)
    with open(tmp_path / "blob", "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        with memoryview(mapped) as view:
            assert crc32c(view[1:]) == google_crc32c.value(payload[1:])


@pytest.mark.parametrize("hardware", [True, False])
def test_index_checksums_by_either_route_equal_google_crc32c(hardware, monkeypatch):
    # sstable.crc32c (the index blocks, strings, the pure-Python readers) may take the kernel where
    # the CPU has the instruction, and takes google-crc32c otherwise: both give the same values
    # (which one it takes where both exist is a speed measure: bench/properties.py)
    import google_crc32c

    from bertconv.formats import sstable

    if hardware and not convert_module.compiled_data_path_available():
        pytest.skip("no compiled kernels, or no CRC-32C instruction on this CPU")
    if not hardware and convert_module.compiled_data_path_available():
        monkeypatch.setattr(importlib.import_module("bertconv._kernels"), "HARDWARE_CRC32C", 0)
    monkeypatch.setattr(sstable, "_EXTEND", None)
    payload = np.random.default_rng(5).integers(0, 256, size=3 * 4096 * 3 + 17, dtype=np.uint8)
    for data in (payload.tobytes(), payload, payload.tobytes()[5:], b""):
        assert sstable.crc32c(data) == google_crc32c.value(bytes(data))
        assert sstable.crc32c(data, 0x1234ABCD) == google_crc32c.extend(0x1234ABCD, bytes(data))
    if not hardware:
        assert sstable._EXTEND is google_crc32c.extend  # the fallback is what was checked


@needs_crc
@settings(max_examples=120, deadline=None)
@given(rows=st.integers(0, 150), cols=st.integers(0, 150), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**32 - 1))
def test_fused_transpose_gives_the_transpose_and_the_source_checksum(rows, cols, dtype, seed):
    import google_crc32c
    from bertconv._kernels import transpose_crc32c

    stored = _random_bits((rows, cols), dtype, seed)
    out = np.empty((cols, rows), dtype=stored.dtype)
    crc = transpose_crc32c(stored, out.view(np.uint8), rows, cols, stored.dtype.itemsize)
    assert crc == google_crc32c.value(stored.tobytes())
    assert out.tobytes() == np.ascontiguousarray(stored.T).tobytes()


@pytest.mark.parametrize("transform,shape", [
    (None, (7, 5)), ("transpose", (7, 5)), ("transpose", (9,)), ("merge_heads", (3, 4)),
    ("merge_heads_out_transpose", (6, 3, 4)), ("merge_heads_in_transpose", (3, 4, 6))])
def test_transforms_as_byte_moves_agree_with_the_array_transforms(transform, shape):
    from bertconv.mapping import apply_transform, transposed_matrix

    stored = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    expected = np.ascontiguousarray(apply_transform(transform, stored)).tobytes()
    matrix = transposed_matrix(transform, shape)
    if matrix is None:
        assert stored.tobytes() == expected
    else:
        rows, cols = matrix
        assert stored.reshape(rows, cols).T.tobytes() == expected
    with pytest.raises(ValueError):
        transposed_matrix("transpose", (2, 3, 4))
