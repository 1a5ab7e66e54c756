"""Properties of how bertconv does its work, each checked against a threshold: how many bytes a
write call hands the kernel, what a float32 conversion imports, how torch's import meets the
garbage collector, when the side files start, which CRC-32C the index reader uses.

They are measures behind the speed figures (docs/performance.md says why each exists), not
behaviour a user relies on, so they are recorded here rather than asserted by the tests: a
redesign that drops one shows up in docs/benchmarks.md without failing the suite. Each check runs
in a fresh interpreter; a check whose subject is gone reports "not measured" with the reason.

    .venv/bin/python bench/properties.py            # a table on stdout
    .venv/bin/python bench/properties.py --json     # what bench/run.py records

Needs the project's environment (bertconv, torch); writes only under a temporary directory.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
FIXTURE = REPO_DIR / "fixtures" / "bert_pretrain"
MB = 1 << 20


@dataclass
class Property:
    key: str
    description: str
    threshold: str
    #: run in a fresh interpreter with ``WORK`` (a scratch directory) and ``FIXTURE`` defined;
    #: prints one JSON object: {"measured": str, "passed": bool}
    code: str


PROPERTIES = [
    Property(
        "write_piece_bytes",
        "largest write call the safetensors writer (tf2pt) and the TF bundle writer (pt2tf) hand the "
        "kernel, writing a 768x3072 float32 kernel (9.4 MB) contiguous, transposed and as bytes",
        "<= 1 MiB",
        """
        import builtins, os
        from pathlib import Path
        import numpy as np
        sizes = {"safetensors": [], "tf bundle": []}
        real_pwrite, real_open = os.pwrite, builtins.open

        def pwrite(fd, data, offset):
            sizes["safetensors"].append(len(data))
            return real_pwrite(fd, data, offset)

        class Recording:  # the bundle writer's data file: count what each write() hands on
            def __init__(self, file): self.file = file
            def __enter__(self): return self
            def __exit__(self, *exc): self.file.close()
            def write(self, data):
                sizes["tf bundle"].append(len(memoryview(data).cast("B")))
                return self.file.write(data)

        def recording_open(path, mode="r", *args, **kwargs):
            file = real_open(path, mode, *args, **kwargs)
            return Recording(file) if "w" in mode and ".data-" in Path(path).name else file

        os.pwrite, builtins.open = pwrite, recording_open
        from bertconv.formats.safetensors_io import SafetensorsWriter
        from bertconv.formats.tf_bundle_writer import write_tf_bundle
        kernel = np.random.default_rng(0).standard_normal((768, 3072), dtype=np.float32)
        writer = SafetensorsWriter(Path(WORK) / "w.safetensors", [("c", "float32", (768, 3072)),
                                   ("t", "float32", (3072, 768)), ("b", "float32", (768, 3072))])
        writer.write("c", kernel)
        writer.write("t", kernel.T)
        writer.write_bytes("b", "float32", kernel.tobytes())
        writer.close()
        write_tf_bundle(Path(WORK) / "model.ckpt", [("c", kernel), ("t", np.ascontiguousarray(kernel.T))])
        builtins.open = real_open
        largest = {k: max(v) for k, v in sizes.items() if v}
        measured = ", ".join(f"{k} {v / 2**20:.2f} MiB ({len(sizes[k])} calls)" for k, v in largest.items())
        passed = len(largest) == 2 and max(largest.values()) <= 2**20
        print(json.dumps({"measured": measured or "no write calls seen", "passed": passed}))
        """),
    Property(
        "float32_conversion_imports",
        "modules a float32 `tf2pt --no-validate` imports, of those it does without (NumPy and "
        "google_crc32c where the compiled kernels hash in hardware; traceback, concurrent.futures, "
        "logging always)",
        "none",
        """
        import sys
        from pathlib import Path
        from bertconv.cli import main
        from bertconv.native import hardware_crc32c
        unwanted = ["traceback", "concurrent.futures", "logging"]
        if hardware_crc32c():
            unwanted += ["numpy", "google_crc32c"]
        rc = main(["tf2pt", FIXTURE, str(Path(WORK) / "out"), "--no-validate", "-q"])
        if rc != 0:
            raise SystemExit(f"tf2pt exited {rc}")
        loaded = [m for m in unwanted if m in sys.modules]
        print(json.dumps({"measured": ", ".join(loaded) or f"none of {len(unwanted)} "
                          f"({len(sys.modules)} modules loaded in all)", "passed": not loaded}))
        """),
    Property(
        "torch_import_collections",
        "garbage collections while `import_torch()` imports torch (a plain `import torch` for comparison)",
        "0",
        """
        import gc, subprocess, sys
        plain = subprocess.run([sys.executable, "-c", "import gc, sys; seen = []; "
                                "gc.callbacks.append(lambda phase, info: phase == 'start' and seen.append(1)); "
                                "import torch; print(len(seen))"], capture_output=True, text=True)
        from bertconv.torch_import import import_torch
        seen = []
        gc.callbacks.append(lambda phase, info: phase == "start" and seen.append(1))
        import_torch()
        gc.callbacks.clear()
        compared = f"; plain import: {plain.stdout.strip()}" if plain.returncode == 0 else ""
        print(json.dumps({"measured": f"{len(seen)}{compared}", "passed": not seen}))
        """),
    Property(
        "console_script_freezes_torch",
        "objects moved out of the collector's reach once the console script (`bertconv.cli:run`) "
        "has imported torch",
        "> 50,000",
        """
        import gc
        from bertconv import cli, torch_import

        def command():
            torch_import.import_torch()
            frozen.append(gc.get_freeze_count())
            return 0

        frozen = []
        cli.main = command
        cli.run()
        print(json.dumps({"measured": f"{frozen[0]:,}", "passed": frozen[0] > 50_000}))
        """),
    Property(
        "side_files_after_weights",
        "what the tf2pt output directory holds when the thread writing config.json and the "
        "tokenizer files starts",
        "model.safetensors only",
        """
        from pathlib import Path
        import bertconv.conversion as conversion
        seen = []
        write_side_files = conversion.write_side_files

        def recording(directory, *args):
            seen.append(sorted(p.name for p in Path(directory).iterdir()))
            return write_side_files(directory, *args)

        conversion.write_side_files = recording
        conversion.convert(FIXTURE, Path(WORK) / "out", validate=False)
        print(json.dumps({"measured": ", ".join(seen[0]) if seen else "the thread never started",
                          "passed": seen == [["model.safetensors"]]}))
        """),
    Property(
        "index_crc32c_route",
        "the CRC-32C the TF index reader uses (sstable.crc32c)",
        "the compiled kernel where the CPU hashes in hardware",
        """
        import google_crc32c
        from bertconv.formats import sstable
        from bertconv.native import hardware_crc32c
        sstable.crc32c(b"x")
        kernel = sstable._EXTEND is not google_crc32c.extend
        measured = ("compiled kernel" if kernel else "google-crc32c") + (
            " (CRC instruction present)" if hardware_crc32c() else " (no CRC instruction or no kernels)")
        print(json.dumps({"measured": measured, "passed": kernel == hardware_crc32c()}))
        """),
]


@dataclass
class Outcome:
    key: str
    description: str
    threshold: str
    measured: str
    passed: bool | None  # None: not measured


def check(prop: Property, python: str, timeout: float = 300) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="bertconv-property-") as work:
        code = f"import json\nWORK = {work!r}\nFIXTURE = {str(FIXTURE)!r}\n" + textwrap.dedent(prop.code)
        try:
            done = subprocess.run([python, "-c", code], cwd=REPO_DIR, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return Outcome(prop.key, prop.description, prop.threshold, f"not measured: timed out after {timeout:.0f} s",
                           None)
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
        return Outcome(prop.key, prop.description, prop.threshold, str(result["measured"]), bool(result["passed"]))
    except (IndexError, ValueError, KeyError):
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}, no result"])[-1]
        return Outcome(prop.key, prop.description, prop.threshold, f"not measured: {why}", None)


def check_all(python: str = sys.executable) -> list[Outcome]:
    return [check(prop, python) for prop in PROPERTIES]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    parser.add_argument("--python", default=sys.executable, help="the interpreter with bertconv installed")
    args = parser.parse_args(argv)
    outcomes = check_all(args.python)
    if args.json:
        print(json.dumps([asdict(o) for o in outcomes], indent=2))
    else:
        for o in outcomes:
            verdict = {True: "pass", False: "FAIL", None: "not measured"}[o.passed]
            print(f"{verdict:>12}  {o.key}: {o.measured} (threshold: {o.threshold})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
