"""The interface every reader implements. Nothing above ``bertconv.formats`` knows file formats:
it sees names, dtypes, shapes and lazily loaded NumPy arrays.

Dtype names are NumPy's spelling (``float32``, ``int64``, ``bool``...) plus ``bfloat16``,
``float8_e5m2``, ``float8_e4m3fn`` (arrays of the ``ml_dtypes`` types), ``string`` (an object
array of ``bytes``) and ``variant`` (listed, never loaded as numbers).
"""
from __future__ import annotations

import abc
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import InputError

if TYPE_CHECKING:  # NumPy is imported where arrays are made, not to list a checkpoint
    import numpy as np

#: The most bytes handed to the kernel in one write call: whole-tensor writes fell at random into a
#: much slower mode on a virtual machine that hands free memory back to its host, and bounded
#: pieces never did (docs/performance.md, with the likely cause and the pieces' cost).
WRITE_PIECE_BYTES = 1 << 20

#: dtypes that hold numbers a model can use as weights.
FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64", "float8_e5m2", "float8_e4m3fn"})

#: Element types NumPy lacks, taken from ml_dtypes.
_ML_DTYPES = frozenset({"bfloat16", "float8_e5m2", "float8_e4m3fn", "float8_e4m3fnuz",
                        "float8_e4m3b11fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "int4", "uint4"})


@functools.lru_cache(maxsize=None)
def numpy_dtype(name: str) -> np.dtype:
    """The little-endian NumPy dtype of a dtype name. NumPy and ml_dtypes are imported here, on
    first use: listing a checkpoint, or converting float32 as stored, needs neither."""
    import numpy as np
    if name in _ML_DTYPES:
        import ml_dtypes
        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name).newbyteorder("<")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES


@dataclass(frozen=True)
class StoredBytes:
    """A tensor's bytes exactly as stored: little-endian, C order, no copy (a read-only
    memoryview of the mapped file). ``crc32c`` is the checksum the bytes must have, or None when
    there is nothing (more) to check; a caller that hashes them reports what it computed with
    :meth:`TensorSource.confirm_crc32c`."""
    data: memoryview
    dtype: str
    shape: tuple[int, ...]
    crc32c: int | None


class SourceRecords:
    """What a source records beyond its tensors, as data for the layouts that read it: each
    record is None where the source has none (readers set or override those they find). An
    instance of this class itself is the empty record set, for names listed without a file
    (:data:`NO_RECORDS`). Readers never say what a record means for a model: a layout does."""

    #: what the user named, and where side files are looked for (None: no file)
    path: Path | None = None
    directory: Path | None = None
    #: what the file records about the tokenizer's casing (a TF Hub export's ``do_lower_case``)
    lower_case: bool | None = None
    #: where in the file ``lower_case`` was read, in words, for the notes of a conversion
    lower_case_origin: str | None = None
    #: an HDF5 file's layers: layer -> its weights' tensor names in ``weight_names`` order
    layer_weights: dict[str, list[str]] | None = None
    #: a SavedModel's Keras objects (``saved_model.KerasObject``: class name and config)
    keras_objects: tuple[Any, ...] | list[Any] | None = None
    #: the config of a SavedModel's encoder object (the first whose config states its sizes)
    encoder_config: dict[str, Any] | None = None
    #: that encoder object's Keras class name
    encoder_class: str | None = None
    #: a KerasHub preset's backbone config (its config.json's ``config``) and registered class
    preset_config: dict[str, Any] | None = None
    preset_class: str | None = None

    def model_config(self) -> dict[str, Any] | None:
        """The Keras ``model_config`` a ``model.save()`` HDF5 file carries, parsed from JSON
        (``{"class_name": ..., "config": {"layers": [...]}}``)."""
        return None

    def object_graph(self) -> list | None:
        """A TF2 object checkpoint's object graph (``_wire.TrackableObject`` nodes; node 0 is the root)."""
        return None

    def graph_constant(self, node_name: str) -> bool | int | tuple[int, ...] | None:
        """The value of a bool or integer ``Const`` node of a TF1 graph (a Hub module's)."""
        return None

    def sidecar(self, *candidates: str) -> Path | None:
        """The first of ``candidates`` that exists as a file beside the checkpoint."""
        return None

    def stored_shape(self, name: str) -> tuple[int, ...] | None:
        """The shape tensor ``name`` is stored with (None: no such tensor, or only names are known)."""
        return None


#: the records of names listed without a file: none
NO_RECORDS = SourceRecords()


class TensorSource(SourceRecords, abc.ABC):
    """A checkpoint opened for reading. Use as a context manager, or call ``close()``.

    ``path`` is what the user named; ``directory`` is where side files (``bert_config.json``,
    ``vocab.txt``, ``config.json``) are looked for. Besides its tensors a reader offers what its
    format records (:class:`SourceRecords`).
    """

    format_name: str = "?"

    def __init__(self, path: str | Path, directory: str | Path | None = None):
        self.path = Path(path)
        self.directory = Path(directory) if directory is not None else (
            self.path if self.path.is_dir() else self.path.parent)
        self._infos: dict[str, TensorInfo] | None = None
        #: what the reader decided on the way that a user should know (a state file followed
        #: to another basename, a step chosen among several)
        self.notes: list[str] = []

    # -- what each reader provides -------------------------------------------------------------
    @abc.abstractmethod
    def _list(self) -> list[TensorInfo]:
        """Every tensor, without loading any data."""

    @abc.abstractmethod
    def _read(self, name: str) -> np.ndarray:
        """The tensor's values; zero-copy (read-only) where the format allows."""

    def close(self) -> None:  # noqa: B027 - optional for readers that hold no resources
        pass

    def release(self, name: str) -> None:  # noqa: B027 - a hint; readers without a map ignore it
        """Say that ``name`` will not be read again soon, so its mapped pages may leave memory.
        Arrays already returned stay valid (file-backed pages are read back in on access)."""

    def stored_bytes(self, name: str) -> StoredBytes | None:
        """The tensor's stored bytes, for a caller that moves bytes itself (the compiled data path
        of ``tf2pt``); None where the format stores something else than the values as they are
        (the default: read arrays with :meth:`read`). Release ``data`` when done with it."""
        return None

    def confirm_crc32c(self, name: str, computed: int) -> None:  # noqa: B027 - only readers with checksums
        """Check a checksum computed over :meth:`stored_bytes` (raises CorruptDataError)."""

    def unavailable_data(self) -> list:
        """Files that hold this source's tensor data but are missing, or are Git LFS pointers
        (empty where the data is all there): the names can be listed, the values not read."""
        return []

    def require_data(self) -> None:  # noqa: B027 - only readers whose data can be absent
        """Raise the one-line error naming the first unavailable data file, if any."""

    # -- shared behaviour -----------------------------------------------------------------------
    @property
    def infos(self) -> dict[str, TensorInfo]:
        if self._infos is None:
            self._infos = {info.name: info for info in sorted(self._list(), key=lambda i: i.name)}
        return self._infos

    def names(self) -> list[str]:
        return list(self.infos)

    def info(self, name: str) -> TensorInfo:
        try:
            return self.infos[name]
        except KeyError:
            raise InputError("no such tensor in the checkpoint", path=self.path, tensor=name) from None

    def __contains__(self, name: object) -> bool:
        return name in self.infos

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.infos.values())

    def __len__(self) -> int:
        return len(self.infos)

    def read(self, name: str) -> np.ndarray:
        self.info(name)
        return self._read(name)

    def stored_shape(self, name: str) -> tuple[int, ...] | None:
        info = self.infos.get(name)
        return tuple(info.shape) if info is not None else None

    def sidecar(self, *candidates: str) -> Path | None:
        """The first of ``candidates`` that exists as a file in ``directory``."""
        for candidate in candidates:
            p = self.directory / candidate
            if p.is_file():
                return p
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"
