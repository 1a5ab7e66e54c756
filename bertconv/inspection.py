"""``bertconv inspect``: what a checkpoint holds, in any supported format, without loading a model
(no torch for TF bundles and safetensors files)."""
from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import progress
from .config import DEFAULT_HEAD_SIZE, compare_configs, load_config_file
from .errors import BertconvError
from .families import source_view
from .families.base import Family
from .formats import open_source
from .model_card import describe as describe_provenance
from .model_card import read_provenance, source_directory
from .mapping import METADATA_NAMES, training_state_kind, transformed_shape
from .settings import check_known, preparer
from .vocab import load_vocab

if TYPE_CHECKING:  # NumPy only for --stats and tensor values: listing a checkpoint needs none
    import numpy as np

CATEGORIES = ("model", "training", "other")
SORT_KEYS = ("name", "size", "params", "dtype")
_STATS_CHUNK = 1 << 20  # elements per chunk: stats never hold more than ~8 MB of float64


@dataclass
class TensorRow:
    name: str
    dtype: str
    shape: list[int]
    params: int
    bytes: int
    category: str          # model | training | other
    role: str              # the TF name it maps to, the optimizer slot kind, or ""
    stats: dict[str, float] | None = None


@dataclass
class InspectReport:
    path: str
    format: str
    family: str | None
    naming: str                      # tf | pt | ?
    tensors: list[TensorRow]
    totals: dict[str, dict[str, int]]
    heads: dict[str, Any]
    global_step: int | None
    inferred_config: dict[str, int]
    config_file: str | None
    config_problems: list[str]
    vocab_file: str | None
    vocab_size: int | None
    notes: list[str] = field(default_factory=list)
    #: the source naming (e.g. google_bert, tf2_garden), and what wrote files of that naming
    layout: str | None = None
    layout_description: str | None = None
    #: how the family describes each head, for rendering
    head_descriptions: dict[str, str] = field(default_factory=dict)
    #: what a directory bertconv converted says of itself (its README.md model card): the source
    #: files and their SHA-256, the command, the check's result
    provenance: dict[str, Any] | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["head_descriptions"]  # wording for the text rendering, not data
        return data

    def render(self, *, stats: bool | None = None, tensors: bool = True) -> str:
        """The report as ``bertconv inspect`` prints it: what the checkpoint is and what its tensors
        add up to, then (``tensors``) the table of every tensor. ``stats``: whether to show the
        statistics columns (default: if any tensor has them)."""
        return _render_inspect_report(self, any(r.stats for r in self.tensors) if stats is None else stats,
                                      tensors)


def tensor_stats(array: np.ndarray) -> dict[str, float]:
    """min, max, mean, std, NaN and Inf counts, in float64, a chunk at a time."""
    import numpy as np

    flat = array.reshape(-1)
    n = flat.size
    if n == 0 or flat.dtype.kind not in "fiucb" and str(flat.dtype) not in ("bfloat16",) and "float8" not in str(flat.dtype):
        return {"min": math.nan, "max": math.nan, "mean": math.nan, "std": math.nan, "nan": 0, "inf": 0}
    lo, hi, total, total_sq, nans, infs, finite = math.inf, -math.inf, 0.0, 0.0, 0, 0, 0
    for start in range(0, n, _STATS_CHUNK):
        chunk = flat[start:start + _STATS_CHUNK].astype(np.float64)
        bad_nan = np.isnan(chunk)
        bad_inf = np.isinf(chunk)
        nans += int(bad_nan.sum())
        infs += int(bad_inf.sum())
        good = chunk[~(bad_nan | bad_inf)] if nans or infs else chunk
        if good.size:
            lo = min(lo, float(good.min()))
            hi = max(hi, float(good.max()))
            total += float(good.sum())
            total_sq += float(np.dot(good, good))
            finite += good.size
    mean = total / finite if finite else math.nan
    var = max(total_sq / finite - mean * mean, 0.0) if finite else math.nan
    return {"min": lo if finite else math.nan, "max": hi if finite else math.nan, "mean": mean,
            "std": math.sqrt(var) if finite else math.nan, "nan": nans, "inf": infs}


