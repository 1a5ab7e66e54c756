"""``bertconv tf2pt``: source reader -> name mapping (the plan) -> target writer, then a check of
what was written against the original."""
from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import __version__
from .atomic import atomic_dir, atomic_file, check_name, check_not_reading
from .errors import InputError, OutputError
from .families.base import apply_transform, transposed_matrix
from .formats import open_source
from .native import hardware_crc32c
from .native import kernels as _kernels  # None without a C compiler at install: NumPy instead
from .plan import Plan, plan_conversion
from .vocab import infer_lower_case, write_tokenizer_files

if TYPE_CHECKING:  # a float32 conversion on the compiled path needs no NumPy
    import numpy as np

OUTPUT_DTYPES = ("float32", "float16", "bfloat16")
FORMATS = ("hf", "safetensors")


@dataclass
class ConversionReport:
    source: str
    output: str
    format: str
    family: str
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

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "validation"}
        d["validation"] = self.validation.to_dict() if self.validation is not None else None
        return d

    def summary_lines(self) -> list[str]:
        dropped = sum(self.training_state_dropped.values())
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.training_state_dropped.items()))
        lines = [
            f"source       {self.source} ({self.family}; config {self.config_origin})",
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
                         f"(heads not exported, or a pooler it does not have)")
        if self.unknown_dropped:
            lines.append(f"             {len(self.unknown_dropped)} unknown tensor(s) (--allow-unknown)")
        lines.append(f"wrote        {self.output}: {', '.join(self.files)} in {self.write_seconds:.2f} s")
        for note in self.notes:
            lines.append(f"note         {note}")
        return lines


def _directory_of(source: str) -> Path:
    path = Path(source).resolve()
    return path if path.is_dir() else path.parent


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    import numpy as np

    if dtype == "bfloat16":
        import ml_dtypes
        target = np.dtype(ml_dtypes.bfloat16)
    else:
        target = np.dtype(dtype)
    if array.dtype == target:
        return array
    # Going through float32 keeps bfloat16 -> float16 (and the like) correctly rounded once.
    if array.dtype != np.float32 and target != np.float32:
        array = array.astype(np.float32)
    with np.errstate(over="ignore"):  # float16 overflow is counted and refused in _prepare
        return array.astype(target)


def hf_config(plan: Plan, *, gelu: str, labels: list[str] | None, dtype: str) -> dict:
    cfg = plan.config
    fam = plan.family
    acts = fam.exact_activation if gelu == "exact" else fam.faithful_activation
    act = acts.get(cfg.hidden_act, cfg.hidden_act)
    # The source config's own keys first: what this conversion decides (class, type) wins.
    out = {k: v for k, v in cfg.to_dict().items() if k not in ("hidden_act", "architectures", "model_type")}
    out = {"architectures": [plan.architecture], "model_type": fam.model_type, **out}
    out["hidden_act"] = act
    out.update({"pad_token_id": 0, "position_embedding_type": "absolute", "dtype": dtype,
                "tie_word_embeddings": True, "use_cache": False})
    if plan.num_labels is not None and "classifier" in plan.heads:
        names = labels or [f"LABEL_{i}" for i in range(plan.num_labels)]
        out["id2label"] = {str(i): n for i, n in enumerate(names)}
        out["label2id"] = {n: i for i, n in enumerate(names)}
    # The activation as the reference pass names it (a Hugging Face "gelu" is its "gelu_exact"),
    # so that validating against this config alone still computes what the original computed.
    out["bertconv"] = {"version": __version__,
                       "source_hidden_act": fam.reference_activation.get(cfg.hidden_act, cfg.hidden_act)}
    if fam.tower is not None:  # which of the checkpoint's models this is (ELECTRA)
        out["bertconv"]["tower"] = fam.tower
    return out


def _target_names(plan: Plan) -> dict[str, str]:
    """Source name -> name in the written file. A bare BertModel is saved without the ``bert.``
    prefix, as Hugging Face saves it."""
    strip = plan.architecture.endswith("Model") and not plan.heads
    prefix = plan.family.model_type + "."
    return {t.source: (t.target[len(prefix):] if strip and t.target.startswith(prefix) else t.target)
            for t in plan.tensors}


