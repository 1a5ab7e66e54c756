"""The cost of the proof: ``tf2pt`` with its default check against ``tf2pt --no-validate``, and
``validate`` alone, on BERT-Base and BERT-Large, for one or two revisions side by side.

Every command runs under GNU ``/usr/bin/time -v`` (peak RSS: the larger of its "Maximum resident
set size", the largest single process's, and the peak of the summed RSS of all the command's processes,
sampled every 5 ms: the console script's check runs its model in a second process; CPU time: its user plus system time; wall time measured around it). Rounds are interleaved: each round runs every case of
every revision once, the revisions' order alternating from round to round, so that whatever else
the machine does falls on all of them alike; figures are medians over the rounds. Before each run,
earlier writes are flushed (``sync``) and the case's previous output removed, untimed. The page
cache is warmed first, and one untimed round compiles every revision's bytecode.

    python bench/validation.py                                   # this checkout, 5 rounds
    python bench/validation.py --before /tmp/old-checkout --rounds 7 --sizes base,large

A revision is a checkout's root, run from there with ``PYTHONPATH`` set to it and
``python -P -m bertconv.cli`` (the console script's own entry, with its garbage-collector measures;
``-P`` so that no other checkout's ``bertconv`` is imported instead). Checkpoints come from
``bench/make_checkpoints.py`` (``bench/work/bert-base``, ``bench/work/bert-large``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / "work"
GNU_TIME = "/usr/bin/time"
MB = 1e6

#: the issue's targets: the default check at most this many times --no-validate's wall time ...
RATIO_LIMIT = 3.0
#: ... under this peak RSS (MB, 10^6 bytes), and validate alone under this many seconds (Base)
RSS_LIMIT_MB = 700
VALIDATE_LIMIT_S = 1.5
#: how often the process tree's resident memory is summed: often enough for a model's load, which
#: holds its peak for tenths of a second, and not so often that the sampling takes a core's share
#: from the command it measures (this machine has two)
SAMPLE_SECONDS = 0.005


def cases(size: str, checkpoint: Path, out: Path) -> list[tuple[str, list[str], Path]]:
    """(key, bertconv arguments, output to remove first) for one checkpoint size."""
    plain, checked = out / f"{size}-no-validate", out / f"{size}-validated"
    return [
        (f"tf2pt_{size}_no_validate", ["tf2pt", str(checkpoint), str(plain), "--no-validate", "--overwrite", "-q"],
         plain),
        (f"tf2pt_{size}", ["tf2pt", str(checkpoint), str(checked), "--overwrite", "-q"], checked),
        # validates the --no-validate output just written by the same revision in this round
        (f"validate_{size}", ["validate", str(plain), "--against", str(checkpoint), "--device", "cpu"], None),
    ]


def time_once(python: str, root: Path, arguments: list[str], remove: Path | None, scratch: Path) -> dict:
    os.sync()
    if remove is not None and remove.exists():
        shutil.rmtree(remove)
    report = scratch / "time.txt"
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    # -P: the revision's bertconv from PYTHONPATH, never the one in the current directory
    process = subprocess.Popen([GNU_TIME, "-v", "-o", str(report), python, "-P", "-m", "bertconv.cli", *arguments],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=root)
    sampler = TreeRssSampler(process.pid)
    sampler.start()
    _, stderr = process.communicate()
    seconds = time.perf_counter() - started
    sampler.stop()
    text = report.read_text(errors="replace")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text))
    largest = int(rss.group(1)) * 1024 / MB if rss else 0.0
    # GNU time's figure is the largest single process's peak; a command whose model runs in a
    # process of its own holds two at once, so the peak counted is the larger of that and the
    # sampled sum over the command's processes
    return {"seconds": seconds, "cpu_seconds": cpu, "rss_mb": max(largest, sampler.peak_mb),
            "largest_process_rss_mb": largest, "tree_rss_mb": sampler.peak_mb,
            "exit": process.returncode, "error": stderr.strip().splitlines()[-1:] if process.returncode else []}


class TreeRssSampler(threading.Thread):
    """The peak, over samples :data:`SAMPLE_SECONDS` apart, of the summed resident set of every process
    below ``root`` (GNU time's own process excluded: it is the root)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak_mb, self._done = root, 0.0, threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            total = sum(_rss_bytes(pid) for pid in _descendants(self.root))
            self.peak_mb = max(self.peak_mb, total / MB)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                continue
            found += children
            stack += children
    return found


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout's root, measured beside this one")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="base,large")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--json", type=Path, default=WORK_DIR / "validation-bench.json")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    revisions = {"after": REPO_DIR}
    if args.before is not None:
        revisions = {"before": args.before.resolve(), "after": REPO_DIR}
    checkpoints = {s: WORK_DIR / f"bert-{s}" for s in sizes}
    for size, path in checkpoints.items():
        if not (path / "bert_config.json").is_file():
            sys.exit(f"validation.py: {path} is missing: python bench/make_checkpoints.py --sizes {size}")
    for path in checkpoints.values():  # warm the page cache
        for file in path.iterdir():
            with open(file, "rb") as f:
                while f.read(1 << 24):
                    pass
    scratch = WORK_DIR / "validation-bench"
    scratch.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[dict]]] = {r: {} for r in revisions}
    for round_number in range(args.rounds + 1):  # round 0: untimed, compiles bytecode
        order = list(revisions) if round_number % 2 == 0 else list(reversed(revisions))
        for size in sizes:
            for revision in order:
                out = scratch / revision
                out.mkdir(exist_ok=True)
                for key, arguments, remove in cases(size, checkpoints[size], out):
                    run = time_once(args.python, revisions[revision], arguments, remove, scratch)
                    if run["exit"] != 0:
                        print(f"{revision} {key}: exit {run['exit']}: {run['error']}", file=sys.stderr)
                    if round_number:
                        results[revision].setdefault(key, []).append(run)
        print(f"round {round_number} of {args.rounds} done", file=sys.stderr)
    summary = {revision: {key: _summarise(runs) for key, runs in by_key.items()}
               for revision, by_key in results.items()}
    args.json.write_text(json.dumps({"revisions": {k: str(v) for k, v in revisions.items()}, "rounds": args.rounds,
                                     "summary": summary, "runs": results}, indent=1))
    print(render(summary, sizes))
    return 0


