"""``bertconv tf2pt RELEASE_DIR OUT_DIR --all``: every checkpoint under a directory (Google's 24
miniatures side by side, a release's cased and uncased variants, a training directory's steps with
``all_steps``), each converted and checked as ``tf2pt`` converts one, into an output tree that
mirrors the input.

Each conversion runs in a worker process of its own pool (``jobs`` at once), so memory is bounded
by the conversions running at once, and a checkpoint that fails (or a worker that dies) does not
stop the others. A rerun skips an output that is already complete (outputs are published
atomically) and valid: its model card says it passed its check, in the dtype asked, against source
files of the sizes they still have; ``overwrite`` redoes everything.
"""
from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import model_card
from .errors import BertconvError, InputError

_STEP = re.compile(r"^(?P<stem>.+)-(?P<step>\d+)\.index$")


@dataclass
class Checkpoint:
    """One checkpoint found under the release directory."""

    #: what ``convert`` is given: a directory, or a bundle prefix where a directory holds several
    source: str
    #: the output, under the output directory, at the source's place in the tree
    output: str
    #: the source relative to the release directory, for the table
    name: str


@dataclass
class BatchItem:
    name: str
    source: str
    output: str
    #: converted | skipped (already complete and valid) | failed
    status: str
    family: str | None = None
    architecture: str | None = None
    parameters: int | None = None
    #: passed | FAILED | not run, with the worst max abs where it ran
    validation: str | None = None
    seconds: float = 0.0
    #: CPU time of the worker process over this conversion, all its threads together
    cpu_seconds: float = 0.0
    error: str | None = None
    #: the error as the command line words it (options, not arguments)
    error_cli: str | None = None
    #: the worker's peak resident memory when it finished this one (bytes)
    worker_peak_rss: int | None = None
    #: the peak resident memory of the worker's process for its checks' models, which runs beside it
    #: (bytes; None where the model ran in the worker)
    model_peak_rss: int | None = None