#: Without the compiled transpose, a transposed kernel is copied in tiles of TRANSPOSE_ROWS output
#: rows by one 64-byte cache line of output columns: each tile reads TRANSPOSE_ROWS-long contiguous
#: runs of the source and fills whole cache lines of the output, where NumPy's one-pass copy of
#: the transposed view misses the cache on nearly every read. Measured on BERT-Large kernels:
#: 6.5-7 ms against 24-33 ms for the one-pass copy and 15 ms for 128x128 tiles (the compiled
#: transpose: 4-6 ms; on BERT-Base kernels it is 3-5x faster than these tiles).
TRANSPOSE_ROWS = 1024
CACHE_LINE = 64
#: Threads that convert tensors, each one whole tensor at a time: read, check, transpose, write at
#: its place in the output. Writes go to offsets the header already fixed, so neither thread waits
#: for the other to finish a tensor; on 2 cores, one thread's copies run while the other is in
#: the kernel writing. (Before: one thread read ahead while the main thread wrote in order; the
#: reading side was the bottleneck and memory held the read-ahead.)
CONVERSION_THREADS = 2


def native_transpose_available() -> bool:
    return _kernels is not None


def compiled_data_path_available() -> bool:
    """Whether tensors stored as they are converted (float32 to float32, the usual case) go
    through the compiled kernels: checksum and transpose in one pass, no NumPy."""
    return hardware_crc32c()


