"""Seeded damage over a fixture of every format bertconv reads, every command judged.

Used by ``tests/test_damage.py`` (a few hundred runs) and ``bench/damage.py`` (thousands, figures
in ``docs/robustness.md``). Each run damages one file of a copy of a fixture in one of the ways
files get damaged (bits flipped, a run of 0xff, bytes inserted, a cut, a file zeroed, a header or
footer overwritten, an absurd value in a JSON field, JSON nested deeper than a parser recurses), runs one command on it in this process
(``bertconv.cli.main``) and restores the file. The outcome rule, as in ``tests/test_corruption.py``:
a damaged input may convert, list or compare without error (damage the format cannot see, or a
changed vocabulary line), or end in one of bertconv's own errors; never anything else. A run is
clean when

- the exit code is 0, 1 or 2;
- on failure, stderr is one line, ``bertconv: error: ...`` (no traceback, no "unexpected error");
  on success, stderr is empty;
- nothing is left behind: beside the source and the output no new file, temporary or lock, and an
  output only where the run succeeded.
"""
from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

DAMAGES = ("bit-flips", "0xff-run", "inserted-bytes", "truncated", "zeroed", "empty", "header",
           "footer", "absurd-json", "deep-json")
#: how deeply ``deep-json`` nests arrays: deeper than Python's JSON parser recurses
DEEP_JSON = 100_000
#: values put in a JSON field by ``absurd-json``
ABSURD_VALUES = (10 ** 18, -1, 2 ** 64, -(2 ** 63), 1e308, 0, None, True, "", "x" * 300, [], {},
                 [10 ** 12, 10 ** 12], [-5], {"a": [1, {"b": None}]})

#: (name, fixture directory, what the user names inside it ("." the directory), side)
#: side "tf": a TensorFlow source (tf2pt, inspect, diff and validate against its conversion);
#: side "pt": a converted one (inspect, diff and validate against the TF original, pt2tf).
SOURCES = [
    ("tf-bundle", FIXTURES / "bert_pretrain", ".", "tf"),
    ("tf-bundle-snappy", None, ".", "tf"),  # made from bert_pretrain with a snappy-compressed index
    ("tf2-object-checkpoint", FIXTURES / "garden_v3", ".", "tf"),
    ("albert-sentencepiece", FIXTURES / "albert_pretrain", ".", "tf"),  # its tokenizer's .model too
    ("saved-model-tf2", FIXTURES / "savedmodel_tf2", ".", "tf"),
    ("hub-module-tf1", FIXTURES / "hub_tf1", ".", "tf"),
    ("tf_model.h5", FIXTURES / "h5", "tf_model.h5", "tf"),
    ("bert4keras-h5", FIXTURES / "keras_era" / "bert4keras_bert_saved", "bert_model.h5", "tf"),
    ("keras-bert-h5", FIXTURES / "keras_era" / "keras_bert_pretrain_h5", "bert_weights.h5", "tf"),
    ("keras-hub-preset", FIXTURES / "keras_era" / "keras_hub_backbone", ".", "tf"),
    ("keras-archive", FIXTURES / "keras_era" / "keras_hub_classifier_archive", "classifier.keras", "tf"),
    ("hf-safetensors", None, ".", "pt"),  # tf2pt of bert_pretrain
    ("safetensors-sharded", None, "model.safetensors.index.json", "pt"),
    ("pytorch_model.bin", None, ".", "pt"),
]

COMMANDS = {
    "tf": ("inspect", "tf2pt", "diff", "validate"),
    "pt": ("inspect", "diff", "validate", "pt2tf"),
}


@dataclass
class Prepared:
    """A source copied into the work directory, with what its commands compare against."""
    name: str
    side: str
    directory: Path
    named: str
    files: list[str]
    #: the undamaged counterpart: a TF source's conversion, a converted source's TF original
    other: Path


@dataclass
class Outcome:
    source: str
    file: str
    damage: str
    command: str
    seed: int
    rc: int | None
    seconds: float
    problems: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def clean(self) -> bool:
        return not self.problems


def _run_cli(args: list[str]) -> tuple[int | None, str, str, BaseException | None]:
    from bertconv.cli import main

    out, err = io.StringIO(), io.StringIO()
    raised = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - what must never reach the user
            rc, raised = None, error
    return rc, out.getvalue(), err.getvalue(), raised


def _snappy_copy(directory: Path) -> None:
    """bert_pretrain with its index's data blocks snappy-compressed (the writer's option)."""
    import numpy as np

    from bertconv.formats.tf_bundle import TFBundleSource
    from bertconv.formats.tf_bundle_writer import write_tf_bundle

    source = FIXTURES / "bert_pretrain"
    directory.mkdir(parents=True)
    with TFBundleSource(source) as bundle:
        tensors = [(name, np.array(bundle.read(name))) for name in bundle.names()]
    write_tf_bundle(directory / "bert_model.ckpt", tensors, snappy_index=True)
    for name in ("bert_config.json", "vocab.txt"):
        shutil.copy(source / name, directory / name)


