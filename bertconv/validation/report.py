"""What ``validate`` found: each output's comparison, each dtype's run, the whole report (rendered
as text or as JSON)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import CheckFailed


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

    def coverage(self) -> dict[str, Any]:
        """What the check covered, in the same words whatever made it cheap or dear: the outputs
        compared, the tokens they were computed on, the dtypes, and what they were held against."""
        return {"outputs": sorted({o.name for run in self.runs for o in run.outputs},
                                  key=[o.name for run in self.runs for o in run.outputs].index),
                "tokens": {k: self.inputs.get(k) for k in ("batch", "seq_len", "tokens", "padded_rows",
                                                            "segments", "positions") if k in self.inputs},
                "dtypes": [{"compute": run.dtype, "weights": run.weights_dtype, "runner": run.runner,
                            "device": run.device} for run in self.runs],
                "against": self.reference}

    def coverage_line(self) -> str:
        """The coverage in one line (``tf2pt`` prints it beside its verdict)."""
        covered = self.coverage()
        tokens = covered["tokens"]
        shape = f"{tokens.get('batch')}x{tokens.get('seq_len')} tokens"
        details = []
        if tokens.get("tokens") is not None:
            details.append(f"{tokens['tokens']} real")
        if tokens.get("padded_rows") is not None:
            details.append(f"{tokens['padded_rows']} padded row(s)")
        if tokens.get("segments") is not None:
            details.append("segment(s) " + ", ".join(map(str, tokens["segments"])))
        if tokens.get("positions"):
            details.append(f"positions {tokens['positions']}")
        if details:
            shape += f" ({'; '.join(details)})"
        dtypes = ", ".join(f"{d['compute']} ({d['runner']}, {d['weights']} weights)" for d in covered["dtypes"])
        return f"{len(covered['outputs'])} outputs on {shape}, in {dtypes}, against {self.reference}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        d["first_diverging"] = self.first_diverging
        d["coverage"] = self.coverage()
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
                 "inputs       " + ", ".join(f"{k} {v}" for k, v in self.inputs.items() if v is not None),
                 f"covered      {self.coverage_line()}"]
        for run in self.runs:
            memory = f"{run.peak_memory_bytes / 2**20:.0f} MiB {run.memory_measure}"
            lines.append("")
            lines.append(f"{run.dtype} on {run.device} ({run.runner}; weights {run.weights_dtype}; TF32 {run.tf32}): "
                         f"load {run.load_seconds:.2f} s, forward {run.forward_seconds:.2f} s, peak {memory}")
            rows = [(o.name, "x".join(map(str, o.shape)), f"{o.max_abs:.2e}", f"{o.max_rel:.2e}", f"{o.mean_abs:.2e}",
                     f"{o.cosine:.9f}", f"{o.bound:.1e}", "ok" if o.passed else "FAIL") for o in run.outputs]
            lines.append(tabulate(rows, headers=["output", "shape", "max abs", "max rel", "mean abs", "cosine",
                                                 "bound", "check"], disable_numparse=True))
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
