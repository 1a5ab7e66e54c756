"""Run bertconv over real published checkpoints and compare what it reads with what TensorFlow
reads; write docs/compatibility.md.

Not a test: the sample (``../shared/realworld/`` beside the repository by default) is not the
project's, and the project's tests keep to the fixtures its own scripts write.

    .venv/bin/python bench/realworld.py                  # the default sample; writes docs/compatibility.md
    .venv/bin/python bench/realworld.py ROOT --no-doc    # another root; print the table only

Every checkpoint under the root is tried as a user names it: each directory that holds a bundle
(``*.index``) or a ``checkpoint`` state file, each bundle prefix of a directory that holds several,
and each SavedModel directory (``saved_model.pb``), all through ``open_source`` like anything else.
For each:

- bertconv: ``bertconv inspect --json PATH`` (the command line, so exit code and error line are the
  user's), then every tensor read in this process (its bytes, or the one-line error saying why not);
- TensorFlow, where installed: ``tf.train.load_checkpoint(PATH)``, or, where that fails, the raw
  ``py_checkpoint_reader`` on the prefix bertconv chose (for a SavedModel, ``variables/variables``);
  the listing (names, dtypes, shapes) and every tensor it can read are compared with bertconv's.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO_DIR.parent / "shared" / "realworld"
DEFAULT_DOC = REPO_DIR / "docs" / "compatibility.md"
#: where the page's hand-written part begins (the model families against their original code)
FAMILIES_HEADING = "## Model families"
#: TensorFlow's names for the quantized types, which bertconv reads as their storage integers
TF_DTYPE_NAMES = {"qint8": "int8", "quint8": "uint8", "qint16": "int16", "quint16": "uint16",
                  "qint32": "int32"}


@dataclass
class Side:
    """What one reader made of a checkpoint."""
    opened: bool = False
    error: str = ""                      # the one line, where it could not open or list
    listing: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    values: dict[str, object] = field(default_factory=dict)   # name → bytes, or a list of bytes
    unread: dict[str, str] = field(default_factory=dict)      # name → why it was not read
    how: str = ""                        # which call read it


@dataclass
class Case:
    path: Path
    label: str                           # as shown, relative to the root
    kinds: list[str] = field(default_factory=list)
    inspect_rc: int | None = None
    inspect_error: str = ""
    inspect_notes: list[str] = field(default_factory=list)
    ours: Side = field(default_factory=Side)
    theirs: Side | None = None
    tf_prefix: str | None = None
    listing_agrees: bool | None = None
    compared: int = 0
    differing: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- finding
def find_cases(root: Path) -> list[Case]:
    cases = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories.sort()
        here = Path(directory)
        label = str(here.relative_to(root)) if here != root else "."
        if "saved_model.pb" in files:
            cases.append(Case(here, label + "/", kinds=["SavedModel"]))
            subdirectories.clear()  # variables/ is the SavedModel's own
            continue
        indexes = sorted(name[:-len(".index")] for name in files if name.endswith(".index"))
        if indexes or "checkpoint" in files:
            cases.append(Case(here, label + "/"))
        if len(indexes) > 1:
            for basename in indexes:
                prefix = Path(os.path.join(here, basename))
                cases.append(Case(prefix, f"{label}/{basename}" if basename else f"{label}/.index"))
    return cases


# ---------------------------------------------------------------------------------------- bertconv
def bertconv_command() -> list[str]:
    script = Path(sys.executable).with_name("bertconv")
    if script.is_file():
        return [str(script)]
    found = shutil.which("bertconv")
    if found:
        return [found]
    return [sys.executable, "-c", "from bertconv.cli import run; run()"]


def run_inspect(case: Case) -> None:
    result = subprocess.run(bertconv_command() + ["inspect", "--json", str(case.path)],
                            capture_output=True, text=True, timeout=600)
    case.inspect_rc = result.returncode
    if result.returncode == 0:
        report = json.loads(result.stdout)
        case.ours.listing = {t["name"]: (t["dtype"], tuple(t["shape"])) for t in report["tensors"]}
        case.inspect_notes = list(report.get("notes", []))
    else:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        case.inspect_error = lines[-1] if lines else f"exit {result.returncode}, no message"


def _as_comparable(array):
    """Bytes of a numeric array (with its dtype and shape), or the list of byte strings."""
    import numpy as np

    array = np.asarray(array)
    if array.dtype == object:
        return ("strings", array.shape, [bytes(x) for x in array.ravel()])
    return (array.dtype.str, array.shape, array.tobytes())


def read_ours(case: Case) -> None:
    from bertconv.errors import BertconvError
    from bertconv.formats import open_source

    side = case.ours
    try:
        source = open_source(case.path)
    except BertconvError as err:
        side.error = str(err)
        return
    with source:
        side.opened = True
        side.how = type(source).__name__
        index_path = getattr(source, "index_path", None)
        if index_path is not None:
            case.tf_prefix = str(index_path)[:-len(".index")]
            case.kinds += _bundle_kinds(source)
        for info in source:
            if info.dtype == "variant":
                side.unread[info.name] = "variant (listed, never read as numbers)"
                continue
            try:
                side.values[info.name] = _as_comparable(source.read(info.name))
            except BertconvError as err:
                side.unread[info.name] = _reason(str(err))
            source.release(info.name)


def _reason(line: str) -> str:
    for marker in ("Git LFS pointer", "data file is missing", "crc32c mismatch"):
        if marker in line:
            return marker
    return line


def _bundle_kinds(source) -> list[str]:
    from bertconv.formats.sstable import block_handles

    kinds = []
    index = Path(source.index_path)
    data = index.read_bytes()
    try:
        if any(data[offset + size] == 1 for _, offset, size in block_handles(data, path=index)):
            kinds.append("snappy-compressed index")
    except Exception:  # noqa: BLE001 - a damaged index shows up as the reader's error instead
        pass
    basename = index.name[:-len(".index")]
    if basename == "":
        kinds.append("empty prefix (.index)")
    elif basename == "checkpoint":
        kinds.append("prefix named checkpoint")
    for unavailable in getattr(source, "unavailable_data", list)():
        kinds.append("data is a Git LFS pointer" if unavailable.reason == "lfs-pointer"
                     else "data absent (index only)")
    notes = getattr(source, "notes", [])
    if any("outside this directory" in note or "not in this directory" in note for note in notes):
        kinds.append("state file names paths elsewhere")
    steps = getattr(source, "steps", ())
    if len(steps) > 1:
        kinds.append(f"training run ({len(steps)} steps here)")
    kinds.append("TF2 object-based" if "_CHECKPOINTABLE_OBJECT_GRAPH" in source else "TF1 name-based")
    return kinds


# -------------------------------------------------------------------------------------- TensorFlow
def read_theirs(case: Case, tf) -> None:
    import numpy as np

    side = Side()
    case.theirs = side
    reader = None
    try:
        reader = tf.train.load_checkpoint(str(case.path))
        side.how = "tf.train.load_checkpoint"
    except Exception as err:  # noqa: BLE001 - whatever TensorFlow raises is the finding
        side.error = f"load_checkpoint: {_first_line(err)}"
    if reader is None:
        prefix = case.tf_prefix
        if prefix is None and (case.path / "saved_model.pb").is_file():
            prefix = str(case.path / "variables" / "variables")
        if prefix is not None:
            # (the empty prefix stays "dir/": its files are "dir/.index" and "dir/.data-*")
            from tensorflow.python.training import py_checkpoint_reader
            try:
                reader = py_checkpoint_reader.NewCheckpointReader(prefix)
                side.how = f"py_checkpoint_reader({_shown_prefix(prefix, case)})"
            except Exception as err:  # noqa: BLE001
                side.error += f"; raw reader: {_first_line(err)}"
    if reader is None:
        return
    side.opened = True
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    for name in sorted(shapes):
        dtype = dtypes[name].name
        side.listing[name] = (TF_DTYPE_NAMES.get(dtype, dtype), tuple(shapes[name]))
        if dtype == "variant":
            side.unread[name] = "variant"
            continue
        try:
            value = reader.get_tensor(name)
        except Exception as err:  # noqa: BLE001
            side.unread[name] = _tf_reason(err)
            continue
        # A string scalar comes back as bytes, not an array.
        side.values[name] = _as_comparable(np.array(value, dtype=object) if isinstance(value, bytes)
                                           else value)


def _tf_reason(err: BaseException) -> str:
    """TensorFlow's error for one tensor, short enough to be the same for every tensor of a file."""
    message = " ".join(str(err).split())
    if "No such file" in message or "not found" in message.lower():
        return f"{type(err).__name__}: data file not found"
    return f"{type(err).__name__}: {message[:60]}" if message else type(err).__name__


