"""Keras 3 ``.keras`` archives (``model.save("model.keras")``, the default save format since Keras 3),
read with Python's :mod:`zipfile` and h5py, without Keras.

An archive is a zip of:

- ``config.json``: the saved model's Keras config (``class_name``, ``registered_name``,
  ``config``); for a KerasHub task (``keras_hub>BertTextClassifier``) its ``config.backbone`` is the
  backbone's config, as a preset's own config.json states it, and ``config.preprocessor`` the
  preprocessor's, its tokenizer's ``lowercase`` among them;
- ``metadata.json``: the Keras version and the date;
- ``model.weights.h5``: every weight of the model in Keras 3's layout (as in a KerasHub preset:
  ``layers/<layer>/.../vars/<i>``, each ``vars`` group naming its layer in the attribute ``name``),
  the backbone a layer of the task, and the optimizer's variables under ``optimizer/``;
- ``assets/``: the objects' assets under their object paths (the tokenizer's vocabulary).

Tensor names are those a KerasHub preset's reader gives (:mod:`.keras_hub`): the backbone's
weights under ``backbone/`` (its own layer name dropped, as its preset file has none), every other
layer's under ``task/``, the optimizer's under their path. So a ``.keras`` archive of a KerasHub
task reads as the preset ``task.save_to_preset`` would write, and any layout of presets reads it.

The weights file is read in place when the archive stores it uncompressed (Keras does): h5py
reads a window of the archive, and contiguous datasets are memory-mapped from the archive itself.
A compressed member is extracted to a temporary file first. The vocabulary is extracted to a
temporary directory kept while the source is open (a conversion reads it by path).
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np

from ..errors import BertconvError, CheckpointFormatError, InputError
from .availability import require_available
from .base import TensorInfo, TensorSource
from .keras_h5 import KerasH5Source, h5_errors
from .keras_hub import _stable_names

__all__ = ["KerasArchiveSource", "is_keras_archive", "ARCHIVE_CONFIG", "ARCHIVE_WEIGHTS"]

ARCHIVE_CONFIG = "config.json"
ARCHIVE_METADATA = "metadata.json"
ARCHIVE_WEIGHTS = "model.weights.h5"
ASSETS = "assets/"
#: a local file header's fixed part: signature, versions, flags, method, times, crc, sizes, name and
#: extra lengths (the last two say where the member's data begins)
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"


@contextlib.contextmanager
def _archive_errors(path: Path) -> Iterator[None]:
    """zipfile's, zlib's and (on the weights inside) h5py's exceptions on a damaged archive, as
    bertconv's one-line error naming it."""
    try:
        with h5_errors(path, what=".keras archive"):
            yield
    except BertconvError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, struct.error) as e:
        raise CheckpointFormatError(f"not a readable .keras archive ({str(e)[:200]})", path=path,
                                    hint="the file is damaged; download or copy it again") from None


def is_keras_archive(path: Path) -> bool:
    """Whether ``path`` is a zip (a ``.keras`` file that is not one is an older Keras' HDF5 file)."""
    return zipfile.is_zipfile(path)


