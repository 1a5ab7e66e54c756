"""Protocol-buffer wire format for the few messages a TF checkpoint holds, decoded by hand.

Why by hand: the messages are tiny (BundleHeaderProto, BundleEntryProto, TensorSliceProto and the
TF2 TrackableObjectGraph), and depending on ``protobuf`` plus generated TensorFlow classes would pull
in a large, version-sensitive dependency for about a hundred lines of varint handling. Every
decoder here is strict: truncated input, a varint longer than 10 bytes, a length running past the
end, a wrong wire type for a known field or a group all raise :class:`WireError`, which callers turn
into our user-facing errors with the file and tensor named.

Also here: TensorFlow's OrderedCode encoding of slice keys (``EncodeTensorNameSlice``).
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Iterator

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10


class WireError(ValueError):
    """Malformed protobuf or varint bytes (the caller adds file and tensor)."""


# -- varints ------------------------------------------------------------------------------------
def read_varint(buf: bytes | memoryview, pos: int, end: int | None = None) -> tuple[int, int]:
    """Decode a LEB128 varint at ``pos``; return ``(value, position after it)``."""
    if end is None:
        end = len(buf)
    # Most varints in an index (tags, dtypes, small sizes) are one byte: decode those at once.
    if pos < end and buf[pos] < 0x80:
        return buf[pos], pos + 1
    result = 0
    shift = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= end:
            raise WireError(f"truncated varint at byte {pos}")
        byte = buf[pos + i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result >> 64:
                raise WireError(f"varint at byte {pos} exceeds 64 bits")
            return result, pos + i + 1
        shift += 7
    raise WireError(f"varint at byte {pos} is longer than 10 bytes")


def encode_varint(value: int) -> bytes:
    if value < 0:
        value &= (1 << 64) - 1  # protobuf writes negative int32/int64 as 10-byte two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def as_int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def as_int32(value: int) -> int:
    signed = as_int64(value)
    if not -(1 << 31) <= signed < 1 << 31:
        raise WireError(f"int32 field holds {signed}, out of range")
    return signed


# -- generic message walking --------------------------------------------------------------------
def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field_number, wire_type, value)``; value is an int, or bytes for wire type 2."""
    pos = 0
    end = len(buf)
    while pos < end:
        tag, pos = read_varint(buf, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos, end)
        elif wire_type == FIXED64:
            if pos + 8 > end:
                raise WireError("truncated fixed64 field")
            value = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire_type == FIXED32:
            if pos + 4 > end:
                raise WireError("truncated fixed32 field")
            value = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        elif wire_type == LENGTH_DELIMITED:
            length, pos = read_varint(buf, pos, end)
            if length > end - pos:
                raise WireError(f"field {number} claims {length} bytes, {end - pos} remain")
            value = bytes(buf[pos:pos + length])
            pos += length
        else:
            raise WireError(f"unsupported wire type {wire_type} (field {number})")
        yield number, wire_type, value


def _expect(number: int, wire_type: int, wanted: int, message: str) -> None:
    if wire_type != wanted:
        raise WireError(f"{message} field {number} has wire type {wire_type}, expected {wanted}")


def _packed_or_single_varints(wire_type: int, value: int | bytes) -> list[int]:
    if wire_type == VARINT:
        return [value]  # type: ignore[list-item]
    if wire_type == LENGTH_DELIMITED:
        out = []
        pos = 0
        while pos < len(value):  # type: ignore[arg-type]
            item, pos = read_varint(value, pos)  # type: ignore[arg-type]
            out.append(item)
        return out
    raise WireError(f"repeated varint field has wire type {wire_type}")


def _message_starts_with_length_delimited_field_1(buf: bytes) -> bool:
    try:
        tag, _ = read_varint(buf, 0)
    except WireError:
        return False
    return tag == (1 << 3) | LENGTH_DELIMITED


# -- tensor_bundle.proto ------------------------------------------------------------------------
LITTLE_ENDIAN, BIG_ENDIAN = 0, 1


@dataclass(frozen=True)
class BundleHeader:
    num_shards: int = 0
    endianness: int = LITTLE_ENDIAN
    producer: int = 0
    min_consumer: int = 0
    bad_consumers: tuple[int, ...] = ()


def looks_like_saved_tensor_slices(header_value: bytes) -> bool:
    """True when the ``""`` entry is a V1 ``SavedTensorSlices`` (its field 1 is a message), not a
    ``BundleHeaderProto`` (whose field 1 is the varint ``num_shards``)."""
    return _message_starts_with_length_delimited_field_1(header_value)


