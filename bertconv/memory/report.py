"""``estimate``: the memory report for a model at one or more batch sizes and sequence lengths,
and whether it fits a GPU."""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .estimate import ACTIVATION_PREFIX, DEFAULT_ATTENTION, Estimate, Settings, simulate
from .shape import EncoderShape, encoder_shape

GIB = 2**30


@dataclass(frozen=True)
class GPU:
    name: str
    memory_bytes: int
    #: "sm90" for Hopper (cuBLAS's workspace is larger there), "default" otherwise
    arch: str = "default"
    #: how a size the user gave was read ("16GB" as 16 GiB), for the report to say; None for a name
    read_as: str | None = None


#: Common GPUs, by the name their vendor sells them under (memory in GiB, as nvidia-smi counts it).
GPUS = {g.name: g for g in (
    GPU("T4", 16 * GIB), GPU("V100-16GB", 16 * GIB), GPU("V100-32GB", 32 * GIB), GPU("A10", 24 * GIB),
    GPU("A10G", 24 * GIB), GPU("L4", 24 * GIB), GPU("A100-40GB", 40 * GIB), GPU("A100-80GB", 80 * GIB),
    GPU("H100", 80 * GIB, "sm90"), GPU("H200", 141 * GIB, "sm90"), GPU("L40S", 48 * GIB), GPU("A6000", 48 * GIB),
    GPU("RTX3090", 24 * GIB), GPU("RTX4090", 24 * GIB),
)}
#: Memory a CUDA process holds outside PyTorch's allocator (the driver's context and loaded
#: kernels), which ``max_memory_allocated`` does not count.
CUDA_CONTEXT_BYTES = GIB // 2
#: The caching allocator reserves more than it has allocated at the peak (blocks split and cached
#: for reuse); the share of the peak kept free for that.
FRAGMENTATION = 0.10
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(gib|gb|g|mib|mb|m)?\s*$", re.IGNORECASE)


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.upper()).removeprefix("NVIDIA").removeprefix("GEFORCE")


def parse_gpu(value: str | GPU | None) -> GPU | None:
    """A GPU from a size ("16GB", "24GiB", "80": GiB, as GPU memory is sold) or a name from
    :data:`GPUS` ("A100-80GB", "rtx 4090", case and dashes aside)."""
    if value is None or isinstance(value, GPU):
        return value
    m = _SIZE.match(value)
    if m:
        number, unit = float(m.group(1)), (m.group(2) or "gib").lower()
        scale = 2**20 if unit.startswith("m") else GIB
        binary = "MiB" if unit.startswith("m") else "GiB"
        read_as = None if unit in ("gib", "mib") else (
            f"--gpu {value.strip()} is read as {number:g} {binary} ({int(number * scale):,} bytes), as GPU "
            f"memory is sold and nvidia-smi counts it")
        return GPU(value.strip(), int(number * scale), read_as=read_as)
    wanted = _key(value)
    exact = [g for name, g in GPUS.items() if _key(name) == wanted]
    if exact:
        return exact[0]
    prefixed = [g for name, g in GPUS.items() if _key(name).startswith(wanted)]
    if len(prefixed) == 1:
        return prefixed[0]
    choices = ", ".join(g.name for g in prefixed) if prefixed else ", ".join(GPUS)
    raise InputError(f"unknown GPU {value!r}" if not prefixed else f"{value!r} is ambiguous",
                     hint=f"give its memory (16GB) or one of {choices}")


def fits(peak_bytes: int, gpu: GPU) -> bool:
    """Whether a step whose allocated peak is ``peak_bytes`` fits on ``gpu``, with the CUDA
    context and the allocator's fragmentation left aside."""
    return peak_bytes * (1 + FRAGMENTATION) + CUDA_CONTEXT_BYTES <= gpu.memory_bytes


def format_bytes(n: float) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


