"""The LevelDB-style table TensorFlow uses for ``.index`` files (``tensorflow/core/lib/io``).

Why by hand: no maintained Python package reads TensorFlow's variant of the format (LevelDB
bindings need a LevelDB database, not a lone table), and the format is small: a 48-byte footer,
an index block of block handles, data blocks of prefix-compressed keys, a 5-byte trailer with a
masked CRC-32C after each block.

:func:`read_table` checks every offset and length against the bytes it has before using it, every
block trailer's CRC (``verify_crc``), restart arrays, and that keys strictly increase. Damage
raises :class:`~bertconv.errors.CheckpointFormatError` (structure) or
:class:`~bertconv.errors.CorruptDataError` (checksums), naming the file.

:class:`TableBuilder` writes tables the way ``table_builder.cc`` does: byte for byte without
compression; with snappy, by TensorFlow's rule for each block (the bytes of the compressed form
depend on the snappy implementation, any of which TensorFlow reads).

Snappy is the ``cramjam`` package's (a dependency: wheels for every platform, no system library).
Some TensorFlow 1.x writers compressed the blocks of an index, and such files are still
published (a BERT fine-tune among them); a codec is a library's job, not this module's.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import CheckpointFormatError, CorruptDataError
from ._wire import WireError, encode_varint, read_varint

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two BlockHandles of at most 20 bytes each, zero-padded, then the 8-byte magic
BLOCK_TRAILER_SIZE = 5
NO_COMPRESSION, SNAPPY_COMPRESSION = 0, 1
DEFAULT_BLOCK_SIZE = 262144
_MASK_DELTA = 0xA282EAD8
_DAMAGED = "the file is damaged; download or copy it again"


def mask_crc(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


def crc32c(data, crc: int = 0) -> int:
    """CRC-32C of a bytes-like object (read-only buffers: bytes, NumPy arrays), continued from
    ``crc``."""
    return _crc32c_extend()(crc, data)


_EXTEND = None  # chosen by _crc32c_extend on first use


def _crc32c_extend():
    """``extend(crc, data)``: the compiled kernel where this CPU has the CRC instruction, else
    google-crc32c. Chosen on first use: the kernels' import is next to free, google-crc32c's a
    start-up cost every command would pay before its first checksum (docs/performance.md)."""
    global _EXTEND
    if _EXTEND is None:
        from ..native import hardware_crc32c, kernels

        if hardware_crc32c():
            kernel = kernels.crc32c
            _EXTEND = lambda crc, data: kernel(data, crc)  # noqa: E731
        else:
            import google_crc32c
            _EXTEND = google_crc32c.extend
    return _EXTEND


class _BlockError(ValueError):
    """A structural problem inside one block; the table reader adds the file and block."""


def _decode_handle(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int, int]:
    offset, pos = read_varint(buf, pos, end)
    size, pos = read_varint(buf, pos, end)
    return offset, size, pos


def iter_block(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield the ``(key, value)`` pairs of one uncompressed block, checking its restart array."""
    length = len(block)
    if length < 4:
        raise _BlockError(f"block of {length} bytes is too short for its restart count")
    num_restarts = struct.unpack_from("<I", block, length - 4)[0]
    if num_restarts > (length - 4) // 4:
        raise _BlockError(f"restart count {num_restarts} does not fit a block of {length} bytes")
    entries_end = length - 4 * (num_restarts + 1)
    restarts = struct.unpack_from(f"<{num_restarts}I", block, entries_end)
    if num_restarts:
        if restarts[0] != 0:
            raise _BlockError(f"first restart point is {restarts[0]}, not 0")
        if any(later <= earlier for earlier, later in zip(restarts, restarts[1:])):
            raise _BlockError("restart points do not increase")
        if (entries_end and restarts[-1] >= entries_end) or (not entries_end and num_restarts > 1):
            raise _BlockError("restart point past the entries")
    elif entries_end:
        raise _BlockError("block has entries but no restart points")
    restart_set = set(restarts)
    restarts_seen = 0
    pos = 0
    key = b""
    while pos < entries_end:
        entry_start = pos
        try:
            shared, pos = read_varint(block, pos, entries_end)
            non_shared, pos = read_varint(block, pos, entries_end)
            value_len, pos = read_varint(block, pos, entries_end)
        except WireError as err:
            raise _BlockError(f"entry at byte {entry_start}: {err}") from None
        if shared > len(key):
            raise _BlockError(f"entry at byte {entry_start} shares {shared} bytes of a "
                              f"{len(key)}-byte previous key")
        if entry_start in restart_set:
            restarts_seen += 1
            if shared:
                raise _BlockError(f"entry at restart point {entry_start} shares a key prefix")
        if non_shared + value_len > entries_end - pos:
            raise _BlockError(f"entry at byte {entry_start} runs past the end of the block")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        value = block[pos:pos + value_len]
        pos += value_len
        yield key, value
    if entries_end and restarts_seen != num_restarts:
        raise _BlockError("a restart point falls inside an entry")


