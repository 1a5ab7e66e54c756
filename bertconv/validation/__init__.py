"""``bertconv validate``: run a converted model and compare every named output, in data-flow order,
with an independent reference computed from the original TensorFlow checkpoint.

References: ``numpy`` (``bertconv.reference``: float64, over the TF names, sharing no code with the
PyTorch model), ``tf`` (TensorFlow itself, float64) or a golden ``.npz`` of stored outputs (no
checkpoint or TensorFlow needed: the CI parity check).

What a correct float32 conversion achieves against the float64 reference is float32 rounding
alone: about 1e-6 on a 3-layer model, 5e-6 on BERT-Base, for hidden states whose largest values
are ~5. Rounding error is relative, so each bound is per unit of the output's magnitude
(``max(1, max|reference|)``): 2e-5 for float32, about 1e-4 absolute on a hidden state. That is an
order of magnitude above what float32 rounding gives and below the subtlest real conversion bug,
the erf GELU in place of the tanh one (~3e-4 on the first layer of a small model, ~1e-3 on
BERT-Base). Lower precisions are judged by looser bounds and by cosine similarity.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import __version__
from . import outputs as out
from .config import BertConfig, load_config_file
from .errors import CheckFailed, InputError
from .torch_import import import_torch

INPUT_KEYS = ("input_ids", "token_type_ids", "attention_mask")
METADATA_KEY = "__bertconv_metadata__"
DTYPES = ("float32", "float16", "bfloat16", "float64")
#: lower number = less precise, for combining the storage and the compute dtype
_PRECISION_RANK = {"bfloat16": 0, "float16": 1, "float32": 2, "float64": 3}


@dataclass(frozen=True)
class Tolerance:
    #: bound on max abs difference, per unit of the output's magnitude (``max(1, max|reference|)``)
    max_abs: float
    #: lowest acceptable cosine similarity (None: not checked)
    min_cosine: float | None = None
    #: False when the user gave an absolute bound (``--atol``)
    scaled: bool = True


DEFAULT_TOLERANCES = {
    "float64": Tolerance(1e-8),
    # float32 rounding: max abs / magnitude <= 2e-6 on a correct BERT-Base (see the module docstring)
    "float32": Tolerance(2e-5),
    # 11-bit mantissa: a correct BERT-Base lands at <= 8e-3 per unit of magnitude, cosine >= 0.999997
    "float16": Tolerance(3e-2, 0.9999),
    # 8-bit mantissa: a correct BERT-Base lands at <= 3.5e-2 per unit of magnitude, cosine >= 0.9995
    "bfloat16": Tolerance(1e-1, 0.998),
}


@dataclass
class OutputComparison:
    name: str
    shape: list[int]
    max_abs: float
    #: max abs difference relative to the output's largest magnitude
    max_rel: float
    mean_abs: float
    cosine: float
    #: ``max(1, max|reference|)``: what a scaled bound is multiplied by
    magnitude: float
    bound: float
    passed: bool
    #: index of the largest difference
    where: list[int] = field(default_factory=list)


@dataclass
class DtypeRun:
    dtype: str
    device: str
    runner: str
    weights_dtype: str
    tf32: str
    load_seconds: float
    forward_seconds: float
    peak_memory_bytes: int
    memory_measure: str
    outputs: list[OutputComparison]
    #: outputs the model produced that have no reference (weights that came from nowhere)
    unreferenced: list[str]
    first_diverging: str | None
    passed: bool


@dataclass
class ValidationReport:
    converted: str
    reference: str
    against: str | None
    golden: str | None
    device: str
    architecture: str
    inputs: dict[str, Any]
    runs: list[DtypeRun]
    #: reference outputs the converted model does not produce (heads it does not carry)
    not_compared: list[str]
    notes: list[str] = field(default_factory=list)
    reference_seconds: float = 0.0
    seconds: float = 0.0
    saved_golden: str | None = None

    @property
    def passed(self) -> bool:
        return bool(self.runs) and all(run.passed for run in self.runs)

    @property
    def first_diverging(self) -> str | None:
        for run in self.runs:
            if run.first_diverging:
                return run.first_diverging
        return None

    def worst_max_abs(self, dtype: str | None = None) -> float:
        values = [o.max_abs for run in self.runs if dtype in (None, run.dtype) for o in run.outputs]
        return max(values) if values else float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        d["first_diverging"] = self.first_diverging
        return d

    def summary_line(self) -> str:
        parts = []
        for run in self.runs:
            worst = max(run.outputs, key=lambda o: o.max_abs, default=None)
            state = "passed" if run.passed else f"FAILED, first diverging output {run.first_diverging}"
            if run.unreferenced:
                state = f"FAILED, no reference for {', '.join(run.unreferenced)}"
            detail = f"max abs {worst.max_abs:.2e} ({worst.name})" if worst else "no outputs"
            parts.append(f"{run.dtype} on {run.device}: {state}; {detail}")
        return "; ".join(parts) if parts else "nothing was compared"

    def render(self) -> str:
        from tabulate import tabulate

        lines = [f"converted    {self.converted} ({self.architecture})",
                 f"reference    {self.reference}",
                 "inputs       " + ", ".join(f"{k} {v}" for k, v in self.inputs.items() if v is not None)]
        for run in self.runs:
            memory = f"{run.peak_memory_bytes / 2**20:.0f} MiB {run.memory_measure}"
            lines.append("")
            lines.append(f"{run.dtype} on {run.device} ({run.runner}; weights {run.weights_dtype}; TF32 {run.tf32}): "
                         f"load {run.load_seconds:.2f} s, forward {run.forward_seconds:.2f} s, peak {memory}")
            rows = [(o.name, "x".join(map(str, o.shape)), f"{o.max_abs:.2e}", f"{o.max_rel:.2e}", f"{o.mean_abs:.2e}",
                     f"{o.cosine:.9f}", f"{o.bound:.1e}", "ok" if o.passed else "FAIL") for o in run.outputs]
            lines.append(tabulate(rows, headers=["output", "shape", "max abs", "max rel", "mean abs", "cosine",
                                                 "bound", ""], disable_numparse=True))
            if run.unreferenced:
                lines.append(f"no reference for: {', '.join(run.unreferenced)} (these outputs cannot be "
                             "traced to the original's weights)")
            if run.first_diverging:
                lines.append(f"first diverging output: {run.first_diverging}")
        if len(self.runs) > 1:
            lines.append("")
            lines.append("drift against the float64 reference: " + "; ".join(
                f"{run.dtype} worst max abs {max((o.max_abs for o in run.outputs), default=float('nan')):.2e}, "
                f"min cosine {min((o.cosine for o in run.outputs), default=float('nan')):.6f}" for run in self.runs))
        if self.not_compared:
            lines.append(f"not compared (the converted model does not produce them): {', '.join(self.not_compared)}")
        for note in self.notes:
            lines.append(f"note         {note}")
        if self.saved_golden:
            lines.append(f"golden       wrote {self.saved_golden}")
        lines.append(f"result       {'PASSED' if self.passed else 'FAILED'}: {self.summary_line()}")
        return "\n".join(lines)

    def raise_for_failure(self) -> None:
        """Raise :class:`CheckFailed` (exit code 1) unless every dtype passed."""
        if not self.passed:
            raise CheckFailed(f"the converted model does not match the reference: {self.summary_line()}",
                              path=self.converted)


# ----------------------------------------------------------------------------------- comparing


#: elements compared per pass: a float64 temporary that stays in cache (MLM logits alone are
#: 60 MB at 2x128 tokens, and a whole-array difference would be as big again)
_COMPARE_BLOCK = 1 << 16


def compare_output(name: str, ours: np.ndarray, reference: np.ndarray, tolerance: Tolerance) -> OutputComparison:
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if ours.shape != reference.shape:
        return OutputComparison(name, list(ours.shape), math.inf, math.inf, math.inf, float("nan"), 1.0,
                                tolerance.max_abs, False)
    flat_ours, flat_reference = ours.reshape(-1), reference.reshape(-1)
    size = flat_ours.size
    diff = np.empty(min(size, _COMPARE_BLOCK))
    finite = True
    max_abs, argmax, abs_sum, largest = 0.0, 0, 0.0, 0.0
    dot, ours_sq, reference_sq = 0.0, 0.0, 0.0
    for start in range(0, size, _COMPARE_BLOCK):
        o = flat_ours[start:start + _COMPARE_BLOCK]
        r = flat_reference[start:start + _COMPARE_BLOCK]
        d = diff[:o.size]
        finite = bool(np.isfinite(o).all()) and bool(np.isfinite(r).all())
        if not finite:
            break
        np.subtract(o, r, out=d)
        np.abs(d, out=d)
        at = int(np.argmax(d))
        if d[at] > max_abs:
            max_abs, argmax = float(d[at]), start + at
        abs_sum += float(d.sum())
        largest = max(largest, float(r.max()), -float(r.min()))
        dot += float(o @ r)
        ours_sq += float(o @ o)
        reference_sq += float(r @ r)
    magnitude = max(1.0, largest)
    norms = math.sqrt(ours_sq) * math.sqrt(reference_sq)
    if not finite:  # on either side: no difference or bound means anything then
        max_abs, mean_abs, where, cosine = math.inf, math.inf, [], float("nan")
    elif size == 0:
        max_abs, mean_abs, where, cosine = 0.0, math.inf, [], 1.0
    else:
        mean_abs = abs_sum / size
        where = [int(i) for i in np.unravel_index(argmax, ours.shape)]
        cosine = dot / norms if norms > 0 else (1.0 if ours_sq == 0 and reference_sq == 0 else float("nan"))
    bound = tolerance.max_abs * (magnitude if tolerance.scaled else 1.0)
    passed = finite and max_abs <= bound
    if tolerance.min_cosine is not None and not (cosine >= tolerance.min_cosine):
        passed = False
    return OutputComparison(name, list(ours.shape), max_abs, max_abs / magnitude, mean_abs, cosine, magnitude,
                            bound, passed, where)


def compare_outputs(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray], num_layers: int,
                    tolerance: Tolerance) -> tuple[list[OutputComparison], list[str], str | None]:
    """Comparisons in data-flow order, the outputs without a reference, and the first failing output."""
    names = out.ordered(set(ours) & set(reference), num_layers)
    comparisons = [compare_output(n, ours[n], reference[n], tolerance) for n in names]
    unreferenced = out.ordered(set(ours) - set(reference), num_layers)
    unreferenced += sorted(set(ours) - set(reference) - set(unreferenced))
    first = next((c.name for c in comparisons if not c.passed), None)
    return comparisons, unreferenced, first


def tolerance_for(dtype: str, weights_dtype: str, override: float | None) -> Tolerance:
    if override is not None:
        if not override > 0:
            raise InputError(f"the tolerance must be positive, got {override}")
        return Tolerance(override, None, scaled=False)
    # float16 weights computed in float32 carry float16's rounding: judge by the less precise one
    effective = min((dtype, weights_dtype), key=lambda d: _PRECISION_RANK.get(d, 2))
    return DEFAULT_TOLERANCES[effective]


# -------------------------------------------------------------------------------------- inputs


def _special_ids(vocab_path: Path | None) -> dict[str, int]:
    if vocab_path is None or not vocab_path.is_file():
        return {}
    try:
        tokens = [t.strip() for t in vocab_path.read_text(encoding="utf-8").split("\n")]
    except (OSError, UnicodeDecodeError):
        return {}
    index = {t.strip(): i for i, t in enumerate(tokens)}
    found = {}
    for key, token in (("cls_id", "[CLS]"), ("sep_id", "[SEP]"), ("pad_id", "[PAD]")):
        if token in index:
            found[key] = index[token]
    return found


def make_validation_inputs(config: BertConfig, batch: int, seq_len: int, seed: int,
                           vocab_path: Path | None = None) -> dict[str, np.ndarray]:
    """Deterministic inputs shaped like real ones ([CLS] first, [SEP]s, two segments, padding)."""
    from .reference import make_inputs

    if batch < 1 or seq_len < 1:
        raise InputError(f"batch and seq_len must be at least 1, got {batch} and {seq_len}")
    if seq_len > config.max_position_embeddings:
        raise InputError(f"seq_len {seq_len} exceeds the model's max_position_embeddings "
                         f"{config.max_position_embeddings}")
    ids = {k: v for k, v in _special_ids(vocab_path).items() if v < config.vocab_size}
    return make_inputs(config.vocab_size, batch, seq_len, seed, config.type_vocab_size, **ids)


def text_inputs(path: str | Path, directory: Path | None, config: BertConfig) -> dict[str, np.ndarray]:
    """Tokenize a file of lines (a tab separates the two texts of a pair) with the converted
    model's own tokenizer files."""
    path = Path(path)
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path=path) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=path) from None
    if not lines:
        raise InputError("holds no text", path=path)
    if directory is None:
        raise InputError("--text needs the tokenizer files of a converted directory", path=path,
                         hint="validate a Hugging Face directory, or use generated inputs")
    tokenizer = _tokenizer(directory)
    tokenizer.enable_truncation(max_length=config.max_position_embeddings)
    pad_id = tokenizer.token_to_id("[PAD]")
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    pairs = [tuple(line.split("\t", 1)) if "\t" in line else line for line in lines]
    encodings = tokenizer.encode_batch(pairs)
    as_array = lambda attr: np.array([getattr(e, attr) for e in encodings], dtype=np.int64)  # noqa: E731
    inputs = {"input_ids": as_array("ids"), "token_type_ids": as_array("type_ids"),
              "attention_mask": as_array("attention_mask")}
    if inputs["input_ids"].max() >= config.vocab_size:
        raise InputError("the tokenizer produced ids beyond the model's vocab_size", path=directory)
    return inputs


