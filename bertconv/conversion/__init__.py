"""``bertconv tf2pt``: source reader -> name mapping (the plan, ``plan.py``) -> target writer (the
data path, ``datapath.py``, and the Hugging Face directory's other files, ``hf_directory.py``),
then a check of what was written against the original before it gets its final name."""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__, model_card
from .. import model_process as model_processes
from ..atomic import atomic_dir, atomic_file, check_name, check_not_reading
from ..errors import InputError, OutputError
from ..formats import open_source
from ..model_card import SourceDigests, provenance, write_card, write_hubconf
from ..progress import activity
from .datapath import CONVERSION_THREADS, OUTPUT_DTYPES, compiled_data_path_available, native_transpose_available, write_weights
from .hf_directory import hf_config, write_side_files
from .options import FORMATS, ConvertOptions, options_of
from .plan import Plan, plan_conversion

__all__ = ["convert", "tf2pt", "pt2tf", "ConvertOptions", "ConversionReport", "Pt2TfReport", "OUTPUT_DTYPES", "FORMATS",
           "compiled_data_path_available", "native_transpose_available", "write_weights"]


@dataclass
class ConversionReport:
    source: str
    output: str
    format: str
    family: str
    #: the source naming it was read in (e.g. google_bert, tf2_garden)
    layout: str
    architecture: str
    heads_present: list[str]
    heads: list[str]
    config_origin: str
    dtype: str
    tensors_written: int
    parameters: int
    training_state_dropped: dict[str, int]
    heads_dropped: list[str]
    unknown_dropped: list[str]
    files: list[str]
    do_lower_case: bool | None
    notes: list[str] = field(default_factory=list)
    #: the checkpoint prefix or file the weights were actually read from
    weights_from: str = ""
    seconds: float = 0.0          # the whole conversion, validation included
    write_seconds: float = 0.0    # planning and writing, up to the check
    validation: Any = None   # a validate.ValidationReport when the output was checked
    layout_is_canonical: bool = True
    #: PyTorch names written although the architecture's class ignores them (a pooler under
    #: BertForMaskedLM), so that the directory holds every trained weight
    ignored_by_class: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("validation", "layout_is_canonical")}
        d["validation"] = self.validation.to_dict() if self.validation is not None else None
        return d

    def summary_lines(self) -> list[str]:
        dropped = sum(self.training_state_dropped.values())
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.training_state_dropped.items()))
        lines = [
            f"source       {self.source} ({self.family}{'' if self.layout_is_canonical else ', ' + self.layout}; "
            f"config {self.config_origin})",
            # shown when a `checkpoint` file led elsewhere than the directory named
            *([f"weights      {self.weights_from}"] if self.weights_from and
              Path(self.weights_from).resolve().parent != _directory_of(self.source) else []),
            f"model        {self.architecture}: {self.tensors_written} tensors, "
            f"{self.parameters:,} parameters, {self.dtype}",
            f"heads        found: {', '.join(self.heads_present) or 'none'}; "
            f"exported: {', '.join(self.heads) or 'none (base model)'}",
            f"dropped      {dropped} training-state tensor(s)" + (f" ({kinds})" if kinds else ""),
        ]
        if self.heads_dropped:
            lines.append(f"             {len(self.heads_dropped)} tensor(s) not part of {self.architecture} "
                         f"(heads not exported)")
        if self.ignored_by_class:
            lines.append(f"kept         {len(self.ignored_by_class)} tensor(s) that {self.architecture} itself "
                         f"ignores ({', '.join(self.ignored_by_class)}): written so that AutoModel on this "
                         f"directory loads every trained weight")
        if self.unknown_dropped:
            lines.append(f"             {len(self.unknown_dropped)} unknown tensor(s) (--allow-unknown)")
        lines.append(f"wrote        {self.output}: {', '.join(self.files)} in {self.write_seconds:.2f} s")
        for note in self.notes:
            lines.append(f"note         {note}")
        return lines


