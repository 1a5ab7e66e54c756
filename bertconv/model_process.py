"""The converted model run in a process of its own, started before the work that precedes the run.

Most of the console script's check is torch's import (docs/performance.md): Python-level work that
holds a core, and the GIL, for its whole length, so a thread importing it would stall the
conversion and the float64 reference rather than run beside them. A child process imports it on
the other core while this one converts and computes the reference; it then loads the file just
written, runs the model and sends back only the named outputs and the run's facts.

Only the console script starts one (:data:`enabled`, set by :func:`bertconv.cli.run`): a program
calling the API imports torch once and keeps it, where a child per call would import it every
time. Where torch is already imported the model runs in this process. A batch's worker keeps one
child for all its conversions (:func:`keep`): its first conversion runs while the child imports,
instead of every worker waiting for torch before its first byte.

The messages are a JSON line followed by the raw bytes of each array it lists, with dtype and
shape in the JSON: nothing is unpickled, not even what our own child sends.
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator

if TYPE_CHECKING:
    import numpy as np

from . import errors

#: Set by the console script, whose process runs one command and ends.
enabled = False

#: the dtypes an array in a message may have: the inputs' integers and the outputs' floats
_ARRAY_DTYPES = {"<i8", "<i4", "<f8", "<f4", "|b1"}


class RunnerProcessFailed(RuntimeError):
    """The child ended or failed in a way that is not one of bertconv's errors (a bug, a crash)."""


#: The child this process keeps for all its checks (:func:`keep`), if any.
_kept: "RunnerProcess | None" = None
#: A child started ahead of the one check this command runs (:func:`start_ahead`), if any.
_ahead: "RunnerProcess | None" = None


def wanted() -> bool:
    """Whether a check about to run should start a child for its model."""
    return enabled and "torch" not in sys.modules


def keep() -> None:
    """Start a child now and keep it for every check this process runs (a batch's worker, which
    converts one checkpoint after another): torch is imported once, beside the first conversion."""
    global _kept
    if "torch" not in sys.modules and (_kept is None or not _kept.alive()):
        _kept = RunnerProcess()


def end_kept() -> None:
    """End the kept child at once (its process is done with checks; it may still be importing)."""
    global _kept
    if _kept is not None:
        _kept.close(at_once=True)
        _kept = None


def start_ahead() -> None:
    """Start the child for the check this command is about to run now, before the imports and the
    reading that come first: torch's import is the check's critical path."""
    global _ahead
    if _ahead is None and wanted():
        _ahead = RunnerProcess()


def discard_ahead() -> None:
    """End a child started ahead that no check took (the command failed first)."""
    global _ahead
    if _ahead is not None:
        _ahead.close(at_once=True)
        _ahead = None


@contextlib.contextmanager
def for_check() -> "Iterator[RunnerProcess | None]":
    """The child a check runs its model in: the kept one, the one started ahead or a new one for
    this check alone (closed after it), or None where the model runs in this process."""
    global _ahead
    if _ahead is not None:
        process, _ahead = _ahead, None
        with process:
            yield process
        return
    if _kept is not None:
        keep()  # again, if the kept one ended since (a crash, a kill)
        try:
            yield _kept
        finally:
            _kept.forget_pending()
        return
    if not wanted():
        yield None
        return
    with RunnerProcess() as process:
        yield process


def send(stream: BinaryIO, header: dict[str, Any], arrays: "dict[str, np.ndarray] | None" = None) -> None:
    import numpy as np

    arrays = {name: np.ascontiguousarray(array) for name, array in (arrays or {}).items()}
    header = {**header, "arrays": [{"name": name, "dtype": array.dtype.str, "shape": list(array.shape)}
                                   for name, array in arrays.items()]}
    stream.write(json.dumps(header).encode("utf-8") + b"\n")
    for array in arrays.values():
        stream.write(memoryview(array.reshape(-1).view(np.uint8)))
    stream.flush()


def receive(stream: BinaryIO) -> "tuple[dict[str, Any], dict[str, np.ndarray]]":
    import numpy as np

    line = stream.readline()
    if not line:
        raise EOFError("the other end closed the channel")
    header = json.loads(line)
    arrays = {}
    for entry in header.pop("arrays"):
        dtype = np.dtype(entry["dtype"])
        if dtype.str not in _ARRAY_DTYPES:
            raise RunnerProcessFailed(f"unexpected dtype {entry['dtype']!r} in a message")
        shape = tuple(int(n) for n in entry["shape"])
        size = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        data = bytearray(size)  # writable, as arrays handed to torch must be
        if stream.readinto(data) != size:
            raise EOFError("the other end closed the channel mid-message")
        arrays[entry["name"]] = np.frombuffer(data, dtype=dtype).reshape(shape)
    return header, arrays


