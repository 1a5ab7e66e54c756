"""What the model card's SHA-256 of every source file costs a conversion: ``tf2pt`` of a BERT-Base
checkpoint with the digests computed (on their own thread, while the weights stream) against the
same with a stand-in that hashes nothing, alternated in one process so that load weighs on both
alike; and the digests alone, for scale. No check (validate=False): the check's time is the same
in both and would hide the difference. Figures go to docs/benchmarks.md.

    python bench/card_hashing.py [CHECKPOINT_DIR] [--rounds 5]     # default bench/work/bert-base
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bertconv.conversion as conversion  # noqa: E402
from bertconv.model_card import SourceDigests  # noqa: E402


class NoDigests(SourceDigests):
    """The same files, hashed not at all."""

    def _run(self) -> None:
        self._digests = {path: "0" * 64 for path in self.files}


def convert_seconds(source: Path, output: Path, digests_class) -> float:
    shutil.rmtree(output, ignore_errors=True)
    conversion.SourceDigests = digests_class
    started = time.perf_counter()
    conversion.convert(source, output, validate=False)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", type=Path, default=ROOT / "bench" / "work" / "bert-base")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    output = ROOT / "bench" / "work" / "card-hashing-out"
    convert_seconds(args.source, output, SourceDigests)  # warm the page cache and the imports
    times: dict[str, list[float]] = {"with digests": [], "without": []}
    for _ in range(args.rounds):
        times["with digests"].append(convert_seconds(args.source, output, SourceDigests))
        times["without"].append(convert_seconds(args.source, output, NoDigests))
    files = SourceDigests([args.source / name for name in sorted(p.name for p in args.source.iterdir())
                           if not name.endswith(".meta")])
    started = time.perf_counter()
    files.result()
    alone = time.perf_counter() - started
    total = sum(p.stat().st_size for p in files.files)
    shutil.rmtree(output, ignore_errors=True)
    for name, values in times.items():
        print(f"tf2pt {name}: median {statistics.median(values):.2f} s "
              f"({', '.join(f'{v:.2f}' for v in values)})")
    print(f"SHA-256 of the {len(files.files)} source files ({total / 1e6:.0f} MB) alone: {alone:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
