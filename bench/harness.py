"""The measuring half of bench/run.py: what a timed case is, how one run of it is timed (GNU
``/usr/bin/time -v`` for the peak RSS of the whole process, wall-clock around it), and what is
recorded about the machine and the environments. Standard library only."""
from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / "work"
GNU_TIME = "/usr/bin/time"
CHECKPOINT_DATA = "bert_model.ckpt.data-00000-of-00001"

#: The transformers 4.x baseline, pinned to what is known to run its TF converter. transformers 5
#: dropped TensorFlow checkpoint loading, and 4.46.3 still ships the BERT conversion script.
#: torch is pinned because an unpinned torch would pull a multi-GB CUDA build.
HF4_REQUIREMENTS = ("torch==2.13.0", "transformers==4.46.3", "tensorflow-cpu==2.21.0")

MB = 1_000_000  # figures are decimal megabytes, as the targets are

# ------------------------------------------------------------------------------------------ cases


@dataclass
class Case:
    key: str
    label: str
    command: list[str]
    #: paths removed before each run (outputs), so no run pays for deleting the previous one
    clean: list[Path] = field(default_factory=list)
    #: must exist after a successful run (a command exiting 0 without output is a failure)
    produces: list[Path] = field(default_factory=list)
    #: run once, untimed, before the first timed run; returns an error line or None
    prepare: object = None


@dataclass
class Run:
    seconds: float
    peak_rss_bytes: int
    returncode: int
    error: str = ""


@dataclass
class Result:
    case: Case
    runs: list[Run] = field(default_factory=list)
    skipped: str = ""

    @property
    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.returncode == 0 and not r.error]

    @property
    def failure(self) -> str:
        if self.skipped:
            return self.skipped
        bad = [r for r in self.runs if r.returncode != 0 or r.error]
        return bad[0].error if bad else ""

    def median_seconds(self) -> float | None:
        ok = self.ok_runs
        return statistics.median(r.seconds for r in ok) if ok and not self.failure else None

    def peak_rss(self) -> int | None:
        ok = self.ok_runs
        return max(r.peak_rss_bytes for r in ok) if ok and not self.failure else None


# ---------------------------------------------------------------------------------- measurement


def check_gnu_time() -> None:
    install = "install GNU time: apt-get update && apt-get install -y time"
    if not Path(GNU_TIME).is_file():
        sys.exit(f"run.py: {GNU_TIME} is missing; {install}")
    probe = subprocess.run([GNU_TIME, "-v", "true"], capture_output=True, text=True)
    if "Maximum resident set size" not in probe.stderr:
        sys.exit(f"run.py: {GNU_TIME} is not GNU time (no -v report); {install}")


def parse_gnu_time(report: str) -> tuple[int, int | None, str]:
    """(peak RSS in bytes, exit status, signal line) from a ``/usr/bin/time -v`` report."""
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
    status = re.search(r"Exit status: (\d+)", report)
    signal = re.search(r"Command terminated by signal (\d+)", report)
    return (int(rss.group(1)) * 1024 if rss else 0,
            int(status.group(1)) if status else None,
            f"killed by signal {signal.group(1)}" if signal else "")


def error_lines(stderr: str, limit: int = 4) -> str:
    """The lines of stderr that say what went wrong (bertconv's own error line first)."""
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("bertconv:")]
    if ours:
        return " / ".join(ours[-limit:])
    wanted = [line for line in lines if re.search(r"error|Error|Exception|Traceback|FAILED|failed", line)]
    return " / ".join((wanted or lines)[-limit:])