def contiguous(array: np.ndarray, *, native: bool = True) -> np.ndarray:
    """A C-contiguous copy (or the array itself when it already is one). A transposed 2-D view
    is copied by the compiled transpose when it is built (``native=False`` forces the NumPy
    tiles, which give the same bits)."""
    import numpy as np

    if array.flags.c_contiguous:
        return array
    if array.ndim != 2 or not array.T.flags.c_contiguous:
        return np.ascontiguousarray(array)
    rows, cols = array.shape
    out = np.empty((rows, cols), dtype=array.dtype)
    if native and _kernels is not None and array.dtype.itemsize in (1, 2, 4, 8) \
            and not array.dtype.hasobject:
        # array.T is the stored [cols, rows] matrix; viewed as bytes so any dtype of that size
        # (float16, bfloat16, float8) goes through unchanged.
        _kernels.transpose(array.T, out.view(np.uint8), cols, rows, array.dtype.itemsize)
        return out
    width = max(1, CACHE_LINE // array.dtype.itemsize)
    for r in range(0, rows, TRANSPOSE_ROWS):
        band = array[r:r + TRANSPOSE_ROWS]
        for c in range(0, cols, width):
            np.copyto(out[r:r + TRANSPOSE_ROWS, c:c + width], band[:, c:c + width])
    return out


def _prepare(source, tensor, dtype: str) -> np.ndarray:
    """Read (crc-checked), transform and cast one tensor into the bytes the output stores."""
    import numpy as np

    # Cast after the copy: a cast of the transposed view would be a second strided pass.
    array = contiguous(apply_transform(tensor.transform, source.read(tensor.source)))
    # The transpose and NumPy's copies release the GIL, so the other conversion thread runs on
    # (google-crc32c holds it while it checks a tensor).
    cast = _cast(array, dtype)
    if dtype == "float16" and array.dtype != np.float16 and np.isinf(cast).any():
        overflow = int(np.count_nonzero(np.isinf(cast) & ~np.isinf(array.astype(np.float32))))
        if overflow:
            raise InputError(f"{overflow} value(s) beyond float16's range (|x| > 65504) would become inf",
                             tensor=tensor.source, hint="use --dtype bfloat16 or float32")
    return cast


class _Buffers(threading.local):
    """Output buffers of transposed tensors, one per size and thread, reused once written: a fresh
    buffer per kernel would cost the kernel's size in new pages (faulted in one by one) every time."""

    def __init__(self):
        self.by_size: dict[int, bytearray] = {}

    def take(self, nbytes: int) -> bytearray:
        buffer = self.by_size.get(nbytes)
        if buffer is None:
            buffer = self.by_size[nbytes] = bytearray(nbytes)
        return buffer


def _prepare_stored(source, tensor, dtype: str, buffers: _Buffers):
    """The compiled path of :func:`_prepare`, for a tensor stored in the output's dtype: the
    checksum and the transpose in one pass over the stored bytes, into a reused buffer, or for an
    untransposed tensor the mapped bytes themselves. Returns (bytes to write, whether they are a
    view of the mapped file, to release once written), or None where this path does not apply
    (then :func:`_prepare` does the work). Bytes in the thread's buffer stay valid until its next
    transposed tensor of the same size."""
    stored = source.stored_bytes(tensor.source)
    if stored is None:
        return None
    if stored.dtype != dtype:  # a cast: NumPy's work
        stored.data.release()
        return None
    try:
        matrix = transposed_matrix(tensor.transform, stored.shape)
    except ValueError:  # not a matrix the kernels take: NumPy's work
        stored.data.release()
        return None
    if matrix is None:
        if stored.crc32c is not None:
            try:
                source.confirm_crc32c(tensor.source, _kernels.crc32c(stored.data))
            except BaseException:
                stored.data.release()
                raise
        return stored.data, True
    rows, cols = matrix
    out = buffers.take(len(stored.data))
    with stored.data:
        itemsize = len(stored.data) // (rows * cols)
        if stored.crc32c is not None:
            computed = _kernels.transpose_crc32c(stored.data, out, rows, cols, itemsize)
            source.confirm_crc32c(tensor.source, computed)
        else:
            _kernels.transpose(stored.data, out, rows, cols, itemsize)
    return out, False


def write_weights(plan: Plan, source, path: Path, *, dtype: str, metadata: dict[str, str],
                  progress: bool = False, once_writing: Callable[[], None] | None = None) -> None:
    """Stream every planned tensor into one safetensors file. CONVERSION_THREADS threads (this
    one included) each take the next tensor, read, check and transpose it, and write it at its
    place: memory stays near one tensor per thread, whatever the model's size. ``once_writing``,
    if given, is called when the file is set up and the helpers have started."""
    from .formats.safetensors_io import SafetensorsWriter

    targets = _target_names(plan)
    entries = [(targets[t.source], dtype, t.target_shape) for t in plan.tensors]
    compiled = compiled_data_path_available()
    buffers = _Buffers()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(math.prod(t.target_shape) for t in plan.tensors), unit="param",
                   unit_scale=True, file=sys.stderr, desc="converting", leave=False)
    writer = SafetensorsWriter(path, entries, metadata=metadata)
    queue = iter(plan.tensors)
    lock = threading.Lock()  # over the queue and the progress bar
    failures: list[BaseException] = []

    def convert_tensors() -> None:
        try:
            while not failures:
                with lock:
                    tensor = next(queue, None)
                if tensor is None:
                    return
                done = _prepare_stored(source, tensor, dtype, buffers) if compiled else None
                if done is None:
                    writer.write(targets[tensor.source], _prepare(source, tensor, dtype))
                else:
                    data, mapped = done
                    writer.write_bytes(targets[tensor.source], dtype, data)
                    if mapped:
                        data.release()
                source.release(tensor.source)
                if bar is not None:
                    with lock:
                        bar.update(math.prod(tensor.target_shape))
        except BaseException as error:
            failures.append(error)

    helpers = [threading.Thread(target=convert_tensors, name=f"bertconv-convert-{i}", daemon=True)
               for i in range(CONVERSION_THREADS - 1)]
    try:
        for helper in helpers:
            helper.start()
        if once_writing is not None:
            once_writing()
        convert_tensors()
        for helper in helpers:
            helper.join()
        if failures:
            raise failures[0]
        writer.close()
    except BaseException:
        failures.append(RuntimeError("stopped"))  # any helper still running stops at its next tensor
        for helper in helpers:
            helper.join()
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()


