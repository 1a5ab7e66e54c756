"""Signals, in real processes: SIGTERM and SIGHUP end a run as SIGINT does (nothing left beside the
output, exit 2, one line), and after SIGKILL the next run on that output removes what the killed
run left and says so.

Each run is held at a chosen moment by a small script that wraps one of bertconv's own functions
(the weights' writer after its first tensor, the check before publishing, the output's lock) and
waits for a line on stdin; the signal is sent while it waits. No timing is involved: the run is
known to be at that moment when it says so.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from bertconv.cli import main

from .conftest import ROOT, fixture_dir

#: ``bertconv ARGS`` held at STAGE: it prints "holding" there and goes on when a line arrives
HELD_RUN = """
import contextlib, sys, threading
stage, args = sys.argv[1], sys.argv[2:]

def hold():
    print("holding", flush=True)
    sys.stdin.readline()

if stage == "writing":  # the weights' file is partly written (whichever thread wrote first waits)
    from bertconv.formats import safetensors_io
    lock = threading.Lock()
    for method in ("write", "write_bytes"):
        real = getattr(safetensors_io.SafetensorsWriter, method)
        def wrapped(self, *a, _real=real, **k):
            result = _real(self, *a, **k)
            with lock:
                first = not getattr(self, "_held", 0)
                self._held = 1
            if first:
                hold()
            return result
        setattr(safetensors_io.SafetensorsWriter, method, wrapped)
elif stage == "checking":  # the output is written and is being checked before it is published
    import bertconv.validation as validation
    real_check = validation.quick_check
    def quick_check(*a, **k):
        hold()
        return real_check(*a, **k)
    validation.quick_check = quick_check
elif stage == "locked":  # the lock is held and the temporary exists, empty
    import bertconv.atomic as atomic
    real_dir = atomic.atomic_dir
    @contextlib.contextmanager
    def atomic_dir(target, **options):
        with real_dir(target, **options) as tmp:
            hold()
            yield tmp
    atomic.atomic_dir = atomic_dir
elif stage == "bundle":  # pt2tf: the TF bundle's data file is partly written
    from bertconv.formats import tf_bundle_writer
    real_write = tf_bundle_writer.write_tf_bundle
    def write_tf_bundle(prefix, tensors, **k):
        def held_tensors():
            for i, item in enumerate(tensors):
                if i == 2:
                    hold()
                yield item
        return real_write(prefix, held_tensors(), **k)
    tf_bundle_writer.write_tf_bundle = write_tf_bundle
from bertconv.cli import main
sys.exit(main(args))
"""


def held(stage: str, *args, preexec_fn=None) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HELD_RUN, stage, *map(str, args)], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=preexec_fn)
    line = process.stdout.readline()
    if line.strip() != "holding":
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"the run did not reach {stage}: {err}")
    return process


def stop(process: subprocess.Popen, signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, err


def run_cli(capsys, *args):
    rc = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("stage", ["locked", "writing", "checking"])
def test_sigterm_and_sighup_leave_nothing_and_say_so_in_one_line(stage, signum, tmp_path):
    out = tmp_path / "out"
    process = held(stage, "tf2pt", fixture_dir("bert_pretrain"), out, "-q")
    assert any(p.name.startswith(".out.bertconv-tmp-") for p in tmp_path.iterdir())
    rc, err = stop(process, signum)
    name = signal.Signals(signum).name
    assert rc == 2, err
    assert err.strip().splitlines() == [f"bertconv: stopped by {name}"], err
    assert list(tmp_path.iterdir()) == []  # no output, no temporary, no lock


def test_sigint_leaves_nothing_either(tmp_path):
    out = tmp_path / "out"
    process = held("writing", "tf2pt", fixture_dir("bert_pretrain"), out, "-q")
    rc, err = stop(process, signal.SIGINT)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err  # click reports it as "aborted"
    assert list(tmp_path.iterdir()) == []


def test_a_safetensors_file_output_is_cleaned_up_the_same_way(tmp_path):
    out = tmp_path / "model.safetensors"
    process = held("writing", "tf2pt", fixture_dir("bert_pretrain"), out, "--format", "safetensors", "-q")
    rc, err = stop(process, signal.SIGTERM)
    assert rc == 2 and err.strip() == "bertconv: stopped by SIGTERM", err
    assert list(tmp_path.iterdir()) == []


def test_pt2tf_stopped_mid_write_leaves_nothing(tmp_path, capsys):
    converted = tmp_path / "hf"
    assert run_cli(capsys, "tf2pt", fixture_dir("bert_pretrain"), converted, "--no-validate", "-q")[0] == 0
    process = held("bundle", "pt2tf", converted, tmp_path / "back")
    rc, err = stop(process, signal.SIGTERM)
    assert rc == 2 and err.strip() == "bertconv: stopped by SIGTERM", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_after_sigkill_the_next_run_removes_what_the_killed_run_left_and_says_so(tmp_path, capsys):
    src = fixture_dir("bert_pretrain")
    out = tmp_path / "out"
    process = held("writing", "tf2pt", src, out, "-q")
    killed_pid = process.pid
    rc, _ = stop(process, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    left = sorted(p.name for p in tmp_path.iterdir())
    assert ".out.bertconv-lock" in left and any(n.startswith(".out.bertconv-tmp-") for n in left), left
    rc, report, err = run_cli(capsys, "tf2pt", src, out, "--no-validate", "--json")
    assert rc == 0, err
    notes = [n for n in json.loads(report)["notes"] if "killed" in n]
    assert len(notes) == 1 and f"(pid {killed_pid})" in notes[0] and ".out.bertconv-tmp-" in notes[0], notes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    rc, _, err = run_cli(capsys, "validate", out, "--against", src)
    assert rc == 0, err


def test_the_signal_handlers_are_put_back_after_a_command(capsys, tmp_path):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    run_cli(capsys, "inspect", fixture_dir("bert_pretrain"))
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_run_started_with_sighup_ignored_goes_on_through_it(tmp_path):
    """nohup's choice stands: a SIGHUP the process was started ignoring is still ignored."""
    out = tmp_path / "out"
    process = held("writing", "tf2pt", fixture_dir("bert_pretrain"), out, "--no-validate", "-q",
                   preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(input="go\n", timeout=120)
    assert process.returncode == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