def _tokenizer(directory: Path):
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer

    if (directory / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(directory / "tokenizer.json"))
    vocab = directory / "vocab.txt"
    if not vocab.is_file():
        raise InputError("no tokenizer.json or vocab.txt to tokenize --text with", path=directory)
    lower = True
    settings = directory / "tokenizer_config.json"
    if settings.is_file():
        with contextlib.suppress(OSError, ValueError):
            lower = bool(json.loads(settings.read_text(encoding="utf-8")).get("do_lower_case", True))
    return BertWordPieceTokenizer(str(vocab), lowercase=lower)


# ---------------------------------------------------------------------------------- references


def _open_against(against, verify_crc: bool = True):
    """A (weights, close) pair for a path, a TensorSource or a mapping of TF names to arrays."""
    if isinstance(against, (str, Path)):
        from .families import detect_family
        from .formats import open_source
        source = open_source(against, verify_crc=verify_crc)
        family = detect_family(source.names())
        from .families.views import google_names_view, reads_through_bert_names
        if reads_through_bert_names(family):
            # BERT itself in another layout: the reference reads it through google-research/bert's
            # names, a pure relayout of the same arrays.
            return google_names_view(source, family), source.close
        return source, source.close
    return against, lambda: None


def _reference_config(against, converted_dict: dict[str, Any], given) -> tuple[BertConfig, str]:
    """The original's config: given, or the checkpoint's bert_config.json, or (last) the converted
    model's own config with the source's activation name restored."""
    if isinstance(given, BertConfig):
        return given, "given"
    if given is not None:
        return load_config_file(given), str(given)
    sidecar = getattr(against, "sidecar", None)
    found = sidecar("bert_config.json", "config.json", "albert_config.json") if callable(sidecar) else None
    if found is not None:
        config = load_config_file(found)
        family = getattr(against, "family", None)
        meaning = getattr(family, "reference_activation", {}).get(config.hidden_act)
        if meaning:  # e.g. a Hugging Face config's "gelu" is the erf form
            config = dataclasses.replace(config, hidden_act=meaning)
        return config, str(found)
    data = dict(converted_dict)
    source_act = (data.get("bertconv") or {}).get("source_hidden_act") if isinstance(data.get("bertconv"), dict) else None
    if source_act:
        data["hidden_act"] = source_act
    return BertConfig.from_dict(data), "the converted model's config"