def inspect_checkpoint(path: str | Path, *, stats: bool = False, filter: str | None = None,
                       sort: str = "name", family: str | None = None, verify_crc: bool = True,
                       step: int | None = None, settings: dict | None = None) -> InspectReport:
    with open_source(path, verify_crc=verify_crc, step=step) as src:
        infos = list(src)
        layout, naming, to_source = source_view((i.name for i in infos), family, source=src)
        tf_names = set(to_source.values())
        rows = []
        for info in infos:
            if info.name in to_source:
                category, role = "model", ("" if naming == "tf" else to_source[info.name])
            elif info.name in METADATA_NAMES:
                category, role = "other", "checkpoint metadata"
            else:
                kind = training_state_kind(info.name, info.shape, lambda v: src.info(v).shape
                                           if (v in tf_names or v in to_source) and v in src else None)
                category, role = ("training", kind) if kind else ("other", "")
            rows.append(TensorRow(info.name, info.dtype, list(info.shape), info.numel, info.nbytes,
                                  category, role))
        totals = {c: {"tensors": 0, "params": 0, "bytes": 0} for c in CATEGORIES}
        for r in rows:
            t = totals[r.category]
            t["tensors"] += 1
            t["params"] += r.params
            t["bytes"] += r.bytes
        totals["all"] = {k: sum(totals[c][k] for c in CATEGORIES) for k in ("tensors", "params", "bytes")}

        # Listing needs only the index: data files that are not here leave values unread.
        unavailable = getattr(src, "unavailable_data", list)()
        if unavailable and stats:
            src.require_data()
        global_step = None
        for name in ("global_step", "global_step/.ATTRIBUTES/VARIABLE_VALUE"):
            if name in src and src.info(name).numel == 1 and not unavailable:
                global_step = int(src.read(name).reshape(-1)[0])

        heads: dict[str, Any] = {}
        inferred: dict[str, int] = {}
        heads_guess = None  # the note on a head count no shape states, replaced by a config's value
        notes: list[str] = list(getattr(src, "notes", ()))
        if unavailable:
            notes.append("listed from the index alone (" + "; ".join(u.describe() for u in unavailable)
                         + "); statistics and checksums are unavailable")
        if layout is not None:
            # Shapes seen from the TF side, whichever side the file is on.
            shapes = {}
            for info in infos:
                if info.name in to_source:
                    tf_name = to_source[info.name]
                    m = layout.mapping.to_target(tf_name)
                    shape = tuple(info.shape) if naming == "tf" else transformed_shape(m.rule.transform, tuple(info.shape))
                    shapes[tf_name] = shape
            inferred = layout.infer_sizes(shapes) if layout.infer_sizes else {}
            notes += [a for a in layout.assumptions if a not in notes]  # how the bound table read the file
            present = layout.parts_present(shapes)
            # the heads the family describes, then whatever else this layout's table names
            known = tuple(layout.family.head_descriptions)
            extra = sorted({r.head for r in layout.mapping.rules if r.head} - set(known) - {"pooler"})
            heads = {h: (h in present) for h in known + tuple(extra)}
            if present & {"classifier"}:
                heads["num_labels"] = inferred.get("num_labels")
            recorded = layout.recorded_config(layout, src) if layout.recorded_config and naming == "tf" else {}
            if "hidden_size" in inferred and "num_attention_heads" not in inferred:
                inferred_heads = max(1, inferred["hidden_size"] // DEFAULT_HEAD_SIZE)
                if "num_attention_heads" in recorded:
                    value, where = recorded["num_attention_heads"]
                    notes.append(f"num_attention_heads={value}, recorded in {where}")
                elif not layout.head_count_from_head_size:
                    heads_guess = ("num_attention_heads is not in any shape, and this library's files do not "
                                   "record it: tf2pt reads it from the config file")
                    notes.append(heads_guess)
                else:
                    heads_guess = (f"num_attention_heads is not in any shape; {inferred_heads} if the head size is "
                                   f"{DEFAULT_HEAD_SIZE} as in Google's releases")
                    notes.append(heads_guess)

        config_file = layout.family.find_config(src) if layout is not None else src.sidecar(*Family.config_files)
        problems: list[str] = []
        if layout is not None:
            check_known(layout.family, settings)
        if config_file is not None:
            try:
                declared = load_config_file(config_file, prepare=preparer(layout.family, settings, notes)
                                            if layout is not None else None)
                if heads_guess is not None:  # what the file states, not a guess beside it
                    notes[notes.index(heads_guess)] = (f"num_attention_heads={declared.num_attention_heads}, "
                                                       f"from {Path(config_file).name} (no shape records it)")
                # sizes the layout's library stores otherwise than its config says: facts, not problems
                stored_otherwise = {k: v for k, v in inferred.items()
                                    if layout is not None and k in layout.sizes_from_weights and getattr(declared, k) != v}
                notes += [f"{k}={v} as the weights store it, not the config's {getattr(declared, k)} "
                          f"({layout.sizes_from_weights[k]})" for k, v in stored_otherwise.items()]
                problems = compare_configs(declared, {k: v for k, v in inferred.items()
                                                      if k != "num_labels" and k not in stored_otherwise})
            except BertconvError as e:
                problems = [str(e)]
        vocab_file = src.sidecar(*(layout.family.wordpiece.file_names if layout is not None else ("vocab.txt",)))
        vocab_size = None
        if vocab_file is not None:
            try:
                vocab_size = len(load_vocab(vocab_file))
                if ("vocab_size" in inferred and vocab_size > inferred["vocab_size"] and layout is not None
                        and "vocab_size" in layout.sizes_from_weights):
                    notes.append(f"vocab.txt has {vocab_size} tokens but the word embeddings have "
                                 f"{inferred['vocab_size']} rows: tf2pt needs --keep-tokens FILE, the kept token ids")
                elif "vocab_size" in inferred and vocab_size != inferred["vocab_size"]:
                    problems.append(f"vocab.txt has {vocab_size} tokens but the word embeddings have "
                                    f"{inferred['vocab_size']} rows")
            except BertconvError as e:
                problems.append(str(e))

        if filter:
            rows = [r for r in rows if fnmatch.fnmatchcase(r.name, filter)]
        if stats:
            shown = progress.bar(sum(r.bytes for r in rows), desc="statistics", unit="B", unit_scale=True)
            for r in rows:
                if src.info(r.name).dtype not in ("string", "variant"):
                    r.stats = tensor_stats(src.read(r.name))
                if shown is not None:
                    shown.update(r.bytes)
            if shown is not None:
                shown.close()
        keys = {"name": lambda r: r.name, "size": lambda r: (-r.bytes, r.name),
                "params": lambda r: (-r.params, r.name), "dtype": lambda r: (r.dtype, r.name)}
        rows.sort(key=keys[sort])
        return InspectReport(str(path), src.format_name, layout.family.name if layout else None, naming, rows,
                             totals, heads, global_step, inferred, str(config_file) if config_file else None,
                             problems, str(vocab_file) if vocab_file else None, vocab_size, notes,
                             layout=layout.name if layout else None,
                             layout_description=layout.description if layout else None,
                             head_descriptions=dict(layout.family.head_descriptions) if layout else {},
                             provenance=read_provenance(source_directory(path)) if naming == "pt" else None)


# ------------------------------------------------------------------------------------ rendering

def _render_inspect_report(report: InspectReport, stats: bool, tensors: bool) -> str:
    from tabulate import tabulate

    lines = _summary_lines(report)
    if not tensors:
        return "\n".join(lines)
    headers = ["name", "shape", "dtype", "params", "bytes", "kind"]
    rows = []
    for r in report.tensors:
        kind = f"{r.category} ({r.role})" if r.role and r.category != "model" else r.category
        row = [_printable(r.name), "[" + ", ".join(map(str, r.shape)) + "]", r.dtype, f"{r.params:,}",
               _human_bytes(r.bytes), kind]
        if stats:
            s = r.stats or {}
            row += [_short_float(s.get("min")), _short_float(s.get("max")), _short_float(s.get("mean")),
                    _short_float(s.get("std")), s.get("nan", ""), s.get("inf", "")]
        rows.append(row)
    if stats:
        headers += ["min", "max", "mean", "std", "nan", "inf"]
    lines += ["", tabulate(rows, headers=headers, disable_numparse=True)]
    return "\n".join(lines)


def _summary_lines(report: InspectReport) -> list[str]:
    from tabulate import tabulate

    lines = []
    naming = "" if report.naming == "?" else f" ({'TensorFlow' if report.naming == 'tf' else 'PyTorch'} names)"
    layout = f", layout {report.layout}" if report.layout else ""
    lines.append(f"{report.path}: {report.format}, family {report.family or 'unknown'}{layout}{naming}")
    summary = [[c, f"{t['tensors']:,}", f"{t['params']:,}", _human_bytes(t["bytes"])]
               for c, t in report.totals.items()]
    lines.append(tabulate(summary, headers=["", "tensors", "parameters", "bytes"], disable_numparse=True))
    if report.heads:
        described = report.head_descriptions
        parts = [described[h] + (f" ({report.heads.get('num_labels')} labels)" if h == "classifier" else "")
                 for h in described if report.heads.get(h)]
        lines.append(f"heads: {', '.join(parts) if parts else 'none'}")
    if report.global_step is not None:
        lines.append(f"global_step: {report.global_step:,}")
    if report.inferred_config:
        lines.append("config inferred from shapes: "
                     + ", ".join(f"{k}={v}" for k, v in report.inferred_config.items()))
    if report.config_file:
        lines.append(f"config file: {report.config_file}"
                     + ("" if report.config_problems else " (agrees with the weights)"))
    if report.vocab_file:
        lines.append(f"vocab: {report.vocab_file} ({report.vocab_size} tokens)")
    lines += [f"problem: {p}" for p in report.config_problems]
    lines += [f"note: {n}" for n in report.notes]
    if report.provenance:
        lines += describe_provenance(report.provenance)
    return lines


def _printable(name: str) -> str:
    """Tensor names come from files: escape control characters before they reach a terminal."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _short_float(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.4g}"
