"""TensorFlow V2 checkpoints (tensor bundles: ``<prefix>.index`` + ``<prefix>.data-*``), without
TensorFlow.

Layers: :mod:`._wire` (protobuf and OrderedCode bytes) → :mod:`.sstable` (the ``.index`` table) →
:class:`TFBundleSource` (entries, data shards, dtypes, slices, checksums).

The whole index is parsed and checked when the source is opened: every entry decodes, its dtype is
known, its bytes lie inside its data shard (where the shard is here) and their count fits its dtype
and shape, and every sliced tensor's slices exist and tile it exactly. Tensor bytes are checked
against their stored CRC-32C when first read (``verify_crc``). Numeric tensors are zero-copy,
read-only NumPy views of a memory map of their shard.

Listing needs only the index. A data shard that is missing, or that is a Git LFS pointer checked
out in place of the file, is reported by :meth:`TFBundleSource.unavailable_data` and is an error
(:class:`~bertconv.errors.DataUnavailableError`) only when a tensor stored in it is read.

:func:`~.bundle_location.locate_bundle` finds the bundle from what the user named.
"""
from __future__ import annotations

import math
import mmap
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointFormatError, CorruptDataError, InputError
from . import _wire
from ._wire import (BundleEntry, ObjectReference, SerializedTensor, SlotVariableReference,
                    TrackableObject, WireError)
from .availability import _LFS_POINTER_LIMIT, UnavailableData, _lfs_pointer
from .base import StoredBytes, TensorInfo, TensorSource, numpy_dtype
from .bundle_location import locate_bundle, _v1_error
from .sstable import crc32c, read_table, unmask_crc

if TYPE_CHECKING:  # imported where tensors are read (see numpy_dtype)
    import numpy as np

__all__ = ["TFBundleSource", "DTYPES", "OBJECT_GRAPH_KEY", "TrackableObject",
           "ObjectReference", "SerializedTensor", "SlotVariableReference"]

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_DAMAGED = "the file is damaged; download or copy it again"
# Readers reject bundles whose version says they need a newer reader (kTensorBundleVersion = 1).
_READER_VERSION = 1
#: Pages of released tensors leave the process in batches this large: each madvise(MADV_DONTNEED)
#: makes the other cores flush their TLBs, which one call per tensor makes add up
#: (docs/performance.md); a batch costs at most this much more resident memory.
RELEASE_BATCH_BYTES = 32 << 20
_MAX_SHARDS = 1 << 20


@dataclass(frozen=True)
class _Dtype:
    name: str
    #: Bytes per element as stored; 0 for STRING and VARIANT.
    itemsize: int
    #: Width of the unit to byte-swap in big-endian bundles (complex numbers swap each half).
    swap_unit: int = 0

    @property
    def numpy(self) -> np.dtype | None:
        """Little-endian NumPy dtype of one element; None for STRING and VARIANT."""
        return numpy_dtype(self.name) if self.itemsize else None


def _numeric(name: str, itemsize: int, swap_unit: int | None = None) -> _Dtype:
    return _Dtype(name, itemsize, itemsize if swap_unit is None else swap_unit)


#: TensorFlow DataType code → how bertconv names and decodes it (types.proto). Quantized types
#: read as their storage integers.
DTYPES: dict[int, _Dtype] = {
    1: _numeric("float32", 4),
    2: _numeric("float64", 8),
    3: _numeric("int32", 4),
    4: _numeric("uint8", 1),
    5: _numeric("int16", 2),
    6: _numeric("int8", 1),
    7: _Dtype("string", 0),
    8: _numeric("complex64", 8, 4),
    9: _numeric("int64", 8),
    10: _numeric("bool", 1),
    11: _numeric("int8", 1),       # QINT8
    12: _numeric("uint8", 1),      # QUINT8
    13: _numeric("int32", 4),      # QINT32
    14: _numeric("bfloat16", 2),
    15: _numeric("int16", 2),      # QINT16
    16: _numeric("uint16", 2),     # QUINT16
    17: _numeric("uint16", 2),
    18: _numeric("complex128", 16, 8),
    19: _numeric("float16", 2),
    21: _Dtype("variant", 0),
    22: _numeric("uint32", 4),
    23: _numeric("uint64", 8),
    24: _numeric("float8_e5m2", 1),
    25: _numeric("float8_e4m3fn", 1),
    26: _numeric("float8_e4m3fnuz", 1),
    27: _numeric("float8_e4m3b11fnuz", 1),
    28: _numeric("float8_e5m2fnuz", 1),
    # TensorFlow stores 4-bit integers one per byte, like ml_dtypes does in memory.
    29: _numeric("int4", 1),
    30: _numeric("uint4", 1),
}
_STRING, _VARIANT = 7, 21


