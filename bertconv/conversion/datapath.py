"""The data path of ``tf2pt``: every planned tensor read, checked, transformed, cast and written at
its place in one safetensors file, by two threads, memory near one tensor per thread."""
from __future__ import annotations

import math
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import InputError
from ..mapping import apply_transform, transposed_matrix
from ..native import hardware_crc32c
from ..native import kernels as _kernels  # None without a C compiler at install: NumPy instead
from .hf_directory import target_names
from .plan import Plan

if TYPE_CHECKING:  # a float32 conversion on the compiled path needs no NumPy
    import numpy as np

OUTPUT_DTYPES = ("float32", "float16", "bfloat16")


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    import numpy as np

    if dtype == "bfloat16":
        import ml_dtypes
        target = np.dtype(ml_dtypes.bfloat16)
    else:
        target = np.dtype(dtype)
    if array.dtype == target:
        return array
    # Going through float32 keeps bfloat16 -> float16 (and the like) correctly rounded once.
    if array.dtype != np.float32 and target != np.float32:
        array = array.astype(np.float32)
    with np.errstate(over="ignore"):  # float16 overflow is counted and refused in _prepare
        return array.astype(target)


#: Without the compiled transpose, a transposed kernel is copied in tiles of TRANSPOSE_ROWS output
#: rows by one 64-byte cache line of output columns: each tile reads TRANSPOSE_ROWS-long contiguous
#: runs of the source and fills whole cache lines of the output, where NumPy's one-pass copy of
#: the transposed view misses the cache on nearly every read (docs/performance.md has the figures).
TRANSPOSE_ROWS = 1024
CACHE_LINE = 64
#: Threads that convert tensors, each one whole tensor at a time: read, check, transpose, write at
#: its place in the output. Writes go to offsets the header already fixed, so neither thread waits
#: for the other to finish a tensor; on 2 cores, one thread's copies run while the other is in
#: the kernel writing.
CONVERSION_THREADS = 2


def native_transpose_available() -> bool:
    return _kernels is not None


def compiled_data_path_available() -> bool:
    """Whether tensors stored as they are converted (float32 to float32, the usual case) go
    through the compiled kernels: checksum and transpose in one pass, no NumPy."""
    return hardware_crc32c()


