"""Benchmark bertconv against the usual tools, side by side, and write docs/benchmarks.md.

Every command runs under GNU ``/usr/bin/time -v`` (peak RSS of the whole process) and is timed
wall-clock. The cases are interleaved: each round runs every case once, so a burst of load on a shared
machine falls on all of them alike and the ratios stay fair. The page cache is warmed first, so
every case reads the checkpoint from memory.

    python3 bench/run.py              # full run: Base and Large, 3 rounds, writes docs/benchmarks.md
    python3 bench/run.py --quick      # smoke run: Base only, 1 round, writes bench/work/benchmarks-quick.md

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import properties

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / "work"
GNU_TIME = "/usr/bin/time"
CHECKPOINT_DATA = "bert_model.ckpt.data-00000-of-00001"

#: The transformers 4.x baseline, pinned to what is known to run its TF converter. transformers 5
#: dropped TensorFlow checkpoint loading, and 4.46.3 still ships the BERT conversion script.
#: torch is pinned because an unpinned torch would pull a multi-GB CUDA build.
HF4_REQUIREMENTS = ("torch==2.13.0", "transformers==4.46.3", "tensorflow-cpu==2.21.0")
HF4_CONVERTER_MODULE = "transformers.models.bert.convert_bert_original_tf_checkpoint_to_pytorch"

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


# ---------------------------------------------------------------------------------- the plan


def build_cases(checkpoints: dict[str, Path], bertconv: str, tf_python: str, hf4_python: str | None,
                out: Path) -> tuple[list[Case], dict[str, str]]:
    """The cases to time, and the reason for any case that cannot run at all."""
    cases, unavailable = [], {}
    base = checkpoints["base"]
    large = checkpoints.get("large")
    listed = large if large is not None else base
    listed_size = "Large" if large is not None else "Base"

    def cp_case(size, directory):
        target = out / f"cp-{size}.data"
        return Case(f"cp_{size}", f"`cp` of the {size.capitalize()} `.data` file",
                    ["cp", str(directory / CHECKPOINT_DATA), str(target)], clean=[target], produces=[target])

    def tf2pt_case(key, label, directory, extra):
        target = out / key
        return Case(key, label, [bertconv, "tf2pt", str(directory), str(target), *extra, "--overwrite", "-q"],
                    clean=[target], produces=[target / "model.safetensors", target / "config.json"])

    def hf4_case(size, directory):
        target = out / f"hf4-{size}" / "pytorch_model.bin"
        case = Case(f"hf4_{size}", f"transformers 4.46.3 converter, {size.capitalize()}",
                    [hf4_python or "python", "-m", HF4_CONVERTER_MODULE,
                     "--tf_checkpoint_path", str(directory / "bert_model.ckpt"),
                     "--bert_config_file", str(directory / "bert_config.json"),
                     "--pytorch_dump_path", str(target)],
                    clean=[target], produces=[target],
                    prepare=lambda: target.parent.mkdir(parents=True, exist_ok=True))
        if hf4_python is None:
            unavailable[case.key] = "no transformers 4.46.3 environment"
        return case

    # no target: the fixed cost (interpreter start and imports) that every bertconv command pays
    cases.append(Case("startup", "`bertconv --version` (start-up cost only)", [bertconv, "--version"]))
    cases.append(cp_case("base", base))
    if large is not None:
        cases.append(cp_case("large", large))
    cases.append(tf2pt_case("tf2pt_base", "`bertconv tf2pt` Base, `--no-validate`", base, ["--no-validate"]))
    if large is not None:
        cases.append(tf2pt_case("tf2pt_large", "`bertconv tf2pt` Large, `--no-validate`", large, ["--no-validate"]))
    cases.append(tf2pt_case("tf2pt_base_validated", "`bertconv tf2pt` Base, default validation", base, []))
    cases.append(Case("inspect", f"`bertconv inspect` {listed_size}", [bertconv, "inspect", str(listed)]))
    index_only = out / "index-only"

    def prepare_index_only():
        # the same checkpoint with its data file absent (as a Git LFS clone without `git lfs pull`)
        remove(index_only)
        index_only.mkdir(parents=True)
        for name in ("bert_model.ckpt.index", "bert_config.json", "vocab.txt"):
            shutil.copyfile(listed / name, index_only / name)
        return None

    cases.append(Case("inspect_index_only", f"`bertconv inspect` {listed_size}, index only (no data file)",
                      [bertconv, "inspect", str(index_only)], prepare=prepare_index_only))
    cases.append(Case("list_variables", f"`tf.train.list_variables` {listed_size}",
                      [tf_python, "-c", "import sys, tensorflow as tf; "
                       "print(len(tf.train.list_variables(sys.argv[1])))", str(listed / "bert_model.ckpt")]))

    validate_input = out / "validate-input"

    def prepare_validate():
        # made afresh by this bertconv, so a stale output of an older version is never validated
        remove(validate_input)
        done = subprocess.run([bertconv, "tf2pt", str(base), str(validate_input), "--no-validate", "--overwrite",
                               "-q"], capture_output=True, text=True, cwd=REPO_DIR)
        if done.returncode != 0 or not (validate_input / "model.safetensors").exists():
            remove(validate_input)
            return f"its input could not be made (`bertconv tf2pt` exit {done.returncode}): " + error_lines(done.stderr)
        return None

    cases.append(Case("validate", "`bertconv validate` Base, 2x128 tokens, CPU",
                      [bertconv, "validate", str(validate_input), "--against", str(base), "--batch", "2",
                       "--seq-len", "128", "--device", "cpu"], prepare=prepare_validate))
    savedmodel = WORK_DIR / "savedmodel-base"
    savedmodel_tf1 = out / "savedmodel-base-tf1"

    def prepare_savedmodel_tf1():
        # the SavedModel's own weights as a TF1 bundle: converted, then written back by pt2tf
        converted = out / "savedmodel-base-hf"
        for command in ([bertconv, "tf2pt", str(savedmodel), str(converted), "--no-validate", "--overwrite", "-q"],
                        [bertconv, "pt2tf", str(converted), str(savedmodel_tf1), "--overwrite", "-q"]):
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_DIR)
            if done.returncode != 0:
                return f"`{' '.join(command[1:3])}` exit {done.returncode}: " + error_lines(done.stderr)
        return None

    cases.append(tf2pt_case("tf2pt_savedmodel", "`bertconv tf2pt` Base tf-models TF Hub SavedModel, `--no-validate`",
                            savedmodel, ["--no-validate"]))
    cases.append(tf2pt_case("tf2pt_savedmodel_tf1", "`bertconv tf2pt` the same weights as a TF1 bundle, "
                            "`--no-validate`", savedmodel_tf1, ["--no-validate"]))
    cases[-1].prepare = prepare_savedmodel_tf1
    if not (savedmodel / "saved_model.pb").is_file():
        for key in ("tf2pt_savedmodel", "tf2pt_savedmodel_tf1"):
            unavailable[key] = "no Base SavedModel: run bench/make_savedmodel.py in a tf-models-official environment"
    cases.append(hf4_case("base", base))
    if large is not None:
        cases.append(hf4_case("large", large))
    return cases, unavailable


# ---------------------------------------------------------------------------------- targets


@dataclass
class Target:
    description: str
    measured: str
    passed: bool | None  # None: could not be measured


def evaluate_targets(results: dict[str, Result]) -> list[Target]:
    def median(key):
        r = results.get(key)
        return r.median_seconds() if r else None

    def rss(key):
        r = results.get(key)
        return r.peak_rss() if r else None

    def missing(*keys):
        reasons = []
        for key in keys:
            r = results.get(key)
            if r is None:
                reasons.append(f"{key} not run")
            elif r.failure:
                reasons.append(f"{key} failed")
        return "; ".join(reasons)

    targets = []

    def ratio_target(description, numerator, denominator, limit, at_least):
        gap = missing(numerator, denominator)
        if gap:
            targets.append(Target(description, gap, None))
            return
        ratio = median(numerator) / median(denominator)
        passed = ratio >= limit if at_least else ratio <= limit
        targets.append(Target(description, f"{ratio:.2f}x ({median(numerator):.2f} s / {median(denominator):.2f} s)",
                              passed))

    def rss_target(description, key, limit_mb):
        gap = missing(key)
        if gap:
            targets.append(Target(description, gap, None))
            return
        targets.append(Target(description, f"{rss(key) / MB:.0f} MB", rss(key) <= limit_mb * MB))

    def time_target(description, key, limit_s):
        gap = missing(key)
        if gap:
            targets.append(Target(description, gap, None))
            return
        targets.append(Target(description, f"{median(key):.2f} s", median(key) <= limit_s))

    ratio_target("tf2pt Base --no-validate: >= 10x faster than transformers 4.x", "hf4_base", "tf2pt_base", 10, True)
    ratio_target("tf2pt Base --no-validate: <= 2.5x the time of `cp` of its `.data` file", "tf2pt_base", "cp_base",
                 2.5, False)
    rss_target("tf2pt Base --no-validate: peak RSS <= 250 MB", "tf2pt_base", 250)
    ratio_target("tf2pt Large --no-validate: >= 10x faster than transformers 4.x", "hf4_large", "tf2pt_large", 10,
                 True)
    rss_target("tf2pt Large --no-validate: peak RSS <= 300 MB", "tf2pt_large", 300)
    ratio_target("tf2pt Base with default validation: <= 0.5x the transformers 4.x converter's time",
                 "tf2pt_base_validated", "hf4_base", 0.5, False)
    listed = "Large" if "tf2pt_large" in results else "Base (target is on Large)"
    ratio_target(f"inspect {listed}: >= 15x faster than `tf.train.list_variables`", "list_variables", "inspect",
                 15, True)
    rss_target(f"inspect {listed}: peak RSS <= 100 MB", "inspect", 100)
    time_target("validate Base, 2x128 tokens, all heads, CPU: <= 5 s end to end", "validate", 5)
    ratio_target(f"inspect {listed}, index only: no slower than with its data (<= 1.1x, the noise margin)",
                 "inspect_index_only", "inspect", 1.1, False)
    ratio_target("tf2pt of a Base SavedModel: <= 1.2x the same weights as a TF1 bundle", "tf2pt_savedmodel",
                 "tf2pt_savedmodel_tf1", 1.2, False)
    return targets


# ---------------------------------------------------------------------------------- the report


def render_markdown(results: list[Result], targets: list[Target], checked: list[properties.Outcome],
                    info: dict) -> str:
    lines = ["# Benchmarks", "",
             "<!-- Written by bench/run.py; rerun it rather than editing the figures by hand. -->", "",
             f"Measured {info['date']} at revision {info['revision']}, {info['rounds']} round(s)"
             + (" (`--quick`: Base only)" if info["quick"] else "") + ".", ""]
    if info.get("note"):
        lines += [f"**Note:** {info['note']}", ""]
    machine = info["machine"]
    ours, hf4 = info["versions"], info["hf4_versions"]
    lines += ["## Machine", "",
              f"- CPU: {machine['cpu']}, {machine['cores']} usable core(s) ({machine['logical_cpus']} logical)",
              f"- Memory: {machine['memory']}; {machine['system']} {machine['kernel']}; free memory reported to "
              f"the host (virtio-balloon free page reporting): {machine.get('free_page_reporting', '?')}",
              f"- Filesystem of bench/work: {machine['filesystem']}; {machine['cp']}",
              f"- Load average (1, 5, 15 min) before: {info['load_before']}; after: {info['load_after']}",
              f"- bertconv environment: Python {ours.get('python', '?')}, torch {ours.get('torch', '?')}, "
              f"tensorflow-cpu {ours.get('tensorflow-cpu', ours.get('tensorflow', '?'))}, "
              f"safetensors {ours.get('safetensors', '?')}, numpy {ours.get('numpy', '?')}",
              f"- `bertconv --version`: {info.get('bertconv_version') or '?'}",
              f"- Baseline environment ({info['hf4_venv']}): "
              + (f"Python {hf4.get('python', '?')}, transformers {hf4.get('transformers', '?')}, torch "
                 f"{hf4.get('torch', '?')}, tensorflow-cpu {hf4.get('tensorflow-cpu', '?')}, numpy "
                 f"{hf4.get('numpy', '?')}" if hf4 else "unavailable"),
              "",
              "## How it is measured", "",
              "- Each command runs under GNU `/usr/bin/time -v`; peak RSS is its \"Maximum resident set size\" "
              "(the whole process). Wall time is measured around it.",
              "- Rounds are interleaved: every round runs every case once, in the order of the table, so load "
              "from elsewhere falls on all cases alike. Ratios compare medians from the same run.",
              f"- {info['rounds']} timed round(s), after {info['warmup']} untimed warm-up round(s). "
              "The table's peak RSS is the largest of the runs; a range after it means the runs differed.",
              "- The page cache is warmed before the first round: all cases read checkpoints from memory. "
              "Before each run, earlier writes are flushed (`sync`) and then the case's previous output is deleted, untimed.",
              "- Checkpoints are written by `bench/make_checkpoints.py` with TensorFlow's own "
              "`tf.compat.v1.train.Saver`: Google's variable names and sizes (BERT-Base: 440 MB of weights, "
              "BERT-Large: 1345 MB), pretraining heads included, random values.",
              "- MB = 10^6 bytes.", "",
              "## Results", "",
              "| case | median s | min s | max s | peak RSS MB (max over runs) | runs | status |",
              "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for result in results:
        ok = result.ok_runs
        if result.failure:
            status = "FAILED: " + markdown_cell(result.failure)
        else:
            status = "ok"
        if ok and not result.failure:
            seconds = [r.seconds for r in ok]
            rss = [r.peak_rss_bytes / MB for r in ok]
            # a spread in peak RSS means the command did not do the same work each time: show it
            rss_cell = f"{max(rss):.0f}" if max(rss) <= 1.05 * min(rss) + 1 else f"{max(rss):.0f} ({min(rss):.0f}-{max(rss):.0f})"
            cells = [f"{statistics.median(seconds):.2f}", f"{min(seconds):.2f}", f"{max(seconds):.2f}", rss_cell]
        else:
            cells = ["-", "-", "-", "-"]
        lines.append(f"| {result.case.label} | " + " | ".join(cells) + f" | {len(result.runs)} | {status} |")
    lines += ["", "## Targets", "", "| target | measured | result |", "| --- | --- | --- |"]
    for target in targets:
        verdict = {True: "pass", False: "**FAIL**", None: "not measured"}[target.passed]
        lines.append(f"| {target.description} | {markdown_cell(target.measured)} | {verdict} |")
    if checked:
        lines += ["", "## Properties", "",
                  "How the work is done, checked against thresholds by `bench/properties.py` (each in a fresh "
                  "interpreter; `docs/performance.md` says why each exists).", "",
                  "| property | threshold | measured | result |", "| --- | --- | --- | --- |"]
        for outcome in checked:
            verdict = {True: "pass", False: "**FAIL**", None: "not measured"}[outcome.passed]
            lines.append(f"| {markdown_cell(outcome.description)} | {markdown_cell(outcome.threshold)} | "
                         f"{markdown_cell(outcome.measured)} | {verdict} |")
    lines += ["", "## Commands", "", "Paths are relative to the repository root.", "", "```"]
    for result in results:
        lines.append(display_command(result.case.command))
    lines += ["```", "", "## Reproduce", "",
              "From the repository root, with the project's environment in `.venv`. The first run writes the "
              "checkpoints into bench/work (about 30 s, 2 GB of memory) and the baseline's environment "
              "bench/work/venv-hf4 (1-2 minutes); later runs reuse both. `--quick` times Base only, once, and "
              "writes bench/work/benchmarks-quick.md instead of this file.", "", "```",
              "apt-get update && apt-get install -y time   # if /usr/bin/time is missing",
              info["reproduce"], "```", ""]
    return "\n".join(lines)


def markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:400]


def display_command(command: list[str]) -> str:
    shown = []
    for part in command:
        for prefix, short in ((str(REPO_DIR) + "/", ""),):
            if part.startswith(prefix):
                part = short + part[len(prefix):]
        shown.append(part)
    return shlex.join(shown)


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
