"""Comparing an output with its reference: the statistics, and the tolerance each dtype is judged by.

What a correct float32 conversion achieves against the float64 reference is float32 rounding
alone. Rounding error is relative, so each bound is per unit of the output's magnitude
(``max(1, max|reference|)``): 2e-5 for float32, an order of magnitude above what float32 rounding
gives and below the subtlest real conversion bug, the erf GELU in place of the tanh one.
Lower precisions are judged by looser bounds and by cosine similarity (docs/numerics.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import outputs as out
from ..errors import InputError
from .report import OutputComparison

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
