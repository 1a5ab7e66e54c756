"""SIGTERM, SIGHUP and SIGINT at seeded moments of a BERT-Base conversion: each run must end with
exit 2 and one line on stderr, and leave nothing beside the output (no temporary, no lock); a run
the signal reached after it finished must have published a complete output. Then SIGKILL at
seeded moments: the next run on that output must remove what the killed run left, say so, and
convert. Figures: docs/robustness.md.

    PYTHONPATH=. .venv/bin/python bench/make_checkpoints.py --sizes base
    PYTHONPATH=. .venv/bin/python bench/signals.py --runs 30 [--checkpoint bench/work/bert-base]

A run's moment is drawn between 0 and the length of an undisturbed conversion (measured first),
so the signals fall on every stage: starting up, planning, writing the weights, the check
before publishing, putting the output in place.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BERTCONV = [sys.executable, "-m", "bertconv.cli"]
#: runs signalled this soon may still be starting the interpreter (see the counts' "before_start")
STARTUP_S = 2.0


def convert(checkpoint: Path, out: Path, extra=()) -> subprocess.Popen:
    return subprocess.Popen([*BERTCONV, "tf2pt", str(checkpoint), str(out), "-q", *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def left_beside(work: Path) -> list[str]:
    return sorted(p.name for p in work.iterdir() if ".bertconv-" in p.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "bench" / "work" / "bert-base")
    parser.add_argument("--runs", type=int, default=30, help="runs per signal")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not (args.checkpoint / "bert_model.ckpt.index").is_file():
        print(f"no checkpoint at {args.checkpoint}: run bench/make_checkpoints.py --sizes base", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    problems: list[str] = []
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bertconv-signals-", dir=ROOT / "bench" / "work") as work:
        work = Path(work)
        started = time.perf_counter()
        first = convert(args.checkpoint, work / "baseline")
        _, err = first.communicate()
        if first.returncode != 0:
            print(f"the undisturbed conversion failed: {err}", file=sys.stderr)
            return 2
        length = time.perf_counter() - started
        shutil.rmtree(work / "baseline")
        figures["undisturbed_s"] = {"seconds": round(length, 2)}
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            name = signal.Signals(signum).name
            seen = {"runs": 0, "stopped": 0, "finished_first": 0, "before_start": 0}
            for _ in range(args.runs):
                out = work / "out"
                delay = rng.uniform(0, length)
                process = convert(args.checkpoint, out)
                time.sleep(delay)
                process.send_signal(signum)
                _, err = process.communicate()
                seen["runs"] += 1
                lines = err.strip().splitlines()
                left = left_beside(work)
                if left:
                    problems.append(f"{name} at {delay:.2f}s left {left}")
                if process.returncode == 0:
                    seen["finished_first"] += 1
                    if not (out / "model.safetensors").is_file():
                        problems.append(f"{name} at {delay:.2f}s: exit 0 without an output")
                elif process.returncode == 2 and len(lines) == 1:
                    seen["stopped"] += 1
                    if out.exists() and not (out / "model.safetensors").is_file():
                        problems.append(f"{name} at {delay:.2f}s: a partial output")
                elif delay < STARTUP_S and not left and not out.exists() and \
                        (process.returncode == -signum or "Fatal Python error" in err):
                    # the interpreter starting or importing, before bertconv's handlers exist:
                    # the signal's default action, with nothing touched yet
                    seen["before_start"] += 1
                else:
                    problems.append(f"{name} at {delay:.2f}s: exit {process.returncode}, stderr {err.strip()[:300]!r}")
                if out.exists():
                    shutil.rmtree(out)
            figures[name] = seen
        killed = {"runs": 0, "left_something": 0, "next_run_cleaned_and_said_so": 0}
        for _ in range(args.runs):
            out = work / "out"
            delay = rng.uniform(0, length)
            process = convert(args.checkpoint, out)
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.communicate()
            killed["runs"] += 1
            left = left_beside(work)
            if out.exists():
                shutil.rmtree(out)  # the killed run had finished: nothing to clean
            if not any(".bertconv-tmp-" in n for n in left):
                continue
            killed["left_something"] += 1
            after = convert(args.checkpoint, out, ("--no-validate", "--json"))
            report, err = after.communicate()
            notes = json.loads(report).get("notes", []) if after.returncode == 0 else []
            if after.returncode != 0 or left_beside(work):
                problems.append(f"after SIGKILL at {delay:.2f}s the next run: exit {after.returncode}, "
                                f"left {left_beside(work)}, {err.strip()[:200]!r}")
            elif any(f"(pid {process.pid})" in n for n in notes):
                killed["next_run_cleaned_and_said_so"] += 1
            else:
                problems.append(f"after SIGKILL at {delay:.2f}s the next run said nothing: {notes}")
            shutil.rmtree(out, ignore_errors=True)
            for name in left_beside(work):  # a lock file alone, left by a kill after the temporary went
                (work / name).unlink()
        figures["SIGKILL"] = killed
    print(json.dumps({"checkpoint": str(args.checkpoint), "seed": args.seed, "figures": figures,
                      "problems": problems}, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