def _has(weights, name: str) -> bool:
    try:
        return name in weights
    except TypeError:
        return False


def _read(weights, name: str) -> np.ndarray:
    return weights.read(name) if hasattr(weights, "read") else np.asarray(weights[name])


def compute_reference(weights, config: BertConfig, inputs: dict[str, np.ndarray], kind: str, *,
                      family: str | None = None, tower: str | None = None,
                      heads=None) -> dict[str, np.ndarray]:
    """The original's outputs. ``family``: ``albert`` or ``electra`` for those families' own
    references (None: BERT's, which the other layouts are read through); ``tower``: ELECTRA's
    discriminator (default) or generator."""
    if family in ("albert", "electra"):
        if kind != "numpy":
            raise InputError(f"--reference {kind} covers BERT only; {family} is checked by its NumPy reference",
                             hint="use --reference numpy")
        if family == "albert":
            from .reference_albert import albert_reference_forward
            return albert_reference_forward(weights, config, inputs)
        from .reference_electra import electra_reference_forward
        return electra_reference_forward(weights, config, inputs, tower=tower or "discriminator")
    if kind == "numpy":
        from .reference import reference_forward
        return reference_forward(weights, config, inputs, heads=heads)
    if kind == "tf":
        from ._tf_reference import tf_reference_forward
        return tf_reference_forward(lambda n: _read(weights, n), lambda n: _has(weights, n), config, inputs)
    raise InputError(f"unknown reference {kind!r}", hint="choose numpy or tf")


