"""Running a converted model: bertconv's own PyTorch model of its family, or transformers' class,
on a chosen device and dtype, with float32 kept exact on CUDA and the peak memory measured."""
from __future__ import annotations

import contextlib
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import InputError
from ..torch_import import import_torch
from .compare import _PRECISION_RANK

DTYPES = ("float32", "float16", "bfloat16", "float64")

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


def transformers_outputs(model, inputs, device, family=None) -> dict[str, np.ndarray]:
    """Every named output of a transformers model on ``inputs``, as float64 arrays; ``family``
    (default: the one whose architectures include the model's class) names them."""
    import torch

    from ..families import family_for_architecture

    family = family or family_for_architecture(type(model).__name__)
    args = {k: torch.as_tensor(np.asarray(v), dtype=torch.long, device=device) for k, v in inputs.items()}
    with torch.inference_mode():
        named = family.transformers_outputs(model, model(**args, output_hidden_states=True))
    return {k: v.detach().to("cpu", torch.float64).numpy() for k, v in named.items()}


def _load_with_transformers(path: Path, architecture: str, dtype, device):
    try:
        import transformers
    except ImportError:
        raise InputError("--with-transformers needs transformers, which is not installed",
                         hint="pip install transformers") from None
    if not path.is_dir():
        raise InputError("--with-transformers loads a Hugging Face directory, not a bare file", path=path)
    # transformers 5 names the argument ``dtype``; 4.x called it ``torch_dtype``
    arguments = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": dtype}
    auto_class = _auto_class_of(path, architecture)
    if auto_class is not None:
        # The directory carries its own modeling code (the stock class would compute something
        # else): run it as a user loads it.
        cls = getattr(transformers, auto_class)
        arguments["trust_remote_code"] = True
    else:
        cls = getattr(transformers, architecture, None)
        if cls is None:
            raise InputError(f"transformers has no class {architecture}", path=path)
    model = cls.from_pretrained(str(path), attn_implementation="eager", **arguments)
    return model.to(device).eval()


def _auto_class_of(path: Path, architecture: str) -> str | None:
    """The transformers auto class that loads ``architecture`` from the directory's own modeling
    code (config.json's ``auto_map``), or None where it has none."""
    import json

    try:
        auto_map = json.loads((path / "config.json").read_text(encoding="utf-8")).get("auto_map") or {}
    except (OSError, ValueError):
        return None
    for auto_class, reference in auto_map.items():
        if auto_class != "AutoConfig" and str(reference).rsplit(".", 1)[-1] == architecture:
            return auto_class
    return None


_MADV_DONTNEED = 4  # Linux's value; mmap.MADV_DONTNEED exists only for maps Python made itself


def _file_mappings(path: Path) -> list[tuple[int, int]]:
    """Address ranges this process has mapped from ``path`` (Linux; empty elsewhere)."""
    try:
        target = path.resolve()
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            lines = maps.readlines()
    except OSError:
        return []
    ranges = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].rstrip("\n") == str(target):
            begin, end = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((begin, end))
    return ranges


@contextlib.contextmanager
def pages_released_after_use(model, weights_path: Path) -> Iterator[int]:
    """While the model runs, drop from the process the mapped pages of each module's weights once
    that module has run, so that the forward pass holds about one layer of the file instead of all
    of it. The weights stay valid: a page dropped from a file mapping that was never written to is
    read back from the file (the page cache) when touched again, as the tied word embeddings are
    by the MLM decoder. Only whole pages inside a parameter that lies in a mapping of
    ``weights_path`` are dropped; parameters in ordinary memory (cast to another dtype, read from
    a ``.bin``, moved to a GPU) are left alone, where dropping would lose their values. Yields the
    number of bytes that may be dropped.

    Hand-written with ctypes: neither torch nor safetensors offers a way to give back the pages
    of a tensor viewing a mapped file, and Python's mmap module only advises maps it made itself.
    """
    mapped = _file_mappings(weights_path) if sys.platform.startswith("linux") else []
    if not mapped:
        yield 0
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    page = resource.getpagesize()
    hooks, releasable = [], set()
    for module in model.modules():
        ranges = []
        for parameter in module.parameters(recurse=False):
            if parameter.device.type != "cpu":
                continue
            begin = parameter.data_ptr()
            end = begin + parameter.numel() * parameter.element_size()
            if not any(low <= begin and end <= high for low, high in mapped):
                continue
            begin, end = -(-begin // page) * page, end // page * page  # whole pages inside it only
            if end > begin:
                ranges.append((begin, end - begin))
        if ranges:
            releasable.update(ranges)  # a tied weight is released by each module that uses it, counted once

            def release(_module, _args, _output, ranges=ranges) -> None:
                for begin, length in ranges:
                    libc.madvise(ctypes.c_void_p(begin), ctypes.c_size_t(length), _MADV_DONTNEED)
            hooks.append(module.register_forward_hook(release))
    try:
        yield sum(length for _, length in releasable)
    finally:
        for hook in hooks:
            hook.remove()


#: Up to this many tokens, a CPU run uses one thread: the default check's products are too small
#: for torch's threads to share (docs/performance.md), and where the cores are busy with other work
#: its threads waiting on each other multiplied the forward pass's time several times over.
ONE_THREAD_TOKENS = 64


@contextlib.contextmanager
def cpu_threads(device, tokens: int) -> Iterator[None]:
    """torch's intra-op threads for a CPU run of ``tokens`` tokens, restored afterwards."""
    import torch

    if device.type != "cpu" or tokens > ONE_THREAD_TOKENS:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def run_one(converted: Path, dtype_name: str, device, *, with_transformers: bool, architecture: str,
            family, inputs) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import torch

    from ..converted import resolve_files
    from ..runtime import load_model, run_outputs

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
            model = load_model(converted, device=device, dtype=dtype)
            weights_dtype = _weights_dtype(model)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        loaded = time.perf_counter()
        weights_path = resolve_files(converted)[0]
        tokens = int(np.asarray(inputs["input_ids"]).size)
        with cpu_threads(device, tokens), pages_released_after_use(model, weights_path):
            if with_transformers:
                outputs = transformers_outputs(model, inputs, device, family)
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
