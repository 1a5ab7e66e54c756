"""The damage harness, long: thousands of seeded damaged runs over a fixture of every format
bertconv reads, every command judged by the rule of ``tests/damage_harness.py`` (the suite runs a
few hundred of the same in tests/test_damage.py).

    PYTHONPATH=. .venv/bin/python bench/damage.py --runs 3000 --seed 1 [--json out.json]

Runs in this one process (``bertconv.cli.main``), under an address-space limit (``--memory-gb``):
a length or count field that made a reader allocate what it claims fails the run as a
MemoryError instead of passing unnoticed. Prints the counts by source, damage, command and exit
code, the slowest run and every unclean run; exits 1 if there is one. Figures:
docs/robustness.md.
"""
from __future__ import annotations

import argparse
import collections
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import damage_harness as harness  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory-gb", type=float, default=8.0,
                        help="address-space limit of this process (0: none)")
    parser.add_argument("--json", type=Path, help="write the summary and every unclean run here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bertconv-damage-") as work:
        work = Path(work)
        started = time.perf_counter()
        sources = harness.prepare(work)
        prepared_s = time.perf_counter() - started
        if args.memory_gb:
            limit = int(args.memory_gb * (1 << 30))
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        outcomes = []
        by_source = collections.Counter()
        exits_by_command: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for i, (source, file, kind, command, seed) in enumerate(harness.plan_runs(sources, args.runs, args.seed)):
            outcome = harness.run_one(source, file, kind, command, seed, work / "outputs")
            if outcome is None:
                continue
            outcomes.append(outcome)
            by_source[source.name] += 1
            exits_by_command[command][str(outcome.rc)] += 1
            if not outcome.clean:
                print(f"UNCLEAN {outcome.source} {outcome.file} {outcome.damage} {outcome.command} "
                      f"seed {outcome.seed}: {outcome.problems}", flush=True)
            if (i + 1) % 500 == 0:
                print(f"... {i + 1} runs", file=sys.stderr, flush=True)
        summary = harness.summarise(outcomes)
        summary.update(seed=args.seed, prepare_s=round(prepared_s, 1),
                       peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                       memory_limit_gb=args.memory_gb, runs_by_source=dict(sorted(by_source.items())),
                       exits_by_command={c: dict(sorted(e.items())) for c, e in sorted(exits_by_command.items())})
        slowest = max(outcomes, key=lambda o: o.seconds)
        summary["slowest_run"] = f"{slowest.source} {slowest.file} {slowest.damage} {slowest.command}"
        print(json.dumps(summary, indent=2))
        if args.json:
            args.json.write_text(json.dumps({"summary": summary, "unclean": [
                vars(o) for o in outcomes if not o.clean]}, indent=2, default=str))
    return 1 if summary["unclean"] else 0


if __name__ == "__main__":
    sys.exit(main())
