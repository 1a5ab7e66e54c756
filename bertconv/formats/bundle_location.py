"""Finding a TensorFlow V2 checkpoint (tensor bundle) from what the user named.

:func:`locate_bundle` finds the bundle as checkpoints occur: a prefix, an ``.index`` or ``.data-*``
file, the empty prefix (``dir/.index``), a prefix that is also the name of the state file
(``checkpoint``), or a directory, which always means a bundle inside it.
"""
from __future__ import annotations

import codecs
import operator
import os
import re
from pathlib import Path
from typing import NamedTuple

from ..errors import CheckpointFormatError, InputError
from . import _wire
from .containment import shown
from .sstable import read_table

__all__ = ["BundleLocation", "locate_bundle", "resolve_prefix", "describe_contents"]

_DATA_FILE = re.compile(r"^(?P<prefix>.*)\.data-\d{5,}-of-\d{5,}$")
_V1_HINT = ("re-save it as V2 with TensorFlow: restore it with tf.compat.v1.train.Saver and save "
            "again (V2 is the default)")

#: ``<stem>-<step>``: the prefixes a training loop writes (``model.ckpt-2000``, ``ckpt-3``).
_SERIES = re.compile(r"^(?P<stem>.*)-(?P<step>\d+)$")
_STATE_FILE = "checkpoint"
#: How many names of a directory an error shows.
_SHOWN_NAMES = 12


# NamedTuples, not frozen dataclasses, for the two records below: every command defines them at
# import, and a frozen dataclass takes several times as long to define.
class BundleLocation(NamedTuple):
    """A bundle as found from what the user named: ``directory`` and the ``basename`` of its
    files (``""`` for the empty prefix, whose files are ``.index`` and ``.data-*``).

    ``notes`` say what was decided on the user's behalf (a state file naming another directory,
    a step chosen among several); ``steps`` are the steps of the bundle's ``<stem>-<step>`` series
    present in its directory, ``step`` its own."""
    directory: Path
    basename: str
    notes: tuple[str, ...] = ()
    steps: tuple[int, ...] = ()
    step: int | None = None

    @property
    def prefix(self) -> Path:
        """The prefix as a path (for the empty prefix, the directory: a path cannot end in ``/``)."""
        return self.directory / self.basename

    def file(self, suffix: str) -> Path:
        # Joined as text: the empty prefix's files are "<directory>/.index".
        return Path(os.path.join(self.directory, self.basename) + suffix)


def _shown(basename: str) -> str:
    return basename if basename else "the empty prefix (.index)"


