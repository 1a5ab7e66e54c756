"""Weight-level comparison of two checkpoints of any supported formats.

Names are paired through the model family's mapping table when the two sides use different
namings: a TensorFlow checkpoint against its PyTorch conversion compares each TF tensor with its
mapped counterpart, transposed as the mapping says. Hugging Face's duplicate keys of tied weights
(``cls.predictions.decoder.*``) are compared against what they duplicate. Optimizer slots and
counters are listed as training state, never as missing. Differences are computed in float64 (or
complex128), a bounded block at a time, so that memory stays small whatever the tensor size.

``passed`` means: the same tensors, the same shapes, and every value within tolerance
(``|a - b| <= atol + rtol * |b|``). ``identical`` additionally needs equal dtypes and zero
difference. A dtype difference alone (a float16 export of a float32 model) is reported but judged
only through the values.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import CheckFailed, ConfigError, InputError
from .families import select_tower, source_view
from .formats import open_source
from .formats.base import TensorSource
from .mapping import METADATA_NAMES, apply_transform, training_state_kind, transformed_shape

__all__ = ["diff", "DiffReport", "TensorDiff"]

#: elements per block when computing differences
BLOCK_ELEMENTS = 1 << 20


@dataclass
class TensorDiff:
    """One compared pair. ``name`` is the tensor's name in A, ``name_b`` in B."""
    name: str
    name_b: str
    shape: tuple[int, ...]
    dtype_a: str
    dtype_b: str
    #: the mapping's transform applied to the TensorFlow side to bring it to the PyTorch layout
    #: (``transpose``, a head merge, or None when both sides share one layout)
    transform: str | None
    max_abs: float
    #: elements whose values differ at all
    num_different: int
    within_tolerance: bool
    #: True when B's tensor is a tied duplicate (or A's is) compared against its original
    alias: bool = False