def parse_header(buf: bytes) -> BundleHeader:
    num_shards = 0
    endianness = LITTLE_ENDIAN
    producer = min_consumer = 0
    bad: list[int] = []
    for number, wire_type, value in iter_fields(buf):
        if number == 1:
            _expect(number, wire_type, VARINT, "BundleHeaderProto")
            num_shards = as_int32(value)  # type: ignore[arg-type]
        elif number == 2:
            _expect(number, wire_type, VARINT, "BundleHeaderProto")
            endianness = as_int32(value)  # type: ignore[arg-type]
        elif number == 3:
            _expect(number, wire_type, LENGTH_DELIMITED, "BundleHeaderProto")
            for vnum, vtype, vvalue in iter_fields(value):  # type: ignore[arg-type]
                if vnum == 1:
                    _expect(vnum, vtype, VARINT, "VersionDef")
                    producer = as_int32(vvalue)  # type: ignore[arg-type]
                elif vnum == 2:
                    _expect(vnum, vtype, VARINT, "VersionDef")
                    min_consumer = as_int32(vvalue)  # type: ignore[arg-type]
                elif vnum == 3:
                    bad.extend(as_int32(v) for v in _packed_or_single_varints(vtype, vvalue))
    return BundleHeader(num_shards, endianness, producer, min_consumer, tuple(bad))


def encode_header(header: BundleHeader) -> bytes:
    out = bytearray()
    if header.num_shards:
        out += b"\x08" + encode_varint(header.num_shards)
    if header.endianness:
        out += b"\x10" + encode_varint(header.endianness)
    version = bytearray()
    if header.producer:
        version += b"\x08" + encode_varint(header.producer)
    if header.min_consumer:
        version += b"\x10" + encode_varint(header.min_consumer)
    for bad in header.bad_consumers:
        version += b"\x18" + encode_varint(bad)
    out += b"\x1a" + encode_varint(len(version)) + version
    return bytes(out)


@dataclass(frozen=True)
class BundleEntry:
    dtype: int = 0
    #: None when the shape is marked ``unknown_rank`` (never valid for a stored tensor).
    shape: tuple[int, ...] | None = ()
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    #: The masked CRC as stored; None when the field is absent.
    crc32c: int | None = None
    #: One tuple of ``(start, length)`` per dimension for each slice; length None means "all".
    slices: tuple[tuple[tuple[int, int | None], ...], ...] = ()


def _parse_shape(buf: bytes) -> tuple[int, ...] | None:
    dims: list[int] = []
    unknown_rank = False
    for number, wire_type, value in iter_fields(buf):
        if number == 2:
            _expect(number, wire_type, LENGTH_DELIMITED, "TensorShapeProto")
            size = 0
            for dnum, dtype, dvalue in iter_fields(value):  # type: ignore[arg-type]
                if dnum == 1:
                    _expect(dnum, dtype, VARINT, "TensorShapeProto.Dim")
                    size = as_int64(dvalue)  # type: ignore[arg-type]
            dims.append(size)
        elif number == 3:
            _expect(number, wire_type, VARINT, "TensorShapeProto")
            unknown_rank = bool(value)
    return None if unknown_rank else tuple(dims)


def _parse_slice(buf: bytes) -> tuple[tuple[int, int | None], ...]:
    extents = []
    for number, wire_type, value in iter_fields(buf):
        if number == 1:
            _expect(number, wire_type, LENGTH_DELIMITED, "TensorSliceProto")
            start, length = 0, None
            for enum, etype, evalue in iter_fields(value):  # type: ignore[arg-type]
                if enum == 1:
                    _expect(enum, etype, VARINT, "TensorSliceProto.Extent")
                    start = as_int64(evalue)  # type: ignore[arg-type]
                elif enum == 2:
                    _expect(enum, etype, VARINT, "TensorSliceProto.Extent")
                    length = as_int64(evalue)  # type: ignore[arg-type]
            extents.append((start, length))
    return tuple(extents)


def parse_entry(buf: bytes) -> BundleEntry:
    dtype = 0
    shape: tuple[int, ...] | None = ()
    shard_id = offset = size = 0
    crc: int | None = None
    slices = []
    for number, wire_type, value in iter_fields(buf):
        if number == 1:
            _expect(number, wire_type, VARINT, "BundleEntryProto")
            dtype = as_int32(value)  # type: ignore[arg-type]
        elif number == 2:
            _expect(number, wire_type, LENGTH_DELIMITED, "BundleEntryProto")
            shape = _parse_shape(value)  # type: ignore[arg-type]
        elif number == 3:
            _expect(number, wire_type, VARINT, "BundleEntryProto")
            shard_id = as_int32(value)  # type: ignore[arg-type]
        elif number == 4:
            _expect(number, wire_type, VARINT, "BundleEntryProto")
            offset = as_int64(value)  # type: ignore[arg-type]
        elif number == 5:
            _expect(number, wire_type, VARINT, "BundleEntryProto")
            size = as_int64(value)  # type: ignore[arg-type]
        elif number == 6:
            _expect(number, wire_type, FIXED32, "BundleEntryProto")
            crc = value  # type: ignore[assignment]
        elif number == 7:
            _expect(number, wire_type, LENGTH_DELIMITED, "BundleEntryProto")
            slices.append(_parse_slice(value))  # type: ignore[arg-type]
    return BundleEntry(dtype, shape, shard_id, offset, size, crc, tuple(slices))