def convert(source: str | Path, output: str | Path, *, format: str = "hf", dtype: str = "float32",
            head: str = "auto", labels: list[str] | None = None, lower_case: bool | None = None,
            gelu: str = "faithful", family: str | None = None, config: str | Path | None = None,
            vocab: str | Path | None = None, allow_unknown: bool = False, overwrite: bool = False,
            validate: bool = True, verify_crc: bool = True, progress: bool = False,
            tower: str | None = None) -> ConversionReport:
    """Convert a TensorFlow checkpoint to a Hugging Face directory (``format="hf"``) or one
    ``.safetensors`` file, and (by default) check the result against the original."""
    if format not in FORMATS:
        raise InputError(f"unknown output format {format!r}", hint=f"choose one of {', '.join(FORMATS)}")
    if dtype not in OUTPUT_DTYPES:
        raise InputError(f"unknown dtype {dtype!r}", hint=f"choose one of {', '.join(OUTPUT_DTYPES)}")
    if gelu not in ("faithful", "exact"):
        raise InputError(f"unknown --gelu {gelu!r}", hint="choose faithful or exact")
    if format == "safetensors" and str(output).endswith(("/", os.sep)):
        raise OutputError("--format safetensors writes one file, but the output names a directory",
                          path=output, hint="drop the trailing slash, e.g. model.safetensors")
    started = time.perf_counter()
    output = Path(output)
    check_name(output)
    with open_source(source, verify_crc=verify_crc, prefer="tf") as src:
        if src.format_name not in ("tf-bundle", "keras-h5"):
            raise InputError(f"tf2pt converts TensorFlow checkpoints, and this is a {src.format_name} file",
                             path=src.path, hint="it is PyTorch already: inspect, validate or diff it")
        plan = plan_conversion(src, family=family, head=head, config_path=config, vocab_path=vocab,
                               allow_unknown=allow_unknown, tower=tower)
        _check_labels(labels, plan)
        _refuse_overwriting_source(output, src, plan)
        notes = list(plan.notes)
        config_json = hf_config(plan, gelu=gelu, labels=labels, dtype=dtype)
        metadata = {"format": "pt", "bertconv.version": __version__, "bertconv.source": str(Path(source)),
                    "bertconv.architecture": plan.architecture,
                    "bertconv.config": json.dumps(config_json, sort_keys=True)}
        do_lower = None
        if format == "hf":
            with atomic_dir(output, overwrite=overwrite) as tmp:
                # The configuration and tokenizer files (tens of milliseconds, mostly the tokenizers
                # library) are written on a thread while the weights stream: the weights' threads
                # spend their time in the kernel and in compiled copies, without the GIL. Started
                # once the weights are under way, so that its Python does not hold the GIL while
                # this thread sets the output file up.
                side_files: list[_OnThread] = []

                def start_side_files() -> None:
                    side_files.append(_OnThread(_write_side_files, tmp, plan, source, config_json,
                                                lower_case, name="bertconv-files"))
                try:
                    write_weights(plan, src, tmp / "model.safetensors", dtype=dtype, metadata=metadata,
                                  progress=progress, once_writing=start_side_files)
                except BaseException:
                    for thread in side_files:
                        thread.wait()  # let it finish; the weights' error is the one to report
                    raise
                written, do_lower, why = side_files[0].result()
                files = ["model.safetensors", *written]
                if why:
                    notes.append(why)
                write_seconds = time.perf_counter() - started
                validation = _check_before_publishing(tmp, src, plan, dtype, gelu, notes) if validate else None
        else:
            files = [output.name]
            with atomic_file(output, overwrite=overwrite) as tmp:
                write_weights(plan, src, tmp, dtype=dtype, metadata=metadata, progress=progress)
                write_seconds = time.perf_counter() - started
                validation = _check_before_publishing(tmp, src, plan, dtype, gelu, notes) if validate else None

        counts: dict[str, int] = {}
        for name, kind in plan.training_state.items():
            # slots by kind (adam_m 41), counters by name (global_step 1)
            key = name if kind == "counter" else kind.split(":", 1)[-1]
            counts[key] = counts.get(key, 0) + 1
        report = ConversionReport(
            source=str(source), output=str(output), format=format, family=plan.family.name,
            architecture=plan.architecture, heads_present=sorted(plan.heads_present),
            heads=sorted(plan.heads), config_origin=plan.config_origin, dtype=dtype,
            tensors_written=len(plan.tensors), parameters=plan.parameters,
            training_state_dropped=counts, heads_dropped=plan.dropped_heads,
            unknown_dropped=plan.unknown, files=files, do_lower_case=do_lower, notes=notes)
        report.validation = validation
        report.weights_from = str(getattr(src, "prefix", None) or src.path)
        report.write_seconds = write_seconds
        report.seconds = time.perf_counter() - started
    return report