def _reference_heads(weights, architecture: str) -> list[str] | None:
    """For a BERT model: the heads its class carries that the original has. The original's other
    heads are not computed (an NSP head without a pooler need not stop an MLM check); a head the
    converted model has and the original lacks stays without a reference, and fails."""
    from .converted import ARCHITECTURE_HEADS
    from .reference import HEAD_TENSORS

    wanted = ARCHITECTURE_HEADS.get(architecture)
    if wanted is None:
        return None
    return [h for h in sorted(wanted) if all(_has(weights, n) for n in HEAD_TENSORS[h])]


def load_golden(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except (OSError, ValueError) as e:
        raise InputError(f"not a golden .npz file: {e}", path=path) from None
    metadata = {}
    if METADATA_KEY in arrays:
        try:
            metadata = json.loads(str(arrays.pop(METADATA_KEY)))
        except json.JSONDecodeError:
            raise InputError("its metadata entry is not valid JSON", path=path) from None
    missing = [k for k in INPUT_KEYS if k not in arrays]
    if missing:
        raise InputError(f"golden file lacks the inputs {', '.join(missing)}", path=path)
    inputs = {k: arrays.pop(k).astype(np.int64) for k in INPUT_KEYS}
    if not arrays:
        raise InputError("golden file holds inputs but no outputs", path=path)
    return inputs, arrays, metadata


def save_golden_file(path: str | Path, inputs, reference, metadata: dict[str, Any], *,
                     overwrite: bool = False) -> None:
    from .atomic import atomic_file

    with atomic_file(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would otherwise append ".npz" to the name
            np.savez(f, **{k: np.asarray(v) for k, v in inputs.items()},
                     **{k: np.asarray(v, dtype=np.float64) for k, v in reference.items()},
                     **{METADATA_KEY: np.array(json.dumps(metadata, sort_keys=True))})


# ------------------------------------------------------------------------------------- running


_DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(device: str):
    if not _DEVICE_NAME.match(str(device)):
        raise InputError(f"unknown device {device!r}", hint="use auto, cpu, cuda or cuda:N")
    torch = import_torch()  # the first import of torch on the way to running a model

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}", hint="use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} was asked for but CUDA is not available",
                             hint="use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    elif dev.type != "cpu":
        raise InputError(f"unsupported device {device!r}", hint="use auto, cpu, cuda or cuda:N")
    return dev