@dataclass
class BatchReport:
    source: str
    output: str
    jobs: int
    items: list[BatchItem]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[BatchItem]:
        return [item for item in self.items if item.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = len(self.failed)
        for item in data["items"]:
            item.pop("error_cli")
        return data

    def render(self, *, cli: bool = False) -> str:
        from tabulate import tabulate

        rows = [[item.name, item.family or "", item.architecture or "",
                 f"{item.parameters:,}" if item.parameters is not None else "",
                 item.validation if item.status != "failed" else "FAILED (below)",
                 "skipped: done before" if item.status == "skipped" else f"{item.seconds:.1f} s"]
                for item in self.items]
        lines = [tabulate(rows, headers=["source", "family", "class", "parameters", "validation", "time"],
                          disable_numparse=True), ""]
        for item in self.failed:
            lines.append(f"failed       {item.name}: {(item.error_cli if cli else None) or item.error}")
        counts = {status: sum(item.status == status for item in self.items)
                  for status in ("converted", "skipped", "failed")}
        peak = max((item.worker_peak_rss or 0 for item in self.items), default=0)
        model_peak = max((item.model_peak_rss or 0 for item in self.items), default=0)
        lines.append(f"all          {len(self.items)} checkpoint(s) under {self.source} into {self.output}: "
                     + ", ".join(f"{n} {status}" for status, n in counts.items() if n)
                     + (f"; {self.jobs} at once" if self.jobs else "") + f", {self.seconds:.1f} s"
                     + (f"; largest worker {peak / 2**20:.0f} MiB resident" if peak else "")
                     + (f", its models' process {model_peak / 2**20:.0f} MiB" if model_peak else ""))
        lines += [f"note         {note}" for note in self.notes]
        return "\n".join(lines)

    def raise_for_failure(self) -> None:
        if self.failed:
            raise InputError(f"{len(self.failed)} of {len(self.items)} checkpoint(s) failed to convert: "
                             + ", ".join(item.name for item in self.failed), path=self.source)


def find_checkpoints(release: str | Path, output: str | Path, *, all_steps: bool = False) -> list[Checkpoint]:
    """Every TensorFlow checkpoint under ``release``, each with its output under ``output``.

    A directory's checkpoints: a SavedModel or KerasHub preset (the directory is the model, and is
    not looked into further), each bundle prefix (a training run's ``model.ckpt-N`` series counting
    as one, its newest step, unless ``all_steps``), each Keras ``.h5`` file. A directory with one
    checkpoint becomes the output directory at its place; one with several, a directory each, named
    after the prefix or file."""
    from .formats.keras_hub import is_keras_hub_preset

    release, output = Path(release), Path(output)
    if not release.is_dir():
        raise InputError("--all converts the checkpoints under a directory, and this is not one", path=release,
                         hint="name the directory that holds them", cli_hint="drop --all to convert one checkpoint")
    found: list[Checkpoint] = []
    skip = output.resolve()
    for directory, subdirectories, files in _walk(release):
        if directory.resolve() == skip:
            subdirectories.clear()
            continue
        relative = directory.relative_to(release)
        if "saved_model.pb" in files or is_keras_hub_preset(directory):
            found.append(Checkpoint(str(directory), str(output / relative), _shown(relative, release)))
            subdirectories.clear()
            continue
        sources = _sources_in(directory, files, all_steps)
        for source, label in sources:
            place = relative if len(sources) == 1 else relative / label
            found.append(Checkpoint(str(source), str(output / place), _shown(place, release)))
    return found


def _shown(relative: Path, release: Path) -> str:
    return relative.as_posix() if relative.parts else release.name


def _walk(release: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    for directory, subdirectories, files in os.walk(release):
        subdirectories.sort()
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
        yield Path(directory), subdirectories, sorted(files)


def _sources_in(directory: Path, files: list[str], all_steps: bool) -> list[tuple[Path, str]]:
    """(what to convert, the name of its own output where the directory holds several)."""
    prefixes = [name[:-len(".index")] for name in files if name.endswith(".index")]
    series: dict[str, list[int]] = {}
    single: list[str] = []
    for prefix in prefixes:
        match = _STEP.match(prefix + ".index")
        if match:
            series.setdefault(match["stem"], []).append(int(match["step"]))
        else:
            single.append(prefix)
    h5 = [name for name in files if name.endswith(".h5")]
    groups = len(single) + len(series) + len(h5)
    sources: list[tuple[Path, str]] = []
    for prefix in single:  # the directory itself where it holds only this one, as a user would name it
        sources.append((directory if groups == 1 else directory / prefix, prefix or "checkpoint"))
    for stem, steps in sorted(series.items()):
        if all_steps:
            sources += [(directory / f"{stem}-{step}", f"{stem}-{step}") for step in sorted(steps)]
        elif groups == 1:
            sources.append((directory, stem))  # the directory: its newest step, or what `checkpoint` names
        else:
            sources.append((directory / f"{stem}-{max(steps)}", stem))
    for name in h5:
        sources.append((directory / name, Path(name).stem))
    return sources


def convert_all(source: str | Path, output: str | Path, *, jobs: int | None = None, all_steps: bool = False,
                progress: bool = False, overwrite: bool = False, validate: bool = True,
                **options) -> BatchReport:
    """Convert every checkpoint under ``source`` into ``output`` (see :func:`find_checkpoints`),
    ``jobs`` at once (default: the CPU count), each as :func:`bertconv.convert` would with
    ``options``. A failure is recorded in the report, never raised (:meth:`BatchReport.raise_for_failure`)."""
    started = time.perf_counter()
    if options.get("format") not in (None, "hf"):
        raise InputError("--all writes a Hugging Face directory for each checkpoint",
                         hint="leave format out (or format='hf')", cli_hint="drop --format")
    checkpoints = find_checkpoints(source, output, all_steps=all_steps)
    if not checkpoints:
        raise InputError("no TensorFlow checkpoint under this directory", path=source,
                         hint="expected *.index bundles, SavedModels or .h5 files in it or below")
    jobs = jobs or os.cpu_count() or 1
    items: dict[int, BatchItem] = {}
    pending = []
    for index, checkpoint in enumerate(checkpoints):
        if not overwrite and validate and _already_done(checkpoint, options.get("dtype", "float32")):
            items[index] = BatchItem(checkpoint.name, checkpoint.source, checkpoint.output, "skipped",
                                     validation="passed before")
            _fill_from_card(items[index])
        else:
            pending.append(index)
    from .progress import bar as progress_bar

    bar = progress_bar(len(checkpoints), desc="checkpoints", unit="ckpt", force=progress)
    if bar is not None:
        bar.update(len(checkpoints) - len(pending))
    command = model_card.command.get()
    workers = min(jobs, len(pending)) or 1
    if pending:
        _run_pool(checkpoints, pending, items, workers, command,
                  dict(options, overwrite=overwrite, validate=validate), bar)
    if bar is not None:
        bar.close()
    report = BatchReport(str(source), str(output), workers if pending else 0,
                         [items[i] for i in range(len(checkpoints))])
    report.seconds = time.perf_counter() - started
    return report


#: what every worker imports, once, in the fork server the workers are forked from (where the
#: platform has one), instead of once in each worker. Not torch: each worker keeps a process of its
#: own for its checks' models (:func:`bertconv.model_process.keep`), which imports torch while the
#: worker converts its first checkpoint, where a fork server importing it would hold every worker
#: back until it is done.
WORKER_MODULES = ["bertconv.conversion", "bertconv.validation"]
#: torch's and the BLAS's thread pools, one thread in each worker: the jobs are the parallelism, and
#: on small models a worker's extra threads cost more than they bring (docs/benchmarks.md)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def largest_first(checkpoints: list[Checkpoint], pending: list[int]) -> list[int]:
    """The order the pending checkpoints go to the workers: the largest first, so that a run does
    not end on one large checkpoint converting alone while the other workers sit idle (the
    report keeps the release's order)."""
    return sorted(pending, key=lambda i: -source_bytes(checkpoints[i]))


def source_bytes(checkpoint: Checkpoint) -> int:
    """The size of a checkpoint's files: a directory's (a SavedModel's, a release's), a file's,
    or a bundle prefix's data and index files."""
    path = Path(checkpoint.source)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.parent.iterdir() if f.name.startswith(path.name + ".") and f.is_file())


def _worker_context():
    """A fork server with :data:`WORKER_MODULES` imported (never a fork of this process, which may
    hold threads: a progress bar's), else fresh interpreters."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_MODULES)
    return context


def _run_pool(checkpoints, pending, items, workers, command, options, bar) -> None:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    context = _worker_context()
    # the fork server and every worker read the thread counts when they import torch and NumPy:
    # set here for them (a user's own settings win), this process's environment left as it was
    added = {variable: "1" for variable in THREAD_VARIABLES if variable not in os.environ}
    os.environ.update(added)
    try:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                                   initargs=(dict(added), bool(options.get("validate", True))))
        futures = {pool.submit(_convert_one, checkpoints[i], options, command): i
                   for i in largest_first(checkpoints, pending)}
    finally:
        for variable in added:
            os.environ.pop(variable, None)
    with pool:
        for future in as_completed(futures):
            index = futures[future]
            checkpoint = checkpoints[index]
            try:
                item = future.result()
            except BrokenProcessPool as error:  # the worker died (killed, out of memory)
                item = BatchItem(checkpoint.name, checkpoint.source, checkpoint.output, "failed",
                                 error=f"its worker process died ({error})")
            items[index] = item
            if bar is not None:
                bar.write(_progress_line(item), file=sys.stderr)
                bar.update(1)


def _progress_line(item: BatchItem) -> str:
    if item.status == "failed":
        return f"failed     {item.name}: {item.error_cli or item.error}"
    return (f"converted  {item.name}: {item.architecture}, {item.parameters:,} parameters, "
            f"validation {item.validation}, {item.seconds:.1f} s")


def _start_worker(thread_settings: dict[str, str], validate: bool) -> None:
    """The thread counts in the worker's own environment too (a fork server started earlier, by
    another call, may not have had them), its data path on one thread, and the process for its
    checks' models started."""
    os.environ.update(thread_settings)
    from . import conversion

    conversion.data_path_threads = 1
    if validate:
        from multiprocessing.util import Finalize

        from . import model_process

        model_process.keep()
        # a worker's end skips atexit; multiprocessing's own finalizers still run
        Finalize(None, model_process.end_kept, exitpriority=10)