def _shown_prefix(prefix: str, case: Case) -> str:
    try:
        return os.path.relpath(prefix, case.path if case.path.is_dir() else case.path.parent) + \
            (os.sep if prefix.endswith(os.sep) else "")
    except ValueError:
        return prefix


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(err).__name__}: {line}"[:160]


def compare(case: Case) -> None:
    if case.theirs is None or not case.theirs.opened or case.inspect_rc != 0:
        return
    case.listing_agrees = case.ours.listing == case.theirs.listing
    for name, value in case.ours.values.items():
        theirs = case.theirs.values.get(name)
        if theirs is None:
            continue
        case.compared += 1
        if value[0] == "strings" or theirs[0] == "strings":
            same = value[2] == theirs[2] and value[1] == theirs[1]
        else:
            same = value == theirs
        if not same:
            case.differing.append(name)


# ------------------------------------------------------------------------------------------ output
def describe_ours(case: Case) -> str:
    if case.inspect_rc != 0:
        return f"inspect exit {case.inspect_rc}: {case.inspect_error.removeprefix('bertconv: error: ')}"
    listed = len(case.ours.listing)
    read = len(case.ours.values)
    parts = [f"lists {listed}", f"reads {read}"]
    reasons = sorted(set(case.ours.unread.values()))
    if reasons and not read:
        parts[-1] = f"reads none ({'; '.join(reasons)}: one-line error naming the file)"
    elif reasons:
        parts[-1] += f" ({len(case.ours.unread)} not: {'; '.join(reasons)})"
    # (the note on data not here repeats what "reads none" says)
    notes = [n for n in case.inspect_notes
             if not n.startswith(("num_attention_heads", "listed from the index alone"))]
    if notes:
        parts.append("notes: " + " / ".join(notes))
    return "; ".join(parts)


