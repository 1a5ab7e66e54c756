"""Hold bertconv's memory estimate to account, and write docs/memory.md.

For BERT-Base- and BERT-Large-sized converted directories, at batch 1, 8 and 32 and sequence 128 and
512, in float32 and bfloat16 autocast, for inference and an AdamW training step, it measures the
peak of live tensor memory of one real step in transformers (``bertconv.memory.measure``) and sets
the estimate (``bertconv.memory.estimate``) and accelerate's parameters-only rule beside it.

Which rows are real: a step too large for this machine's memory or time is measured over PyTorch's
fake tensors (the same operators, shapes and aliasing, nothing allocated). Every case is measured
fake; the cases small enough (``--real-work``, ``--real-memory``) are also run for real, each in its
own process under a memory cap, and the table shows both peaks, so that the fake measurement is
seen to equal the real one where both exist.

    python bench/memory.py                      # Base and Large, writes docs/memory.md
    python bench/memory.py --sizes base --no-real --out bench/work/memory-quick.md
    python bench/memory.py --device cuda        # on a machine with a GPU: real CUDA steps, max_memory_allocated

Needs the project's virtual environment (torch, transformers; TensorFlow to write the checkpoints
with bench/make_checkpoints.py when bench/work has none).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / "work"
sys.path.insert(0, str(REPO_DIR))

from bertconv.memory import GPU, encoder_shape, estimate  # noqa: E402

BATCHES = (1, 8, 32)
LENGTHS = (128, 512)
DTYPES = ("float32", "bfloat16")
MODES = ("infer", "train")
GB = 1e9
#: the real runs' budget: tokens x parameters x (3 for a training step, 1 for a forward), which
#: keeps every real row to about a minute on two cores
DEFAULT_REAL_WORK = 5e11


@dataclass
class Row:
    size: str
    batch: int
    seq_len: int
    dtype: str
    mode: str
    attention: str
    estimate: int
    estimate_at: str
    parameters_only: int
    fake: int | None = None
    real: int | None = None
    real_seconds: float | None = None
    fake_at: str | None = None
    #: what the model is, when not the size's pretraining model
    variant: str = ""

    @property
    def measured(self) -> int:
        return self.real if self.real is not None else self.fake


def python() -> str:
    venv = REPO_DIR / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def ensure_converted(size: str, *, encoder_only: bool = False) -> Path:
    """bench/work/bert-SIZE-hf (or, ``encoder_only``, bert-SIZE-encoder-hf: ``--head base``, a
    BertModel), converted with ``bertconv tf2pt --no-validate`` from the checkpoint
    bench/make_checkpoints.py writes (made first if missing)."""
    checkpoint = WORK_DIR / f"bert-{size}"
    converted = WORK_DIR / (f"bert-{size}-encoder-hf" if encoder_only else f"bert-{size}-hf")
    if not (checkpoint / "bert_model.ckpt.index").exists():
        subprocess.run([python(), str(BENCH_DIR / "make_checkpoints.py"), "--sizes", size], check=True)
    if not (converted / "config.json").exists():
        bertconv = Path(python()).with_name("bertconv")
        subprocess.run([str(bertconv), "tf2pt", str(checkpoint), str(converted), "--no-validate", "--overwrite", "-q",
                        *(["--head", "base"] if encoder_only else [])], check=True)
    return converted


def run_real(directory: Path, row: Row, *, device: str, cap_bytes: int, threads: int | None) -> dict:
    """One real step in its own process, under an address-space cap."""
    def limit():
        if cap_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    command = [python(), "-m", "bertconv.memory.measure", str(directory), "--batch", str(row.batch),
               "--seq-len", str(row.seq_len), "--dtype", row.dtype, "--mode", row.mode, "--optimizer", "adamw",
               "--attention", row.attention, "--device", device]
    if threads:
        command += ["--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit, cwd=REPO_DIR,
                          env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"}, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_estimate_cli(checkpoint: Path, runs: int) -> tuple[float, str]:
    """Wall time of ``bertconv inspect CKPT --memory`` in a fresh process, the median of ``runs``."""
    bertconv = Path(python()).with_name("bertconv")
    command = [str(bertconv), "inspect", str(checkpoint), "--memory", "--batch", "8", "--seq-len", "512",
               "--mode", "train", "--dtype", "bfloat16", "--gpu", "A100-40GB"]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    shown = [str(Path(c).relative_to(REPO_DIR)) if c.startswith(str(REPO_DIR)) else c for c in command[1:]]
    return statistics.median(times), " ".join(["bertconv", *shown])


def pct(a: int, b: int) -> str:
    return f"{100 * (a / b - 1):+.1f}%"


def gb(n: int | None) -> str:
    return "" if n is None else f"{n / GB:.2f}"


def table(rows: list[Row], *, real_column: bool, attention: bool = False) -> list[str]:
    header = ["model", "batch", "seq", "dtype", "step", *(["attention"] if attention else []), "measured GB", "how",
              *(["fake GB", "real - fake"] if real_column else []),
              "estimate GB", "error", "params-only GB", "its error", "peak at (estimate)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        how = "real" if r.real is not None else "fake"
        cells = [f"BERT-{r.size.capitalize()}{r.variant}", str(r.batch), str(r.seq_len), r.dtype,
                 "infer" if r.mode == "infer" else "train (AdamW)", *([r.attention] if attention else []),
                 gb(r.measured), how]
        if real_column:
            cells += [gb(r.fake), "" if r.real is None or r.fake is None else f"{r.real - r.fake:+,d} B"]
        cells += [gb(r.estimate), pct(r.estimate, r.measured), gb(r.parameters_only),
                  pct(r.parameters_only, r.measured), r.estimate_at]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="base,large")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-real", action="store_true", help="measure every case over fake tensors only")
    parser.add_argument("--real-work", type=float, default=DEFAULT_REAL_WORK,
                        help="run for real the cases with tokens x parameters x (3 train, 1 infer) up to this")
    parser.add_argument("--real-memory", type=float, default=8.0,
                        help="... and a fake-measured peak up to this many GB")
    parser.add_argument("--threads", type=int, help="torch threads for the real runs (default: torch's)")
    parser.add_argument("--timing-runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO_DIR / "docs" / "memory.md")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    started = time.perf_counter()

    import torch
    import transformers

    from bertconv.memory.measure import measure

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    gpu = None
    if cuda:  # the estimate's cuBLAS workspace follows the architecture
        major, _ = torch.cuda.get_device_capability()
        gpu = GPU(torch.cuda.get_device_name(), torch.cuda.get_device_properties(0).total_memory,
                  "sm90" if major == 9 else "default")
    directories = {size: ensure_converted(size) for size in sizes}
    rows: list[Row] = []
    eager_rows: list[Row] = []
    plans = []
    for size in sizes:
        plans += [(size, directories[size], rows, "", (b, s, d, m, "sdpa"))
                  for m in MODES for d in DTYPES for s in LENGTHS for b in BATCHES]
    for size in sizes:  # the quadratic term, where attention makes the peak: the encoder alone
        encoder = ensure_converted(size, encoder_only=True)
        plans += [(size, encoder, eager_rows, " encoder", (b, 512, d, "infer", a))
                  for d in DTYPES for b in (8, 32) for a in ("eager", "sdpa")]
    for size, directory, into, variant, (batch, seq_len, dtype, mode, attention) in plans:
        shape = encoder_shape(directory)
        report = estimate(shape, batch=batch, seq_len=seq_len, dtype=dtype, mode=mode, attention=attention,
                          device=args.device, gpu=gpu)
        est = report.rows[0]
        row = Row(size, batch, seq_len, dtype, mode, attention, est.peak_bytes, est.peak_at,
                  est.parameters_only_bytes, variant=variant)
        if not cuda:
            fake = measure(directory, batch=batch, seq_len=seq_len, dtype=dtype, mode=mode, attention=attention,
                           fake=True)
            row.fake, row.fake_at = fake.peak_bytes, fake.peak_at
        work = batch * seq_len * shape.parameters * (3 if mode == "train" else 1)
        fits_here = cuda or (row.fake or 0) <= args.real_memory * GB
        if not args.no_real and fits_here and (cuda or work <= args.real_work):
            cap = 0 if cuda else int((row.fake or 0) * 1.5 + 3 * 2**30)
            try:
                real = run_real(directory, row, device=args.device, cap_bytes=cap, threads=args.threads)
            except RuntimeError as e:
                if cuda and "out of memory" in str(e).lower():
                    print(f"  {size} {batch}x{seq_len} {dtype} {mode}: out of GPU memory", flush=True)
                    continue
                raise
            row.real, row.real_seconds = real["peak_bytes"], real["seconds"]
        into.append(row)
        if row.measured is not None:
            print(f"{size:5s} {batch:2d}x{seq_len:3d} {dtype:8s} {mode:5s} {attention:5s} measured "
                  f"{gb(row.measured)} GB ({'real' if row.real is not None else 'fake'}) estimate "
                  f"{gb(row.estimate)} GB {pct(row.estimate, row.measured)}", flush=True)

    measured = [r for r in rows + eager_rows if r.measured is not None]
    both = [r for r in measured if r.real is not None and r.fake is not None]
    worst = max(measured, key=lambda r: abs(r.estimate / r.measured - 1))
    rule_errors = [r.parameters_only / r.measured - 1 for r in measured]
    timing = None
    if "large" in directories:
        timing = time_estimate_cli(WORK_DIR / "bert-large", args.timing_runs)
    elapsed = time.perf_counter() - started

    command = "python bench/memory.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Memory: the estimate against the measured peak",
        "",
        f"Written by `{command.strip()}` on {datetime.date.today().isoformat()} "
        f"({elapsed / 60:.0f} min): torch {torch.__version__}, transformers {transformers.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs"
        + (f", {torch.cuda.get_device_name()}" if cuda else "") + ".",
        "",
        "`bertconv inspect SRC --memory` (Python: `bertconv.memory.estimate`) estimates the peak memory of one",
        "step of a converted model from its shapes, without running it. Here each estimate is set beside the",
        "peak measured on one real step of the converted directory loaded in transformers"
        + (" on CUDA (`torch.cuda.max_memory_allocated`)." if cuda else
           " on CPU (the live tensor storages, counted at every operator by a dispatch mode)."),
        "",
        "The step: inputs of `batch` sequences of `seq` random token ids with one padded position (so the",
        "attention mask is materialised, as in any padded batch); `infer` is a `torch.no_grad()` forward;",
        "`train` is a forward under `torch.autocast` for bfloat16 (float32 weights), `loss.backward()` with",
        "the pretraining heads' labels, `AdamW.step()` and `zero_grad()`, with the optimizer's state already",
        "there (a fine-tuning loop's steady state) and the forward's outputs alive until the step ends. The",
        "attention is transformers' default, `sdpa`. Converted with `bertconv tf2pt --no-validate` from the",
        "checkpoints bench/make_checkpoints.py writes (Google's layout, BERT-Base and BERT-Large sizes, MLM",
        "and NSP heads, so the model is `BertForPreTraining` with its B x S x 30522 logits).",
        "",
        *(["*How*: every row ran for real on the GPU."] if cuda else [
            "*How*: `real` rows ran for real (each in its own process under a memory cap); `fake` rows ran the",
            "same code over PyTorch's `FakeTensorMode`, which executes the same operators with the same shapes",
            "and aliasing without allocating, for the steps too large for this machine. Every row also ran",
            "fake, and where a row ran both the table gives the difference."]),
        "*params-only*: accelerate's rule (`accelerate estimate-memory`): the weights in the dtype for",
        "inference, four times that for training with Adam; *its error* is how far that is from the",
        "measured peak. GB are 10^9 bytes; *peak at* is where in the step the estimate puts the peak.",
        "",
        *table(rows, real_column=not cuda),
        "",
        f"Largest error of the estimate: {pct(worst.estimate, worst.measured)} (BERT-{worst.size.capitalize()}, "
        f"batch {worst.batch} x {worst.seq_len}, {worst.dtype}, {worst.mode}); the parameters-only rule is "
        f"off by {100 * min(rule_errors):+.0f}% to {100 * max(rule_errors):+.0f}%.",
    ]
    if both:
        exact = sum(r.real == r.fake for r in both)
        largest = max(abs(r.real - r.fake) for r in both)
        lines += ["", f"Real against fake: {exact} of {len(both)} rows run both ways have the same peak to the "
                      f"byte; the largest difference is {largest:,} bytes (the MLM head's LayerNorm under CPU "
                      "autocast takes bfloat16 input, and the CPU kernel returns its mean and rstd in float32 "
                      "where the meta kernel behind fake tensors returns bfloat16)."]
    if eager_rows:
        lines += ["", "## Eager attention and SDPA", "",
                  "In the pretraining model above the MLM logits (B x S x 30522) make the inference peak, whatever",
                  "the attention. The quadratic term shows in the encoder alone (`tf2pt --head base`, a",
                  "`BertModel`): eager attention materialises the B x heads x S x S scores and probabilities, SDPA's",
                  "fused CPU kernel none of them. (A training step on CPU runs SDPA's math kernel, since dropout is",
                  "on, which materialises them as eager does, in float32 even under autocast; on CUDA the fused",
                  "kernels train with dropout.)",
                  "", *table(eager_rows, real_column=not cuda, attention=True)]
    if timing:
        lines += ["", "## Time of the estimate", "",
                  f"`{timing[1]}` (BERT-Large, including the search for the largest batch): "
                  f"{timing[0]:.2f} s wall, median of {args.timing_runs} runs in fresh processes; it imports no torch."]
    if not cuda:
        lines += ["", "## CUDA", "",
                  "Not measured here: this machine has no GPU. `python bench/memory.py --device cuda` runs every",
                  "case for real on a GPU and compares `torch.cuda.max_memory_allocated` with the estimate's",
                  "CUDA model, which differs from the CPU one where PyTorch's CUDA code does: `native_dropout`",
                  "keeps a bool mask; autocast runs LayerNorm, softmax, log_softmax and pow in float32; SDPA uses",
                  "a fused kernel in training too; AdamW updates every parameter at once (`foreach`); the",
                  "caching allocator rounds blocks to 512 bytes and holds cuBLAS's workspace per handle. Those",
                  "figures are modelled from PyTorch's source, not yet measured."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