#: The largest ratio of uncompressed to compressed bytes snappy can reach (a 3-byte copy of 64
#: bytes gives ~21); a block claiming more is damaged, and is refused before anything is allocated.
_SNAPPY_MAX_RATIO = 32


def _snappy():
    try:
        import cramjam
    except ImportError:
        raise CheckpointFormatError(
            "snappy-compressed blocks need the 'cramjam' package, a dependency of bertconv that is "
            "not installed", hint="pip install cramjam, or reinstall bertconv") from None
    return cramjam.snappy


def _decompress_snappy(raw: bytes, path: Path, where: str) -> bytes:
    try:
        claimed, _ = read_varint(raw, 0)
    except WireError as err:
        raise CorruptDataError(f"{where}: snappy length does not decode ({err})", path=path,
                               hint=_DAMAGED) from None
    if claimed > _SNAPPY_MAX_RATIO * len(raw) + 64:
        raise CorruptDataError(f"{where}: snappy data claims {claimed} bytes from {len(raw)} "
                               "compressed bytes", path=path, hint=_DAMAGED)
    try:
        snappy = _snappy()
    except CheckpointFormatError as err:
        raise CheckpointFormatError(f"{where} is snappy-compressed; {err.message}", path=path,
                                    hint=err.hint) from None
    try:
        contents = bytes(snappy.decompress_raw(raw))
    except Exception as err:  # noqa: BLE001 - cramjam raises its own DecompressionError
        raise CorruptDataError(f"{where}: snappy data does not decompress ({err})", path=path,
                               hint=_DAMAGED) from None
    if len(contents) != claimed:
        raise CorruptDataError(f"{where}: snappy data decompresses to {len(contents)} bytes, not "
                               f"the {claimed} it claims", path=path, hint=_DAMAGED)
    return contents


def read_block(data: bytes, offset: int, size: int, *, path: Path, where: str,
               limit: int, verify_crc: bool = True) -> bytes:
    """The contents of the block at ``offset``/``size``, trailer checked, decompressed."""
    if offset > limit or size > limit - offset or BLOCK_TRAILER_SIZE > limit - offset - size:
        raise CheckpointFormatError(
            f"{where} (offset {offset}, size {size}) lies outside the file's {limit} block bytes "
            "(the file is truncated or damaged)", path=path, hint=_DAMAGED)
    raw = data[offset:offset + size]
    block_type = data[offset + size]
    if verify_crc:
        stored = struct.unpack_from("<I", data, offset + size + 1)[0]
        computed = crc32c(data[offset:offset + size + 1])
        if unmask_crc(stored) != computed:
            raise CorruptDataError(
                f"{where} at byte {offset}: crc32c mismatch (stored 0x{unmask_crc(stored):08x}, "
                f"computed 0x{computed:08x})", path=path, hint=_DAMAGED)
    if block_type == NO_COMPRESSION:
        return bytes(raw)
    if block_type == SNAPPY_COMPRESSION:
        return _decompress_snappy(bytes(raw), path, where)
    raise CheckpointFormatError(f"{where} at byte {offset} has unknown block type {block_type}",
                                path=path, hint=_DAMAGED)