@contextlib.contextmanager
def exact_float32(device) -> Iterator[str]:
    """Disable TF32 for the duration on CUDA (its ~1e-3 relative error would hide or fake a
    conversion bug), restoring the caller's settings afterwards. Yields what the report says."""
    import torch

    if device.type != "cuda":
        yield "n/a (CPU)"
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield "disabled"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])


def _torch_dtype(name: str):
    import torch

    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
             "float64": torch.float64}
    if name not in table:
        raise InputError(f"unknown dtype {name!r}", hint=f"choose from {', '.join(DTYPES)}")
    return table[name]


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB, macOS bytes


def _weights_dtype(model) -> str:
    import torch

    names = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32",
             torch.float64: "float64"}
    return names.get(getattr(model, "stored_dtype", None), "float32")


def _stored_dtype(converted: Path) -> str:
    """The least precise float dtype in a converted safetensors file, from its header alone."""
    from safetensors import safe_open

    path = converted / "model.safetensors" if converted.is_dir() else converted
    names = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
    found = set()
    with contextlib.suppress(Exception), safe_open(str(path), framework="np") as f:
        found = {names.get(f.get_slice(k).get_dtype()) for k in f.keys()} - {None}
    return min(found, key=lambda d: _PRECISION_RANK[d]) if found else "float32"


