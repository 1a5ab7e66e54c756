"""Progress on a terminal for work that takes more than about a second: a tqdm line on stderr.

Off by default, so that the Python API and every test print nothing: the CLI turns it on
(:func:`enable`) when stderr is a terminal and neither ``-q`` nor ``--json`` was given. Work whose
length is known counts its units (:func:`bar`); work whose length is not known (a reference pass, a
model run) shows its name and the time spent (:func:`activity`), and only once it has run for
:data:`DELAY` seconds, so that quick work leaves no line behind.
"""
from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
from collections.abc import Iterator

#: seconds before anything is drawn: work shorter than this shows nothing
DELAY = 1.0

_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("bertconv_progress", default=False)


def wanted(*, quiet: bool = False, as_json: bool = False, stream=None) -> bool:
    """Whether a command should show progress: a terminal on stderr, and no -q or --json."""
    stream = sys.stderr if stream is None else stream
    return not quiet and not as_json and bool(getattr(stream, "isatty", lambda: False)())


def enable(on: bool = True) -> contextvars.Token:
    """Turn progress on (or off) for the rest of this context; returns the token to reset it."""
    return _enabled.set(on)


def reset(token: contextvars.Token) -> None:
    """Undo the :func:`enable` that returned ``token``."""
    _enabled.reset(token)


def enabled() -> bool:
    return _enabled.get()


def bar(total: int, *, desc: str, unit: str = "it", unit_scale: bool = False, force: bool = False):
    """A tqdm bar on stderr when progress is on (or ``force``), else None."""
    if not (force or enabled()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, file=sys.stderr, leave=False,
                delay=DELAY, dynamic_ncols=True)


@contextlib.contextmanager
def activity(desc: str) -> Iterator[None]:
    """Show ``desc`` and the seconds spent on it while the block runs, when progress is on.

    The block's own thread keeps working; a daemon thread redraws the line twice a second (tqdm
    redraws only when told, and the block cannot tell it). Nothing is drawn before :data:`DELAY`.
    """
    if not enabled():
        yield
        return
    from tqdm import tqdm

    done = threading.Event()
    lock = threading.Lock()  # over `shown`: drawn by the thread, closed by the block's
    shown: list = []

    def draw() -> None:
        if done.wait(DELAY):
            return
        with lock:
            if done.is_set():
                return
            shown.append(tqdm(desc=desc, total=None, bar_format="{desc}: {elapsed}", file=sys.stderr,
                              leave=False, dynamic_ncols=True))
        while not done.wait(0.5):
            with lock:
                shown[0].refresh()

    thread = threading.Thread(target=draw, name="bertconv-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        with lock:
            done.set()
            for line in shown:
                line.close()
        thread.join()