def _directory_of(source: str) -> Path:
    path = Path(source).resolve()
    return path if path.is_dir() else path.parent


def convert(source: str | Path, output: str | Path, options: ConvertOptions | None = None,
            **overrides) -> ConversionReport:
    """Convert a TensorFlow checkpoint to a Hugging Face directory (``format="hf"``) or one
    ``.safetensors`` file, and (by default) check the result against the original. Without a
    ``format``, an output named ``*.safetensors`` is one file and anything else a directory. A
    directory also gets a README.md model card (:mod:`bertconv.model_card`: provenance and the
    check's result) and, with ``torch_hub``, a hubconf.py for ``torch.hub.load``.

    ``options`` is a :class:`ConvertOptions`; its fields may also be given as keywords
    (``convert(src, out, dtype="float16", validate=False)``), which replace the options' own."""
    o = options_of(options, overrides, function="convert")
    format = o.format or format_for_output(output)
    if o.torch_hub and format != "hf":
        raise InputError("a PyTorch Hub entry point (hubconf.py) goes in a directory, not beside one file",
                         hint="write a Hugging Face directory (format='hf')",
                         cli_hint="name a directory as the output (--format hf), or leave --torch-hub out")
    if format == "safetensors" and str(output).endswith(("/", os.sep)):
        raise OutputError("--format safetensors writes one file, but the output names a directory",
                          path=output, hint="drop the trailing slash, e.g. model.safetensors")
    started = time.perf_counter()
    output = Path(output)
    check_name(output)
    with contextlib.ExitStack() as stack:
        # torch's import, most of the check's time, starts there now and runs beside the conversion
        model_process = stack.enter_context(model_processes.for_check()) if o.validate else None
        return _convert(source, output, o, format, started, model_process)


def _convert(source, output: Path, o: ConvertOptions, format: str, started: float, model_process) -> ConversionReport:
    dtype, gelu, labels, lower_case = o.dtype, o.gelu, o.labels, o.lower_case
    with open_source(source, verify_crc=o.verify_crc, prefer="tf", step=o.step) as src:
        if src.format_name not in ("tf-bundle", "keras-h5", "saved-model", "keras-hub", "keras-archive"):
            raise InputError(f"tf2pt converts TensorFlow checkpoints, and this is a {src.format_name} file",
                             path=src.path, hint="it is PyTorch already: inspect, validate or diff it")
        src.require_data()  # before planning: a missing data file is named as such, not as missing tensors
        plan = plan_conversion(src, family=o.family, head=o.head, config_path=o.config, vocab_path=o.vocab,
                               allow_unknown=o.allow_unknown, tower=o.tower, keep_tokens=o.keep_tokens,
                               settings=o.settings)
        _check_labels(labels, plan)
        _refuse_overwriting_source(output, src, plan)
        notes = [*src.notes, *plan.notes]
        config_json = hf_config(plan, gelu=gelu, labels=labels, dtype=dtype)
        metadata = {"format": "pt", "bertconv.version": __version__, "bertconv.source": str(Path(source)),
                    "bertconv.architecture": plan.architecture,
                    "bertconv.config": json.dumps(config_json, sort_keys=True)}
        do_lower = None
        if format == "hf":
            with atomic_dir(output, overwrite=o.overwrite, notes=notes) as tmp:
                # on its own thread, while the weights stream; a SavedModel or preset directory is its files
                # where the check's model process imports torch, not beside the conversion and the
                # reference but once they are done and this process only waits for the model
                digests = SourceDigests(_files_read(src, plan), expand_directories=src.format_name != "tf-bundle",
                                        start=model_process is None)
                if model_process is not None:
                    model_process.when_busy(digests.start)
                # The configuration and tokenizer files (tens of milliseconds, mostly the tokenizers
                # library) are written on a thread while the weights stream: the weights' threads
                # spend their time in the kernel and in compiled copies, without the GIL. Started
                # once the weights are under way, so that its Python does not hold the GIL while
                # this thread sets the output file up.
                side_files: list[_OnThread] = []

                def start_side_files() -> None:
                    side_files.append(_OnThread(write_side_files, tmp, plan, config_json,
                                                lower_case, name="bertconv-files"))
                try:
                    write_weights(plan, src, tmp / "model.safetensors", dtype=dtype, metadata=metadata,
                                  progress=o.progress, once_writing=start_side_files,
                                  threads=_weights_threads(model_process))
                except BaseException:
                    for thread in side_files:
                        thread.wait()  # let it finish; the weights' error is the one to report
                    raise
                written, do_lower, why = side_files[0].result()
                files = ["model.safetensors", *written]
                if why:
                    notes.append(why)
                write_seconds = time.perf_counter() - started
                validation = _check_before_publishing(tmp, src, plan, dtype, gelu, notes,
                                                      model_process) if o.validate else None
                files += _explain(tmp, _report(source, output, format, plan, src, dtype, files, do_lower, notes,
                                               validation), plan, digests, o.torch_hub)
        else:
            files = [output.name]
            with atomic_file(output, overwrite=o.overwrite, notes=notes) as tmp:
                write_weights(plan, src, tmp, dtype=dtype, metadata=metadata, progress=o.progress,
                              threads=_weights_threads(model_process))
                write_seconds = time.perf_counter() - started
                validation = _check_before_publishing(tmp, src, plan, dtype, gelu, notes,
                                                      model_process) if o.validate else None

        report = _report(source, output, format, plan, src, dtype, files, do_lower, notes, validation)
        report.write_seconds = write_seconds
        report.seconds = time.perf_counter() - started
    return report


