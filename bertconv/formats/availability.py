"""Files a checkpoint needs that are not here: missing, empty (a download or copy that never
wrote a byte), or Git LFS pointers checked out in place of the file.

One check for every reader (:func:`unavailable`, :func:`require_available`), run before a file
is handed to the code that parses its format: a pointer named ``model.safetensors`` would
otherwise read as an absurd header length, a ``.h5`` as an unreadable HDF5 file, a ``.bin`` as a
pickle. A TF bundle's data files are checked when its index is opened, and are an error only
when a tensor stored in them is read (the index alone lists the checkpoint).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from ..errors import DataUnavailableError, EmptyFileError, InputError

__all__ = ["UnavailableData", "unavailable", "require_available"]

#: The first line of a Git LFS pointer file (the second is the specification's pre-release name).
_LFS_SIGNATURES = (b"version https://git-lfs.github.com/spec/v1",
                   b"version https://hawser.github.com/spec/v1")
#: Git LFS pointer files are smaller than this (the LFS specification's limit), so larger files
#: are never read to be recognised.
_LFS_POINTER_LIMIT = 1024


class UnavailableData(NamedTuple):
    """A file that is not here: ``reason`` is ``"missing"``, ``"empty"`` (0 bytes) or
    ``"lfs-pointer"`` (a Git LFS pointer checked out in place of the file; ``lfs_oid``/``lfs_size``
    are the real file's, when the pointer says)."""
    path: Path
    reason: str
    lfs_oid: str | None = None
    lfs_size: int | None = None

    def describe(self) -> str:
        if self.reason == "missing":
            return f"{self.path.name} is missing"
        if self.reason == "empty":
            return f"{self.path.name} is empty (0 bytes)"
        size = f" to {self.lfs_size:,} bytes" if self.lfs_size is not None else ""
        return f"{self.path.name} is a Git LFS pointer{size}; git lfs pull fetches it"

    def error(self, tensor: str | None = None, *, what: str = "data file") -> DataUnavailableError:
        """The one-line error; ``what`` names the file's role (``data file``: a TF bundle's)."""
        if self.reason == "missing" and what == "data file":
            return DataUnavailableError(
                f"{what} is missing; the index lists the checkpoint, but the values are in this file",
                path=self.path, tensor=tensor,
                hint="copy every .data-* file of the checkpoint beside its .index")
        if self.reason == "missing":
            return DataUnavailableError(f"no such file (the {what})", path=self.path, tensor=tensor)
        if self.reason == "empty":
            return EmptyFileError(f"{what} is empty (0 bytes): a download or copy that did not finish",
                                  path=self.path, tensor=tensor, hint="download or copy it again")
        details = []
        if self.lfs_oid:
            algorithm, _, digest = self.lfs_oid.partition(":")
            details.append(f"oid {algorithm}:{digest[:12]}" + ("..." if len(digest) > 12 else ""))
        if self.lfs_size is not None:
            details.append(f"the real file is {self.lfs_size:,} bytes")
        detail = f" ({', '.join(details)})" if details else ""
        return DataUnavailableError(f"{what} is a Git LFS pointer{detail}, not the file itself",
                                    path=self.path, tensor=tensor,
                                    hint="run `git lfs pull` in the repository it came from")


def _lfs_pointer(path: Path, head: bytes) -> UnavailableData | None:
    """``head`` (a whole small file) as a Git LFS pointer, or None if it is not one."""
    if not head.startswith(_LFS_SIGNATURES):
        return None
    fields = {}
    for line in head.decode("utf-8", errors="replace").splitlines()[1:]:
        key, _, value = line.partition(" ")
        fields[key] = value.strip()
    size = fields.get("size", "")
    return UnavailableData(path, "lfs-pointer", fields.get("oid") or None,
                           int(size) if size.isdigit() else None)


def unavailable(path: str | Path) -> UnavailableData | None:
    """What keeps the file at ``path`` from being read (missing, empty, a Git LFS pointer), or
    None when it is there to be parsed. Reads at most the first kilobyte, of small files only."""
    path = Path(path)
    try:
        size = os.stat(path).st_size
    except (FileNotFoundError, NotADirectoryError):
        return UnavailableData(path, "missing")
    except OSError as err:
        raise InputError(f"cannot read ({err.strerror})", path=path) from None
    if size == 0:
        return UnavailableData(path, "empty")
    if size >= _LFS_POINTER_LIMIT:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(_LFS_POINTER_LIMIT)
    except IsADirectoryError:
        return None
    except OSError as err:
        raise InputError(f"cannot read ({err.strerror})", path=path) from None
    return _lfs_pointer(path, head)


def require_available(path: str | Path, *, what: str) -> None:
    """Raise the one-line :class:`~bertconv.errors.DataUnavailableError` if the file at ``path``
    is missing, empty or a Git LFS pointer; ``what`` names its role (``weights file``)."""
    found = unavailable(path)
    if found is not None:
        raise found.error(what=what)