def _files_of(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                  if p.is_file() and p.name not in ("golden.npz", "golden.json", "fingerprint.pb"))


def prepare(work: Path, names: list[str] | None = None) -> list[Prepared]:
    """Copies of every source under ``work`` (each undamaged until a run damages it), and the
    conversions the commands compare against. Sources whose fixture is not here are left out."""
    import torch  # noqa: F401 - pytorch_model.bin is written with torch.save

    from bertconv.cli import main

    work.mkdir(parents=True, exist_ok=True)
    prepared: list[Prepared] = []
    converted = work / "converted-bert_pretrain"
    if main(["tf2pt", str(FIXTURES / "bert_pretrain"), str(converted), "--no-validate", "-q"]) != 0:
        raise RuntimeError("the bert_pretrain fixture does not convert")
    for name, fixture, named, side in SOURCES:
        if names is not None and name not in names:
            continue
        directory = work / "sources" / name
        if name == "tf-bundle-snappy":
            _snappy_copy(directory)
        elif name == "hf-safetensors":
            shutil.copytree(converted, directory)
        elif name == "safetensors-sharded":
            _sharded_copy(converted, directory)
        elif name == "pytorch_model.bin":
            _torch_bin_copy(converted, directory)
        elif fixture is None or not fixture.is_dir():
            continue
        else:
            shutil.copytree(fixture, directory)
        if side == "tf":
            other = work / f"converted-{name}"
            if main(["tf2pt", str(directory / named), str(other), "--no-validate", "-q"]) != 0:
                raise RuntimeError(f"the {name} fixture does not convert")
        else:
            other = FIXTURES / "bert_pretrain"
        prepared.append(Prepared(name, side, directory, named, _files_of(directory), other))
    return prepared


def _sharded_copy(converted: Path, directory: Path) -> None:
    from safetensors.numpy import load_file, save_file

    directory.mkdir(parents=True)
    tensors = load_file(str(converted / "model.safetensors"))
    names = sorted(tensors)
    half = len(names) // 2
    weight_map = {}
    for i, part in enumerate((names[:half], names[half:]), 1):
        shard = f"model-0000{i}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, str(directory / shard), metadata={"format": "pt"})
        weight_map.update({n: shard for n in part})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for name in ("config.json", "vocab.txt"):
        shutil.copy(converted / name, directory / name)


def _torch_bin_copy(converted: Path, directory: Path) -> None:
    import torch
    from safetensors.torch import load_file

    directory.mkdir(parents=True)
    torch.save(load_file(str(converted / "model.safetensors")), directory / "pytorch_model.bin")
    for name in ("config.json", "vocab.txt"):
        shutil.copy(converted / name, directory / name)


# -- damage ------------------------------------------------------------------------------------------
def _absurd_json(data: bytes, rng: random.Random) -> bytes | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    leaves: list[tuple[object, object]] = []

    def walk(node) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            leaves.append((node, key))
            walk(child)
    walk(value)
    if not leaves:
        return None
    node, key = rng.choice(leaves)
    node[key] = rng.choice(ABSURD_VALUES)  # type: ignore[index]
    return json.dumps(value).encode()


def _absurd_safetensors_header(data: bytes, rng: random.Random) -> bytes | None:
    if len(data) < 8:
        return None
    (length,) = struct.unpack_from("<Q", data)
    header = _absurd_json(data[8:8 + length], rng)
    if header is None:
        return None
    return struct.pack("<Q", len(header)) + header + data[8 + length:]


def damage(data: bytes, kind: str, rng: random.Random, filename: str) -> bytes | None:
    """``data`` damaged one way; None where that damage does not apply to this file."""
    size = len(data)
    if kind == "empty":
        return b"" if size else None
    if not size:
        return None
    if kind == "bit-flips":
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(size)] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == "0xff-run":
        at, length = rng.randrange(size), rng.randint(1, 64)
        return data[:at] + b"\xff" * min(length, size - at) + data[at + length:]
    if kind == "inserted-bytes":
        at = rng.randrange(size + 1)
        return data[:at] + rng.randbytes(rng.choice((1, 8, 32, 64))) + data[at:]
    if kind == "truncated":
        return data[:rng.randrange(size)]
    if kind == "zeroed":
        return bytes(size)
    if kind == "header":
        length = min(size, rng.choice((8, 16, 64)))
        return rng.randbytes(length) + data[length:]
    if kind == "footer":
        length = min(size, rng.choice((8, 48, 64)))
        return data[:size - length] + rng.randbytes(length)
    if kind == "absurd-json":
        if filename.endswith(".json"):
            return _absurd_json(data, rng)
        if filename.endswith(".safetensors"):
            return _absurd_safetensors_header(data, rng)
        return None
    if kind == "deep-json":
        deep = b"[" * DEEP_JSON
        if filename.endswith(".json"):
            return deep
        if filename.endswith(".safetensors") and size >= 8:
            (length,) = struct.unpack_from("<Q", data)
            return struct.pack("<Q", len(deep)) + deep + data[8 + length:]
        return None
    raise ValueError(kind)


