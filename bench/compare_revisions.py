"""Two revisions of bertconv side by side: the same commands, interleaved (ABBA...), each under GNU
``/usr/bin/time``, so that a change of shape can be shown not to cost speed or memory.

    python3 bench/compare_revisions.py --before OLD/.venv/bin/bertconv --after NEW/.venv/bin/bertconv

Each revision needs its own environment (a checkout of it, ``pip install -e .`` into its own
.venv). The checkpoints are bench/work's (``bench/make_checkpoints.py``; run bench/run.py once
first). Prints a markdown table of medians and ranges: wall seconds, CPU seconds (user + system,
which load from elsewhere on the machine disturbs less than wall time) and peak RSS. Standard
library only.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / "work"


def commands(bertconv: str, out: Path) -> dict[str, list[str]]:
    base, large = WORK / "bert-base", WORK / "bert-large"
    return {
        "`--version` (start-up)": [bertconv, "--version"],
        "tf2pt Base --no-validate": [bertconv, "tf2pt", str(base), str(out / "base"), "--no-validate", "--overwrite",
                                     "-q"],
        "tf2pt Large --no-validate": [bertconv, "tf2pt", str(large), str(out / "large"), "--no-validate",
                                      "--overwrite", "-q"],
        "tf2pt Base, default validation": [bertconv, "tf2pt", str(base), str(out / "validated"), "--overwrite", "-q"],
        "inspect Large": [bertconv, "inspect", str(large)],
        "validate Base 2x128, CPU": [bertconv, "validate", str(out / "input"), "--against", str(base), "--batch", "2",
                                     "--seq-len", "128", "--device", "cpu"],
        "pt2tf Base": [bertconv, "pt2tf", str(out / "input"), str(out / "back"), "--overwrite", "-q"],
    }


def timed(command: list[str]) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", *command], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr}")
    user, system, peak_kb = done.stderr.strip().splitlines()[-1].split()
    return {"wall": wall, "cpu": float(user) + float(system), "rss": int(peak_kb) * 1024 / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the earlier revision's bertconv executable")
    parser.add_argument("--after", required=True, help="the later revision's bertconv executable")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", help="comma-separated commands to time, as the table names them "
                        "(default: all)")
    args = parser.parse_args()
    revisions = {"before": args.before, "after": args.after}
    outs = {name: WORK / "compare" / name for name in revisions}
    for name, bertconv in revisions.items():  # validate's input, made by each revision itself
        outs[name].mkdir(parents=True, exist_ok=True)
        subprocess.run([bertconv, "tf2pt", str(WORK / "bert-base"), str(outs[name] / "input"), "--no-validate",
                        "--overwrite", "-q"], check=True)
    keys = list(commands("x", Path()))
    if args.only:
        wanted = [k.strip() for k in args.only.split(",")]
        unknown = [k for k in wanted if k not in keys]
        if unknown:
            sys.exit(f"compare_revisions.py: no command {unknown[0]!r}; the commands are: {', '.join(keys)}")
        keys = [k for k in keys if k in wanted]
    runs = {name: {key: [] for key in keys} for name in revisions}
    for round_ in range(args.rounds):
        for key in keys:
            order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
            for name in order:
                subprocess.run(["sync"], check=False)
                runs[name][key].append(timed(commands(revisions[name], outs[name])[key]))
    load = os.getloadavg()
    print(f"{args.rounds} interleaved rounds; load average (1, 5, 15 min) at the end: "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| command | wall s before | wall s after | CPU s before | CPU s after | peak RSS MB before | after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")

    def cell(samples, field):
        values = [s[field] for s in samples]
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    for key in keys:
        b, a = runs["before"][key], runs["after"][key]
        print(f"| {key} | {cell(b, 'wall')} | {cell(a, 'wall')} | {cell(b, 'cpu')} | {cell(a, 'cpu')} | "
              f"{max(s['rss'] for s in b):.0f} | {max(s['rss'] for s in a):.0f} |")


if __name__ == "__main__":
    main()