def _summarise(runs: list[dict]) -> dict:
    ok = [r for r in runs if r["exit"] == 0] or [{"seconds": float("nan"), "cpu_seconds": float("nan"),
                                                  "rss_mb": float("nan")}]
    return {"median_s": statistics.median(r["seconds"] for r in ok), "min_s": min(r["seconds"] for r in ok),
            "median_cpu_s": statistics.median(r["cpu_seconds"] for r in ok),
            "max_s": max(r["seconds"] for r in ok), "peak_rss_mb": max(r["rss_mb"] for r in ok),
            "failed": sum(r["exit"] != 0 for r in runs), "runs": len(runs)}


def render(summary: dict, sizes: list[str]) -> str:
    lines = ["| revision | case | median s | min-max s | median CPU s | peak RSS MB | runs |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for revision, by_key in summary.items():
        for key, s in by_key.items():
            failed = f" ({s['failed']} failed)" if s["failed"] else ""
            lines.append(f"| {revision} | `{key}` | {s['median_s']:.2f} | {s['min_s']:.2f}-{s['max_s']:.2f} | "
                         f"{s['median_cpu_s']:.2f} | {s['peak_rss_mb']:.0f} | {s['runs']}{failed} |")
    lines += ["", "| revision | target | measured | result |", "| --- | --- | --- | --- |"]
    for revision, by_key in summary.items():
        for size in sizes:
            checked, plain = by_key[f"tf2pt_{size}"], by_key[f"tf2pt_{size}_no_validate"]
            ratio = checked["median_s"] / plain["median_s"]
            lines.append(f"| {revision} | {size}: default tf2pt <= {RATIO_LIMIT:g}x tf2pt --no-validate | "
                         f"{ratio:.2f}x ({checked['median_s']:.2f} s / {plain['median_s']:.2f} s) | "
                         f"{'pass' if ratio <= RATIO_LIMIT else 'FAIL'} |")
            lines.append(f"| {revision} | {size}: default tf2pt peak RSS < {RSS_LIMIT_MB} MB | "
                         f"{checked['peak_rss_mb']:.0f} MB | {'pass' if checked['peak_rss_mb'] < RSS_LIMIT_MB else 'FAIL'} |")
        validate = by_key.get("validate_base")
        if validate is not None:
            lines.append(f"| {revision} | base: validate alone < {VALIDATE_LIMIT_S:g} s | {validate['median_s']:.2f} s | "
                         f"{'pass' if validate['median_s'] < VALIDATE_LIMIT_S else 'FAIL'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
