"""Runs on one target, in real processes: a second run stops with one line naming the first, a
run killed mid-write leaves a temporary that the next run removes, and runs started together
leave one complete conversion whatever order they finish in."""
from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys

import pytest

from bertconv.cli import main

from .conftest import ROOT, fixture_dir

BERTCONV = [sys.executable, "-m", "bertconv.cli"]

#: ``tf2pt`` (or any command) with its output held: the run stops once it holds its target,
#: says so on stdout and goes on when a line arrives on stdin
HOLD_IN_A_COMMAND = """
import contextlib, sys
import bertconv.atomic as atomic

real_atomic_dir = atomic.atomic_dir

@contextlib.contextmanager
def atomic_dir_that_waits(target, **options):
    with real_atomic_dir(target, **options) as tmp:
        print("holding", flush=True)
        sys.stdin.readline()
        yield tmp

atomic.atomic_dir = atomic_dir_that_waits  # before the modules that write import it
from bertconv.cli import main
sys.exit(main(sys.argv[1:]))
"""

#: atomic_dir or atomic_file alone: hold ``dir`` or ``file`` TARGET with a partial output in it
HOLD_WITH_ATOMIC_DIR_OR_FILE = """
import sys
from pathlib import Path
from bertconv.atomic import atomic_dir, atomic_file

kind, target = sys.argv[1], Path(sys.argv[2])
with (atomic_dir if kind == "dir" else atomic_file)(target, overwrite=True) as tmp:
    (tmp / "model.safetensors" if kind == "dir" else tmp).write_bytes(b"partial")
    print("holding", flush=True)
    sys.stdin.readline()
"""