def describe_theirs(case: Case) -> str:
    side = case.theirs
    if side is None:
        return "TensorFlow not installed"
    if not side.opened:
        return side.error or "not opened"
    parts = []
    if side.error:
        parts.append(side.error.split(":")[0] + " fails")
    parts.append(f"{side.how}: lists {len(side.listing)}")
    read = len(side.values)
    if side.unread:
        parts.append(f"reads {read} ({len(side.unread)} not: "
                     f"{'; '.join(sorted(set(side.unread.values())))})")
    else:
        parts.append(f"reads {read}")
    return "; ".join(parts)


def describe_agreement(case: Case) -> str:
    if case.listing_agrees is None:
        return "-"
    listing = "listing identical" if case.listing_agrees else "listing DIFFERS"
    if not case.compared:
        return listing
    values = (f"bytes identical ({case.compared})" if not case.differing else
              f"bytes DIFFER in {len(case.differing)} of {case.compared}")
    return f"{listing}; {values}"


def table(cases: list[Case], root: Path) -> str:
    rows = [["checkpoint", "kind", "bertconv", "TensorFlow", "agreement"]]
    for case in cases:
        rows.append([f"`{case.label}`", ", ".join(case.kinds) or "-", describe_ours(case),
                     describe_theirs(case), describe_agreement(case)])
    # Paths shown relative to the root, as the labels are.
    escaped = [[cell.replace(str(root) + os.sep, "").replace("|", "\\|") for cell in row] for row in rows]
    lines = ["| " + " | ".join(escaped[0]) + " |", "|" + "---|" * len(escaped[0])]
    lines += ["| " + " | ".join(row) + " |" for row in escaped[1:]]
    return "\n".join(lines)


def write_doc(path: Path, root: Path, cases: list[Case], tf_version: str | None) -> None:
    from bertconv import __version__

    from bertconv.atomic import atomic_file

    total = len(cases)
    agreeing = sum(1 for c in cases if c.listing_agrees and not c.differing)
    text = f"""# Compatibility with checkpoints as published

What bertconv does with real TensorFlow checkpoints that people wrote and published, beside what
TensorFlow does with the same files, measured by `bench/realworld.py` (re-run it to refresh this
page). The sample is `{os.path.relpath(root, REPO_DIR)}/` (its README says where each file comes
from); it is not part of the project's tests, which use the fixtures the project's scripts write.

- bertconv {__version__}; TensorFlow {tf_version or "not installed"}; {datetime.date.today().isoformat()}.
- **bertconv**: `bertconv inspect --json PATH` (what it lists, the notes it prints, or its error
  line), then every tensor read through `open_source`.
- **TensorFlow**: `tf.train.load_checkpoint(PATH)`; where that fails, the raw `py_checkpoint_reader`
  on the prefix bertconv chose (for a SavedModel, `variables/variables`).
- **agreement**: names, dtypes and shapes listed, and the bytes of every tensor both could read.

{agreeing} of {total} sources listed identically, with identical bytes wherever both read them.

{table(cases, root)}

Where the data file is absent or a Git LFS pointer, listing (and so `inspect`, with its parameter
counts, inferred config, heads and optimizer state) needs only the index; `inspect --stats`,
`tf2pt`, `validate` and `diff` stop with one line naming the file (for a pointer: its real size and
`git lfs pull`). A directory is always read from what it holds: a state file naming another
machine's or another directory's paths is followed only to the basename, inside the directory, with
a note.
"""
    # the families' section is written by hand from the fixtures' measurements: kept as it is
    kept = path.read_text(encoding="utf-8") if path.is_file() else ""
    if FAMILIES_HEADING in kept:
        text += "\n" + kept[kept.index(FAMILIES_HEADING):]
    with atomic_file(path, overwrite=True) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC, help="the page to write")
    parser.add_argument("--no-doc", action="store_true", help="print the table only")
    args = parser.parse_args()
    root = args.root.resolve()
    if not root.is_dir():
        raise SystemExit(f"{root}: no such directory")
    try:
        import tensorflow as tf
    except ImportError:
        tf = None
    cases = find_cases(root)
    for case in cases:
        run_inspect(case)
        read_ours(case)
        if tf is not None:
            read_theirs(case, tf)
        compare(case)
        print(f"{case.label}: {describe_ours(case)} | {describe_theirs(case)} | "
              f"{describe_agreement(case)}", file=sys.stderr)
    print(table(cases, root))
    if not args.no_doc:
        write_doc(args.doc, root, cases, tf.__version__ if tf is not None else None)
        print(f"wrote {args.doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
