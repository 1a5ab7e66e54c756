"""Atomic outputs: everything is written under a temporary name beside the target and renamed
into place only once complete, so an interrupted or failed run leaves nothing under the target
name.

One run at a time per target: a run holds an exclusive lock (``flock``) on ``.<name>.bertconv-lock``
beside the target from before it looks at the target until its output is in place, and a second
run on the same target stops at once with an error naming the first. The kernel drops a lock when
its process ends however it ends, so a temporary (``.<name>.bertconv-tmp-*``) found while holding
the lock belongs to a run that is gone, and only then is it removed (with a note naming the run
its lock file recorded: a run killed with SIGKILL leaves that record behind).

SIGTERM and SIGHUP end a command as SIGINT does (:func:`bertconv.stopping.stopping_on_signals`,
which the CLI installs): the exception unwinds through these context managers, which remove the temporary and
the lock. Putting the output in place is never cut in two: those signals wait until it is done.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .errors import OutputError
from .stopping import signals_held

TMP_MARK = ".bertconv-tmp-"
LOCK_MARK = ".bertconv-lock"

#: flock errors that mean the filesystem keeps no such locks (some FUSE and network mounts)
_LOCKS_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}
#: how long a run that finds the lock taken waits for its owner to have written who it is
_OWNER_RECORD_WAIT_S = 0.5
#: characters of the owner's command line recorded
_COMMAND_SHOWN = 200


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


def check_parent(target: Path) -> None:
    """The target names something, in a writable directory that exists."""
    target = Path(target)
    check_name(target)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        raise OutputError("parent directory does not exist", path=parent, hint="create it first")
    if not parent.is_dir():
        raise OutputError("parent is not a directory", path=parent)
    if not os.access(parent, os.W_OK):
        raise OutputError("directory is not writable", path=parent)


def check_target(target: Path, *, overwrite: bool, kind: str) -> None:
    """Refuse an existing target unless ``overwrite``; refuse a target of the wrong kind always."""
    target = Path(target)
    check_parent(target)
    if target.exists() or target.is_symlink():
        want_dir = kind == "dir"
        if want_dir != target.is_dir():
            raise OutputError(
                f"exists and is a {'directory' if target.is_dir() else 'file'}, "
                f"but a {'directory' if want_dir else 'file'} is to be written here",
                path=target, hint="choose another output path")
        if not overwrite and not (want_dir and _is_empty_directory(target)):
            raise OutputError("output already exists", path=target, hint="pass overwrite=True to replace it",
                              cli_hint="pass --overwrite to replace it")


def _is_empty_directory(path: Path) -> bool:
    """An existing empty directory holds nothing to lose: it is replaced without --overwrite."""
    if path.is_symlink():
        return False
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}{LOCK_MARK}"


@contextlib.contextmanager
def exclusive_target(target: str | Path, *, notes: list[str] | None = None) -> Iterator[bool]:
    """Hold the target's lock for the block; yield whether it is held (False only where the
    filesystem keeps no locks: the block then runs unprotected, as it would without this).
    Holding it, remove the temporaries of runs on this target that are gone (each named in
    ``notes``, when given).

    Raise :class:`OutputError` at once if another run holds it.
    """
    target = Path(target)
    path = lock_path(target)
    taken = _take_lock(path, target)
    if taken is None:
        yield False
        return
    fd, previous_owner = taken
    _clean_stale(target, previous_owner, notes)
    try:
        yield True
    finally:
        # Unlinked while still held: a run that opened this file meanwhile takes the lock only
        # after the close below, sees that the name no longer leads to this file, and starts over.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _take_lock(path: Path, target: Path) -> tuple[int, dict | None] | None:
    """A descriptor of the lock file at ``path``, locked, with this run's description in it, and
    the record a run that held it before left there (a run that ends cleanly removes the file,
    so a record found means that run was killed; the lock being free proves it gone)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise OutputError(f"cannot write here: {e.strerror}", path=target.parent) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _describe_owner(fd)
            os.close(fd)
            raise OutputError(f"{owner} is writing this output", path=target,
                              hint="wait for it to finish, or choose another output path") from None
        except OSError as e:
            if e.errno not in _LOCKS_UNSUPPORTED:
                os.close(fd)
                raise OutputError(f"cannot lock {path.name}: {e.strerror}", path=target.parent) from None
            # No locks on this filesystem: nothing can prove a temporary's owner gone, so none is
            # removed; the empty file is this run's own (an owner would have written itself in).
            empty = os.fstat(fd).st_size == 0
            os.close(fd)
            if empty:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            return None
        held = os.fstat(fd)
        try:
            named = os.stat(path)
        except FileNotFoundError:
            named = None
        if named is None or (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino):
            os.close(fd)  # the run that held it unlinked it before letting go: take the new one
            continue
        previous = _read_record(fd)
        os.ftruncate(fd, 0)
        os.write(fd, _owner_record())
        return fd, previous