def _length_delimited(number: int, payload: bytes) -> bytes:
    return encode_varint(number << 3 | LENGTH_DELIMITED) + encode_varint(len(payload)) + payload


def encode_entry(entry: BundleEntry) -> bytes:
    """Serialize like protobuf's C++ ``SerializeAsString``: field order, proto3 defaults omitted,
    the (always set) shape message present even when empty."""
    out = bytearray()
    if entry.dtype:
        out += b"\x08" + encode_varint(entry.dtype)
    shape = bytearray()
    for dim in entry.shape or ():
        shape += _length_delimited(2, b"\x08" + encode_varint(dim) if dim else b"")
    out += _length_delimited(2, bytes(shape))
    if entry.shard_id:
        out += b"\x18" + encode_varint(entry.shard_id)
    if entry.offset:
        out += b"\x20" + encode_varint(entry.offset)
    if entry.size:
        out += b"\x28" + encode_varint(entry.size)
    if entry.crc32c:
        out += b"\x35" + struct.pack("<I", entry.crc32c)
    for tensor_slice in entry.slices:
        extents = bytearray()
        for start, length in tensor_slice:
            extent = bytearray()
            if start:
                extent += b"\x08" + encode_varint(start)
            if length is not None:
                extent += b"\x10" + encode_varint(length)
            extents += _length_delimited(1, bytes(extent))
        out += _length_delimited(7, bytes(extents))
    return bytes(out)


# -- OrderedCode slice keys (tensorflow/core/lib/strings/ordered_code.cc) ------------------------
# Header bits XOR-ed into the first two bytes of an n-byte signed encoding, for n = 2..10.
_SIGNED_HEADERS = {2: (0xC0, 0x00), 3: (0xE0, 0x00), 4: (0xF0, 0x00), 5: (0xF8, 0x00),
                   6: (0xFC, 0x00), 7: (0xFE, 0x00), 8: (0xFF, 0x00), 9: (0xFF, 0x80),
                   10: (0xFF, 0xC0)}


def _num_increasing(value: int) -> bytes:
    if value < 0:
        raise WireError(f"negative value {value} in an unsigned OrderedCode number")
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return bytes([len(body)]) + body


def _signed_num_increasing(value: int) -> bytes:
    magnitude = ~value if value < 0 else value
    if magnitude < 64:
        return bytes([(0x80 ^ value) & 0xFF])
    length = next((n for n in range(2, 10) if magnitude < 1 << (7 * n - 1)), 10)
    raw = bytearray((value & ((1 << 80) - 1)).to_bytes(10, "big")[-length:])
    first, second = _SIGNED_HEADERS[length]
    raw[0] ^= first
    raw[1] ^= second
    return bytes(raw)


_ESCAPED_BYTE = re.compile(rb"[\x00\xff]")
_ESCAPES = {b"\x00": b"\x00\xff", b"\xff": b"\xff\x00"}


def encode_slice_key(name: bytes, extents: tuple[tuple[int, int | None], ...]) -> bytes:
    """``EncodeTensorNameSlice``: the bundle key under which one slice of ``name`` is stored.
    A full extent (length None) is written as start 0, length -1."""
    out = bytearray(_num_increasing(0))
    out += _ESCAPED_BYTE.sub(lambda m: _ESCAPES[m.group()], name) + b"\x00\x01"
    out += _num_increasing(len(extents))
    for start, length in extents:
        if length is None:
            start, length = 0, -1
        out += _signed_num_increasing(start)
        out += _signed_num_increasing(length)
    return bytes(out)


# -- trackable_object_graph.proto ---------------------------------------------------------------
@dataclass(frozen=True)
class ObjectReference:
    node_id: int
    local_name: str


@dataclass(frozen=True)
class SerializedTensor:
    name: str
    full_name: str
    checkpoint_key: str
    optional_restore: bool = False


@dataclass(frozen=True)
class SlotVariableReference:
    original_variable_node_id: int
    slot_name: str
    slot_variable_node_id: int