def block_handles(data: bytes, *, path: str | Path, verify_crc: bool = True) -> list[tuple[bytes, int, int]]:
    """``(separator key, offset, size)`` of each data block, from the footer and index block."""
    path = Path(path)
    size = len(data)
    if size < FOOTER_SIZE:
        raise CheckpointFormatError(
            f"file is {size} bytes, shorter than a table footer ({FOOTER_SIZE} bytes)",
            path=path, hint="the file is truncated or is not a TensorFlow checkpoint index")
    footer_at = size - FOOTER_SIZE
    magic = struct.unpack_from("<Q", data, size - 8)[0]
    if magic != TABLE_MAGIC:
        raise CheckpointFormatError(
            f"no table magic number at the end (found 0x{magic:016x})", path=path,
            hint="the file is truncated or is not a TensorFlow checkpoint index")
    try:
        meta_offset, meta_size, pos = _decode_handle(data, footer_at, size - 8)
        index_offset, index_size, _ = _decode_handle(data, pos, size - 8)
    except WireError as err:
        raise CheckpointFormatError(f"table footer is damaged ({err})", path=path, hint=_DAMAGED) from None
    # The metaindex block is always empty in TensorFlow tables; it is checked, not used, so that
    # damage there is reported rather than passed over.
    read_block(data, meta_offset, meta_size, path=path, where="metaindex block", limit=footer_at,
               verify_crc=verify_crc)
    index_block = read_block(data, index_offset, index_size, path=path, where="index block",
                             limit=footer_at, verify_crc=verify_crc)
    handles = []
    try:
        for block_number, (separator, handle) in enumerate(iter_block(index_block)):
            try:
                offset, block_size, _ = _decode_handle(handle, 0, len(handle))
            except WireError as err:
                raise _BlockError(f"entry for data block {block_number}: {err}") from None
            handles.append((separator, offset, block_size))
    except _BlockError as err:
        raise CheckpointFormatError(f"index block: {err}", path=path, hint=_DAMAGED) from None
    return handles


def read_table(data: bytes, *, path: str | Path, verify_crc: bool = True) -> list[tuple[bytes, bytes]]:
    """Every ``(key, value)`` of the table held in ``data``, in key order."""
    path = Path(path)
    footer_at = len(data) - FOOTER_SIZE
    items: list[tuple[bytes, bytes]] = []
    for block_number, (separator, offset, block_size) in enumerate(
            block_handles(data, path=path, verify_crc=verify_crc)):
        where = f"data block {block_number}"
        block = read_block(data, offset, block_size, path=path, where=where, limit=footer_at,
                           verify_crc=verify_crc)
        try:
            for key, value in iter_block(block):
                if items and key <= items[-1][0]:
                    raise _BlockError(f"keys out of order ({items[-1][0]!r} then {key!r})")
                if key > separator:
                    raise _BlockError(f"key {key!r} sorts after the block's index separator")
                items.append((key, value))
        except _BlockError as err:
            raise CheckpointFormatError(f"{where}: {err}", path=path, hint=_DAMAGED) from None
    return items


class _BlockBuilder:
    """``block_builder.cc``: prefix-compressed entries with a restart point every N entries."""

    def __init__(self, restart_interval: int):
        self.restart_interval = restart_interval
        self.reset()

    def reset(self) -> None:
        self.buffer = bytearray()
        self.restarts = [0]
        self.counter = 0
        self.last_key = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.counter < self.restart_interval:
            limit = min(len(self.last_key), len(key))
            while shared < limit and self.last_key[shared] == key[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buffer))
            self.counter = 0
        self.buffer += encode_varint(shared) + encode_varint(len(key) - shared) + encode_varint(len(value))
        self.buffer += key[shared:] + value
        self.last_key = key
        self.counter += 1

    def size_estimate(self) -> int:
        return len(self.buffer) + 4 * len(self.restarts) + 4

    def empty(self) -> bool:
        return not self.buffer

    def finish(self) -> bytes:
        return bytes(self.buffer) + struct.pack(f"<{len(self.restarts)}I", *self.restarts) + \
            struct.pack("<I", len(self.restarts))