def _read_record(fd: int) -> dict | None:
    try:
        record = json.loads(os.pread(fd, 1 << 16, 0))
        return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def _owner_record() -> bytes:
    command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else ""
    if len(command) > _COMMAND_SHOWN:
        command = command[:_COMMAND_SHOWN] + "..."
    # another run prints it inside its one-line error
    command = "".join(c if c.isprintable() else repr(c)[1:-1] for c in command)
    return json.dumps({"pid": os.getpid(), "started": time.time(), "command": command}).encode()


def _describe_owner(fd: int) -> str:
    """The run that holds the lock, as its record names it. Its owner writes the record just
    after taking the lock, so an empty or partial one is read again for a moment."""
    deadline = time.monotonic() + _OWNER_RECORD_WAIT_S
    while True:
        try:
            owner = json.loads(os.pread(fd, 1 << 16, 0))
            pid, started = int(owner["pid"]), float(owner["started"])
            break
        except (ValueError, KeyError, TypeError):
            if time.monotonic() > deadline:
                return "another bertconv run"
            time.sleep(0.01)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    command = owner.get("command")
    return f"another bertconv run (pid {pid}, started {when}" + (f": {command}" if command else "") + ")"


def _clean_stale(target: Path, previous_owner: dict | None = None, notes: list[str] | None = None) -> None:
    """Remove the temporaries of runs that are gone. Only under the target's lock."""
    prefix = f".{target.name}{TMP_MARK}"
    removed = []
    for stale in sorted(target.parent.glob(glob_escape(prefix) + "*")):
        with contextlib.suppress(OSError):
            shutil.rmtree(stale) if stale.is_dir() and not stale.is_symlink() else stale.unlink()
            removed.append(stale.name)
    if removed and notes is not None:
        who = f"run (pid {previous_owner['pid']})" if previous_owner else "run"
        shown = ", ".join(removed[:3]) + (f" and {len(removed) - 3} more" if len(removed) > 3 else "")
        notes.append(f"removed {shown}, left beside the output by an earlier {who} that was killed "
                     "before it could clean up")


def glob_escape(text: str) -> str:
    """``text`` matched literally by ``Path.glob`` (an output may be named ``run[1]``)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _replace(tmp: Path, target: Path) -> None:
    with signals_held():
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
def atomic_file(target: str | Path, *, overwrite: bool = False,
                notes: list[str] | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it to ``target`` on success.
    ``notes`` receives a line for each temporary of a killed run that was removed."""
    target = Path(target)
    check_parent(target)
    with exclusive_target(target, notes=notes):
        check_target(target, overwrite=overwrite, kind="file")
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
def atomic_dir(target: str | Path, *, overwrite: bool = False,
               notes: list[str] | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; rename it to ``target`` on success.
    ``notes`` receives a line for each temporary of a killed run that was removed."""
    target = Path(target)
    check_parent(target)
    with exclusive_target(target, notes=notes):
        check_target(target, overwrite=overwrite, kind="dir")
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