@dataclass(frozen=True)
class TrackableObject:
    node_id: int
    children: tuple[ObjectReference, ...] = ()
    attributes: tuple[SerializedTensor, ...] = ()
    slot_variables: tuple[SlotVariableReference, ...] = ()
    #: ``(name, object_name)`` of a RegisteredSaver, if any.
    registered_saver: tuple[str, str] | None = None
    has_checkpoint_values: bool | None = None


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise WireError("string field has the wrong wire type")
    return value.decode("utf-8", errors="surrogateescape")


def _fields_by_number(buf: bytes, message: str, kinds: dict[int, int]) -> dict[int, list]:
    found: dict[int, list] = {}
    for number, wire_type, value in iter_fields(buf):
        if number in kinds:
            _expect(number, wire_type, kinds[number], message)
            found.setdefault(number, []).append(value)
    return found


class ObjectGraph(Sequence):
    """A ``TrackableObjectGraph``, node ``i`` at index ``i`` (node 0 is the root). Each node is
    decoded when first asked for: a Keras SavedModel's graph has thousands of nodes (functions,
    trackable data structures) of which following a few object paths reads a handful."""

    def __init__(self, buf: bytes, on_error=None):
        #: called with the WireError of a node that does not decode, to raise the reader's own error
        self._on_error = on_error
        self._raw: list[bytes] = []
        for number, wire_type, node_bytes in iter_fields(buf):
            if number == 1:
                _expect(number, wire_type, LENGTH_DELIMITED, "TrackableObjectGraph")
                self._raw.append(node_bytes)  # type: ignore[arg-type]
        self._nodes: dict[int, TrackableObject] = {}

    def __len__(self) -> int:
        return len(self._raw)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self._raw):
            raise IndexError(index)
        node = self._nodes.get(index)
        if node is None:
            try:
                node = self._nodes[index] = _parse_trackable_object(index, self._raw[index])
            except WireError as err:
                if self._on_error is None:
                    raise
                self._on_error(err)
                raise
        return node


def parse_object_graph(buf: bytes, on_error=None) -> ObjectGraph:
    return ObjectGraph(buf, on_error)


def _parse_trackable_object(node_id: int, node_bytes: bytes) -> TrackableObject:
    parts = _fields_by_number(node_bytes, "TrackableObject",  # type: ignore[arg-type]
                              {1: LENGTH_DELIMITED, 2: LENGTH_DELIMITED, 3: LENGTH_DELIMITED,
                               4: LENGTH_DELIMITED, 5: LENGTH_DELIMITED})
    children = []
    for raw in parts.get(1, []):
        f = _fields_by_number(raw, "ObjectReference", {1: VARINT, 2: LENGTH_DELIMITED})
        children.append(ObjectReference(as_int32(f.get(1, [0])[-1]), _text(f.get(2, [b""])[-1])))
    attributes = []
    for raw in parts.get(2, []):
        f = _fields_by_number(raw, "SerializedTensor", {1: LENGTH_DELIMITED, 2: LENGTH_DELIMITED,
                                                        3: LENGTH_DELIMITED, 4: VARINT})
        attributes.append(SerializedTensor(_text(f.get(1, [b""])[-1]), _text(f.get(2, [b""])[-1]),
                                           _text(f.get(3, [b""])[-1]), bool(f.get(4, [0])[-1])))
    slots = []
    for raw in parts.get(3, []):
        f = _fields_by_number(raw, "SlotVariableReference",
                              {1: VARINT, 2: LENGTH_DELIMITED, 3: VARINT})
        slots.append(SlotVariableReference(as_int32(f.get(1, [0])[-1]), _text(f.get(2, [b""])[-1]),
                                           as_int32(f.get(3, [0])[-1])))
    saver = None
    if 4 in parts:
        f = _fields_by_number(parts[4][-1], "RegisteredSaver", {1: LENGTH_DELIMITED, 2: LENGTH_DELIMITED})
        saver = (_text(f.get(1, [b""])[-1]), _text(f.get(2, [b""])[-1]))
    has_values = None
    if 5 in parts:
        f = _fields_by_number(parts[5][-1], "BoolValue", {1: VARINT})
        has_values = bool(f.get(1, [0])[-1])
    return TrackableObject(node_id, tuple(children), tuple(attributes), tuple(slots), saver, has_values)


__all__ = [
    "WireError", "read_varint", "encode_varint", "iter_fields", "BundleHeader", "BundleEntry",
    "parse_header", "encode_header", "parse_entry", "encode_entry", "encode_slice_key",
    "looks_like_saved_tensor_slices", "parse_object_graph", "ObjectGraph", "TrackableObject", "ObjectReference",
    "SerializedTensor", "SlotVariableReference", "LITTLE_ENDIAN", "BIG_ENDIAN",
]