@contextlib.contextmanager
def holding(*args):
    """A process started with ``args`` that holds its target until the block ends, then is let go
    (``.release()``), or killed if it is still alive."""
    process = subprocess.Popen([sys.executable, "-c", *map(str, args)], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.strip() == "holding", f"the holding process exited with {process.wait()}"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def release(process) -> int:
    process.stdin.write("go\n")
    process.stdin.close()
    return process.wait(timeout=300)


def run_cli(capsys, *args):
    rc = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_names_the_holder(err: str, holder) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bertconv: error: "), err
    assert f"another bertconv run (pid {holder.pid}, started " in lines[0], err
    assert "is writing this output (wait for it to finish" in lines[0], err


def test_a_second_run_on_a_held_target_stops_naming_the_first(tmp_path, capsys):
    src = fixture_dir("bert_pretrain")
    out = tmp_path / "out"
    with holding(HOLD_IN_A_COMMAND, "tf2pt", src, out, "-q") as holder:
        for extra in ([], ["--overwrite"]):
            second = subprocess.run([*BERTCONV, "tf2pt", str(src), str(out), "--no-validate", "-q", *extra],
                                    cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert second.returncode == 2, second.stderr
            assert_names_the_holder(second.stderr, holder)
            assert "tf2pt" in second.stderr  # the holder's command line
        assert not out.exists()
        assert release(holder) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary, no lock file
    rc, _, err = run_cli(capsys, "validate", out, "--against", src)
    assert rc == 0, err


def test_pt2tf_and_save_golden_are_held_the_same_way(tmp_path, capsys):
    src = fixture_dir("bert_pretrain")
    converted = tmp_path / "hf"
    assert run_cli(capsys, "tf2pt", src, converted, "--no-validate", "-q")[0] == 0
    back = tmp_path / "back"
    with holding(HOLD_WITH_ATOMIC_DIR_OR_FILE, "dir", back) as holder:
        rc, _, err = run_cli(capsys, "pt2tf", converted, back, "--overwrite")
        assert rc == 2
        assert_names_the_holder(err, holder)
        assert release(holder) == 0
    assert (back / "model.safetensors").read_bytes() == b"partial"  # the holder's output, whole
    golden = tmp_path / "golden.npz"
    with holding(HOLD_WITH_ATOMIC_DIR_OR_FILE, "file", golden) as holder:
        rc, _, err = run_cli(capsys, "validate", converted, "--against", src, "--save-golden", golden,
                             "--overwrite")
        assert rc == 2
        assert_names_the_holder(err, holder)
        assert release(holder) == 0
    assert golden.read_bytes() == b"partial"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back", "golden.npz", "hf"]


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_a_temporary_left_by_a_killed_run_is_removed_by_the_next(kind, tmp_path, capsys):
    src = fixture_dir("bert_pretrain")
    out = tmp_path / ("out" if kind == "dir" else "out.safetensors")
    with holding(HOLD_WITH_ATOMIC_DIR_OR_FILE, kind, out) as holder:
        holder.send_signal(signal.SIGKILL)
        assert holder.wait() == -signal.SIGKILL
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2 and f".{out.name}.bertconv-lock" in left, left  # the lock is no longer held
    assert any(name.startswith(f".{out.name}.bertconv-tmp-") for name in left), left
    assert not out.exists()
    extra = [] if kind == "dir" else ["--format", "safetensors"]
    rc, _, err = run_cli(capsys, "tf2pt", src, out, "--no-validate", "-q", *extra)
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    rc, _, err = run_cli(capsys, "validate", out, "--against", src)
    assert rc == 0, err


def test_runs_started_together_leave_one_complete_conversion(tmp_path, capsys):
    src = fixture_dir("bert_pretrain")
    out = tmp_path / "out"
    plain, overwrite = ["--no-validate", "-q"], ["--no-validate", "-q", "--overwrite"]
    outcomes = []
    for first, second in [(plain, plain), (overwrite, overwrite), (plain, overwrite), (overwrite, plain),
                          (overwrite, overwrite), (plain, plain)]:
        if out.exists() and plain in (first, second):
            shutil.rmtree(out)  # a run without --overwrite is meant to have something to do
        runs = [subprocess.Popen([*BERTCONV, "tf2pt", str(src), str(out), *options], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for options in (first, second)]
        codes = []
        for run, options in zip(runs, (first, second)):
            _, err = run.communicate(timeout=300)
            codes.append(run.returncode)
            if run.returncode == 0:
                outcomes.append("ok")
                continue
            assert run.returncode == 2, err
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("bertconv: error: "), err
            if "another bertconv run (pid " in lines[0]:
                outcomes.append("held")
            else:  # the other run finished first and this one may not replace its output
                assert options is plain and "output already exists" in lines[0], err
                outcomes.append("exists")
        assert 0 in codes, outcomes
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], outcomes
        rc, _, err = run_cli(capsys, "validate", out, "--against", src)
        assert rc == 0, (err, outcomes)


def test_without_file_locks_outputs_are_still_written_and_no_temporary_is_removed(tmp_path, monkeypatch):
    # some FUSE and network filesystems keep no flock locks: nothing can prove a temporary's
    # owner gone there, so none is touched, and the run goes on as it would have without the lock
    import errno
    import fcntl

    from bertconv.atomic import atomic_dir

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    other = tmp_path / ".out.bertconv-tmp-of-another-run"
    other.mkdir()
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "model.safetensors").write_bytes(b"whole")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "out"]


def test_an_empty_output_directory_is_replaced_without_overwrite_and_a_full_one_is_not(tmp_path, capsys):
    src = fixture_dir("bert_pretrain")
    out = tmp_path / "out"
    out.mkdir()
    rc, _, err = run_cli(capsys, "tf2pt", src, out, "--no-validate", "-q")
    assert rc == 0, err
    assert (out / "model.safetensors").is_file()
    rc, _, err = run_cli(capsys, "tf2pt", src, out, "--no-validate", "-q")
    assert rc == 2 and "output already exists" in err and "--overwrite" in err, err
    (tmp_path / "file.safetensors").mkdir()  # empty, but a file is to be written there
    rc, _, err = run_cli(capsys, "tf2pt", src, tmp_path / "file.safetensors", "--format", "safetensors",
                         "--no-validate", "-q")
    assert rc == 2 and "is a directory" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.safetensors", "out"]