def contiguous(array: np.ndarray, *, native: bool = True) -> np.ndarray:
    """A C-contiguous copy (or the array itself when it already is one). A transposed 2-D view
    is copied by the compiled transpose when it is built (``native=False`` forces the NumPy
    tiles, which give the same bits)."""
    import numpy as np

    if array.flags.c_contiguous:
        return array
    if array.ndim != 2 or not array.T.flags.c_contiguous:
        return np.ascontiguousarray(array)
    rows, cols = array.shape
    out = np.empty((rows, cols), dtype=array.dtype)
    if native and _kernels is not None and array.dtype.itemsize in (1, 2, 4, 8) \
            and not array.dtype.hasobject:
        # array.T is the stored [cols, rows] matrix; viewed as bytes so any dtype of that size
        # (float16, bfloat16, float8) goes through unchanged.
        _kernels.transpose(array.T, out.view(np.uint8), cols, rows, array.dtype.itemsize)
        return out
    width = max(1, CACHE_LINE // array.dtype.itemsize)
    for r in range(0, rows, TRANSPOSE_ROWS):
        band = array[r:r + TRANSPOSE_ROWS]
        for c in range(0, cols, width):
            np.copyto(out[r:r + TRANSPOSE_ROWS, c:c + width], band[:, c:c + width])
    return out


def _prepare(source, tensor, dtype: str) -> np.ndarray:
    """Read (crc-checked), transform and cast one tensor into the bytes the output stores."""
    import numpy as np

    # Cast after the copy: a cast of the transposed view would be a second strided pass.
    array = contiguous(apply_transform(tensor.transform, source.read(tensor.source)))
    # The transpose and NumPy's copies release the GIL, so the other conversion thread runs on
    # (google-crc32c holds it while it checks a tensor).
    cast = _cast(array, dtype)
    if dtype == "float16" and array.dtype != np.float16 and np.isinf(cast).any():
        overflow = int(np.count_nonzero(np.isinf(cast) & ~np.isinf(array.astype(np.float32))))
        if overflow:
            raise InputError(f"{overflow} value(s) beyond float16's range (|x| > 65504) would become inf",
                             tensor=tensor.source, hint="use --dtype bfloat16 or float32")
    return cast


class _Buffers(threading.local):
    """Output buffers of transposed tensors, one per size and thread, reused once written: a fresh
    buffer per kernel would cost the kernel's size in new pages (faulted in one by one) every time."""

    def __init__(self):
        self.by_size: dict[int, bytearray] = {}

    def take(self, nbytes: int) -> bytearray:
        buffer = self.by_size.get(nbytes)
        if buffer is None:
            buffer = self.by_size[nbytes] = bytearray(nbytes)
        return buffer


def _prepare_stored(source, tensor, dtype: str, buffers: _Buffers):
    """The compiled path of :func:`_prepare`, for a tensor stored in the output's dtype: the
    checksum and the transpose in one pass over the stored bytes, into a reused buffer, or for an
    untransposed tensor the mapped bytes themselves. Returns (bytes to write, whether they are a
    view of the mapped file, to release once written), or None where this path does not apply
    (then :func:`_prepare` does the work). Bytes in the thread's buffer stay valid until its next
    transposed tensor of the same size."""
    stored = source.stored_bytes(tensor.source)
    if stored is None:
        return None
    if stored.dtype != dtype:  # a cast: NumPy's work
        stored.data.release()
        return None
    try:
        matrix = transposed_matrix(tensor.transform, stored.shape)
    except ValueError:  # not a matrix the kernels take: NumPy's work
        stored.data.release()
        return None
    if matrix is None:
        if stored.crc32c is not None:
            try:
                source.confirm_crc32c(tensor.source, _kernels.crc32c(stored.data))
            except BaseException:
                stored.data.release()
                raise
        return stored.data, True
    rows, cols = matrix
    out = buffers.take(len(stored.data))
    with stored.data:
        itemsize = len(stored.data) // (rows * cols)
        if stored.crc32c is not None:
            computed = _kernels.transpose_crc32c(stored.data, out, rows, cols, itemsize)
            source.confirm_crc32c(tensor.source, computed)
        else:
            _kernels.transpose(stored.data, out, rows, cols, itemsize)
    return out, False


def write_weights(plan: Plan, source, path: Path, *, dtype: str, metadata: dict[str, str],
                  progress: bool = False, once_writing: Callable[[], None] | None = None,
                  threads: int = CONVERSION_THREADS) -> None:
    """Stream every planned tensor into one safetensors file. ``threads`` threads (this one
    included) each take the next tensor, read, check and transpose it, and write it at its
    place: memory stays near one tensor per thread, whatever the model's size. ``once_writing``,
    if given, is called when the file is set up and the helpers have started."""
    from ..formats.safetensors_io import SafetensorsWriter

    targets = target_names(plan)
    entries = [(targets[t.source], dtype, t.target_shape) for t in plan.tensors]
    compiled = compiled_data_path_available()
    buffers = _Buffers()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(math.prod(t.target_shape) for t in plan.tensors), unit="param",
                   unit_scale=True, file=sys.stderr, desc="converting", leave=False)
    writer = SafetensorsWriter(path, entries, metadata=metadata)
    queue = iter(plan.tensors)
    lock = threading.Lock()  # over the queue and the progress bar
    failures: list[BaseException] = []

    def convert_tensors() -> None:
        try:
            while not failures:
                with lock:
                    tensor = next(queue, None)
                if tensor is None:
                    return
                done = _prepare_stored(source, tensor, dtype, buffers) if compiled else None
                if done is None:
                    writer.write(targets[tensor.source], _prepare(source, tensor, dtype))
                else:
                    data, mapped = done
                    writer.write_bytes(targets[tensor.source], dtype, data)
                    if mapped:
                        data.release()
                source.release(tensor.source)
                if bar is not None:
                    with lock:
                        bar.update(math.prod(tensor.target_shape))
        except BaseException as error:
            failures.append(error)

    helpers = [threading.Thread(target=convert_tensors, name=f"bertconv-convert-{i}", daemon=True)
               for i in range(threads - 1)]
    try:
        for helper in helpers:
            helper.start()
        if once_writing is not None:
            once_writing()
        convert_tensors()
        for helper in helpers:
            helper.join()
        if failures:
            # A stop (a signal, Ctrl-C) lands in this thread and aborts the writer at once, so a
            # helper's next write may fail and be recorded first; the stop is what happened.
            raise next((f for f in failures if not isinstance(f, Exception)), failures[0])
        writer.close()
    except BaseException:
        failures.append(RuntimeError("stopped"))  # any helper still running stops at its next tensor
        for helper in helpers:
            helper.join()
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()


