"""Write TensorFlow V2 checkpoints (tensor bundles) without TensorFlow, byte for byte as
TensorFlow's ``BundleWriter`` does for a single-shard save: data appended in the order given, no
alignment padding, a header entry, keys in byte order, no compression, masked CRC-32C everywhere.
``snappy_index=True`` compresses the index's blocks as older TensorFlow writers did (for testing
readers; TensorFlow reads such files).

Both files are written under temporary names and renamed into place only once complete: the data
file first, then the index, so a reader never finds an index without its data.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterable

import ml_dtypes
import numpy as np

from ..atomic import atomic_file
from ..errors import InputError
from . import _wire
from .base import WRITE_PIECE_BYTES
from .sstable import NO_COMPRESSION, SNAPPY_COMPRESSION, crc32c, mask_crc, write_table

__all__ = ["write_tf_bundle"]

_VERSION_PRODUCER = 1  # kTensorBundleVersion
_DTYPE_CODES: dict[np.dtype, int] = {
    np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("uint8"): 4,
    np.dtype("int16"): 5, np.dtype("int8"): 6, np.dtype("complex64"): 8, np.dtype("int64"): 9,
    np.dtype("bool"): 10, np.dtype(ml_dtypes.bfloat16): 14, np.dtype("uint16"): 17,
    np.dtype("complex128"): 18, np.dtype("float16"): 19, np.dtype("uint32"): 22,
    np.dtype("uint64"): 23, np.dtype(ml_dtypes.float8_e5m2): 24,
    np.dtype(ml_dtypes.float8_e4m3fn): 25,
}
_STRING = 7


def _string_payload(values: np.ndarray, name: str) -> tuple[bytes, int]:
    """``WriteStringTensor``: varint lengths, the masked CRC of the lengths (each taken as a fixed
    4-byte integer, 8 if it needs them), then the bytes. Returns the payload and its entry CRC."""
    items = []
    for item in values.ravel():
        if isinstance(item, str):
            item = item.encode("utf-8")
        if not isinstance(item, (bytes, bytearray, np.bytes_)):
            raise InputError(f"string tensor holds a {type(item).__name__}, not bytes or str", tensor=name)
        items.append(bytes(item))
    varints = b"".join(_wire.encode_varint(len(item)) for item in items)
    widths = b"".join(struct.pack("<I" if len(item) <= 0xFFFFFFFF else "<Q", len(item)) for item in items)
    length_crc = crc32c(widths)
    stored_length_crc = struct.pack("<I", mask_crc(length_crc))
    body = b"".join(items)
    crc = crc32c(body, crc32c(stored_length_crc, length_crc))
    return varints + stored_length_crc + body, mask_crc(crc)


def write_tf_bundle(prefix: str | Path, tensors: Iterable[tuple[str, np.ndarray]], *,
                    overwrite: bool = False, big_endian: bool = False,
                    snappy_index: bool = False) -> Path:
    """Write ``<prefix>.index`` and ``<prefix>.data-00000-of-00001``; return the prefix.

    ``tensors`` yields ``(name, array)``; arrays may be float16/32/64, bfloat16, float8_e5m2,
    float8_e4m3fn, (u)int8/16/32/64, bool, complex64/128, or object/``bytes``/``str`` arrays for
    DT_STRING. Data is streamed: only one tensor is held at a time. ``big_endian``
    writes what TensorFlow writes on a big-endian host, and ``snappy_index`` an index with
    snappy-compressed blocks (both for testing readers).
    """
    prefix = Path(prefix)
    index_path = Path(f"{prefix}.index")
    data_path = Path(f"{prefix}.data-00000-of-00001")
    entries: dict[bytes, _wire.BundleEntry] = {}
    # Both files are complete before either is renamed; the data file is renamed first (inner
    # block), then the index, so the index never names data that is not there yet.
    with atomic_file(index_path, overwrite=overwrite) as tmp_index:
        with atomic_file(data_path, overwrite=overwrite) as tmp_data:
            with open(tmp_data, "wb") as out:
                offset = 0
                for name, array in tensors:
                    payload, code, shape, crc = _encode_tensor(name, array, big_endian)
                    key = name.encode("utf-8")
                    if key in entries:
                        raise InputError("tensor name given twice", tensor=name)
                    with memoryview(payload) as view:
                        for start in range(0, len(view), WRITE_PIECE_BYTES):
                            out.write(view[start:start + WRITE_PIECE_BYTES])
                    entries[key] = _wire.BundleEntry(
                        dtype=code, shape=shape, offset=offset, size=len(payload),
                        crc32c=crc)
                    offset += len(payload)
            header = _wire.BundleHeader(num_shards=1, endianness=int(big_endian),
                                        producer=_VERSION_PRODUCER)
            items = [(b"", _wire.encode_header(header))]
            items += [(key, _wire.encode_entry(entries[key])) for key in sorted(entries)]
            with open(tmp_index, "wb") as out:
                write_table(out, items,
                            compression=SNAPPY_COMPRESSION if snappy_index else NO_COMPRESSION)
    return prefix


def _encode_tensor(name: str, array, big_endian: bool) -> tuple[bytes, int, tuple[int, ...], int]:
    """``(payload, dtype code, shape, masked entry CRC)`` of one tensor."""
    key = name.encode("utf-8") if isinstance(name, str) else b""
    if not key or key.startswith(b"\x00"):
        raise InputError("tensor names must be non-empty strings not starting with NUL",
                         tensor=str(name))
    array = np.asarray(array)
    shape = tuple(int(d) for d in array.shape)
    if array.dtype.kind in "OSU":
        if big_endian:
            raise InputError("string tensors are written little-endian only", tensor=name)
        payload, crc = _string_payload(array, name)
        return payload, _STRING, shape, crc
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    code = _DTYPE_CODES.get(array.dtype)
    if code is None:
        raise InputError(f"dtype {array.dtype} cannot be written to a TF checkpoint by bertconv",
                         tensor=name)
    contiguous = np.ascontiguousarray(array)
    if big_endian and contiguous.dtype.itemsize > 1:
        unit = contiguous.dtype.itemsize // (2 if contiguous.dtype.kind == "c" else 1)
        contiguous = contiguous.view(f"<u{unit}").byteswap()
    payload = contiguous.tobytes()
    return payload, code, shape, mask_crc(crc32c(payload))