def _convert_one(checkpoint: Checkpoint, options: dict[str, Any], command: str | None) -> BatchItem:
    """One conversion, in a worker: its outcome as a BatchItem, whatever happens."""
    import resource
    import shlex

    from .conversion import convert

    started, cpu_started = time.perf_counter(), time.process_time()
    item = BatchItem(checkpoint.name, checkpoint.source, checkpoint.output, "failed")
    if command:
        model_card.command.set(f"{command} (this checkpoint: "
                               f"{shlex.join(['bertconv', 'tf2pt', checkpoint.source, checkpoint.output])})")
    try:
        Path(checkpoint.output).parent.mkdir(parents=True, exist_ok=True)
        report = convert(checkpoint.source, checkpoint.output, **options)
    except BertconvError as error:
        item.error, item.error_cli = str(error), error.render(cli=True)
    except Exception as error:  # noqa: BLE001 - one checkpoint's bug must not stop the others
        item.error = f"unexpected error: {type(error).__name__}: {error}"
    else:
        item.status = "converted"
        item.family, item.architecture, item.parameters = report.family, report.architecture, report.parameters
        item.validation = _validation_words(report.validation)
        runs = report.validation.runs if report.validation else []
        item.model_peak_rss = max((run.peak_memory_bytes for run in runs
                                   if run.memory_measure == "peak RSS of the model's own process"), default=None)
    item.seconds = time.perf_counter() - started
    item.cpu_seconds = time.process_time() - cpu_started
    item.worker_peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return item


def _validation_words(validation) -> str:
    if validation is None:
        return "not run"
    worst = max((o.max_abs for run in validation.runs for o in run.outputs), default=float("nan"))
    return f"{'passed' if validation.passed else 'FAILED'}, max abs {worst:.1e}"


def _already_done(checkpoint: Checkpoint, dtype: str) -> bool:
    """Whether the output is there, passed its check in ``dtype``, from source files of the sizes
    they have now (the card's SHA-256 is not recomputed: that would read every source again)."""
    facts = model_card.read_provenance(checkpoint.output)
    if not facts or not (facts.get("validation") or {}).get("passed") or facts.get("dtype") != dtype:
        return False
    base = model_card.source_directory(checkpoint.source)
    for source_file in facts.get("source_files") or []:
        path = base / source_file.get("file", "")
        if not path.is_file() or path.stat().st_size != source_file.get("bytes"):
            return False
    return bool(facts.get("source_files"))


def _fill_from_card(item: BatchItem) -> None:
    facts = model_card.read_provenance(item.output) or {}
    item.family, item.architecture, item.parameters = (facts.get("family"), facts.get("architecture"),
                                                       facts.get("parameters"))