#: The data path's threads in this process. A batch's worker sets one: there a conversion's second
#: thread gained nothing (the writes into the page cache are the limit) and took a core's share from
#: the other jobs and from the models' process beside it (docs/benchmarks.md).
data_path_threads = CONVERSION_THREADS


def _weights_threads(model_process) -> int:
    """The data path's threads: one while the check's model process imports torch, which is the
    check's critical path, so that it keeps a core to itself (the conversion still ends well
    before the import does: docs/performance.md)."""
    return 1 if model_process is not None and model_process.importing() else data_path_threads


def format_for_output(output: str | Path) -> str:
    """The format an output's name asks for: one file for ``*.safetensors``, else a directory."""
    return "safetensors" if str(output).lower().endswith(".safetensors") else "hf"


def _report(source, output, format: str, plan: Plan, src, dtype: str, files: list[str], do_lower: bool | None,
            notes: list[str], validation) -> ConversionReport:
    counts: dict[str, int] = {}
    for name, kind in plan.training_state.items():
        # slots by kind (adam_m 41), counters by name (global_step 1)
        key = name if kind == "counter" else kind.split(":", 1)[-1]
        counts[key] = counts.get(key, 0) + 1
    report = ConversionReport(
        source=str(source), output=str(output), format=format, family=plan.family.name,
        layout=plan.layout.name, layout_is_canonical=plan.layout.canonical,
        architecture=plan.architecture, heads_present=sorted(plan.heads_present),
        heads=sorted(plan.heads), config_origin=plan.config_origin, dtype=dtype,
        tensors_written=len(plan.tensors), parameters=plan.parameters,
        training_state_dropped=counts, heads_dropped=plan.dropped_heads,
        unknown_dropped=plan.unknown, files=files, do_lower_case=do_lower, notes=notes,
        ignored_by_class=plan.ignored_by_class)
    report.validation = validation
    report.weights_from = str(getattr(src, "prefix", None) or src.path)
    return report


def _explain(directory: Path, report: ConversionReport, plan: Plan, digests: SourceDigests,
             torch_hub: bool) -> list[str]:
    """The files that say what the directory is: README.md (the model card) and, if asked,
    hubconf.py. Returns their names."""
    written = []
    if torch_hub:
        written.append(write_hubconf(directory, architecture=plan.architecture, version=__version__))
    facts = provenance(report, digests.result(), version=__version__, command_line=model_card.command.get(),
                       torch_hub=torch_hub, num_attention_heads=plan.config.num_attention_heads)
    written.append(write_card(directory, facts, model_type=plan.layout.model_type))
    return written