def _transformers_outputs(model, inputs, device) -> dict[str, np.ndarray]:
    import torch

    args = {k: torch.as_tensor(np.asarray(v), dtype=torch.long, device=device) for k, v in inputs.items()}
    with torch.inference_mode():
        result = model(**args, output_hidden_states=True)
        hidden = result.hidden_states
        named = {out.EMBEDDINGS: hidden[0], out.SEQUENCE: hidden[-1]}
        named.update({out.layer(i): h for i, h in enumerate(hidden[1:])})
        if getattr(result, "pooler_output", None) is not None:
            named[out.POOLED] = result.pooler_output
        elif getattr(getattr(model, "bert", None), "pooler", None) is not None:
            named[out.POOLED] = model.bert.pooler(hidden[-1])  # the head classes do not return it
        kind = type(model).__name__
        if kind == "BertForPreTraining":
            named[out.MLM_LOGITS], named[out.NSP_LOGITS] = result.prediction_logits, result.seq_relationship_logits
        elif kind == "BertForMaskedLM":
            named[out.MLM_LOGITS] = result.logits
        elif kind == "BertForNextSentencePrediction":
            named[out.NSP_LOGITS] = result.logits
        elif kind == "BertForSequenceClassification":
            named[out.CLASSIFIER_LOGITS] = result.logits
        elif kind == "BertForQuestionAnswering":
            named[out.SPAN_LOGITS] = torch.stack([result.start_logits, result.end_logits], dim=-1)
    return {k: v.detach().to("cpu", torch.float64).numpy() for k, v in named.items()}


def _load_with_transformers(path: Path, architecture: str, dtype, device):
    try:
        import transformers
    except ImportError:
        raise InputError("--with-transformers needs transformers, which is not installed") from None
    if not path.is_dir():
        raise InputError("--with-transformers loads a Hugging Face directory, not a bare file", path=path)
    cls = getattr(transformers, architecture, None)
    if cls is None:
        raise InputError(f"transformers has no class {architecture}", path=path)
    # transformers 5 names the argument ``dtype``; 4.x called it ``torch_dtype``
    dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    model = cls.from_pretrained(str(path), attn_implementation="eager", **{dtype_arg: dtype})
    return model.to(device).eval()


