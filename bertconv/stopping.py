"""Signals that stop a command: SIGTERM and SIGHUP end it as SIGINT does.

Python turns SIGINT into KeyboardInterrupt, which unwinds through the context managers of
:mod:`bertconv.atomic` and so removes every temporary and lock. These two signals would kill the
process where it stands instead; here they raise :class:`~bertconv.errors.Stopped`, which unwinds
the same way. Kept apart from :mod:`bertconv.atomic` so that the CLI installs it without importing
what writing needs.
"""
from __future__ import annotations

import contextlib
import signal
from typing import Iterator

from .errors import Stopped

__all__ = ["STOPPING_SIGNALS", "stopping_on_signals", "signals_held", "ignore_stopping_signals"]

#: the signals that end a command as SIGINT does: what CI runners, timeout, docker stop, systemd
#: and job schedulers send, and what a closed terminal sends
STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


#: the signal that arrived while :func:`signals_held` held them, delivered when it ends
_held: dict[str, object] = {"holding": 0, "pending": None}


def _raise_stopped(signum, frame) -> None:
    if _held["holding"]:
        _held["pending"] = signum
        return
    ignore_stopping_signals()  # once stopping, further signals would only cut the cleanup short
    raise Stopped(signal.Signals(signum).name)


def ignore_stopping_signals() -> None:
    """SIGTERM, SIGHUP and SIGINT ignored from now on (in the main thread; elsewhere nothing)."""
    for each in (*STOPPING_SIGNALS, signal.SIGINT):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(each, signal.SIG_IGN)


@contextlib.contextmanager
def stopping_on_signals() -> Iterator[None]:
    """For the block, SIGTERM and SIGHUP raise :class:`~bertconv.errors.Stopped` in the main
    thread, which unwinds as KeyboardInterrupt does: every temporary and lock is removed on the
    way out. Outside the main thread (where Python cannot set handlers) the block runs as it is."""
    try:
        previous = {signal.SIGINT: signal.getsignal(signal.SIGINT)}  # stopping ignores it
        for each in STOPPING_SIGNALS:
            previous[each] = signal.getsignal(each)
            if previous[each] != signal.SIG_IGN:  # nohup's choice stands
                signal.signal(each, _raise_stopped)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for each, handler in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(each, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """A stopping signal that arrives while the block runs is acted on when it ends: renaming an
    output into place is never left half done. (Python runs signal handlers in the main thread,
    between bytecodes, whichever thread the signal reached, so a flag is enough.)"""
    _held["holding"] = int(_held["holding"]) + 1  # type: ignore[call-overload]
    try:
        yield
    finally:
        _held["holding"] = int(_held["holding"]) - 1  # type: ignore[call-overload]
        pending, _held["pending"] = _held["pending"], None
        if pending is not None and not _held["holding"]:
            _raise_stopped(pending, None)