def _shortest_separator(start: bytes, limit: bytes) -> bytes:
    """BytewiseComparator::FindShortestSeparator."""
    common = 0
    shortest = min(len(start), len(limit))
    while common < shortest and start[common] == limit[common]:
        common += 1
    if common < shortest:
        byte = start[common]
        if byte < 0xFF and byte + 1 < limit[common]:
            return start[:common] + bytes([byte + 1])
    return start


def _short_successor(key: bytes) -> bytes:
    """BytewiseComparator::FindShortSuccessor."""
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


class TableBuilder:
    """Write a table to a binary file object, as TensorFlow's ``TableBuilder``.

    ``compression=SNAPPY_COMPRESSION`` compresses each block (data, metaindex and index blocks
    alike) and keeps the compressed form only where it saves at least an eighth of the block, as
    ``TableBuilder::WriteBlock`` does; the trailer's CRC covers the stored bytes and type byte."""

    def __init__(self, out, *, block_size: int = DEFAULT_BLOCK_SIZE, restart_interval: int = 16,
                 compression: int = NO_COMPRESSION):
        if compression not in (NO_COMPRESSION, SNAPPY_COMPRESSION):
            raise ValueError(f"unknown block compression {compression!r}")
        self.out = out
        self.block_size = block_size
        self.compress = _snappy().compress_raw if compression == SNAPPY_COMPRESSION else None
        self.offset = 0
        self.data_block = _BlockBuilder(restart_interval)
        self.index_block = _BlockBuilder(1)
        self.last_key: bytes | None = None
        self.pending_handle: tuple[int, int] | None = None

    def _write_block(self, block: _BlockBuilder) -> tuple[int, int]:
        contents = block.finish()
        block.reset()
        trailer_type = bytes([NO_COMPRESSION])
        if self.compress is not None:
            compressed = bytes(self.compress(contents))
            if len(compressed) < len(contents) - len(contents) // 8:
                contents, trailer_type = compressed, bytes([SNAPPY_COMPRESSION])
        crc = mask_crc(crc32c(trailer_type, crc32c(contents)))
        handle = (self.offset, len(contents))
        self.out.write(contents + trailer_type + struct.pack("<I", crc))
        self.offset += len(contents) + BLOCK_TRAILER_SIZE
        return handle

    def _flush(self) -> None:
        if self.data_block.empty():
            return
        self.pending_handle = self._write_block(self.data_block)

    def _add_pending_index_entry(self, key: bytes) -> None:
        offset, size = self.pending_handle  # type: ignore[misc]
        self.index_block.add(key, encode_varint(offset) + encode_varint(size))
        self.pending_handle = None

    def add(self, key: bytes, value: bytes) -> None:
        if self.last_key is not None:
            if key <= self.last_key:
                raise ValueError(f"table keys must strictly increase: {self.last_key!r} then {key!r}")
            # An entry at least twice the block size goes into a block of its own.
            if len(key) + len(value) >= 2 * self.block_size:
                self._flush()
        if self.pending_handle is not None:
            self._add_pending_index_entry(_shortest_separator(self.last_key, key))  # type: ignore[arg-type]
        self.last_key = key
        self.data_block.add(key, value)
        if self.data_block.size_estimate() >= self.block_size:
            self._flush()

    def finish(self) -> None:
        self._flush()
        metaindex = self._write_block(_BlockBuilder(16))
        if self.pending_handle is not None:
            self._add_pending_index_entry(_short_successor(self.last_key or b""))
        index = self._write_block(self.index_block)
        footer = bytearray()
        for offset, size in (metaindex, index):
            footer += encode_varint(offset) + encode_varint(size)
        footer += bytes(40 - len(footer))
        footer += struct.pack("<Q", TABLE_MAGIC)
        self.out.write(bytes(footer))


def write_table(out, items: Iterable[tuple[bytes, bytes]], **options) -> None:
    builder = TableBuilder(out, **options)
    for key, value in items:
        builder.add(key, value)
    builder.finish()
