"""Where the time and memory of ``tf2pt``'s default check go, phase by phase, in one process.

The check that ``tf2pt`` runs on what it has just written (``bertconv.validation.quick_check``) is
taken apart into the steps it performs, each timed with ``time.perf_counter`` and measured three
ways: the process's resident set after it (``VmRSS``), its own peak (``VmHWM``, reset before each
step through ``/proc/self/clear_refs``) and, for the float64 reference, the peak of the allocations
Python and NumPy report (``tracemalloc``: the float64 weight copies and activations, not torch's).

    python bench/validation_breakdown.py bench/work/bert-base            # one run, a table
    python bench/validation_breakdown.py bench/work/bert-base --json     # the same as JSON
    python bench/validation_breakdown.py bench/work/bert-base --before /tmp/old --rounds 5

The revision measured is whichever ``bertconv`` is imported (``PYTHONPATH``); with ``--before``
and ``--rounds`` the script runs itself in fresh interpreters (``python -P``, so ``PYTHONPATH``
decides), an older checkout and this one in turn, and prints the medians. Linux only (``/proc``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

MB = 1e6


def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    # "5" resets the peak resident set size (VmHWM) to the current one (Linux 4.0 and later)
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")


class Phases:
    def __init__(self):
        self.rows: list[dict] = []

    def run(self, name: str, function, *, traced: bool = False):
        _reset_peak()
        before = _status("VmRSS")
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        value = function()
        seconds = time.perf_counter() - started
        traced_peak = None
        if traced:
            traced_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        after, peak = _status("VmRSS"), _status("VmHWM")
        self.rows.append({"phase": name, "seconds": seconds, "rss_before_mb": before / MB,
                          "rss_after_mb": after / MB, "peak_rss_mb": peak / MB,
                          "peak_over_start_mb": (peak - before) / MB,
                          "traced_peak_mb": None if traced_peak is None else traced_peak / MB})
        return value


def measure(checkpoint: Path, scratch: Path) -> list[dict]:
    """``convert`` with its default check, each step of it wrapped where it is looked up (the same
    names at every revision since the check took this shape), and the rest as "other"."""
    import bertconv.conversion as conversion
    import bertconv.validation as validation

    phases = Phases()

    def wrap(module, attribute: str, label: str, traced: bool = False) -> None:
        original = getattr(module, attribute)

        def timed(*args, **kwargs):
            return phases.run(label, lambda: original(*args, **kwargs), traced=traced)
        setattr(module, attribute, timed)

    wrap(conversion, "write_weights", "write the weights (the conversion proper)")
    wrap(validation, "compute_reference", "float64 reference", traced=True)
    wrap(validation, "compare_outputs", "compare every output")
    resolve_device = validation.resolve_device

    def first_device(*args, **kwargs):
        # torch is imported here, and bertconv.runtime (which imports it) only after
        device = phases.run("import torch (first use of a device)", lambda: resolve_device(*args, **kwargs))
        validation.resolve_device = resolve_device
        import bertconv.runtime as runtime
        wrap(runtime, "load_model", "load the float32 model under test")
        wrap(runtime, "run_outputs", "its forward pass")
        return device
    validation.resolve_device = first_device
    started = time.perf_counter()
    _reset_peak()
    report = conversion.convert(checkpoint, scratch / "converted", overwrite=True)
    total = time.perf_counter() - started
    check = report.validation
    accounted = sum(r["seconds"] for r in phases.rows)
    phases.rows.append({"phase": "other (planning, side files, config, inputs, report)",
                        "seconds": total - accounted, "rss_before_mb": None, "rss_after_mb": None,
                        "peak_rss_mb": None, "peak_over_start_mb": None, "traced_peak_mb": None})
    phases.rows.append({"phase": f"convert + check in process ({check.inputs['batch']}x{check.inputs['seq_len']} "
                                 "tokens)", "seconds": total, "rss_before_mb": None,
                        "rss_after_mb": _status("VmRSS") / MB,
                        "peak_rss_mb": max(r["peak_rss_mb"] for r in phases.rows if r["peak_rss_mb"]),
                        "peak_over_start_mb": None, "traced_peak_mb": None})
    return phases.rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--before", type=Path, help="another checkout's root, measured beside this one")
    parser.add_argument("--rounds", type=int, default=0,
                        help="run each revision this many times, each in a fresh interpreter, in turn; medians")
    args = parser.parse_args(argv)
    if args.rounds:
        return _rounds(args)
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent / "work") as scratch:
        rows = measure(args.checkpoint.resolve(), Path(scratch))
    import bertconv
    if args.json:
        print(json.dumps({"bertconv": bertconv.__file__, "rows": rows}))
        return 0
    print(f"bertconv: {bertconv.__file__}")
    print(_table(rows))
    return 0


def _table(rows: list[dict]) -> str:
    def cell(value) -> str:
        return "" if value is None else f"{value:.0f}"
    lines = [f"{'phase':52} {'s':>6} {'RSS after':>10} {'peak':>8} {'peak+':>8} {'traced':>8}"]
    for r in rows:
        lines.append(f"{r['phase'][:52]:52} {r['seconds']:6.3f} {cell(r['rss_after_mb']):>10} "
                     f"{cell(r['peak_rss_mb']):>8} {cell(r['peak_over_start_mb']):>8} {cell(r['traced_peak_mb']):>8}")
    return "\n".join(lines)


def _rounds(args) -> int:
    """Fresh interpreters, the revisions in turn (their order alternating), medians per phase."""
    import os
    import statistics
    import subprocess

    here = Path(__file__).resolve()
    revisions = {"after": here.parent.parent}
    if args.before is not None:
        revisions = {"before": args.before.resolve(), **revisions}
    runs: dict[str, list[list[dict]]] = {r: [] for r in revisions}
    for round_number in range(args.rounds):
        order = list(revisions) if round_number % 2 == 0 else list(reversed(revisions))
        for revision in order:
            env = {**os.environ, "PYTHONPATH": str(revisions[revision])}
            done = subprocess.run([sys.executable, "-P", str(here), str(args.checkpoint.resolve()), "--json"],
                                  capture_output=True, text=True, env=env, cwd=revisions[revision], check=True)
            runs[revision].append(json.loads(done.stdout.strip().splitlines()[-1])["rows"])
    medians = {}
    for revision, rounds in runs.items():
        rows = []
        for i, first in enumerate(rounds[0]):
            row = dict(first)
            for key in ("seconds", "rss_after_mb", "peak_rss_mb", "peak_over_start_mb", "traced_peak_mb"):
                values = [r[i][key] for r in rounds if r[i][key] is not None]
                row[key] = statistics.median(values) if values else None
            rows.append(row)
        medians[revision] = rows
    if args.json:
        print(json.dumps({"revisions": {k: str(v) for k, v in revisions.items()}, "rounds": args.rounds,
                          "medians": medians, "runs": runs}))
        return 0
    for revision, rows in medians.items():
        print(f"{revision} ({revisions[revision]}), medians of {args.rounds} interleaved runs")
        print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
