"""``tf2pt RELEASE OUT --all`` with one worker against two, over a folder of 24 small checkpoints laid
out as Google's BERT miniatures are (``uncased_L-{layers}_H-{hidden}_A-{heads}/``, each a release
directory), written with real TensorFlow by ``bench/make_checkpoints.py``'s writer.

The runs alternate (-j 1, -j 2, -j 1, ...), each into a fresh output directory, so that other load
on the machine weighs on both alike; each run is the installed command in a process of its own, as a
user runs it. Prints one line per run (wall time, the CPU time the whole machine spent meanwhile, the
machine's load average when it started) and the medians; the figures go to docs/benchmarks.md.

``--sizes medium``: twelve larger checkpoints (hidden 256 and 512), each as a cased and an uncased
variant, so that the conversions' own work outweighs the workers' start-up. ``--sizes google``: the 24
shapes Google's miniatures have (hidden 128 to 768, 2 to 12 layers, vocabulary 30522: BERT-Tiny to
BERT-Base; 3.1 GB), as a user converting that release holds them.

    python bench/batch.py                      # bench/work/miniatures, 3 rounds
    python bench/batch.py --rounds 5 --jobs 1,2,4
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_checkpoints import COMMON_CONFIG, WORK_DIR, is_complete, write_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAYERS = (2, 4, 6, 8, 10, 12)
#: hidden sizes, vocabulary size and casings of each release
RELEASES = {"tiny": ((64, 128, 192, 256), 4096, ("uncased",)), "medium": ((256, 512), 8192, ("cased", "uncased")),
            # the shapes of Google's 24 miniatures themselves (BERT-Tiny to BERT-Base), their vocabulary's size
            "google": ((128, 256, 512, 768), 30522, ("uncased",))}


def release_configs(sizes: str) -> dict[str, dict]:
    hidden_sizes, vocab_size, casings = RELEASES[sizes]
    configs = {}
    for casing in casings:
        for layers in LAYERS:
            for hidden in hidden_sizes:
                heads = hidden // 64
                configs[f"{casing}_L-{layers}_H-{hidden}_A-{heads}"] = {
                    **COMMON_CONFIG, "vocab_size": vocab_size, "hidden_size": hidden, "num_hidden_layers": layers,
                    "num_attention_heads": heads, "intermediate_size": 4 * hidden}
    return configs


def write_release(directory: Path, sizes: str = "tiny") -> None:
    written: dict[str, Path] = {}
    for seed, (name, config) in enumerate(release_configs(sizes).items()):
        if is_complete(directory / name, config):
            continue
        shape = name.split("_", 1)[1]
        if shape in written:  # the other casing: the same weights (only the name differs here)
            shutil.copytree(written[shape], directory / name, dirs_exist_ok=True)
        else:
            write_checkpoint(directory / name, config, seed)
            written[shape] = directory / name


#: the thread pools of torch and NumPy's BLAS, held to one thread each when asked (--one-thread)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def busy_seconds() -> float:
    """The machine's CPU time so far, all cores, idle and I/O wait left out (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(n) for n in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_once(release: Path, output: Path, jobs: int, *, one_thread: bool = False) -> dict:
    shutil.rmtree(output, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if one_thread:
        env.update({variable: "1" for variable in THREAD_VARIABLES})
    # the previous run's output still in the page cache, being written back: a run that starts
    # with it would be slowed by the kernel's throttling of writers for the previous run's bytes
    os.sync()
    load = os.getloadavg()[0]
    busy_before = busy_seconds()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bertconv", "tf2pt", str(release), str(output), "--all",
                           "-j", str(jobs), "--json"], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"-j {jobs} failed ({done.returncode}): {done.stderr.strip()}")
    report = json.loads(done.stdout)
    # a worker and its models' process beside it, the largest of each (an upper bound of their sum)
    peak = max(item["worker_peak_rss"] for item in report["items"]) + max(
        item.get("model_peak_rss") or 0 for item in report["items"])
    cpu = busy_seconds() - busy_before  # every process's, start-up included (and anything else running)
    return {"jobs": jobs, "seconds": seconds, "cpu_seconds": cpu, "load": load, "converted": len(report["items"]), "worker_peak_rss": peak,
            "per_checkpoint": statistics.median(item["seconds"] for item in report["items"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", choices=sorted(RELEASES), default="tiny")
    parser.add_argument("--release", type=Path, help="default: bench/work/miniatures (tiny) or release-medium")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", default="1,2", help="comma-separated job counts, alternated each round")
    parser.add_argument("--one-thread", action="store_true",
                        help="every worker's torch and BLAS on one thread also where the environment says "
                             "otherwise (a batch sets one thread for each where it says nothing)")
    args = parser.parse_args(argv)
    args.release = args.release or WORK_DIR / {"tiny": "miniatures"}.get(args.sizes, f"release-{args.sizes}")
    write_release(args.release, args.sizes)
    jobs = [int(j) for j in args.jobs.split(",")]
    results: dict[int, list[dict]] = {j: [] for j in jobs}
    for round_number in range(args.rounds):
        for j in jobs:
            result = run_once(args.release, WORK_DIR / f"{args.release.name}-hf-j{j}", j, one_thread=args.one_thread)
            results[j].append(result)
            print(f"round {round_number + 1}: -j {j}: {result['seconds']:.1f} s (machine busy {result['cpu_seconds']:.1f} CPU-s; "
                  f"load average {result['load']:.1f} before) for {result['converted']} "
                  f"checkpoints (median {result['per_checkpoint']:.2f} s each; largest worker "
                  f"{result['worker_peak_rss'] / 2**20:.0f} MiB with its models' process)", flush=True)
    for j in jobs:
        times = [r["seconds"] for r in results[j]]
        print(f"-j {j}: median {statistics.median(times):.1f} s (min {min(times):.1f}, max {max(times):.1f}); "
              f"largest worker {max(r['worker_peak_rss'] for r in results[j]) / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