@dataclass
class MemoryReport:
    """The estimate for each (batch, sequence length) asked, and the fit on a GPU."""

    source: str
    shape: EncoderShape
    dtype: str
    mode: str
    optimizer: str
    attention: str
    device: str
    gpu: GPU | None
    rows: list[Estimate]
    #: sequence length -> the largest batch that fits on ``gpu`` (0: not even one sequence)
    largest_batch: dict[int, int]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "shape": self.shape.to_dict(), "dtype": self.dtype, "mode": self.mode,
                "optimizer": self.optimizer if self.mode == "train" else None, "attention": self.attention,
                "device": self.device, "gpu": asdict(self.gpu) if self.gpu else None,
                "headroom": {"cuda_context_bytes": CUDA_CONTEXT_BYTES, "fragmentation": FRAGMENTATION}
                if self.gpu else None,
                "estimates": [r.to_dict() for r in self.rows],
                "largest_batch": {str(k): v for k, v in self.largest_batch.items()} if self.gpu else None,
                "notes": self.notes}

    def _setting_line(self) -> str:
        precision = "float32" if self.dtype == "float32" else f"{self.dtype} autocast (float32 weights)"
        step = ("inference (no_grad)" if self.mode == "infer"
                else f"training step ({'no optimizer' if self.optimizer == 'none' else self.optimizer})")
        return f"{step}, {precision}, attention {self.attention}, on {self.device}"

    def render(self) -> str:
        from tabulate import tabulate

        sh = self.shape
        shared = f" ({sh.distinct_layers} weight set{'s' if sh.distinct_layers > 1 else ''})" if sh.shared_layers else ""
        model = (f"model        {sh.architecture}: {sh.layers} layers{shared}, hidden {sh.hidden}, {_count(sh.heads, 'head')}, "
                 f"intermediate {sh.intermediate}, vocab {sh.vocab}; {sh.parameters:,} parameters "
                 f"(stored {sh.stored_dtype})")
        lines = [model, f"step         {self._setting_line()}"]
        if len(self.rows) == 1:
            row = self.rows[0]
            lines.append(f"input        batch {row.batch} x {row.seq_len} tokens")
            lines.append(f"peak         {format_bytes(row.peak_bytes)} (at {row.peak_at})")
            lines.append("")
            table = [[name, format_bytes(value), f"{100 * value / row.peak_bytes:.1f}%"]
                     for name, value in row.breakdown.items() if value]
            lines.append(tabulate(table, headers=["at the peak", "bytes", "share"], disable_numparse=True))
            if row.per_layer:
                lines.append("")
                per_layer = [[name.removeprefix(ACTIVATION_PREFIX), format_bytes(value)]
                             for name, value in row.per_layer.items() if value]
                per_layer.append(["total", format_bytes(sum(row.per_layer.values()))])
                lines.append(tabulate(per_layer, headers=["one layer keeps for backward", "bytes"],
                                      disable_numparse=True))
            lines.append("")
            lines.append(f"parameters-only rule (accelerate estimate-memory): {format_bytes(row.parameters_only_bytes)}; "
                         f"this estimate is {row.peak_bytes / row.parameters_only_bytes:.2f}x that")
        else:
            table = []
            for r in self.rows:
                b = r.breakdown
                activations = sum(v for k, v in b.items() if k.startswith(ACTIVATION_PREFIX))
                cells = [str(r.batch), str(r.seq_len), format_bytes(r.peak_bytes),
                         format_bytes(b.get("weights", 0) + b.get("weights: half-precision copies", 0)),
                         format_bytes(b.get("gradients", 0)), format_bytes(b.get("optimizer state", 0)),
                         format_bytes(activations), r.peak_at, format_bytes(r.parameters_only_bytes)]
                if self.gpu:
                    cells.append("yes" if r.fits else "no")
                table.append(cells)
            headers = ["batch", "seq len", "peak", "weights", "gradients", "optimizer", "activations", "peak at",
                       "params-only rule"] + (["fits"] if self.gpu else [])
            lines.append("")
            lines.append(tabulate(table, headers=headers, disable_numparse=True))
        if self.gpu:
            lines.append("")
            verdict = "; ".join(f"{_batch_words(b)} of {s} tokens" for s, b in self.largest_batch.items())
            gpu = f"{self.gpu.name} ({format_bytes(self.gpu.memory_bytes)})"
            if len(self.rows) == 1:
                lines.append(f"{gpu}: {'fits' if self.rows[0].fits else 'does not fit'}")
            lines.append(f"largest batch that fits on {gpu}: {verdict} "
                         f"(keeping {format_bytes(CUDA_CONTEXT_BYTES)} for the CUDA context and "
                         f"{FRAGMENTATION:.0%} for the allocator's fragmentation)")
            if self.gpu.read_as:
                lines.append(f"note: {self.gpu.read_as}")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _batch_words(batch: int) -> str:
    if batch == 0:
        return "none (not even one sequence)"
    if batch >= LARGEST_BATCH_SEARCHED:
        return f"more than {LARGEST_BATCH_SEARCHED:,} sequences (searched no further)"
    return _count(batch, "sequence")


