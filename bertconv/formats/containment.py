"""Paths that a source names inside itself (a SavedModel's assets, a Hub module's vocabulary, a
state file's checkpoint) stay inside the directory the user named.

A file outside it is never opened: a crafted or careless ``saved_model.pb`` could otherwise make a
conversion copy any readable file into an output that is then published, or quote its lines in
an error. The judgement is lexical, on the path as the source names it: ``..`` components are
resolved as text, an absolute path (or a Windows drive or UNC path) is outside, and the path then
opened is the normalised one, so a ``..`` never walks back up through a symbolic link. Symbolic
links that the user's directory itself holds (a Hugging Face cache's snapshot files point into
``../../blobs``) are the user's choice and are followed as any file is.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["contained", "shown"]

#: characters of a named path shown in a message
_SHOWN_CHARACTERS = 200


def contained(directory: str | Path, named: str, *, under: str = "") -> Path | None:
    """``directory/under/named`` with ``..`` resolved as text, or None where ``named`` is empty,
    absolute (a drive or UNC path too), or leaves ``directory`` (more ``..`` than it descends).
    ``under`` is the folder the format resolves ``named`` in (a SavedModel's ``assets``)."""
    if not named or "\x00" in named:
        return None
    # Backslashes separate components for Windows writers; a file name holding one is rarer than
    # such a writer, and reading it as a separator can only make a path count as outside sooner.
    as_posix = named.replace("\\", "/")
    if as_posix.startswith("/") or re.match(r"^[A-Za-z]:", as_posix):
        return None
    base = os.path.normpath(os.fspath(directory))
    joined = os.path.normpath(os.path.join(base, under, as_posix))
    if joined == base or not joined.startswith(base.rstrip(os.sep) + os.sep):
        return None
    return Path(joined)


def shown(named: str) -> str:
    """A path a source names, fit for a one-line message: control characters escaped, a very
    long one shortened."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in named)
    return text if len(text) <= _SHOWN_CHARACTERS else text[:_SHOWN_CHARACTERS] + "..."
