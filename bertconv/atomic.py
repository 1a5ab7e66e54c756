"""Atomic outputs: everything is written under a temporary name beside the target and renamed
into place only once complete, so an interrupted or failed run leaves nothing under the target
name (a leftover ``.<name>.bertconv-tmp-*`` is ignored and cleaned by the next run)."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputError

TMP_MARK = ".bertconv-tmp-"


def check_name(target: Path) -> None:
    if Path(target).name in ("", ".", ".."):
        raise OutputError("the output must name a new file or directory, not the current or parent one",
                          path=target, hint="e.g. bert-hf")


def check_not_reading(target: Path, read: list[Path]) -> None:
    """Refuse an output that is, or contains, a file the run reads: replacing it (--overwrite)
    would destroy the input."""
    resolved = Path(target).resolve()
    for path in read:
        path = Path(path).resolve()
        if path == resolved or resolved in path.parents:
            raise OutputError(f"the output would replace {path.name}, which this run reads",
                              path=target, hint="write the output outside the source checkpoint")


def check_target(target: Path, *, overwrite: bool, kind: str) -> None:
    """Refuse an existing target unless ``overwrite``; refuse a target of the wrong kind always."""
    target = Path(target)
    check_name(target)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        raise OutputError("parent directory does not exist", path=parent, hint="create it first")
    if not parent.is_dir():
        raise OutputError("parent is not a directory", path=parent)
    if not os.access(parent, os.W_OK):
        raise OutputError("directory is not writable", path=parent)
    if target.exists() or target.is_symlink():
        want_dir = kind == "dir"
        if want_dir != target.is_dir():
            raise OutputError(
                f"exists and is a {'directory' if target.is_dir() else 'file'}, "
                f"but a {'directory' if want_dir else 'file'} is to be written here",
                path=target, hint="choose another output path")
        if not overwrite:
            raise OutputError("output already exists", path=target, hint="pass --overwrite to replace it")


def _clean_stale(target: Path) -> None:
    prefix = f".{target.name}{TMP_MARK}"
    for stale in target.parent.glob(prefix + "*"):
        with contextlib.suppress(OSError):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()


def _replace(tmp: Path, target: Path) -> None:
    try:
        _rename_into_place(tmp, target)
    except OSError as e:
        raise OutputError(f"cannot put the output in place: {e.strerror}", path=target) from None


def _rename_into_place(tmp: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        # A directory cannot be replaced by rename in one step: move the old one aside first, so
        # that at every instant the target name holds either the old or the new complete output.
        old = target.parent / f".{target.name}{TMP_MARK}old-{os.getpid()}"
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_file(target: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it to ``target`` on success."""
    target = Path(target)
    check_target(target, overwrite=overwrite, kind="file")
    _clean_stale(target)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}{TMP_MARK}", dir=target.parent)
    except OSError as e:
        raise OutputError(f"cannot write here: {e.strerror}", path=target.parent) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        _replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(target: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; rename it to ``target`` on success."""
    target = Path(target)
    check_target(target, overwrite=overwrite, kind="dir")
    _clean_stale(target)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP_MARK}", dir=target.parent))
    except OSError as e:
        raise OutputError(f"cannot write here: {e.strerror}", path=target.parent) from None
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        _replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
