"""Benchmark bertconv against the usual tools, side by side, and write docs/benchmarks.md.

Every command runs under GNU ``/usr/bin/time -v`` (peak RSS of the whole process) and is timed
wall-clock. The cases are interleaved: each round runs every case once, so a burst of load on a shared
machine falls on all of them alike and the ratios stay fair. The page cache is warmed first, so
every case reads the checkpoint from memory.

    python3 bench/run.py              # full run: Base and Large, 3 rounds, writes docs/benchmarks.md
    python3 bench/run.py --quick      # smoke run: Base only, 1 round, writes bench/work/benchmarks-quick.md

This file is the command line and the order of the work; beside it, harness.py times one run and
describes the machine, cases.py says what is timed and the targets it is held to, report.py writes
the page.

After the timed rounds it checks the properties in bench/properties.py (how the work is done: write
sizes, imports, the garbage collector, thread order) against their thresholds, and records them too.

Needs: the project's virtual environment (.venv, with bertconv and tensorflow-cpu installed), GNU time
(``apt-get update && apt-get install -y time``). The transformers 4.x baseline gets its own virtual
environment, bench/work/venv-hf4, created on first use. Only the standard library is used here, so
any Python 3.10+ runs this script.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import properties
from cases import build_cases, evaluate_targets
from harness import (CHECKPOINT_DATA, MB, REPO_DIR, WORK_DIR, Result, check_gnu_time, ensure_checkpoints,
                     ensure_hf4_venv, git_revision, load_average, machine_description, package_versions, remove,
                     time_once, warm_page_cache)
from report import display_command, render_markdown


# ---------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Base only, 1 round (a smoke run)")
    parser.add_argument("--repeats", type=int, help="rounds of every case (default: 3, or 1 with --quick)")
    parser.add_argument("--bertconv", default=str(REPO_DIR / ".venv" / "bin" / "bertconv"),
                        help="the bertconv executable (default: .venv/bin/bertconv)")
    parser.add_argument("--tf-python", default=str(REPO_DIR / ".venv" / "bin" / "python"),
                        help="a Python with tensorflow, for make_checkpoints.py and tf.train.list_variables")
    parser.add_argument("--hf4-venv", type=Path, default=WORK_DIR / "venv-hf4",
                        help="virtual environment of the transformers 4.46.3 baseline (created if absent)")
    parser.add_argument("--warmup", type=int, default=0,
                        help="untimed rounds before the timed ones (default 0: the median absorbs a slow first run)")
    parser.add_argument("--only", help="comma-separated case keys to run (e.g. cp_base,tf2pt_base); "
                        "`properties` for the property checks, which run by default")
    parser.add_argument("--python", default=str(REPO_DIR / ".venv" / "bin" / "python"),
                        help="the interpreter of bertconv's environment, for the property checks")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per command")
    parser.add_argument("--doc", type=Path, help="where to write the report (default: docs/benchmarks.md, "
                        "or bench/work/benchmarks-quick.md with --quick)")
    parser.add_argument("--keep-outputs", action="store_true", help="keep the converted models in bench/work/out")
    parser.add_argument("--note", help="a line to put at the top of the report (e.g. about machine load)")
    args = parser.parse_args(argv)
    rounds = args.repeats or (1 if args.quick else 3)
    doc = args.doc or (WORK_DIR / "benchmarks-quick.md" if args.quick else REPO_DIR / "docs" / "benchmarks.md")

    check_gnu_time()
    for tool in (args.bertconv, args.tf_python):
        if not Path(tool).exists() and shutil.which(tool) is None:
            sys.exit(f"run.py: {tool} not found (create the project's environment: python3 -m venv .venv && "
                     ".venv/bin/pip install -e '.[dev]')")
    WORK_DIR.mkdir(exist_ok=True)
    out = WORK_DIR / "out"
    scratch = WORK_DIR / "logs"
    out.mkdir(exist_ok=True)
    scratch.mkdir(exist_ok=True)

    sizes = ["base"] if args.quick else ["base", "large"]
    checkpoints = ensure_checkpoints(sizes, args.tf_python)
    hf4_python, hf4_problem = ensure_hf4_venv(args.hf4_venv)
    cases, unavailable = build_cases(checkpoints, args.bertconv, args.tf_python, hf4_python, out)
    if args.only:
        keep = {k.strip() for k in args.only.split(",")}
        cases = [c for c in cases if c.key in keep]
    results = {c.key: Result(c) for c in cases}
    for key, reason in unavailable.items():
        if key in results:
            results[key].skipped = reason + (f": {hf4_problem}" if hf4_problem else "")

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    # Every tool runs from compiled bytecode, as after a normal pip install (pip compiles the
    # packages it installs; an editable install of bertconv is compiled here instead). A shell that
    # sets PYTHONDONTWRITEBYTECODE would otherwise charge bertconv alone its compiling on every run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO_DIR / "bertconv")], check=False)
    info = {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "revision": git_revision(),
            "rounds": rounds, "warmup": args.warmup, "quick": args.quick, "machine": machine_description(), "note": args.note or "",
            "versions": package_versions(args.tf_python, ["torch", "tensorflow-cpu", "tensorflow", "safetensors",
                                                          "numpy", "bertconv"]),
            "hf4_versions": package_versions(hf4_python, ["transformers", "torch", "tensorflow-cpu", "numpy"])
            if hf4_python else {},
            "hf4_venv": display_command([str(args.hf4_venv)]),
            # says whether the compiled kernels were built (bertconv/_kernels.c) and hash in hardware
            "bertconv_version": subprocess.run([args.bertconv, "--version"], capture_output=True, text=True,
                                               env=env).stdout.strip(),
            "reproduce": "python3 bench/run.py" + (" --quick" if args.quick else "")
            + (f" --repeats {rounds}" if args.repeats else "") + (f" --warmup {args.warmup}" if args.warmup else "") + (f" --only {args.only}" if args.only else "")}

    warm_page_cache([d / CHECKPOINT_DATA for d in checkpoints.values()])
    for result in results.values():
        prepare = result.case.prepare
        if prepare is not None and not result.skipped:
            problem = prepare()
            if problem:
                result.skipped = problem

    for _ in range(args.warmup):
        for result in results.values():
            if not result.skipped:
                time_once(result.case, env, args.timeout, scratch)
    info["load_before"] = load_average()
    for round_number in range(1, rounds + 1):
        for result in results.values():
            if result.skipped or result.failure:
                continue  # a failing command fails again; repeating it only costs time
            run = time_once(result.case, env, args.timeout, scratch)
            result.runs.append(run)
            status = "ok" if not run.error else run.error
            print(f"[{round_number}/{rounds}] {result.case.key}: {run.seconds:.2f} s, "
                  f"{run.peak_rss_bytes / MB:.0f} MB, {status}", file=sys.stderr)
    info["load_after"] = load_average()
    if not args.keep_outputs:
        remove(out)  # gigabytes of converted models nobody reads
    checked = []
    if not args.only or "properties" in {k.strip() for k in args.only.split(",")}:
        checked = properties.check_all(args.python)

    targets = evaluate_targets(results)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render_markdown(list(results.values()), targets, checked, info), encoding="utf-8")
    raw = {"info": info, "results": {k: {"label": r.case.label, "command": r.case.command, "failure": r.failure,
                                         "runs": [vars(run) for run in r.runs]} for k, r in results.items()},
           "targets": [vars(t) for t in targets], "properties": [asdict(o) for o in checked]}
    (WORK_DIR / ("results-quick.json" if args.quick else "results.json")).write_text(json.dumps(raw, indent=2))
    print(f"wrote {doc}", file=sys.stderr)
    for target in targets:
        verdict = {True: "pass", False: "FAIL", None: "not measured"}[target.passed]
        print(f"{verdict:>12}  {target.description}: {target.measured}", file=sys.stderr)
    for outcome in checked:
        verdict = {True: "pass", False: "FAIL", None: "not measured"}[outcome.passed]
        print(f"{verdict:>12}  {outcome.key}: {outcome.measured} (threshold: {outcome.threshold})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