#: the command's name for the same function, beside ``pt2tf``
tf2pt = convert


def __getattr__(name: str):
    # The way back, beside the way there, imported on first use: it needs NumPy, which converting
    # float32 weights as they are stored does not import.
    if name in ("pt2tf", "Pt2TfReport"):
        from . import to_original
        return getattr(to_original, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _OnThread:
    """``function(*args)`` run on a thread of its own; :meth:`result` waits and returns its value
    or raises its exception. Not concurrent.futures: importing it (and logging with it) costs
    more than this whole class, on the path every conversion waits on before its first byte."""

    def __init__(self, function, *args, name: str):
        self._value = self._error = None
        self._thread = threading.Thread(target=self._run, args=(function, args), name=name, daemon=True)
        self._thread.start()

    def _run(self, function, args) -> None:
        try:
            self._value = function(*args)
        except BaseException as error:  # handed to whoever waits for the result
            self._error = error

    def wait(self) -> None:
        self._thread.join()

    def result(self):
        self.wait()
        if self._error is not None:
            raise self._error
        return self._value


def _check_labels(labels: list[str] | None, plan: Plan) -> None:
    if labels is None:
        return
    if "classifier" not in plan.heads:
        raise InputError("--labels names the classes of a classifier head, and this model exports none")
    if len(labels) != plan.num_labels:
        raise InputError(f"--labels names {len(labels)} labels but the classifier has {plan.num_labels}")
    if any(not label for label in labels) or len(set(labels)) != len(labels):
        raise InputError(f"--labels must name each class once, without empty names (got {','.join(labels)})")


def _files_read(src, plan: Plan) -> list[Path]:
    files = [Path(src.path)]
    for attribute in ("index_path",):
        if getattr(src, attribute, None) is not None:
            files.append(Path(getattr(src, attribute)))
    if hasattr(src, "shard_path") and hasattr(src, "num_shards"):
        files += [Path(src.shard_path(i)) for i in range(src.num_shards)]
    if plan.vocab is not None:
        files.append(Path(plan.vocab.path))
    if plan.config_origin and Path(plan.config_origin).exists():
        files.append(Path(plan.config_origin))
    if plan.tokenizer_model is not None:
        files.append(Path(plan.tokenizer_model))
    return files


def _refuse_overwriting_source(output: Path, src, plan: Plan) -> None:
    check_not_reading(output, _files_read(src, plan))


def _check_before_publishing(written: Path, src, plan: Plan, dtype: str, gelu: str, notes: list[str],
                             model_process=None):
    """Run the written model against the original before it gets its final name: a conversion
    that does not compute what the original computed is never published."""
    import dataclasses

    from ..errors import CheckFailed
    from ..families.views import canonical_view
    from ..validation import quick_check

    config, layout = plan.config, plan.layout
    if gelu == "exact" and layout.exact_activation.get(config.hidden_act) != \
            layout.faithful_activation.get(config.hidden_act):
        # The user asked for a model that differs from the original on purpose: check that the
        # weights were carried over faithfully, with the reference computing the same erf GELU.
        config = dataclasses.replace(config, hidden_act="gelu_exact")
        notes.append("--gelu exact: checked against the original's weights with the erf GELU; the original "
                     "model computes the tanh form (outputs differ by about 1e-3)")
    elif not layout.canonical and layout.reference_activation.get(config.hidden_act):
        config = dataclasses.replace(config, hidden_act=layout.reference_activation[config.hidden_act])
    with activity("checking against the original"):
        report = quick_check(written, canonical_view(src, layout), config, dtype=dtype,
                             model_process=model_process)
    if not report.passed:
        raise CheckFailed(f"the converted model does not match the original ({report.summary_line()}); "
                          "nothing was written", path=src.path,
                          hint="run `bertconv validate` for details, or --no-validate to write anyway")
    return report
