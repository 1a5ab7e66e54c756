"""safetensors: a reader (zero-copy views of a memory map) and a streaming writer.

The format: 8 bytes little-endian header length N, N bytes of JSON (padded with spaces), then the
data. The JSON maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}``, offsets
relative to the start of the data, and may hold a ``__metadata__`` dict of strings.

The header is parsed here rather than through ``safetensors.safe_open(framework="numpy")``: the
library's NumPy path has no bfloat16 or float8 type (it raises on the dtypes converted checkpoints
use most), and it copies each tensor, whereas a view of one read-only memory map costs nothing. The
parse is small and validates everything the library itself checks (header size against the file,
offsets contiguous and in bounds, every dtype known, shape times item size equal to the byte span),
so a damaged file fails with our one-line error instead of a wrong array. Nothing here imports torch.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import mmap
import os
import struct
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointFormatError, CorruptDataError, InputError, OutputError
from .availability import require_available
from .base import WRITE_PIECE_BYTES, TensorInfo, TensorSource, numpy_dtype

if TYPE_CHECKING:  # imported where arrays are made (see numpy_dtype)
    import numpy as np

__all__ = ["SafetensorsSource", "SafetensorsWriter", "DTYPES", "INDEX_NAME"]

#: safetensors dtype code -> (our dtype name, bytes per element). Sub-byte codes (F4, F6_*) have
#: no NumPy layout that maps one element to whole bytes, so they are not listed: reading them
#: fails with a clear error rather than a misread.
DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("bool", 1),
    "U8": ("uint8", 1),
    "I8": ("int8", 1),
    "U16": ("uint16", 2),
    "I16": ("int16", 2),
    "U32": ("uint32", 4),
    "I32": ("int32", 4),
    "U64": ("uint64", 8),
    "I64": ("int64", 8),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "F32": ("float32", 4),
    "F64": ("float64", 8),
    "C64": ("complex64", 8),
    "F8_E5M2": ("float8_e5m2", 1),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E8M0": ("float8_e8m0fnu", 1),
}
_CODE_OF = {name: code for code, (name, _) in DTYPES.items()}
_ITEMSIZE_OF = dict(DTYPES.values())

#: the library refuses headers above 100 MB; so do we, before allocating anything that large
MAX_HEADER_BYTES = 100_000_000
INDEX_NAME = "model.safetensors.index.json"
METADATA_KEY = "__metadata__"


# ------------------------------------------------------------------------------------- reading
class _SafetensorsFile:
    """One .safetensors file: its validated header and a read-only memory map of it."""

    def __init__(self, path: Path):
        self.path = path
        require_available(path, what="weights file")
        try:
            self._file = open(path, "rb")
        except FileNotFoundError:
            raise InputError("no such file", path=path) from None
        except OSError as e:
            raise InputError(f"cannot open: {e.strerror}", path=path) from None
        try:
            self._parse()
        except BaseException:
            self.close()
            raise

    def _fail(self, message: str, tensor: str | None = None, corrupt: bool = False):
        kind = CorruptDataError if corrupt else CheckpointFormatError
        return kind(message, path=self.path, tensor=tensor,
                    hint="the file is damaged or not a safetensors file; re-create or re-download it")

    def _parse(self) -> None:
        file_size = os.fstat(self._file.fileno()).st_size
        if file_size < 8:
            raise self._fail(f"{file_size} bytes is too short for a safetensors header")
        (header_len,) = struct.unpack("<Q", self._file.read(8))
        if header_len > MAX_HEADER_BYTES:
            raise self._fail(f"header length {header_len} is beyond the format's limit")
        if 8 + header_len > file_size:
            raise self._fail(f"header length {header_len} runs past the end of the "
                             f"{file_size}-byte file", corrupt=True)
        raw = self._file.read(header_len)
        if not raw.startswith(b"{"):
            raise self._fail("header is not a JSON object")
        try:
            header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:  # RecursionError: nested too deeply
            raise self._fail(f"header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise self._fail("header is not a JSON object")
        metadata = header.pop(METADATA_KEY, None)
        if metadata is not None and not (isinstance(metadata, dict)
                                         and all(isinstance(v, str) for v in metadata.values())):
            raise self._fail("__metadata__ must map strings to strings")
        self.metadata: dict[str, str] = dict(metadata or {})
        self.data_start = 8 + header_len
        data_size = file_size - self.data_start

        entries: list[tuple[int, int, str]] = []
        self.infos: dict[str, TensorInfo] = {}
        self._layout: dict[str, tuple[str, tuple[int, ...], int]] = {}
        for name, entry in header.items():
            if not isinstance(entry, dict):
                raise self._fail("header entry is not an object", name)
            code, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
            if not isinstance(code, str) or code not in DTYPES:
                raise self._fail(f"dtype {code!r} is not one bertconv reads", name)
            if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
                raise self._fail(f"shape {shape!r} is not a list of sizes", name)
            if not (isinstance(offsets, list) and len(offsets) == 2
                    and all(type(o) is int and o >= 0 for o in offsets) and offsets[0] <= offsets[1]):
                raise self._fail(f"data_offsets {offsets!r} are not [begin, end]", name)
            our_name, itemsize = DTYPES[code]
            begin, end = offsets
            shape = tuple(shape)
            expected = math.prod(shape) * itemsize
            if end - begin != expected:
                raise self._fail(f"shape {list(shape)} of {code} needs {expected} bytes but "
                                 f"data_offsets span {end - begin}", name, corrupt=True)
            entries.append((begin, end, name))
            self.infos[name] = TensorInfo(name, our_name, shape, expected)
            self._layout[name] = (our_name, shape, begin)

        # Tensors must tile the data exactly: a gap or an overlap means a damaged or crafted file.
        position = 0
        for begin, end, name in sorted(entries):
            if begin != position:
                what = "overlaps the previous tensor" if begin < position else f"leaves a gap at byte {position}"
                raise self._fail(f"data_offsets [{begin}, {end}] {what}", name, corrupt=True)
            position = end
        if position != data_size:
            raise self._fail(f"tensors cover {position} bytes of data but the file holds {data_size}"
                             + (" (truncated?)" if position > data_size else ""), corrupt=True)

        # mmap refuses an empty mapping; a file of empty tensors needs none.
        self._map = (mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
                     if file_size > self.data_start else None)

    def read(self, name: str) -> np.ndarray:
        import numpy as np

        dtype_name, shape, begin = self._layout[name]
        np_dtype = numpy_dtype(dtype_name)
        count = math.prod(shape)
        if count == 0:
            empty = np.empty(shape, dtype=np_dtype)
            empty.flags.writeable = False
            return empty
        array = np.frombuffer(self._map, dtype=np_dtype, count=count, offset=self.data_start + begin)
        return array.reshape(shape)

    def close(self) -> None:
        mapped = getattr(self, "_map", None)
        if mapped is not None:
            # Arrays handed out may still view the map; it is then released with the last of them.
            with contextlib.suppress(BufferError):
                mapped.close()
            self._map = None
        self._file.close()


def _no_duplicate_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


class SafetensorsSource(TensorSource):
    """A ``.safetensors`` file, or a sharded checkpoint named by its ``*.safetensors.index.json``.

    ``metadata`` is the file's ``__metadata__`` (for a sharded checkpoint: the shards' merged,
    with the index's own ``metadata`` rendered as strings). ``read`` returns read-only views of the
    memory-mapped file, so reading costs no copy and no memory beyond the page cache.
    """

    format_name = "safetensors"

    def __init__(self, path: str | Path, directory: str | Path | None = None):
        super().__init__(path, directory)
        self._files: list[_SafetensorsFile] = []
        self._owner: dict[str, _SafetensorsFile] = {}
        self.metadata: dict[str, str] = {}
        try:
            if self.path.name.endswith(".index.json"):
                self._open_index()
            else:
                self._add(_SafetensorsFile(self.path))
        except BaseException:
            self.close()
            raise

    def _add(self, shard: _SafetensorsFile) -> None:
        self._files.append(shard)
        for name in shard.infos:
            if name in self._owner:
                raise CheckpointFormatError("tensor stored in two shards", path=shard.path, tensor=name)
            self._owner[name] = shard
        self.metadata.update(shard.metadata)

    def _open_index(self) -> None:
        try:
            index = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("no such file", path=self.path) from None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise CheckpointFormatError(f"not a readable safetensors index ({e})", path=self.path) from None
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointFormatError("index has no weight_map of tensor name -> shard file", path=self.path)
        for shard_name in sorted(set(weight_map.values())):
            if Path(shard_name).name != shard_name:
                raise CheckpointFormatError(f"shard {shard_name!r} is not a file beside the index",
                                            path=self.path)
            self._add(_SafetensorsFile(self.path.parent / shard_name))
        for name, shard_name in weight_map.items():
            owner = self._owner.get(name)
            if owner is None:
                raise CheckpointFormatError(f"index names shard {shard_name} but no shard holds the tensor",
                                            path=self.path, tensor=name)
            if owner.path.name != shard_name:
                raise CheckpointFormatError(f"index says shard {shard_name} but the tensor is in "
                                            f"{owner.path.name}", path=self.path, tensor=name)
        unlisted = sorted(set(self._owner) - set(weight_map))
        if unlisted:
            raise CheckpointFormatError(f"{len(unlisted)} tensor(s) in the shards are not in the index",
                                        path=self.path, tensor=unlisted[0])
        extra = index.get("metadata")
        if isinstance(extra, dict):
            self.metadata.update({str(k): str(v) for k, v in extra.items()})

    def _list(self) -> list[TensorInfo]:
        return [info for shard in self._files for info in shard.infos.values()]

    def _read(self, name: str) -> np.ndarray:
        return self._owner[name].read(name)

    def close(self) -> None:
        for shard in self._files:
            shard.close()
        self._files = []


# ------------------------------------------------------------------------------------- writing
#: Bytes copied per step when a tensor is not C-contiguous (a transposed kernel): bounds the extra
#: memory a write needs, whatever the tensor's size.
CHUNK_BYTES = 16 << 20


def _preallocate(fd: int, size: int) -> str | None:
    """Reserve the whole file's blocks in one call (Linux fallocate(2)); the error message when
    the disk cannot hold the file, else None. Writing into reserved blocks is faster than letting
    each write reserve its own (docs/performance.md), and a full disk is found before any data is
    written. Not os.posix_fallocate: where a filesystem cannot preallocate, glibc falls
    back to writing one byte per block, far slower than not preallocating; here the conversion
    simply writes without. ctypes because the os module exposes only the posix_ variant."""
    if not sys.platform.startswith("linux") or size <= 0:
        return None
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fallocate = getattr(libc, "fallocate64", None)
        if fallocate is None:
            if ctypes.sizeof(ctypes.c_long) < 8:
                return None  # a 32-bit off_t cannot name the size
            fallocate = libc.fallocate
    except (OSError, AttributeError):
        return None
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fallocate.restype = ctypes.c_int
    if fallocate(fd, 0, 0, size) == 0:
        return None
    code = ctypes.get_errno()
    # Any other failure (the filesystem cannot preallocate) only means writing without.
    return os.strerror(code) if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else None


class SafetensorsWriter:
    """Write a .safetensors file one tensor at a time.

    ``safetensors.numpy.save_file`` / ``safetensors.torch.save_file`` take a dict of every tensor,
    so converting with them holds the whole model in memory at once (twice, when the tensors are
    transposed copies). Here the header is written first from ``entries`` (``(name, dtype_name,
    shape)`` in file order), which fixes every tensor's place; then each ``write(name, array)`` or
    ``write_bytes(name, dtype, data)`` puts one tensor at its place (``os.pwrite``), in any order and
    from several threads at once, so the peak is the tensors in flight plus a bounded copy buffer.
    The layout is the library's: header padded with spaces to a multiple of 8, tensors contiguous
    in the order given.

    ``close()`` checks that every tensor was written; on any failure the partial file is removed.
    Arrays must already have the declared dtype and shape: casting is the caller's choice.
    """

    def __init__(self, path: str | Path, entries, metadata: dict[str, str] | None = None):
        self.path = Path(path)
        seen = set()
        header: dict[str, object] = {}
        if metadata:
            bad = [k for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
            if bad:
                raise OutputError(f"safetensors metadata must map strings to strings; {bad[0]!r} does not",
                                  path=self.path)
            header[METADATA_KEY] = dict(metadata)
        offset = 0
        places: list[tuple[str, str, tuple[int, ...], int, int]] = []  # name, dtype, shape, offset, bytes
        for name, dtype, shape in entries:
            shape = tuple(int(d) for d in shape)
            if name in seen or name == METADATA_KEY:
                raise OutputError("tensor name given twice or reserved", path=self.path, tensor=name)
            if dtype not in _CODE_OF:
                raise OutputError(f"dtype {dtype} cannot be stored in safetensors", path=self.path, tensor=name)
            if any(d < 0 for d in shape):
                raise OutputError(f"negative size in shape {shape}", path=self.path, tensor=name)
            seen.add(name)
            nbytes = math.prod(shape) * _ITEMSIZE_OF[dtype]
            places.append((name, dtype, shape, offset, nbytes))
            header[name] = {"dtype": _CODE_OF[dtype], "shape": list(shape),
                            "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        self._data_size = offset
        raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        raw += b" " * (-len(raw) % 8)
        data_start = 8 + len(raw)
        #: name -> (dtype, shape, offset in the file, bytes)
        self._placed = {name: (dtype, shape, data_start + offset, nbytes)
                        for name, dtype, shape, offset, nbytes in places}
        self._arrived: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._file = open(self.path, "wb")
        except OSError as e:
            raise OutputError(f"cannot write: {e.strerror}", path=self.path) from None
        try:
            problem = _preallocate(self._file.fileno(), 8 + len(raw) + offset)
            if problem:
                self.abort()
                raise OutputError(f"cannot write {8 + len(raw) + offset:,} bytes: {problem}", path=self.path,
                                  hint="free some space, or write the output elsewhere")
            self._file.write(struct.pack("<Q", len(raw)))
            self._file.write(raw)
            self._file.flush()  # tensors are written beside the buffer, straight to the descriptor
            self._fd = self._file.fileno()
        except BaseException:
            self.abort()
            raise

    # -- writing ------------------------------------------------------------------------------
    def write(self, name: str, array: np.ndarray) -> None:
        """Write one declared tensor from an array of its dtype and shape, in any layout (a
        transposed view is copied a bounded block at a time)."""
        import numpy as np

        array = np.asarray(array)
        offset = self._claim(name, array.dtype.name, shape=tuple(array.shape))
        self._guarded(name, lambda: self._write_array(array, numpy_dtype(array.dtype.name), offset))

    def write_bytes(self, name: str, dtype: str, data) -> None:
        """Write one declared tensor from a bytes-like object already laid out as stored (the
        declared dtype, little-endian, C order); no NumPy needed."""
        data = memoryview(data).cast("B")
        offset = self._claim(name, dtype, nbytes=len(data))
        self._guarded(name, lambda: self._pwrite(data, offset))

    def _claim(self, name: str, dtype: str, *, shape: tuple[int, ...] | None = None,
               nbytes: int | None = None) -> int:
        """Check a tensor against its declaration and mark it written; its offset in the file.
        A refused tensor removes the partial file."""
        with self._lock:
            if self._closed:
                raise OutputError("writer is already closed", path=self.path, tensor=name)
            placed = self._placed.get(name)
            problem = None
            if placed is None:
                problem = "not a declared tensor"
            elif name in self._arrived:
                problem = "written twice"
            elif dtype != placed[0]:
                problem = f"dtype {dtype} differs from the declared {placed[0]}"
            elif shape is not None and shape != placed[1]:
                problem = f"shape {shape} differs from the declared {placed[1]}"
            elif nbytes is not None and nbytes != placed[3]:
                problem = f"{nbytes} bytes differ from the declared {placed[3]}"
            if problem:
                self.abort()
                raise OutputError(problem, path=self.path, tensor=name)
            self._arrived.add(name)
            return placed[2]

    def _guarded(self, name: str, write) -> None:
        try:
            write()
        except OSError as e:
            self.abort()
            raise OutputError(f"cannot write: {e.strerror}", path=self.path, tensor=name) from None
        except BaseException:
            self.abort()
            raise

    def _pwrite(self, data: memoryview, offset: int) -> None:
        # At most WRITE_PIECE_BYTES a call; pwrite may also write less than asked (a signal, a
        # full disk): go on from where it stopped.
        while len(data):
            written = os.pwrite(self._fd, data[:WRITE_PIECE_BYTES], offset)
            data, offset = data[written:], offset + written

    def _write_array(self, array: np.ndarray, stored: np.dtype, offset: int) -> None:
        import numpy as np

        if array.size == 0:
            return
        if array.flags.c_contiguous and array.dtype == stored:
            # Already laid out as stored: hand the bytes to the kernel without a copy.
            self._pwrite(memoryview(array.reshape(-1).view(np.uint8)), offset)
            return
        # A strided view (a transposed kernel) or another byte order: copy a bounded block along
        # the first axis at a time rather than materialising the tensor.
        if array.ndim == 0:
            array = array.reshape(1)
        row_elements = math.prod(array.shape[1:])
        rows_per_chunk = max(1, CHUNK_BYTES // max(row_elements * stored.itemsize, 1))
        buffer = np.empty(min(rows_per_chunk, array.shape[0]) * row_elements, dtype=stored)
        casting = "no" if array.dtype == stored else "equiv"
        for start in range(0, array.shape[0], rows_per_chunk):
            block = array[start:start + rows_per_chunk]
            out = buffer[:block.size].reshape(block.shape)
            np.copyto(out, block, casting=casting)
            self._pwrite(memoryview(out.reshape(-1).view(np.uint8)), offset)
            offset += out.nbytes

    # -- finishing ----------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        if len(self._arrived) != len(self._placed):
            missing = next(name for name in self._placed if name not in self._arrived)
            count = len(self._placed) - len(self._arrived)
            self.abort()
            raise OutputError(f"{count} declared tensor(s) never written; the partial file was removed",
                              path=self.path, tensor=missing)
        try:
            # No fsync: atomicity comes from the rename the caller does once the file is complete;
            # forcing the bytes to disk would double the time of a conversion for protection
            # against power loss only, which a re-run repairs.
            self._file.close()
        except OSError as e:
            self.abort()
            raise OutputError(f"cannot write: {e.strerror}", path=self.path) from None
        self._closed = True

    def abort(self) -> None:
        """Stop and remove the partial file."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