def time_once(case: Case, env: dict, timeout: float, scratch: Path) -> Run:
    # Flush what earlier cases wrote, so no case pays for another's write-back; then remove this
    # case's previous output just before it runs, so that every case starts right after freeing
    # its previous output's pages. Removed first, a case that followed a big write waited out the
    # flush after freeing them, and a virtual machine that hands freed memory back to its host
    # (free page reporting) may have done so by then: writing into memory the host must supply
    # afresh is much slower (docs/performance.md).
    os.sync()
    for path in case.clean:
        remove(path)
    time_report = scratch / f"{case.key}.time"
    stderr_file = scratch / f"{case.key}.stderr"
    start = time.perf_counter()
    with open(stderr_file, "w") as stderr:
        # its own session, so that a timeout ends the measured command too, not only GNU time
        process = subprocess.Popen([GNU_TIME, "-v", "-o", str(time_report), *case.command],
                                   stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=REPO_DIR,
                                   start_new_session=True)
        # A blocking wait, with the time limit on a timer: Popen.wait(timeout=...) polls with
        # sleeps of up to 50 ms, which would add up to 50 ms to every command's time and weigh
        # most on the short ones (start-up, inspect, cp).
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            os.killpg(process.pid, signal.SIGKILL)

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        process.wait()
        seconds = time.perf_counter() - start
        watchdog.cancel()
        if timed_out.is_set():
            return Run(timeout, 0, -1, f"timed out after {timeout:.0f} s")
    report = time_report.read_text(errors="replace") if time_report.exists() else ""
    rss, status, killed = parse_gnu_time(report)
    returncode = process.returncode if status is None else status
    stderr_text = stderr_file.read_text(errors="replace")
    error = ""
    if killed:
        error = f"{killed}: " + error_lines(stderr_text)
    elif returncode != 0:
        error = f"exit {returncode}: " + error_lines(stderr_text)
    else:
        missing = [str(p.relative_to(REPO_DIR)) if p.is_relative_to(REPO_DIR) else str(p)
                   for p in case.produces if not p.exists()]
        if missing:
            error = f"exit 0 but {', '.join(missing)} missing"
    return Run(seconds, rss, returncode, error)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def warm_page_cache(paths: list[Path]) -> None:
    """Read each checkpoint once so that no case pays for the first read from disk."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


# ---------------------------------------------------------------------------- the environment


def ensure_checkpoints(sizes: list[str], tf_python: str) -> dict[str, Path]:
    command = [tf_python, str(BENCH_DIR / "make_checkpoints.py"), "--sizes", ",".join(sizes), "--out", str(WORK_DIR)]
    print("checkpoints: " + shlex.join(command), file=sys.stderr)
    if subprocess.run(command, cwd=REPO_DIR).returncode != 0:
        sys.exit("run.py: could not write the benchmark checkpoints (see above); --tf-python must name a "
                 "Python with tensorflow and numpy")
    return {s: WORK_DIR / f"bert-{s}" for s in sizes}


def ensure_hf4_venv(venv: Path) -> tuple[str | None, str]:
    """The baseline's interpreter, creating the virtual environment if needed; (python, problem)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import transformers, torch, tensorflow; "
             "assert transformers.__version__ == '4.46.3', transformers.__version__"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(python), ""
    print(f"creating {venv} with {' '.join(HF4_REQUIREMENTS)} (a minute or two)", file=sys.stderr)
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *HF4_REQUIREMENTS], check=True)
        checked = subprocess.run(check, capture_output=True, text=True)
        if checked.returncode != 0:
            return None, "transformers 4.46.3 venv does not import: " + error_lines(checked.stderr)
    except (subprocess.CalledProcessError, OSError) as e:
        return None, f"could not build {venv}: {e}"
    return str(python), ""


def package_versions(python: str, packages: list[str]) -> dict[str, str]:
    code = ("import json, importlib.metadata as m\n"
            "out = {}\n"
            f"for p in {packages!r}:\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: out[p] = 'absent'\n"
            "import platform; out['python'] = platform.python_version()\n"
            "print(json.dumps(out))")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def filesystem_of(path: Path) -> str:
    """The type of the filesystem mounted deepest above ``path``, as /proc/mounts names it
    (``stat -f`` cannot tell ext4 from ext2: they share one magic number)."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return first_line(["stat", "-f", "-c", "%T", str(path)])
    resolved, best = path.resolve(), ("", "unknown")
    for point, kind in mounts:
        point = point.replace("\\040", " ")
        if (resolved == Path(point) or Path(point) in resolved.parents) and len(point) >= len(best[0]):
            best = (point, kind)
    return best[1]


def free_page_reporting() -> str:
    """Whether a virtio balloon reports this guest's free memory to its host, which takes it back:
    the next writer then waits for the host to supply fresh pages (docs/performance.md)."""
    for device in Path("/sys/bus/virtio/devices").glob("*"):
        try:
            if (device / "device").read_text().strip() != "0x0005":  # the balloon
                continue
            features = (device / "features").read_text().strip()
        except OSError:
            continue
        return "yes" if len(features) > 5 and features[5] == "1" else "no"  # VIRTIO_BALLOON_F_REPORTING
    return "no (no virtio balloon)"


def machine_description() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f"{kib * 1024 / 1e9:.1f} GB"
    except (OSError, AttributeError):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": usable, "logical_cpus": os.cpu_count(), "memory": memory,
            "kernel": platform.release(), "system": platform.system(),
            # cp's speed depends on both: coreutils 9 copies in the kernel, and a reflink filesystem
            # would not copy at all
            "filesystem": filesystem_of(WORK_DIR), "free_page_reporting": free_page_reporting(),
            "cp": first_line(["cp", "--version"])}


def first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except OSError:
        return "?"
    return (done.stdout.splitlines() or ["?"])[0].strip()


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_DIR)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=REPO_DIR)
        return rev.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except OSError:
        return "?"