#: the largest batch :func:`largest_batch` tries: a model that fits more is reported as "more than"
LARGEST_BATCH_SEARCHED = 1 << 30


def _as_list(value: int | Iterable[int] | str, name: str) -> list[int]:
    """An int, a sequence of ints, or the CLI's comma-separated text."""
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        try:
            values = [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise InputError(f"--{name} takes integers separated by commas, got {value!r}") from None
    else:
        values = list(value)
    if not values:
        raise InputError(f"--{name} is empty")
    return values


def largest_batch(shape: EncoderShape, settings: Settings, gpu: GPU, limit: int = LARGEST_BATCH_SEARCHED) -> int:
    """The largest batch at ``settings.seq_len`` whose step fits on ``gpu`` (0 if none does;
    ``limit`` when more than ``limit`` would)."""
    def ok(batch: int) -> bool:
        return fits(simulate(shape, _with_batch(settings, batch)).peak_bytes, gpu)

    if not ok(1):
        return 0
    low, high = 1, 2
    while high <= limit and ok(high):
        low, high = high, high * 2
    if high > limit:
        return low
    while high - low > 1:  # ok(low) and not ok(high)
        mid = (low + high) // 2
        low, high = (mid, high) if ok(mid) else (low, mid)
    return low


def _with_batch(settings: Settings, batch: int) -> Settings:
    return Settings(batch, settings.seq_len, settings.dtype, settings.mode, settings.optimizer,
                    settings.attention, settings.device, settings.arch)


def estimate(source: str | Path | EncoderShape, *, batch: int | Iterable[int] | str = 8,
             seq_len: int | Iterable[int] | str | None = None, dtype: str = "float32", mode: str = "infer",
             optimizer: str = "adamw", attention: str | None = None, device: str = "cuda",
             gpu: str | GPU | None = None, family: str | None = None, tower: str | None = None,
             step: int | None = None) -> MemoryReport:
    """The peak memory of one step of the model at ``source`` (a TF checkpoint, a converted
    directory, anything :func:`bertconv.inspect_checkpoint` reads, or an :class:`EncoderShape`),
    for every batch size and sequence length given, estimated from its shapes without running it.

    ``dtype``: float32, or float16 / bfloat16 as ``torch.autocast`` runs them (float32 weights and
    optimizer state, half-precision matmuls). ``mode``: infer (a ``no_grad`` forward) or train (a
    forward, ``loss.backward()`` and an ``optimizer`` step). ``attention``: eager or sdpa (default:
    what transformers 5 picks). ``seq_len``: default 128, or the model's positions if fewer. ``device``: cuda (the GPU question) or cpu (what PyTorch does on
    CPU, which differs: see :mod:`bertconv.memory.estimate`). ``gpu``: a size or a name from
    :data:`GPUS`, to answer whether each step fits and the largest batch that does."""
    if isinstance(source, EncoderShape):
        shape, label = source, source.architecture
    else:
        shape, label = encoder_shape(source, family=family, tower=tower, step=step), str(source)
    gpu = parse_gpu(gpu)
    attention = attention or DEFAULT_ATTENTION
    batches = _as_list(batch, "batch")
    lengths = _as_list(seq_len, "seq-len") if seq_len is not None else [min(128, shape.max_positions)]
    arch = gpu.arch if gpu else "default"
    for b in batches:
        for length in lengths:
            Settings(b, length, dtype, mode, optimizer, attention, device, arch).check()
    rows, best = [], {}
    for length in lengths:
        if length > shape.max_positions:
            raise InputError(f"--seq-len {length} is longer than the model's {shape.max_positions} positions",
                             path=None if isinstance(source, EncoderShape) else source)
        for b in batches:
            settings = Settings(b, length, dtype, mode, optimizer, attention, device, arch)
            row = simulate(shape, settings)
            if gpu:
                row.fits = fits(row.peak_bytes, gpu)
            rows.append(row)
        if gpu:
            best[length] = largest_batch(shape, Settings(1, length, dtype, mode, optimizer, attention, device, arch),
                                         gpu)
    notes = list(shape.notes)
    if shape.stored_dtype != "float32":
        notes.append(f"the weights are stored as {shape.stored_dtype}; this estimate loads them as float32 "
                     "(from_pretrained(..., dtype=torch.float32)), as autocast and training expect")
    if device == "cuda":
        notes.append("CUDA figures follow PyTorch's CUDA code paths; the CPU paths are the ones measured "
                     "(docs/memory.md)")
    return MemoryReport(label, shape, dtype, mode, optimizer, attention, device, gpu, rows, best, notes)