def _run_one(converted: Path, dtype_name: str, device, *, with_transformers: bool, architecture: str,
             model_options: dict[str, Any], inputs) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import torch

    from .model import load_model, run_outputs

    dtype = _torch_dtype(dtype_name)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with exact_float32(device) as tf32:
        started = time.perf_counter()
        if with_transformers:
            model = _load_with_transformers(converted, architecture, dtype, device)
            weights_dtype = _stored_dtype(converted)
        else:
            model = load_model(converted, device=device, dtype=dtype, **model_options)
            weights_dtype = _weights_dtype(model)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        loaded = time.perf_counter()
        if with_transformers:
            outputs = _transformers_outputs(model, inputs, device)
        else:
            outputs = run_outputs(model, inputs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        finished = time.perf_counter()
    if device.type == "cuda":
        peak, measure = int(torch.cuda.max_memory_allocated(device)), "CUDA max_memory_allocated"
    else:
        peak, measure = _peak_rss_bytes(), "process peak RSS"
    del model
    if device.type == "cuda" and dtype_name != "float32":
        tf32 = "n/a (not float32)"
    return outputs, {"tf32": tf32, "load_seconds": loaded - started, "forward_seconds": finished - loaded,
                     "peak_memory_bytes": peak, "memory_measure": measure, "weights_dtype": weights_dtype}


def validate(converted: str | Path, *, against=None, golden: str | Path | None = None, reference: str = "numpy",
             device: str = "auto", dtypes=("float32",), batch: int = 2, seq_len: int = 16, seed: int = 0,
             text: str | Path | None = None, tolerance: float | None = None, with_transformers: bool = False,
             save_golden: str | Path | None = None, source_config=None,
             model_options: dict[str, Any] | None = None, tower: str | None = None,
             verify_crc: bool = True, overwrite: bool = False) -> ValidationReport:
    """Run the converted model and compare each output with the reference, for each dtype.

    ``against``: the original checkpoint (any path ``open_source`` reads; or a TensorSource, or a
    mapping of TF names to arrays). ``golden``: a ``.npz`` of inputs and reference outputs, used
    instead. ``save_golden`` replaces an existing file only with ``overwrite``. ``source_config``:
    the original's config when ``against`` has no bert_config.json beside it. ``model_options``:
    passed to :func:`bertconv.model.load_model` (tests use it to model a wrong conversion).
    """
    from .converted import describe_converted

    started = time.perf_counter()
    converted = Path(converted)
    if isinstance(dtypes, str):
        dtypes = tuple(d.strip() for d in dtypes.split(",") if d.strip())
    if not dtypes:
        raise InputError("no dtype to validate", hint=f"choose from {', '.join(DTYPES)}")
    for d in dtypes:
        if d not in DTYPES:
            raise InputError(f"unknown dtype {d!r}", hint=f"choose from {', '.join(DTYPES)}")
    if reference not in ("numpy", "tf"):
        raise InputError(f"unknown reference {reference!r}", hint="choose numpy or tf")
    if golden is None and against is None:
        raise InputError("nothing to validate against", path=converted,
                         hint="pass --against with the original TF checkpoint, or --golden with stored outputs")
    if golden is not None and against is not None:
        raise InputError("give --against or --golden, not both")
    if golden is not None and save_golden is not None:
        raise InputError("--save-golden stores a reference computed from --against; it cannot copy --golden")
    if not _DEVICE_NAME.match(str(device)):
        resolve_device(device)  # raises the usage error before any work
    model_options = dict(model_options or {})

    # The config only: each run below reads the weights for itself, in its own dtype.
    config, config_dict, architecture = describe_converted(converted, config=model_options.get("config"))
    if "head" in model_options and model_options["head"]:
        architecture = model_options["head"]
    directory = converted if converted.is_dir() else None
    notes: list[str] = []
    family, tower = _family_and_tower(config_dict, architecture, tower)
    if with_transformers and family in ("albert", "electra"):
        raise InputError(f"--with-transformers runs BERT models; this {family} model is run by bertconv's own",
                         hint="drop --with-transformers")

    reference_started = time.perf_counter()
    golden_metadata: dict[str, Any] = {}
    if golden is not None:
        if text is not None:
            notes.append("--text ignored: a golden file carries its own inputs")
        inputs, reference_outputs, golden_metadata = load_golden(golden)
        description = f"golden outputs {golden}"
        if golden_metadata.get("reference"):
            description += f" ({golden_metadata['reference']})"
        source_label = None
    else:
        weights, close = _open_against(against, verify_crc)
        try:
            ref_config, config_origin = _reference_config(weights, config_dict, source_config)
            if text is not None:
                inputs = text_inputs(text, directory, config)
            else:
                vocab = directory / "vocab.txt" if directory else None
                inputs = make_validation_inputs(config, batch, seq_len, seed, vocab)
            reference_outputs = compute_reference(weights, ref_config, inputs, reference, family=family,
                                                  tower=tower, heads=_reference_heads(weights, architecture))
        finally:
            close()
        description = ("bertconv.reference (NumPy, float64)" if reference == "numpy"
                       else "TensorFlow (float64, eager)") + f" over {against if isinstance(against, (str, Path)) else 'the given weights'}"
        if config_origin != "given":
            notes.append(f"the original's config came from {config_origin}")
        source_label = str(against) if isinstance(against, (str, Path)) else None
    reference_seconds = time.perf_counter() - reference_started

    shape = list(np.asarray(inputs["input_ids"]).shape)
    padded_rows = int(np.sum(np.asarray(inputs["attention_mask"]).min(axis=1) == 0))
    input_summary = {"batch": shape[0], "seq_len": shape[1], "padded_rows": padded_rows,
                     "seed": seed if golden is None and text is None else None,
                     "text": str(text) if text is not None and golden is None else None}

    saved = None
    if save_golden is not None:
        metadata = {"config": config_dict, "seed": seed if text is None else None, "source": source_label,
                    "reference": reference, "bertconv_version": __version__, "architecture": architecture}
        save_golden_file(save_golden, inputs, reference_outputs, metadata, overwrite=overwrite)
        saved = str(save_golden)

    dev = resolve_device(device)
    runs = []
    load_options = {k: v for k, v in model_options.items()}
    for dtype_name in dtypes:
        ours, facts = _run_one(converted, dtype_name, dev, with_transformers=with_transformers,
                               architecture=architecture, model_options=load_options, inputs=inputs)
        tol = tolerance_for(dtype_name, facts["weights_dtype"], tolerance)
        comparisons, unreferenced, first = compare_outputs(ours, reference_outputs, config.num_hidden_layers, tol)
        passed = not unreferenced and first is None and bool(comparisons)
        runs.append(DtypeRun(dtype=dtype_name, device=str(dev),
                             runner="transformers" if with_transformers else "bertconv.model",
                             outputs=comparisons, unreferenced=unreferenced, first_diverging=first,
                             passed=passed, **facts))
    produced = set().union(*(set(o.name for o in run.outputs) | set(run.unreferenced) for run in runs))
    not_compared = out.ordered(set(reference_outputs) - produced, config.num_hidden_layers)
    not_compared += sorted(set(reference_outputs) - produced - set(not_compared))
    if dev.type == "cuda" and "float32" in dtypes:
        notes.append("float32 on CUDA ran with TF32 disabled (matmul and cuDNN), restored afterwards")
    return ValidationReport(converted=str(converted), reference=description,
                            against=source_label, golden=str(golden) if golden is not None else None,
                            device=str(dev), architecture=architecture, inputs=input_summary, runs=runs,
                            not_compared=not_compared, notes=notes, reference_seconds=reference_seconds,
                            seconds=time.perf_counter() - started, saved_golden=saved)


_ELECTRA_TOWERS = {"ElectraForPreTraining": "discriminator", "ElectraForMaskedLM": "generator"}


def _family_and_tower(config_dict: dict[str, Any], architecture: str, tower: str | None
                      ) -> tuple[str | None, str | None]:
    """Which reference judges this model: the family its config names (None: BERT's) and, for
    ELECTRA, the tower it was converted from (its head says, else the conversion's record)."""
    family = config_dict.get("model_type") if config_dict.get("model_type") in ("albert", "electra") else None
    if family != "electra":
        if tower is not None:
            raise InputError(f"--tower {tower}: the converted model is not an ELECTRA", hint="leave out --tower")
        return family, None
    recorded = _ELECTRA_TOWERS.get(architecture) or (config_dict.get("bertconv") or {}).get("tower")
    if tower is not None and tower not in ("discriminator", "generator"):
        raise InputError(f"unknown tower {tower!r}", hint="choose discriminator or generator")
    if tower is not None and recorded is not None and tower != recorded:
        raise InputError(f"--tower {tower}, but the converted model is the {recorded} ({architecture})")
    return family, tower or recorded or "discriminator"


def quick_check(converted: str | Path, source, config: BertConfig, *, dtype: str = "float32", batch: int = 2,
                seq_len: int = 16, seed: int = 0, device: str = "cpu",
                tolerance: float | None = None) -> ValidationReport:
    """The check ``tf2pt`` runs on what it has just written: a small batch through the converted
    model against the NumPy reference over the still-open source."""
    seq_len = min(seq_len, config.max_position_embeddings)
    compute = dtype if dtype in DTYPES else "float32"
    if compute != "float32" and device == "cpu":
        # Half-precision weights are judged in float32 on the CPU: the bound is float16's/bfloat16's
        # anyway (see tolerance_for), and CPU half-precision matmuls are slow and add nothing.
        compute = "float32"
    return validate(converted, against=source, reference="numpy", device=device, dtypes=(compute,), batch=batch,
                    seq_len=seq_len, seed=seed, tolerance=tolerance, source_config=config)