@dataclass
class DiffReport:
    a: str
    b: str
    format_a: str
    format_b: str
    naming_a: str
    naming_b: str
    family: str | None
    atol: float
    rtol: float
    #: the source naming the names were paired through (e.g. google_bert, tf2_garden)
    layout: str | None = None
    compared: list[TensorDiff] = field(default_factory=list)
    missing_in_b: list[str] = field(default_factory=list)
    unexpected_in_b: list[str] = field(default_factory=list)
    #: (name in A, name in B, shape A after the mapping's transform, shape B)
    shape_mismatches: list[tuple[str, str, tuple, tuple]] = field(default_factory=list)
    #: (name in A, name in B, dtype A, dtype B); these pairs are still compared by value
    dtype_mismatches: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: (side "a"/"b", name, kind): optimizer slots and counters, not compared
    ignored_training_state: list[tuple[str, str, str]] = field(default_factory=list)
    #: (side, name): index buffers older Hugging Face state dicts carry (not weights)
    ignored_buffers: list[tuple[str, str]] = field(default_factory=list)
    #: (side, name, part, architecture): tensors of a part (a head, the pooler) that the other
    #: side's model class does not have at all, e.g. the pooler of a SQuAD checkpoint against its
    #: BertForQuestionAnswering conversion; listed, not failed
    outside_architecture: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: (name in A, name in B, reason): pairs whose values cannot be compared as numbers
    not_compared: list[tuple[str, str, str]] = field(default_factory=list)

    # -- verdicts -------------------------------------------------------------------------------
    @property
    def beyond_tolerance(self) -> list[TensorDiff]:
        return [d for d in self.compared if not d.within_tolerance]

    @property
    def passed(self) -> bool:
        return not (self.missing_in_b or self.unexpected_in_b or self.shape_mismatches
                    or self.beyond_tolerance)

    @property
    def identical(self) -> bool:
        return (self.passed and not self.dtype_mismatches and not self.not_compared
                and not self.outside_architecture and all(d.max_abs == 0 for d in self.compared))

    @property
    def worst(self) -> TensorDiff | None:
        nonzero = [d for d in self.compared if d.max_abs != 0]
        return max(nonzero, key=lambda d: (math.isnan(d.max_abs), d.max_abs)) if nonzero else None

    def summary(self) -> dict:
        worst = self.worst
        return {
            "compared": len(self.compared),
            "identical_values": sum(d.max_abs == 0 for d in self.compared),
            "beyond_tolerance": len(self.beyond_tolerance),
            "missing_in_b": len(self.missing_in_b),
            "unexpected_in_b": len(self.unexpected_in_b),
            "shape_mismatches": len(self.shape_mismatches),
            "dtype_mismatches": len(self.dtype_mismatches),
            "aliases": sum(d.alias for d in self.compared),
            "ignored_training_state": len(self.ignored_training_state),
            "ignored_buffers": len(self.ignored_buffers),
            "outside_architecture": len(self.outside_architecture),
            "not_compared": len(self.not_compared),
            "worst": {"name": worst.name, "name_b": worst.name_b, "max_abs": worst.max_abs} if worst else None,
        }

    def to_dict(self) -> dict:
        out = asdict(self)
        out["compared"] = [asdict(d) for d in self.compared]
        out["passed"] = self.passed
        out["identical"] = self.identical
        out["summary"] = self.summary()
        return out

    def render(self) -> str:
        s = self.summary()
        lines = [f"A: {self.a} ({self.format_a}, {self.naming_a} names)",
                 f"B: {self.b} ({self.format_b}, {self.naming_b} names)"]
        if self.naming_a != self.naming_b and self.family:
            lines.append(f"names paired through the {self.layout or self.family} mapping")
        for d in self.beyond_tolerance:
            target = d.name if d.name == d.name_b else f"{d.name} -> {d.name_b}"
            lines.append(f"DIFFERS  {target}: max abs {d.max_abs:.6g} ({d.num_different} elements differ)")
        for side, name, part, arch in self.outside_architecture:
            lines.append(f"not in {arch} ({'B' if side == 'a' else 'A'}): {name} ({part})")
        for name in self.missing_in_b:
            lines.append(f"MISSING in B  {name}")
        for name in self.unexpected_in_b:
            lines.append(f"UNEXPECTED in B  {name}")
        for a, b, sa, sb in self.shape_mismatches:
            lines.append(f"SHAPE  {a} {list(sa)} vs {b} {list(sb)}")
        for a, b, da, db in self.dtype_mismatches[:10]:
            lines.append(f"dtype  {a} {da} vs {b} {db}")
        if len(self.dtype_mismatches) > 10:
            lines.append(f"dtype  ... and {len(self.dtype_mismatches) - 10} more")
        for a, b, reason in self.not_compared:
            lines.append(f"not compared  {a}: {reason}")
        for side in ("a", "b"):
            kinds: dict[str, int] = {}
            for where, _, kind in self.ignored_training_state:
                if where == side:
                    kinds[kind] = kinds.get(kind, 0) + 1
            if kinds:
                lines.append(f"ignored in {side.upper()} (training state): "
                             + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
        for side, name in self.ignored_buffers:
            lines.append(f"ignored in {side.upper()} (index buffer, not a weight): {name}")
        worst = s["worst"]
        lines.append(
            f"{s['compared']} compared ({s['identical_values']} equal, {s['beyond_tolerance']} beyond "
            f"atol={self.atol:g} rtol={self.rtol:g}), {s['missing_in_b']} missing in B, "
            f"{s['unexpected_in_b']} unexpected in B, {s['shape_mismatches']} shape and "
            f"{s['dtype_mismatches']} dtype mismatches"
            + (f"; worst {worst['name']}: max abs {worst['max_abs']:.6g}" if worst else ""))
        lines.append("IDENTICAL" if self.identical else "PASSED" if self.passed else "FAILED")
        return "\n".join(lines)

    def raise_for_failure(self) -> None:
        if self.passed:
            return
        parts = []
        beyond = self.beyond_tolerance
        if beyond:
            worst = max(beyond, key=lambda d: (math.isnan(d.max_abs), d.max_abs))
            parts.append(f"{len(beyond)} tensor(s) differ beyond atol={self.atol:g} rtol={self.rtol:g}, "
                         f"worst {worst.name} (max abs {worst.max_abs:.6g})")
        if self.missing_in_b:
            parts.append(f"{len(self.missing_in_b)} missing in B (first {self.missing_in_b[0]})")
        if self.unexpected_in_b:
            parts.append(f"{len(self.unexpected_in_b)} unexpected in B (first {self.unexpected_in_b[0]})")
        if self.shape_mismatches:
            a, _, sa, sb = self.shape_mismatches[0]
            parts.append(f"{len(self.shape_mismatches)} shape mismatch(es) (first {a}: {list(sa)} vs {list(sb)})")
        raise CheckFailed("checkpoints differ: " + "; ".join(parts), path=self.b)


# ------------------------------------------------------------------------------------- pairing
@dataclass
class _Side:
    source: TensorSource
    naming: str
    #: name -> pairing key: ("pt", the PyTorch name) when the family recognises it, else
    #: ("raw", name). Keys meet on the PyTorch side, where every family's table arrives.
    keys: dict[str, tuple[str, str]]
    aliases: set[str]
    ignored: dict[str, str]
    buffers: list[str]
    layout: object = None

    def transform_to_pytorch(self, name: str) -> str | None:
        if self.naming != "tf" or self.layout is None:
            return None
        match = self.layout.mapping.to_target(name)
        return match.rule.transform if match else None


def _describe(source: TensorSource, family: str | None, tower: str | None = None,
              bound=None) -> _Side:
    names = source.names()
    layout, naming, to_source = source_view(names, family, source=source)
    if tower and naming == "tf" and layout is not None and layout.family.towers and layout.tower != tower:
        # a checkpoint of several models (ELECTRA): compare the one the converted side holds
        layout = select_tower(layout, tower).for_checkpoint(names, source)
        to_source = {n: n for n in names if layout.mapping.to_target(n)}
    elif bound is not None and naming == "pt" and bound.tower and layout is not None and layout.tower != bound.tower:
        # PyTorch names of that model, read through the table the TensorFlow side was bound to
        layout = bound
        matches = {n: layout.mapping.to_source(n) or layout.mapping.to_source(f"{layout.family.encoder_prefix}.{n}")
                   for n in names}
        to_source = {n: m.source for n, m in matches.items() if m}
    present = set(names)
    ignored = {}
    for name in names:
        kind = "checkpoint metadata" if name in METADATA_NAMES else training_state_kind(
            name, source.info(name).shape, lambda v: source.info(v).shape if v in present else None)
        if kind is not None:
            ignored[name] = kind
    # Non-weight buffers older Hugging Face state dicts carry; transformers itself ignores them on load
    buffers = [n for n in names if naming == "pt" and layout.family.index_buffers.match(n)]
    keys = {}
    for name in names:
        if name in ignored or name in buffers:
            continue
        match = layout.mapping.to_target(to_source[name]) if name in to_source else None
        keys[name] = ("pt", match.target) if match else ("raw", name)
    aliases = {n for n in names if naming == "pt" and n in layout.family.tied}
    return _Side(source, naming, keys, aliases, ignored, buffers, layout)


def _pairs(side_a: _Side, side_b: _Side):
    """Yield (name_a | None, name_b | None, alias) over the union of both sides."""
    if "?" in (side_a.naming, side_b.naming):
        # Without a recognised family on both sides, only equal names can be paired.
        key_a = {n: ("raw", n) for n in side_a.keys}
        key_b = {n: ("raw", n) for n in side_b.keys}
        aliases_a = aliases_b = set()
    else:
        key_a, key_b = side_a.keys, side_b.keys
        aliases_a, aliases_b = side_a.aliases, side_b.aliases
    primary_a = {k: n for n, k in key_a.items() if n not in aliases_a}
    primary_b = {k: n for n, k in key_b.items() if n not in aliases_b}
    for name_a, key in key_a.items():
        if name_a in aliases_a:
            continue
        yield name_a, primary_b.get(key), False
    for name_b, key in key_b.items():
        if name_b in aliases_b:
            continue
        if key not in primary_a:
            yield None, name_b, False
    # Tied duplicates: compared against the other side's original; reported as missing or
    # unexpected only when that original is absent too.
    for name_a in sorted(aliases_a):
        counterpart = primary_b.get(key_a[name_a])
        yield (name_a, counterpart, True) if counterpart else (name_a, None, False)
    for name_b in sorted(aliases_b):
        counterpart = primary_a.get(key_b[name_b])
        yield (counterpart, name_b, True) if counterpart else (None, name_b, False)


# ------------------------------------------------------------------------------------- numbers
def _max_abs_difference(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> tuple[float, int, bool]:
    """(max |a - b|, elements that differ, all within atol + rtol*|b|), a block at a time.

    NaN equals NaN and an infinity equals itself, so a checkpoint compared with itself is
    identical; a NaN against a number is an infinite difference."""
    work = np.complex128 if (a.dtype.kind == "c" or b.dtype.kind == "c") else np.float64
    if a.ndim == 0:
        a, b = a.reshape(1), b.reshape(1)
    rows = a.shape[0]
    per_row = max(1, math.prod(a.shape[1:]))
    step = max(1, BLOCK_ELEMENTS // per_row)
    worst, different, within = 0.0, 0, True
    for start in range(0, rows, step):
        with np.errstate(invalid="ignore", over="ignore"):  # a NaN of another dtype, widened
            block_a = np.asarray(a[start:start + step]).astype(work)
            block_b = np.asarray(b[start:start + step]).astype(work)
            delta = np.abs(block_a - block_b)
            same = (block_a == block_b) | (np.isnan(block_a) & np.isnan(block_b))
        delta[same] = 0.0
        delta[np.isnan(delta)] = np.inf
        different += int(np.count_nonzero(delta))
        if delta.size:
            worst = max(worst, float(delta.max()))
            if within:
                with np.errstate(invalid="ignore"):  # rtol * inf where both sides are infinite
                    within = bool(np.all((delta == 0) | (delta <= atol + rtol * np.abs(block_b))))
    return worst, different, within


def _numeric(dtype: str) -> bool:
    return dtype not in ("string", "variant")


def _compare(report: DiffReport, side_a: _Side, side_b: _Side, name_a: str, name_b: str,
             alias: bool, same_layout: bool) -> None:
    info_a, info_b = side_a.source.info(name_a), side_b.source.info(name_b)
    # Different layouts meet in the PyTorch one: each TensorFlow side goes through its own rule.
    t_a = None if same_layout else side_a.transform_to_pytorch(name_a)
    t_b = None if same_layout else side_b.transform_to_pytorch(name_b)
    shape_a, shape_b = transformed_shape(t_a, info_a.shape), transformed_shape(t_b, info_b.shape)
    if shape_a != shape_b:
        report.shape_mismatches.append((name_a, name_b, shape_a, shape_b))
        return
    if info_a.dtype != info_b.dtype and not alias:
        report.dtype_mismatches.append((name_a, name_b, info_a.dtype, info_b.dtype))
    if not (_numeric(info_a.dtype) and _numeric(info_b.dtype)):
        if info_a.dtype == info_b.dtype == "string":
            equal = np.array_equal(side_a.source.read(name_a), side_b.source.read(name_b))
            report.compared.append(TensorDiff(name_a, name_b, info_b.shape, info_a.dtype, info_b.dtype,
                                              None, 0.0 if equal else math.inf, 0 if equal else 1, equal,
                                              alias))
        else:
            report.not_compared.append((name_a, name_b, f"{info_a.dtype} vs {info_b.dtype} holds no numbers"))
        return
    array_a = apply_transform(t_a, side_a.source.read(name_a))
    array_b = apply_transform(t_b, side_b.source.read(name_b))
    max_abs, different, within = _max_abs_difference(array_a, array_b, report.atol, report.rtol)
    report.compared.append(TensorDiff(name_a, name_b, shape_b, info_a.dtype, info_b.dtype,
                                      t_a or t_b, max_abs, different, within, alias))


def diff(a: str | Path, b: str | Path, *, atol: float = 0.0, rtol: float = 0.0,
         family: str | None = None, tower: str | None = None, verify_crc: bool = True,
         step: int | None = None) -> DiffReport:
    """Compare the weights of checkpoint ``a`` with those of ``b`` (any supported formats).
    ``step``: which ``model.ckpt-N`` of a TensorFlow training directory to read, on each side
    that is one."""
    if atol < 0 or rtol < 0 or math.isnan(atol) or math.isnan(rtol):
        raise InputError("atol and rtol must be non-negative numbers")
    with _open(a, verify_crc, step) as source_a, _open(b, verify_crc, step) as source_b:
        source_a.require_data()
        source_b.require_data()
        tower = tower or _tower_of(source_a) or _tower_of(source_b)
        side_a = _describe(source_a, family, tower)
        side_b = _describe(source_b, family, tower, bound=side_a.layout if side_a.naming == "tf" else None)
        if side_a.naming == "pt" and side_b.naming == "tf":
            side_a = _describe(source_a, family, tower, bound=side_b.layout)
        # the TensorFlow side's layout names the pairing (either side's when both are alike)
        named = next((s.layout for s in (side_a, side_b) if s.naming == "tf" and s.layout is not None),
                     side_a.layout or side_b.layout)
        report = DiffReport(str(a), str(b), source_a.format_name, source_b.format_name,
                            side_a.naming, side_b.naming, named.family.name if named else None, atol, rtol,
                            layout=named.name if named else None)
        report.ignored_training_state = (
            [("a", n, k) for n, k in sorted(side_a.ignored.items())]
            + [("b", n, k) for n, k in sorted(side_b.ignored.items())])
        report.ignored_buffers = [("a", n) for n in side_a.buffers] + [("b", n) for n in side_b.buffers]
        same_layout = (side_a.naming == side_b.naming
                       and getattr(side_a.layout, "name", None) == getattr(side_b.layout, "name", None))
        for name_a, name_b, alias in _pairs(side_a, side_b):
            if name_a is None and name_b is None:
                continue
            if name_b is None:
                report.missing_in_b.append(name_a)
            elif name_a is None:
                report.unexpected_in_b.append(name_b)
            else:
                _compare(report, side_a, side_b, name_a, name_b, alias, same_layout)
        _set_aside_absent_parts(report, side_a, side_b)
        report.missing_in_b.sort()
        report.unexpected_in_b.sort()
        report.compared.sort(key=lambda d: (d.alias, d.name, d.name_b))
        return report


def _open(path, verify_crc: bool, step: int | None) -> TensorSource:
    from .formats import detect_format

    tf_side = step is not None and detect_format(path)[0] == "tf-bundle"
    return open_source(path, verify_crc=verify_crc, step=step if tf_side else None)


def _tower_of(source: TensorSource) -> str | None:
    """The tower a converted output was exported from, as tf2pt records it."""
    import json

    from .config import read_config_json
    config = source.sidecar("config.json")
    try:
        if config is not None:
            data = read_config_json(config)
        else:
            data = json.loads((getattr(source, "metadata", None) or {}).get("bertconv.config", "{}"))
        tower = (data.get("bertconv") or {}).get("tower")
    except (ConfigError, ValueError, AttributeError, RecursionError):
        return None
    return tower if isinstance(tower, str) else None


def _architecture(side: _Side) -> str | None:
    """The model class a PyTorch-named checkpoint was saved for (config.json or our metadata)."""
    if side.naming != "pt":
        return None
    config = side.source.sidecar("config.json")
    if config is not None:
        try:
            from .config import read_config_json
            archs = read_config_json(config).get("architectures") or []
            if archs:
                return archs[0]
        except (ConfigError, AttributeError, IndexError, KeyError):
            pass
    return (getattr(side.source, "metadata", None) or {}).get("bertconv.architecture")


def _parts_of(layout, architecture: str) -> set[str] | None:
    heads = layout.family.architecture_heads.get(architecture)
    if heads is None:
        return None
    return set(layout.exported_parts(heads, architecture))


def _set_aside_absent_parts(report: DiffReport, side_a: _Side, side_b: _Side) -> None:
    """Move tensors of parts that the PyTorch side's model class lacks out of missing/unexpected."""
    for tf_side, pt_side, side_label, names in ((side_a, side_b, "a", report.missing_in_b),
                                                (side_b, side_a, "b", report.unexpected_in_b)):
        if tf_side.naming != "tf" or tf_side.layout is None:
            continue
        arch = _architecture(pt_side)
        parts = _parts_of(tf_side.layout, arch) if arch else None
        if parts is None:
            continue
        present = {tf_side.layout.mapping.to_target(n).rule.head for n in tf_side.keys
                   if tf_side.keys[n][0] == "pt"}
        for name in list(names):
            match = tf_side.layout.mapping.to_target(name)
            part = match.rule.head if match else None
            if part is not None and part in present and part not in parts:
                names.remove(name)
                report.outside_architecture.append((side_label, name, part, arch))