class _OnThread:
    """``function(*args)`` run on a thread of its own; :meth:`result` waits and returns its value
    or raises its exception. Not concurrent.futures: importing it (and logging with it) takes 7-11
    ms, on the path every conversion waits on before its first byte."""

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


def _write_side_files(directory: Path, plan: Plan, source, config_json: dict,
                      lower_case: bool | None) -> tuple[list[str], bool | None, str | None]:
    """config.json and the tokenizer files of a Hugging Face directory: (files written,
    do_lower_case, a note saying how casing was decided, or None)."""
    (directory / "config.json").write_text(json.dumps(config_json, indent=2) + "\n", encoding="utf-8")
    files = ["config.json"]
    do_lower, note = None, None
    if plan.vocab is not None:
        hints = [str(Path(source).resolve()), str(plan.vocab.path.resolve().parent)]
        if lower_case is None:
            do_lower, why = infer_lower_case(plan.vocab, hints)
            note = f"do_lower_case={do_lower} ({why}; override with --cased/--uncased)"
        else:
            do_lower = lower_case
        files += write_tokenizer_files(directory, plan.vocab, do_lower_case=do_lower,
                                       model_max_length=plan.config.max_position_embeddings)
    elif plan.sentencepiece is not None:
        from .spiece import write_sentencepiece_files
        files += write_sentencepiece_files(directory, plan.sentencepiece,
                                           model_max_length=plan.config.max_position_embeddings)
    return files, do_lower, note


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
    if getattr(plan, "sentencepiece", None):
        files.append(Path(plan.sentencepiece))
    return files


def _refuse_overwriting_source(output: Path, src, plan: Plan) -> None:
    check_not_reading(output, _files_read(src, plan))


def _check_before_publishing(written: Path, src, plan: Plan, dtype: str, gelu: str, notes: list[str]):
    """Run the written model against the original before it gets its final name: a conversion
    that does not compute what the original computed is never published."""
    import dataclasses

    from .errors import CheckFailed
    from .validation import quick_check

    config, original = plan.config, src
    fam = plan.family
    if gelu == "exact" and fam.exact_activation.get(config.hidden_act) != fam.faithful_activation.get(config.hidden_act):
        # The user asked for a model that differs from the original on purpose: check that the
        # weights were carried over faithfully, with the reference computing the same erf GELU.
        config = dataclasses.replace(config, hidden_act="gelu_exact")
        notes.append("--gelu exact: checked against the original's weights with the erf GELU; the original "
                     "model computes the tanh form (outputs differ by about 1e-3)")
    from .families.views import google_names_view, reads_through_bert_names
    if reads_through_bert_names(plan.family):
        original = google_names_view(src, plan.family)
        act = plan.family.reference_activation.get(config.hidden_act)
        if act:
            config = dataclasses.replace(config, hidden_act=act)
    report = quick_check(written, original, config, dtype=dtype)
    if not report.passed:
        raise CheckFailed(f"the converted model does not match the original ({report.summary_line()}); "
                          "nothing was written", path=src.path,
                          hint="run `bertconv validate` for details, or --no-validate to write anyway")
    return report
