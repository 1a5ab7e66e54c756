"""Files a checkpoint needs that are not here: missing, or Git LFS pointers checked out in place
of the file."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..errors import DataUnavailableError

__all__ = ["UnavailableData"]

#: The first line of a Git LFS pointer file (the second is the specification's pre-release name).
_LFS_SIGNATURES = (b"version https://git-lfs.github.com/spec/v1",
                   b"version https://hawser.github.com/spec/v1")
#: Git LFS pointer files are smaller than this (the LFS specification's limit), so larger files
#: are never read to be recognised.
_LFS_POINTER_LIMIT = 1024


class UnavailableData(NamedTuple):
    """A file the index needs that is not here: ``reason`` is ``"missing"`` or ``"lfs-pointer"``
    (a Git LFS pointer checked out in place of the file; ``lfs_oid``/``lfs_size`` are the real
    file's, when the pointer says)."""
    path: Path
    reason: str
    lfs_oid: str | None = None
    lfs_size: int | None = None

    def describe(self) -> str:
        if self.reason == "missing":
            return f"{self.path.name} is missing"
        size = f" to {self.lfs_size:,} bytes" if self.lfs_size is not None else ""
        return f"{self.path.name} is a Git LFS pointer{size}; git lfs pull fetches it"

    def error(self, tensor: str | None = None, *, what: str = "data file") -> DataUnavailableError:
        if self.reason == "missing":
            return DataUnavailableError(
                f"{what} is missing; the index lists the checkpoint, but the values are in this file",
                path=self.path, tensor=tensor,
                hint="copy every .data-* file of the checkpoint beside its .index")
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