def _is_v1_table(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            data = f.read(64 << 20)
        items = read_table(data, path=path)
    except (OSError, CheckpointFormatError):
        return False
    return bool(items) and items[0][0] == b"" and _wire.looks_like_saved_tensor_slices(items[0][1])


def _v1_error(path: Path) -> CheckpointFormatError:
    return CheckpointFormatError(
        "a V1 checkpoint (SavedTensorSlices tables, no .index file); bertconv reads V2 checkpoints",
        path=path, hint=_V1_HINT)


def _prefix_from_state_file(state: Path) -> str | None:
    """``model_checkpoint_path`` from a text-format CheckpointState file."""
    try:
        text = state.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as err:
        raise InputError(f"cannot read ({err.strerror})", path=state) from None
    match = re.search(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"', text, re.MULTILINE)
    if not match:
        return None
    escaped = match.group(1).encode("utf-8", errors="surrogateescape")
    return codecs.escape_decode(escaped)[0].decode("utf-8", errors="surrogateescape")


def _bundles_in(directory: Path) -> dict[str, Path]:
    """``basename → index file`` of every bundle in ``directory`` (not below it)."""
    found = {}
    try:
        entries = list(os.scandir(directory))
    except OSError as err:
        raise InputError(f"cannot list ({err.strerror})", path=directory) from None
    for entry in entries:
        if entry.name.endswith(".index") and entry.is_file():
            found[entry.name[:-len(".index")]] = Path(entry.path)
    return dict(sorted(found.items()))


def _series_of(basename: str) -> tuple[str, int] | None:
    match = _SERIES.match(basename)
    return (match.group("stem"), int(match.group("step"))) if match else None


def _steps_of(bundles: dict[str, Path], stem: str) -> tuple[int, ...]:
    return tuple(sorted(s[1] for s in map(_series_of, bundles) if s is not None and s[0] == stem))


def _steps_beside(bundles: dict[str, Path], basename: str) -> tuple[tuple[int, ...], int | None]:
    """The steps of ``basename``'s series among ``bundles``, and its own step."""
    series = _series_of(basename)
    if series is None:
        return (), None
    return _steps_of(bundles, series[0]), series[1]


def describe_contents(directory: Path) -> str:
    """What a directory holds, for an error that found nothing to read there."""
    try:
        names = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(directory))
    except OSError:
        return "cannot be listed"
    if not names:
        return "is empty"
    shown = ", ".join(names[:_SHOWN_NAMES])
    more = f" and {len(names) - _SHOWN_NAMES} more" if len(names) > _SHOWN_NAMES else ""
    return f"holds {shown}{more}"


def _named_in(named: str, directory: Path) -> tuple[str, bool]:
    """The basename a state file's ``model_checkpoint_path`` names, and whether the path points
    outside ``directory`` (absolute paths of another machine, ``../other/model.ckpt``)."""
    # Windows writers leave backslashes; a basename holding one is far rarer than such a file.
    parts = re.split(r"[\\/]", named)
    basename = parts[-1]
    if basename == ".":
        basename = ""  # Keras' save_weights("dir/") records "." for the prefix "dir/"
    if len(parts) == 1:
        return basename, False
    if os.sep != "\\" and ("\\" in named or re.match(r"^[A-Za-z]:", named)):
        return basename, True  # a Windows path, so another machine's
    target = Path(named) if Path(named).is_absolute() else directory / named
    bundle_directory = target if parts[-1] in ("", ".") else target.parent
    return basename, os.path.realpath(bundle_directory) != os.path.realpath(directory)


def _locate_in_directory(directory: Path, step: int | None) -> BundleLocation:
    """A directory means a bundle inside it, never one elsewhere: its side files (config,
    vocabulary) are the directory's, and must describe the weights read."""
    bundles = _bundles_in(directory)
    notes: list[str] = []
    chosen = None
    preferred_stem = None
    state = directory / _STATE_FILE
    named = _prefix_from_state_file(state) if state.is_file() else None
    if state.is_file() and named is None:
        notes.append(f"the {_STATE_FILE} file has no model_checkpoint_path line")
    if named is not None:
        basename, elsewhere = _named_in(named, directory)
        series = _series_of(basename)
        preferred_stem = series[0] if series else None
        if step is None:
            if basename in bundles:
                chosen = basename
                if elsewhere:
                    notes.append(f"the {_STATE_FILE} file names {shown(named)}, outside this directory; "
                                 f"reading {_shown(basename)} from this directory instead")
            else:
                named_here = BundleLocation(directory, basename)
                if named_here.file(".meta").is_file() or \
                        (named_here.file("").is_file() and _is_v1_table(named_here.file(""))):
                    raise _v1_error(named_here.file(""))
                notes.append(f"the {_STATE_FILE} file names {shown(named)}, which is not in this directory")
    if chosen is None and step is not None:
        matches = [b for b in bundles if (s := _series_of(b)) is not None and s[1] == step]
        preferred = [b for b in matches if _series_of(b)[0] == preferred_stem]  # type: ignore[index]
        if len(preferred) == 1 or len(matches) == 1:
            chosen = (preferred or matches)[0]
        elif matches:
            raise InputError(f"holds {len(matches)} checkpoints of step {step} "
                             f"({', '.join(matches)})", path=directory, hint="name one of them")
        else:
            steps = sorted({s[1] for s in map(_series_of, bundles) if s is not None})
            raise InputError(f"has no checkpoint of step {step}", path=directory,
                             hint=f"steps here: {', '.join(map(str, steps))}" if steps
                             else f"it {describe_contents(directory)}")
    if chosen is None and len(bundles) == 1:
        chosen = next(iter(bundles))
    if chosen is None and bundles:
        series = {_series_of(b)[0] if _series_of(b) else None for b in bundles}  # type: ignore[index]
        if len(series) == 1 and None not in series:
            # One training run: the directory means its newest step, as latest_checkpoint would.
            chosen = max(bundles, key=lambda b: _series_of(b)[1])  # type: ignore[index]
    if chosen is None:
        if bundles:
            names = ", ".join(_shown(b) for b in bundles)
            first = next(iter(bundles))
            example = directory / first if first else BundleLocation(directory, first).file(".index")
            raise InputError(f"holds {len(bundles)} checkpoints ({names}) and no '{_STATE_FILE}' "
                             "file says which to use", path=directory,
                             hint=f"name one of them, e.g. {example}")
        if any(directory.glob("*.meta")):
            raise _v1_error(directory)
        raise InputError("holds no TensorFlow checkpoint (no *.index file); it "
                         f"{describe_contents(directory)}", path=directory)
    steps, own_step = _steps_beside(bundles, chosen)
    if len(steps) > 1:
        newest = ", the newest" if own_step == steps[-1] else ""
        notes.append(f"steps here: {', '.join(map(str, steps))}; reading step {own_step}{newest}; "
                     "--step N picks another")
    return BundleLocation(directory, chosen, tuple(notes), steps, own_step)


def _basename_named(given: Path) -> str:
    """The bundle basename a file name stands for: ``X.index``, ``X.data-*``, ``X.meta`` or ``X``."""
    name = given.name
    data_match = _DATA_FILE.match(name)
    if data_match:
        return data_match.group("prefix")
    for suffix in (".index", ".meta"):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def locate_bundle(path: str | Path, *, step: int | None = None) -> BundleLocation:
    """The bundle a prefix, an ``.index`` or ``.data-*`` file, a ``checkpoint`` state file or a
    directory stands for. ``step`` picks that step of a ``<stem>-<step>`` series instead of the
    one named (or, for a directory, the newest)."""
    given = Path(path)
    if step is not None:
        try:
            if isinstance(step, bool) or operator.index(step) < 0:
                raise TypeError
        except TypeError:
            raise InputError(f"step must be a whole number, not {step!r}") from None
        step = operator.index(step)
    if given.is_dir():
        return _locate_in_directory(given, step)
    directory = given.parent
    basename = _basename_named(given)
    index = BundleLocation(directory, basename).file(".index")
    if given.name == _STATE_FILE and given.is_file() and not index.is_file():
        # The state file named on its own stands for its directory.
        return _locate_in_directory(directory, step)
    if step is not None:
        series = _series_of(basename)
        stem = series[0] if series else basename
        wanted = f"{stem}-{step}"
        bundles = _bundles_in(directory) if directory.is_dir() else {}
        steps = _steps_of(bundles, stem)
        if wanted in bundles:
            return BundleLocation(directory, wanted, (), steps, step)
        raise InputError(f"no checkpoint {wanted} here", path=directory,
                         hint=f"steps of {stem} here: {', '.join(map(str, steps))}" if steps
                         else f"the directory {describe_contents(directory)}")
    if index.is_file():
        steps, own_step = _steps_beside(_bundles_in(directory), basename) if _series_of(basename) \
            else ((), None)
        return BundleLocation(directory, basename, (), steps, own_step)
    named = BundleLocation(directory, basename)
    if named.file(".meta").is_file() or (named.file("").is_file() and _is_v1_table(named.file(""))):
        raise _v1_error(named.file(""))
    if given.exists():
        if _DATA_FILE.match(given.name):
            raise CheckpointFormatError(f"the index file {basename}.index beside it is missing",
                                        path=given, hint="copy the .index file next to the data files")
        raise CheckpointFormatError("not a TensorFlow checkpoint (expected <prefix>.index beside it)",
                                    path=given)
    series = [b for b in (_bundles_in(directory) if directory.is_dir() else {})
              if (s := _series_of(b)) is not None and s[0] == basename]
    if series:
        raise InputError(f"no such checkpoint: {given.name}.index does not exist, but "
                         f"{', '.join(series)} do", path=given,
                         hint="name one of them, or the directory for the newest")
    raise InputError(f"no such checkpoint: neither {given} nor {given}.index exists", path=given)


def resolve_prefix(path: str | Path, *, step: int | None = None) -> Path:
    """The bundle prefix (``.../bert_model.ckpt``) that :func:`locate_bundle` finds."""
    return locate_bundle(path, step=step).prefix