class _Window(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes of a file from ``start``: a stored zip member."""

    def __init__(self, file, start: int, size: int):
        self._file, self._start, self._size, self._pos = file, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        wanted = min(len(buffer), max(0, self._size - self._pos))
        if wanted == 0:
            return 0
        self._file.seek(self._start + self._pos)
        got = self._file.readinto(memoryview(buffer)[:wanted])
        self._pos += got
        return got


class _MemberH5(KerasH5Source):
    """The Keras reader over an h5 file that is a window of the archive (``offset`` into it)."""

    def __init__(self, archive_path: Path, h5file, offset: int | None, directory: Path):
        TensorSource.__init__(self, archive_path, directory)
        import h5py

        self._offset = offset
        self._h5 = h5file
        self._datasets = {}
        self.layer_names, self.layer_weights, self._model_config = [], {}, None
        with h5_errors(archive_path):
            self._index(h5py)

    def _mapped(self, dataset) -> np.ndarray | None:
        if self._offset is None or dataset.dtype.kind not in "biufc" or dataset.chunks is not None \
                or dataset.size == 0:
            return None
        offset = dataset.id.get_offset()
        if offset is None:
            return None
        array = np.memmap(self.path, dtype=dataset.dtype, mode="r", offset=self._offset + offset, shape=dataset.shape)
        return array.view(np.ndarray)


def _json_member(archive: zipfile.ZipFile, name: str, path: Path) -> dict:
    try:
        data = json.loads(archive.read(name).decode("utf-8"))
    except KeyError:
        return {}
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointFormatError(f"{name} in the archive is not JSON ({e})", path=path) from None
    if not isinstance(data, dict):
        raise CheckpointFormatError(f"{name} in the archive is not a JSON object", path=path)
    return data


def _find(config, wanted) -> list[dict]:
    """Every nested Keras config (``{"class_name": ..., "config": ...}``) for which ``wanted`` holds."""
    found = []
    if isinstance(config, dict):
        if wanted(config):
            found.append(config)
        for value in config.values():
            found += _find(value, wanted)
    elif isinstance(config, list):
        for value in config:
            found += _find(value, wanted)
    return found


def _without_containers(name: str, dataset_path: str, h5file, h5py) -> str:
    """``name`` less the components that stand for a model's ``layers`` list rather than a layer
    (a model nested in the saved one, as a task's backbone is, keeps its layers in such a group)."""
    parts, path, kept = dataset_path.split("/"), "", []
    names = name.split("/")
    if len(names) != len(parts) - 1:  # an optimizer variable or a plain path: as it is
        return name
    for index, part in enumerate(parts[:-2]):
        path = f"{path}/{part}" if path else part
        if index > 0 and part == "layers" and not isinstance(h5file.get(path + "/vars"), h5py.Group):
            continue
        if index > 0:
            kept.append(names[index - 1])
    return "/".join(kept + names[len(parts) - 3:])


class KerasArchiveSource(TensorSource):
    """A ``.keras`` archive as one source. Attributes, as :class:`~.keras_hub.KerasHubSource` has
    them: ``registered_name`` (the backbone's, or the model's own where it holds none),
    ``preset_config`` (the backbone's ``config``), ``task_class`` (the saved model's class when
    it is a task around a backbone), ``lower_case`` / ``lower_case_origin`` (the tokenizer's
    ``lowercase``), plus ``model_class`` and ``keras_version``."""

    format_name = "keras-archive"

    def __init__(self, path: str | Path):
        super().__init__(path)
        import h5py

        require_available(self.path, what="weights file")
        if not self.path.is_file():
            raise InputError("no such file", path=self.path)
        self._scratch: Path | None = None
        self._file = None
        self._member: _MemberH5 | None = None
        try:
            self._archive = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile) as e:
            raise CheckpointFormatError(f"not a readable .keras archive ({e})", path=self.path) from None
        try:
            with _archive_errors(self.path):
                self._open(h5py)
        except BaseException:
            self.close()
            raise

    def _open(self, h5py) -> None:
        archive = self._archive
        names = set(archive.namelist())
        if ARCHIVE_WEIGHTS not in names:
            raise CheckpointFormatError(f"a .keras archive without {ARCHIVE_WEIGHTS}: it holds no weights",
                                        path=self.path)
        config = _json_member(archive, ARCHIVE_CONFIG, self.path)
        self.keras_version = _json_member(archive, ARCHIVE_METADATA, self.path).get("keras_version")
        self.model_class = str(config.get("registered_name") or config.get("class_name") or "")
        backbone = (config.get("config") or {}).get("backbone") if isinstance(config.get("config"), dict) else None
        if isinstance(backbone, dict):
            self.registered_name = str(backbone.get("registered_name") or backbone.get("class_name"))
            self.preset_config = backbone.get("config") if isinstance(backbone.get("config"), dict) else {}
            self.task_class = str(config.get("class_name") or "") or None
            backbone_name = self.preset_config.get("name")
            self.notes.append(f"the archive holds a {self.task_class} around a {self.registered_name} "
                              f"(its {ARCHIVE_CONFIG}'s config.backbone)")
        else:
            self.registered_name, self.preset_config, self.task_class = self.model_class, None, None
            backbone_name = None
        self.preset_class = self.registered_name
        self.lower_case, self.lower_case_origin = None, None
        for tokenizer in _find(config, lambda c: isinstance(c.get("config"), dict)
                               and isinstance(c["config"].get("lowercase"), bool)):
            self.lower_case = tokenizer["config"]["lowercase"]
            self.lower_case_origin = f"{self.path.name}'s {ARCHIVE_CONFIG} ({tokenizer.get('class_name')}'s lowercase)"
            break
        self._vocabularies = sorted(n for n in names if n.startswith(ASSETS) and PurePosixPath(n).name in
                                    ("vocabulary.txt", "vocab.txt"))

        info = archive.getinfo(ARCHIVE_WEIGHTS)
        self._file = open(self.path, "rb")
        if info.compress_type == zipfile.ZIP_STORED:
            self._file.seek(info.header_offset)
            header = _LOCAL_HEADER.unpack(self._file.read(_LOCAL_HEADER.size))
            if header[0] != _LOCAL_SIGNATURE:
                raise CheckpointFormatError(f"{ARCHIVE_WEIGHTS}'s local header is damaged", path=self.path)
            start = info.header_offset + _LOCAL_HEADER.size + header[-2] + header[-1]
            h5file = h5py.File(_Window(self._file, start, info.file_size), "r")
        else:
            start = None
            self._scratch = Path(tempfile.mkdtemp(prefix="bertconv-keras-"))
            archive.extract(ARCHIVE_WEIGHTS, self._scratch)
            h5file = h5py.File(self._scratch / ARCHIVE_WEIGHTS, "r")
        self._member = _MemberH5(self.path if start is not None else self._scratch / ARCHIVE_WEIGHTS,
                                 h5file, start, self.directory)
        self._where: dict[str, str] = {}
        raw = _stable_names(h5file, h5py, "")
        for dataset_path in self._member.names():
            name = _without_containers(raw.get(dataset_path, dataset_path).lstrip("/"), dataset_path, h5file, h5py)
            first, _, rest = name.partition("/")
            if first == "optimizer" or not rest:
                pass
            elif backbone_name is not None and first == backbone_name:
                name = "backbone/" + rest
            elif backbone_name is not None:
                name = "task/" + name
            if name in self._where:
                raise CheckpointFormatError("two variables have the same layer names", path=self.path, tensor=name)
            self._where[name] = dataset_path

    def _list(self) -> list[TensorInfo]:
        out = []
        for name, dataset_path in self._where.items():
            info = self._member.info(dataset_path)
            out.append(TensorInfo(name, info.dtype, info.shape, info.nbytes))
        return out

    def _read(self, name: str):
        return self._member.read(self._where[name])

    def sidecar(self, *candidates: str) -> Path | None:
        """Files beside the archive, except a config.json (the archive's own config is Keras');
        ``vocab.txt`` is the tokenizer's vocabulary asset where the archive holds one."""
        for candidate in candidates:
            if candidate == ARCHIVE_CONFIG:
                continue
            found = super().sidecar(candidate)
            if found is not None:
                return found
            if candidate == "vocab.txt" and self._vocabularies:
                return self._extracted(self._vocabularies[0])
        return None

    def _extracted(self, member: str) -> Path:
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="bertconv-keras-"))
        target = self._scratch / PurePosixPath(member)
        if not target.is_file():
            with _archive_errors(self.path):
                self._archive.extract(member, self._scratch)
        return target

    def close(self) -> None:
        member = getattr(self, "_member", None)
        if member is not None:
            member.close()
        self._member, self._where = None, {}
        for name in ("_archive", "_file"):
            handle = getattr(self, name, None)
            if handle is not None:
                handle.close()
            setattr(self, name, None)
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
            self._scratch = None