class RunnerProcess:
    """A child process that imports torch at once and then runs converted models on request."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[1])
        environment = dict(os.environ)
        # the child imports this very bertconv, wherever the parent found it
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, environment.get("PYTHONPATH")) if p)
        self._process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, env=environment)
        self._when_busy: list[Callable[[], None]] = []
        self._ready = False  # torch imported: the child said so

    def alive(self) -> bool:
        return self._process.poll() is None and not self._process.stdin.closed

    def importing(self) -> bool:
        """Whether the child is still importing torch (it says when it is done; nothing else is on
        its channel between jobs, so a look without waiting can only find that)."""
        if not self._ready and self.alive() and os.name == "posix":  # select() takes no pipe on Windows
            readable, _, _ = select.select([self._process.stdout], [], [], 0)
            if readable:
                try:
                    self._take_ready()
                except EOFError:
                    return True  # it ended before torch was in: the job sent to it will say so
        return not self._ready

    def _take_ready(self) -> None:
        header, _ = receive(self._process.stdout)
        if not header.get("ready"):
            raise RunnerProcessFailed(f"the model's process sent {header!r} before any job")
        self._ready = True

    def forget_pending(self) -> None:
        """Drop work left for a job that was never sent (the check did not get that far)."""
        self._when_busy.clear()

    def when_busy(self, work: Callable[[], None]) -> None:
        """Call ``work`` (which should return at once, e.g. by starting a thread) as soon as a job is
        sent: from then on this process only waits, and the model's process holds its own core."""
        self._when_busy.append(work)

    def run(self, converted: Path, dtype_name: str, device: str, *, with_transformers: bool,
            architecture: str, inputs: "dict[str, np.ndarray]") -> "tuple[dict[str, np.ndarray], dict[str, Any], str]":
        """The model's named outputs (float64), the run's facts and the device it ran on."""
        import numpy as np

        job = {"converted": str(converted), "dtype": dtype_name, "device": device,
               "with_transformers": with_transformers, "architecture": architecture}
        try:
            send(self._process.stdin, job, {k: np.asarray(v) for k, v in inputs.items()})
            while self._when_busy:
                self._when_busy.pop(0)()
            if not self._ready:
                self._take_ready()
            reply, arrays = receive(self._process.stdout)
        except (EOFError, BrokenPipeError):
            code = self._process.wait()
            raise RunnerProcessFailed(f"the process running the converted model ended (exit code {code})") from None
        except BaseException:
            # a job sent and its reply not read: the next job would read this one's reply
            self.close(at_once=True)
            raise
        if "error" in reply:
            raise _error_from(reply["error"])
        return {name: np.asarray(a, dtype=np.float64) for name, a in arrays.items()}, reply["facts"], reply["device"]

    def close(self, *, at_once: bool = False) -> None:
        """End the child: it exits when its input closes, or at once (``at_once``: the work it was
        started for failed or was stopped, and it may still be importing torch)."""
        process = self._process
        if process.poll() is None:
            try:
                process.stdin.close()
            except OSError:
                pass
            try:
                process.wait(timeout=0 if at_once else 5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()

    def __enter__(self) -> "RunnerProcess":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close(at_once=exc_type is not None)


def _error_from(error: dict[str, Any]) -> Exception:
    cls = getattr(errors, error.get("type", ""), None)
    if isinstance(cls, type) and issubclass(cls, errors.BertconvError):
        return cls(error["message"], path=error.get("path"), tensor=error.get("tensor"),
                   hint=error.get("hint"), cli_hint=error.get("cli_hint"))
    return RunnerProcessFailed(f"running the converted model failed: {error.get('message')}\n"
                               f"{error.get('traceback', '')}".rstrip())


def _describe_error(e: BaseException) -> dict[str, Any]:
    if isinstance(e, errors.BertconvError):
        return {"type": type(e).__name__, "message": e.message, "path": e.path, "tensor": e.tensor,
                "hint": e.hint, "cli_hint": e.cli_hint}
    import traceback

    return {"type": "internal", "message": f"{type(e).__name__}: {e}",
            "traceback": "".join(traceback.format_exception(e))}


def _serve(channel_in: BinaryIO, channel_out: BinaryIO) -> None:
    from .converted import describe_converted, family_of
    from .torch_import import import_torch
    from .validation.runners import resolve_device, run_one

    import_torch()
    send(channel_out, {"ready": True})
    while True:
        try:
            job, inputs = receive(channel_in)
        except EOFError:
            return
        try:
            device = resolve_device(job["device"])
            converted = Path(job["converted"])
            _, config_dict, architecture = describe_converted(converted)
            outputs, facts = run_one(converted, job["dtype"], device, with_transformers=job["with_transformers"],
                                     architecture=job["architecture"], family=family_of(config_dict, architecture),
                                     inputs=inputs)
            if facts["memory_measure"] == "process peak RSS":
                facts["memory_measure"] = "peak RSS of the model's own process"
            send(channel_out, {"facts": facts, "device": str(device)}, outputs)
        except Exception as e:  # every failure goes back to the parent, which reports it
            send(channel_out, {"error": _describe_error(e)})


def main() -> None:
    # The parent reports interruptions; a Ctrl-C reaching the whole process group is its to handle,
    # and this process ends when the parent closes its input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from . import torch_import

    torch_import.freeze_after_import = True
    # the messages own the original standard output; anything a library prints goes to stderr
    channel_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        _serve(sys.stdin.buffer, channel_out)
        channel_out.flush()
    except BrokenPipeError:
        pass  # the parent has ended, or needs no model run after all: nobody is left to tell
    # nothing to tear down that the exit would not: skip the interpreter's collection over torch
    os._exit(0)


if __name__ == "__main__":
    main()