# -- runs --------------------------------------------------------------------------------------------
def _args(command: str, source: Prepared, out: Path) -> list[str]:
    named = str(source.directory / source.named)
    other = str(source.other)
    if command == "inspect":
        return ["inspect", named]
    if command == "tf2pt":
        return ["tf2pt", named, str(out), "--no-validate", "-q"]
    if command == "pt2tf":
        return ["pt2tf", named, str(out)]
    if command == "diff":
        return ["diff", named, other]
    if command == "validate":
        return ["validate", other, "--against", named] if source.side == "tf" else \
            ["validate", named, "--against", other]
    raise ValueError(command)


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run_one(source: Prepared, file: str, kind: str, command: str, seed: int, outputs: Path) -> Outcome | None:
    """One damaged run, judged; None where the damage does not apply to the file."""
    rng = random.Random(f"{source.name}/{file}/{kind}/{seed}")
    path = source.directory / file
    original = path.read_bytes()
    damaged = damage(original, kind, rng, file)
    if damaged is None or damaged == original:
        return None
    outputs.mkdir(parents=True, exist_ok=True)
    out = outputs / "out"
    before_source, before_outputs = _listing(source.directory), _listing(outputs)
    path.write_bytes(damaged)
    started = time.perf_counter()
    try:
        rc, stdout, stderr, raised = _run_cli(_args(command, source, out))
    finally:
        seconds = time.perf_counter() - started
        path.write_bytes(original)
    outcome = Outcome(source.name, file, kind, command, seed, rc, seconds)
    problems = outcome.problems
    lines = stderr.strip().splitlines()
    outcome.message = lines[0] if lines else ""
    if raised is not None:
        problems.append(f"raised {type(raised).__name__}: {raised}")
    elif rc not in (0, 1, 2):
        problems.append(f"exit code {rc}")
    if "Traceback" in stdout + stderr or "unexpected error" in stderr:
        problems.append("a traceback or an unexpected error: " + stderr.strip()[:300])
    if rc in (1, 2) and (len(lines) != 1 or not lines[0].startswith("bertconv: error: ")):
        problems.append(f"stderr is not one error line: {stderr.strip()[:300]!r}")
    if rc == 0 and lines:
        problems.append(f"stderr on success: {stderr.strip()[:300]!r}")
    left_in_source = _listing(source.directory) - before_source
    if left_in_source:
        problems.append(f"left in the source's directory: {sorted(left_in_source)}")
    left = _listing(outputs) - before_outputs
    expected_output = rc == 0 and command in ("tf2pt", "pt2tf")
    unexpected = {p for p in left if not (expected_output and (p == "out" or p.startswith("out/")))}
    if unexpected:
        problems.append(f"left beside the output: {sorted(unexpected)}")
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    return outcome


def plan_runs(sources: list[Prepared], count: int, seed: int = 0) -> list[tuple[Prepared, str, str, str, int]]:
    """``count`` runs spread evenly over sources, damages and commands (files drawn by seed)."""
    rng = random.Random(seed)
    combos = [(s, kind, command) for s in sources for kind in DAMAGES for command in COMMANDS[s.side]]
    runs = []
    for i in range(count):
        source, kind, command = combos[i % len(combos)]
        candidates = [f for f in source.files if not kind.endswith("-json") or f.endswith((".json", ".safetensors"))]
        if not candidates:
            continue
        runs.append((source, rng.choice(candidates), kind, command, rng.randrange(1 << 30)))
    return runs


def summarise(outcomes: list[Outcome]) -> dict:
    by = lambda key: sorted({getattr(o, key) for o in outcomes})  # noqa: E731
    exits: dict[str, int] = {}
    for o in outcomes:
        exits[str(o.rc)] = exits.get(str(o.rc), 0) + 1
    return {"runs": len(outcomes), "unclean": sum(not o.clean for o in outcomes), "sources": by("source"),
            "damages": by("damage"), "commands": by("command"), "exit_codes": dict(sorted(exits.items())),
            "slowest_s": round(max((o.seconds for o in outcomes), default=0.0), 3),
            "total_s": round(sum(o.seconds for o in outcomes), 1)}


def suite_runs(sources: list[Prepared], seed: int = 0) -> list[tuple[Prepared, str, str, str, int]]:
    """The in-suite selection: every source with every damage under each command, except that
    ``validate`` (a model run each time) takes every third damage only."""
    rng = random.Random(seed)
    runs = []
    for source in sources:
        for i, kind in enumerate(DAMAGES):
            candidates = [f for f in source.files if not kind.endswith("-json") or f.endswith((".json", ".safetensors"))]
            if not candidates:
                continue
            for command in COMMANDS[source.side]:
                if command == "validate" and i % 3:
                    continue
                runs.append((source, rng.choice(candidates), kind, command, rng.randrange(1 << 30)))
    return runs