# -- the reader -------------------------------------------------------------------------------------
def _display(key: bytes) -> str:
    return key.decode("utf-8", errors="surrogateescape")


def _describe_extents(extents) -> str:
    return ",".join("-" if length is None else f"{start}:{start + length}" for start, length in extents)


class TFBundleSource(TensorSource):
    """A TensorFlow V2 checkpoint opened for reading.

    Opening and listing need only the ``.index``: data files that are missing or Git LFS
    pointers are reported by :meth:`unavailable_data`, and reading a tensor stored in one raises
    :class:`~bertconv.errors.DataUnavailableError` naming the file. ``notes`` say what finding the
    bundle decided (see :func:`locate_bundle`); ``steps`` are the steps of its series present
    beside it, ``step`` its own (None outside a series)."""

    format_name = "tf-bundle"

    def __init__(self, path: str | Path, *, verify_crc: bool = True, step: int | None = None):
        super().__init__(path)
        self.location = locate_bundle(path, step=step)
        self.prefix = self.location.prefix
        self.index_path = self.location.file(".index")
        self.notes: list[str] = list(self.location.notes)
        self.steps: tuple[int, ...] = self.location.steps
        self.step: int | None = self.location.step
        self.verify_crc = verify_crc
        self._unavailable: dict[int, UnavailableData] = {}
        self._maps: dict[int, mmap.mmap | bytes] = {}
        self._verified: set[bytes] = set()
        self._entries: dict[bytes, BundleEntry] = {}
        self._released: list[tuple[int, int, int]] = []  # (shard, begin, end) not yet dropped
        self._released_bytes = 0
        self._lock = threading.Lock()  # tensors may be read and released from several threads
        self._load_index()

    # -- opening -------------------------------------------------------------------------------------
    def shard_path(self, shard_id: int) -> Path:
        return self.location.file(f".data-{shard_id:05d}-of-{self.num_shards:05d}")

    def unavailable_data(self) -> list[UnavailableData]:
        """The data files that tensors are stored in but that are not here (missing, or Git LFS
        pointers): nothing stored in them can be read, so no statistics or checksums either."""
        return [self._unavailable[shard_id] for shard_id in sorted(self._unavailable)]

    def require_data(self) -> None:
        """Raise the one-line error for the first data file that is not here, if any: for callers
        about to read every tensor, so that they fail before doing anything else."""
        for unavailable in self.unavailable_data():
            raise unavailable.error()

    def _fail(self, message: str, key: bytes | None = None, *, path: Path | None = None,
              corrupt: bool = False, hint: str | None = _DAMAGED) -> CheckpointFormatError:
        kind = CorruptDataError if corrupt else CheckpointFormatError
        return kind(message, path=path or self.index_path,
                    tensor=_display(key) if key is not None else None, hint=hint)

    def _load_index(self) -> None:
        try:
            with open(self.index_path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise InputError(f"cannot read ({err.strerror})", path=self.index_path) from None
        if not data:
            raise UnavailableData(self.index_path, "empty").error(what="index file")
        if len(data) < _LFS_POINTER_LIMIT:
            pointer = _lfs_pointer(self.index_path, data)
            if pointer is not None:
                raise pointer.error(what="index file")
        items = read_table(data, path=self.index_path, verify_crc=self.verify_crc)
        if not items or items[0][0] != b"":
            raise self._fail("has no bundle header entry (the first key must be empty)")
        if _wire.looks_like_saved_tensor_slices(items[0][1]):
            raise _v1_error(self.index_path)
        try:
            self.header = _wire.parse_header(items[0][1])
        except WireError as err:
            raise self._fail(f"bundle header does not decode ({err})") from None
        self._check_header()
        for key, value in items[1:]:
            try:
                self._entries[key] = _wire.parse_entry(value)
            except WireError as err:
                raise self._fail(f"index entry does not decode ({err})", key) from None
        self._shard_sizes: dict[int, int | None] = {}
        for key, entry in self._entries.items():
            if not entry.slices:
                self._check_stored(key, entry)
        holding_bytes = {e.shard_id for e in self._entries.values() if not e.slices and e.size}
        for shard_id, unavailable in list(self._unavailable.items()):
            if unavailable.reason == "empty" and shard_id not in holding_bytes:
                del self._unavailable[shard_id]  # an empty file for tensors of no bytes is whole
        infos = []
        for key, entry in self._entries.items():
            if key.startswith(b"\x00"):
                continue  # slice keys are parts of the tensor listed under its own name
            if entry.slices:
                nbytes = self._check_sliced(key, entry)
            else:
                nbytes = self._nbytes(entry)
            infos.append(TensorInfo(_display(key), DTYPES[entry.dtype].name, entry.shape, nbytes))
        self._info_list = infos

    def _check_header(self) -> None:
        header = self.header
        if header.min_consumer > _READER_VERSION or _READER_VERSION in header.bad_consumers:
            raise self._fail(
                f"bundle format version needs a newer reader (producer {header.producer}, "
                f"min_consumer {header.min_consumer}, bad_consumers {list(header.bad_consumers)})",
                hint="this checkpoint was written by a newer TensorFlow than bertconv understands")
        if header.endianness not in (_wire.LITTLE_ENDIAN, _wire.BIG_ENDIAN):
            raise self._fail(f"bundle header names unknown byte order {header.endianness}")
        if not 1 <= header.num_shards <= _MAX_SHARDS:
            raise self._fail(f"bundle header claims {header.num_shards} data shards")
        self.num_shards = header.num_shards
        self.big_endian = header.endianness == _wire.BIG_ENDIAN

    def _dtype_of(self, key: bytes, entry: BundleEntry) -> _Dtype:
        dtype = DTYPES.get(entry.dtype)
        if dtype is None:
            raise self._fail(f"unsupported dtype code {entry.dtype}", key,
                             hint="a newer TensorFlow type, or a damaged index")
        if entry.shape is None or any(d < 0 for d in entry.shape):
            raise self._fail(f"stored shape is not fully known ({entry.shape})", key)
        return dtype

    def _shard_size(self, key: bytes, shard_id: int) -> int | None:
        """The data file's size; None where it is not here (recorded in ``_unavailable``)."""
        if not 0 <= shard_id < self.num_shards:
            raise self._fail(f"index entry names data shard {shard_id}, but the bundle has "
                             f"{self.num_shards}", key)
        if shard_id not in self._shard_sizes:
            self._shard_sizes[shard_id] = self._probe_shard(shard_id)
        return self._shard_sizes[shard_id]

    def _probe_shard(self, shard_id: int) -> int | None:
        shard = self.shard_path(shard_id)
        try:
            size = shard.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            self._unavailable[shard_id] = UnavailableData(shard, "missing")
            return None
        except OSError as err:
            raise InputError(f"cannot read ({err.strerror})", path=shard) from None
        if size == 0:
            # A copy that never wrote a byte, unless nothing stored there has any (see _load_index).
            self._unavailable[shard_id] = UnavailableData(shard, "empty")
            return None
        if size < _LFS_POINTER_LIMIT:
            try:
                pointer = _lfs_pointer(shard, shard.read_bytes())
            except OSError as err:
                raise InputError(f"cannot read ({err.strerror})", path=shard) from None
            if pointer is not None:
                self._unavailable[shard_id] = pointer
                return None
        return size

    def _check_stored(self, key: bytes, entry: BundleEntry) -> None:
        """An entry whose bytes are in a data shard: check they exist and fit dtype and shape."""
        dtype = self._dtype_of(key, entry)
        numel = math.prod(entry.shape)  # type: ignore[arg-type]
        # A data file that is not here is no error until a tensor in it is read: the index alone
        # lists the checkpoint. What the index says about the bytes is still checked.
        shard_size = self._shard_size(key, entry.shard_id)
        end = entry.offset + entry.size
        if entry.offset < 0 or entry.size < 0 or (shard_size is not None and end > shard_size):
            holds = f"the data file has {shard_size}" if shard_size is not None else "no file holds"
            raise self._fail(
                f"index claims bytes {entry.offset}..{end} but {holds}", key,
                path=self.shard_path(entry.shard_id), corrupt=True,
                hint="the data file is truncated or the index damaged; download or copy both again")
        if dtype.itemsize:
            expected = numel * dtype.itemsize
            if entry.size != expected:
                raise self._fail(f"index claims {entry.size} bytes for {numel} {dtype.name} values "
                                 f"({expected} bytes)", key, corrupt=True)
        else:
            # Each string has a varint length (1+ bytes) and there is a 4-byte checksum; each
            # variant element has a length (1+) and a 4-byte checksum.
            minimum = numel + 4 if entry.dtype == _STRING else numel * 5
            if entry.size < minimum:
                raise self._fail(f"index claims {entry.size} bytes for {numel} {dtype.name} "
                                 f"elements, fewer than their lengths need", key, corrupt=True)

    def _nbytes(self, entry: BundleEntry) -> int:
        dtype = DTYPES[entry.dtype]
        if dtype.itemsize:
            return math.prod(entry.shape) * dtype.itemsize  # type: ignore[arg-type]
        return entry.size

    def _slice_parts(self, key: bytes, entry: BundleEntry):
        """``(slice key, slice entry, tuple of python slices)`` for each slice of a full entry."""
        parts = []
        for extents in entry.slices:
            if len(extents) != len(entry.shape):  # type: ignore[arg-type]
                raise self._fail(f"slice of rank {len(extents)} for a tensor of shape "
                                 f"{entry.shape}", key)
            index = []
            for (start, length), dim in zip(extents, entry.shape):  # type: ignore[arg-type]
                stop = dim if length is None else start + length
                if start < 0 or stop < start or stop > dim:
                    raise self._fail(f"slice [{_describe_extents(extents)}] lies outside shape "
                                     f"{entry.shape}", key)
                index.append((start, stop))
            slice_key = _wire.encode_slice_key(key, extents)
            part = self._entries.get(slice_key)
            if part is None:
                raise self._fail(f"slice [{_describe_extents(extents)}] is listed but not stored", key)
            if part.slices or part.dtype != entry.dtype or part.shape != tuple(b - a for a, b in index):
                raise self._fail(f"slice [{_describe_extents(extents)}] is stored with dtype code "
                                 f"{part.dtype} and shape {part.shape}", key)
            parts.append((slice_key, part, index))
        return parts

    def _check_sliced(self, key: bytes, entry: BundleEntry) -> int:
        self._dtype_of(key, entry)
        parts = self._slice_parts(key, entry)
        covered = sum(math.prod(b - a for a, b in index) for _, _, index in parts)
        for i, (_, _, first) in enumerate(parts):
            for _, _, second in parts[i + 1:]:
                if all(a0 < b1 and a1 < b0 for (a0, b0), (a1, b1) in zip(first, second)):
                    raise self._fail("two of its slices overlap", key)
        if covered != math.prod(entry.shape):  # type: ignore[arg-type]
            raise self._fail(f"its slices cover {covered} of {math.prod(entry.shape)} elements",  # type: ignore[arg-type]
                             key, hint="a partial save; bertconv needs every part of the tensor")
        return sum(self._nbytes(part) for _, part, _ in parts)

    # -- the TensorSource interface -----------------------------------------------------------------
    def _list(self) -> list[TensorInfo]:
        return list(self._info_list)

    def _read(self, name: str) -> np.ndarray:
        import numpy as np

        key = name.encode("utf-8", errors="surrogateescape")
        entry = self._entries[key]
        if not entry.slices:
            return self._read_stored(key, entry, key)
        dtype = DTYPES[entry.dtype]
        parts = self._slice_parts(key, entry)
        for _, part, _ in parts:
            unavailable = self._unavailable.get(part.shard_id)
            if unavailable is not None:  # its bytes were never checked against a file
                raise unavailable.error(name)
        # Safe to allocate: _check_sliced proved the slices (all inside the data files) tile it.
        out = np.empty(entry.shape, dtype=dtype.numpy if dtype.numpy is not None else object)
        for slice_key, part, index in parts:
            out[tuple(slice(a, b) for a, b in index)] = self._read_stored(slice_key, part, key)
        out.flags.writeable = False
        return out

    def close(self) -> None:
        maps, self._maps = self._maps, {}
        for mapped in maps.values():
            if isinstance(mapped, mmap.mmap):
                try:
                    mapped.close()
                except BufferError:
                    pass  # arrays still view it; the map is freed with the last of them

    def release(self, name: str) -> None:
        # A streaming conversion touches each tensor once: dropping its pages from this process
        # keeps peak RSS near the tensors in flight instead of the whole data file. The pages stay
        # in the page cache, and a view still in use simply faults them back in from the file.
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        entry = self._entries.get(name.encode("utf-8", errors="surrogateescape"))
        if entry is None or entry.slices or not entry.size:
            return
        if not isinstance(self._maps.get(entry.shard_id), mmap.mmap):
            return
        with self._lock:
            self._released.append((entry.shard_id, entry.offset, entry.offset + entry.size))
            self._released_bytes += entry.size
            if self._released_bytes < RELEASE_BATCH_BYTES:
                return
            ranges, self._released, self._released_bytes = self._released, [], 0
        self._drop(ranges)

    def _drop(self, ranges: list[tuple[int, int, int]]) -> None:
        """madvise(MADV_DONTNEED) over released tensors, adjacent ones merged into one range."""
        merged: list[list[int]] = []
        for shard_id, begin, end in sorted(ranges):
            if merged and merged[-1][0] == shard_id and begin <= merged[-1][2]:
                merged[-1][2] = max(merged[-1][2], end)
            else:
                merged.append([shard_id, begin, end])
        for shard_id, begin, end in merged:
            mapped = self._maps.get(shard_id)
            if not isinstance(mapped, mmap.mmap):
                continue
            start = begin - begin % mmap.PAGESIZE
            try:
                mapped.madvise(mmap.MADV_DONTNEED, start, end - start)
            except (OSError, ValueError):
                pass  # only a hint

    def stored_bytes(self, name: str) -> StoredBytes | None:
        key = name.encode("utf-8", errors="surrogateescape")
        entry = self._entries.get(key)
        if entry is None or entry.slices or not entry.size or self.big_endian:
            return None
        dtype = DTYPES[entry.dtype]
        if not dtype.itemsize:
            return None
        mapped = self._entry_map(entry, key)
        check = self.verify_crc and key not in self._verified
        return StoredBytes(memoryview(mapped)[entry.offset:entry.offset + entry.size], dtype.name,
                           tuple(entry.shape), unmask_crc(entry.crc32c or 0) if check else None)

    def confirm_crc32c(self, name: str, computed: int) -> None:
        key = name.encode("utf-8", errors="surrogateescape")
        entry = self._entries[key]
        self._check_crc(computed, entry, key, self.shard_path(entry.shard_id))
        self._verified.add(key)

    # -- reading bytes -------------------------------------------------------------------------------
    def _shard_map(self, shard_id: int) -> mmap.mmap | bytes:
        mapped = self._maps.get(shard_id)
        if mapped is not None:
            return mapped
        with self._lock:
            return self._map_shard(shard_id)

    def _map_shard(self, shard_id: int) -> mmap.mmap | bytes:
        mapped = self._maps.get(shard_id)
        if mapped is None:
            path = self.shard_path(shard_id)
            try:
                with open(path, "rb") as f:
                    size = f.seek(0, 2)
                    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            except (OSError, ValueError) as err:
                raise InputError(f"cannot read ({err})", path=path) from None
            self._maps[shard_id] = mapped
        return mapped

    def _entry_map(self, entry: BundleEntry, name_key: bytes) -> mmap.mmap | bytes:
        """The mapped shard holding the entry, checked to still hold all of it (a data file may
        have been cut short since the index was checked)."""
        unavailable = self._unavailable.get(entry.shard_id)
        if unavailable is not None:
            raise unavailable.error(_display(name_key))
        mapped = self._shard_map(entry.shard_id)
        if entry.offset + entry.size > len(mapped):
            raise self._fail(f"index claims bytes {entry.offset}..{entry.offset + entry.size} but "
                             f"the data file has {len(mapped)}", name_key,
                             path=self.shard_path(entry.shard_id), corrupt=True)
        return mapped

    def _read_stored(self, key: bytes, entry: BundleEntry, name_key: bytes) -> np.ndarray:
        import numpy as np

        dtype = DTYPES[entry.dtype]
        mapped = self._entry_map(entry, name_key)
        shard = self.shard_path(entry.shard_id)
        # A NumPy view, not a memoryview: google-crc32c takes only buffers it need not release.
        raw = np.frombuffer(mapped, np.uint8, entry.size, entry.offset) if entry.size else \
            np.empty(0, np.uint8)
        if dtype.numpy is not None:
            if self.verify_crc and key not in self._verified:
                self._check_crc(crc32c(raw), entry, name_key, shard)
                self._verified.add(key)
            values = raw.view(dtype.numpy).reshape(entry.shape)
            if self.big_endian and dtype.swap_unit > 1:
                unit = np.dtype(f"<u{dtype.swap_unit}")
                values = raw.view(unit).byteswap().view(dtype.numpy).reshape(entry.shape)
            values.flags.writeable = False
            return values
        if entry.dtype == _STRING:
            return self._decode_strings(key, entry, raw, name_key, shard)
        return self._decode_variants(key, entry, raw, name_key, shard)

    def _check_crc(self, computed: int, entry: BundleEntry, name_key: bytes, shard: Path) -> None:
        stored = unmask_crc(entry.crc32c or 0)
        if stored != computed:
            raise self._fail(f"crc32c mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})",
                             name_key, path=shard, corrupt=True)

    def _decode_strings(self, key, entry, raw: np.ndarray, name_key, shard) -> np.ndarray:
        import numpy as np

        values = self._string_values(entry, raw.tobytes(), name_key, shard)
        out = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            out[i] = value
        return out.reshape(entry.shape)

    def _string_values(self, entry, data: bytes, name_key, shard) -> list[bytes]:
        """``WriteStringTensor``: varint lengths, a masked CRC of the lengths, then the bytes.
        Without NumPy: reading a TF2 checkpoint's object graph is on the path of every command."""
        count = math.prod(entry.shape)
        lengths = []
        pos = 0
        try:
            for _ in range(count):
                length, pos = _wire.read_varint(data, pos)
                lengths.append(length)
        except WireError as err:
            raise self._fail(f"string lengths do not decode ({err})", name_key, path=shard,
                             corrupt=True) from None
        # The length checksum is over each length as a fixed-width integer in the writer's byte
        # order, 4 bytes unless the length needs 8.
        order = ">" if self.big_endian else "<"
        widths = b"".join(struct.pack(order + ("I" if n <= 0xFFFFFFFF else "Q"), n) for n in lengths)
        crc = crc32c(widths)
        if pos + 4 > len(data) or sum(lengths) != len(data) - pos - 4:
            raise self._fail(f"string lengths add up to {sum(lengths)} bytes, but the entry holds "
                             f"{max(len(data) - pos - 4, 0)}", name_key, path=shard, corrupt=True)
        stored_length_crc = struct.unpack_from(order + "I", data, pos)[0]
        if self.verify_crc and unmask_crc(stored_length_crc) != crc:
            raise self._fail(f"crc32c mismatch in string lengths (stored "
                             f"0x{unmask_crc(stored_length_crc):08x}, computed 0x{crc:08x})",
                             name_key, path=shard, corrupt=True)
        pos += 4
        if self.verify_crc:
            self._check_crc(crc32c(data[pos - 4:], crc), entry, name_key, shard)
        values = []
        for length in lengths:
            values.append(data[pos:pos + length])
            pos += length
        return values

    def _decode_variants(self, key, entry, raw: np.ndarray, name_key, shard) -> np.ndarray:
        """``WriteVariantTensor``: per element a varint length, a serialized VariantTensorDataProto
        and a masked running CRC; returned as the raw proto bytes of each element."""
        import numpy as np

        data = raw.tobytes()
        count = math.prod(entry.shape)
        out = np.empty(count, dtype=object)
        crc = 0
        pos = 0
        for i in range(count):
            try:
                length, pos = _wire.read_varint(data, pos)
            except WireError as err:
                raise self._fail(f"variant element {i} does not decode ({err})", name_key,
                                 path=shard, corrupt=True) from None
            if length + 4 > len(data) - pos:
                raise self._fail(f"variant element {i} runs past the entry's {len(data)} bytes",
                                 name_key, path=shard, corrupt=True)
            out[i] = data[pos:pos + length]
            crc = crc32c(out[i], crc32c(struct.pack("<Q", length), crc))
            stored = data[pos + length:pos + length + 4]
            if self.verify_crc and unmask_crc(int.from_bytes(stored, "little")) != crc:
                raise self._fail(f"crc32c mismatch in variant element {i}", name_key, path=shard,
                                 corrupt=True)
            crc = crc32c(stored, crc)
            pos += length + 4
        if pos != len(data):
            raise self._fail(f"variant elements end at byte {pos} of {len(data)}", name_key,
                             path=shard, corrupt=True)
        if self.verify_crc:
            self._check_crc(crc, entry, name_key, shard)
        return out.reshape(entry.shape)

    # -- TF2 object graph --------------------------------------------------------------------------
    def object_graph(self) -> list[TrackableObject] | None:
        """The parsed ``_CHECKPOINTABLE_OBJECT_GRAPH`` of a TF2 object-based checkpoint (node 0 is
        the root), or None for a name-based (TF1) checkpoint, and where the data file holding the
        graph is not here (with a note: names are then taken as stored)."""
        key = OBJECT_GRAPH_KEY.encode()
        entry = self._entries.get(key)
        if entry is None:
            return None
        unavailable = self._unavailable.get(entry.shard_id)
        if unavailable is not None:
            note = (f"the object graph is in {unavailable.path.name}, which is not here; tensor "
                    "names are taken as stored")
            if note not in self.notes:
                self.notes.append(note)
            return None
        if entry.dtype != _STRING or entry.shape != ():
            raise self._fail(f"is not a string scalar (dtype code {entry.dtype}, shape "
                             f"{entry.shape})", key)
        if entry.slices:
            serialized = self._read(OBJECT_GRAPH_KEY).item()
        else:
            mapped = self._entry_map(entry, key)
            serialized = self._string_values(entry, bytes(mapped[entry.offset:entry.offset + entry.size]), key,
                                             self.shard_path(entry.shard_id))[0]
        def fail(err: WireError):
            raise self._fail(f"object graph does not decode ({err})", key,
                             path=self.shard_path(entry.shard_id), corrupt=True) from None

        try:
            return _wire.parse_object_graph(serialized, on_error=fail)
        except WireError as err:
            fail(err)
