"""The measurement that holds the estimate to account: one real step of a converted model in
transformers, the way users run it, with the peak of live tensor memory taken at the operator level.

On CPU the peak comes from :class:`LiveTensorTracker`, a dispatch mode that sees every tensor an
operator returns and every storage as it is freed. The same tracker runs over PyTorch's
``FakeTensorMode``, which executes the same operators with the same shapes, dtypes and aliasing
but allocates nothing: that is how the sizes too large for this machine are measured (the tests
and the benchmark show, on the sizes that fit, that the fake run's peak is the real run's).
On CUDA the peak is the caching allocator's ``torch.cuda.max_memory_allocated``, which also counts
its rounding and cuBLAS's workspace.

This module imports torch and transformers; :mod:`bertconv.memory`'s estimate needs neither.
"""
from __future__ import annotations

import contextlib
import json
import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..torch_import import import_torch

torch = import_torch()

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class LiveTensorTracker(TorchDispatchMode):
    """The bytes of every tensor storage alive, and their peak, as operators run.

    A storage is counted once however many tensors view it, from the operator that returned it
    until it is freed (a weak reference's callback: PyTorch keeps one Python object per storage
    while the storage lives, so the callback fires exactly when the memory is released). Tensors
    that exist before the mode is entered (weights, optimizer state, inputs) are counted with
    :meth:`track`. Written by hand because PyTorch's own trackers either need CUDA
    (``torch.cuda.memory``) or count allocator events that fake tensors never make (the profiler).

    What it cannot see: buffers a kernel allocates and frees inside one operator (a CPU kernel's
    scratch space), and the allocator's rounding; on CUDA those are in ``max_memory_allocated``.
    """

    def __init__(self, *, record: bool = False):
        super().__init__()
        self._sizes: dict[int, int] = {}
        self._refs: dict[int, weakref.ref] = {}
        self.live = 0
        self.peak = 0
        self.peak_at: str | None = None
        self.operators = 0
        #: (operator, live bytes after it) for each operator, when ``record``
        self.timeline: list[tuple[str, int]] | None = [] if record else None

    def _released(self, key: int) -> None:
        self.live -= self._sizes.pop(key)
        self._refs.pop(key, None)

    def track(self, tensor) -> None:
        if not isinstance(tensor, torch.Tensor):
            return
        storage = tensor.untyped_storage()
        key = id(storage)
        nbytes = storage.nbytes()
        known = self._sizes.get(key)
        if known is None:
            self._sizes[key] = nbytes
            self._refs[key] = weakref.ref(storage, lambda _, k=key: self._released(k))
            self.live += nbytes
        elif known != nbytes:  # resized in place
            self._sizes[key] = nbytes
            self.live += nbytes - known
        self.peak = max(self.peak, self.live)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.operators += 1
        before = self.peak
        for t in tree_flatten(out)[0]:
            self.track(t)
        # an in-place or out= operator can grow a storage it was given
        for t in tree_flatten((args, kwargs))[0]:
            if isinstance(t, torch.Tensor) and id(t.untyped_storage()) in self._sizes:
                self.track(t)
        if self.peak > before:
            self.peak_at = str(func)
        if self.timeline is not None:
            self.timeline.append((str(func), self.live))
        return out


@dataclass
class Measurement:
    """One measured step. ``peak_bytes`` includes what was alive before it (weights, optimizer
    state, inputs: ``baseline_bytes``)."""

    architecture: str
    batch: int
    seq_len: int
    dtype: str
    mode: str
    optimizer: str
    attention: str
    device: str
    fake: bool
    method: str
    peak_bytes: int
    baseline_bytes: int
    #: the tracker's peak as well on CUDA (tensor bytes without the allocator's rounding)
    tracked_peak_bytes: int | None
    peak_at: str | None
    operators: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _architecture(config) -> str:
    names = getattr(config, "architectures", None) or []
    if not names:
        raise InputError("config.json names no architecture", hint="convert the model with bertconv tf2pt")
    return names[0]


def load_model(directory: str | Path, *, attention: str, fake: bool, device: str = "cpu"):
    """The converted model as users load it: its architecture class, ``from_pretrained`` (or, for a
    fake run, the same class built from the same config under the active fake mode)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    directory = Path(directory)
    config = transformers.AutoConfig.from_pretrained(str(directory))
    architecture = _architecture(config)
    cls = getattr(transformers, architecture, None)
    if cls is None:
        raise InputError(f"transformers has no class {architecture}", path=directory)
    if fake:
        return cls._from_config(config, attn_implementation=attention), architecture
    model = cls.from_pretrained(str(directory), attn_implementation=attention, dtype=torch.float32)
    return model.to(device), architecture


def make_inputs(model, architecture: str, batch: int, seq_len: int, *, train: bool, device: str):
    """Random token ids with one padded position (so the attention mask is a real mask, as in any
    padded batch), and the labels the architecture's loss takes when training."""
    config = model.config
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch, seq_len), generator=generator).to(device)
    mask = torch.ones(batch, seq_len, dtype=torch.long)
    mask[-1, -1] = 0
    inputs = {"input_ids": ids, "attention_mask": mask.to(device)}
    if not train:
        return inputs
    tokens = torch.randint(0, config.vocab_size, (batch, seq_len), generator=generator).to(device)
    pair = torch.zeros(batch, dtype=torch.long, device=device)
    if architecture in ("BertForPreTraining",):
        inputs.update(labels=tokens, next_sentence_label=pair)
    elif architecture == "AlbertForPreTraining":
        inputs.update(labels=tokens, sentence_order_label=pair)
    elif architecture.endswith("ForMaskedLM"):
        inputs.update(labels=tokens)
    elif architecture == "ElectraForPreTraining":
        inputs.update(labels=torch.zeros(batch, seq_len, dtype=torch.long, device=device))
    elif architecture.endswith("ForSequenceClassification"):
        inputs.update(labels=pair)
    elif architecture.endswith("ForQuestionAnswering"):
        inputs.update(start_positions=pair, end_positions=pair)
    elif architecture.endswith("ForNextSentencePrediction"):
        inputs.update(labels=pair)
    else:
        raise InputError(f"no training loss for {architecture}", hint="measure --mode infer")
    return inputs


def _optimizer(model, name: str):
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-5)
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-5)
    if name == "none":
        return None
    raise InputError(f"unknown optimizer {name!r}", hint="adamw, sgd or none")


def _steady_state(model, optimizer) -> None:
    """Give the optimizer the state it holds from its second step on: one step on zero gradients,
    which creates it as the optimizer itself does, then the gradients freed as ``zero_grad`` frees them."""
    if optimizer is None:
        return
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _autocast(dtype: str, device: str):
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[dtype])


def run_step(model, architecture: str, *, batch: int, seq_len: int, dtype: str, mode: str, optimizer: str,
             device: str, tracker: LiveTensorTracker | None):
    """One inference forward, or one training step (forward, ``loss.backward()``, optimizer step,
    ``zero_grad``), as a fine-tuning loop writes it: the forward's outputs stay alive until the
    step is over. With ``tracker``, everything already alive is counted first, then every operator."""
    train = mode == "train"
    model.train(train)
    inputs = make_inputs(model, architecture, batch, seq_len, train=train, device=device)
    opt = _optimizer(model, optimizer) if train else None
    _steady_state(model, opt)
    if tracker is not None:
        for t in [*model.parameters(), *model.buffers(), *inputs.values()]:
            tracker.track(t)
        if opt is not None:
            for state in opt.state.values():
                for value in state.values():
                    tracker.track(value)
    baseline = tracker.live if tracker is not None else None
    with tracker if tracker is not None else contextlib.nullcontext():
        if train:
            with _autocast(dtype, device):
                outputs = model(**inputs)
            outputs.loss.backward()
            if opt is not None:
                opt.step()
                opt.zero_grad(set_to_none=True)
            del outputs
        else:
            with torch.no_grad(), _autocast(dtype, device):
                outputs = model(**inputs)
            del outputs
    return baseline


def measure(directory: str | Path, *, batch: int, seq_len: int, dtype: str = "float32", mode: str = "infer",
            optimizer: str = "adamw", attention: str = "sdpa", device: str = "cpu", fake: bool = False,
            threads: int | None = None) -> Measurement:
    """The peak memory of one step of the converted model in ``directory`` (see :func:`run_step`)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    if dtype not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}", hint="float32, float16 or bfloat16")
    if mode not in ("infer", "train"):
        raise InputError(f"unknown mode {mode!r}", hint="infer or train")
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    notes: list[str] = []
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda and fake:
        raise InputError("a fake run measures tensor bytes on CPU; run it with --device cpu")
    fake_mode = FakeTensorMode() if fake else contextlib.nullcontext()
    tracker = LiveTensorTracker()
    with fake_mode:
        torch.manual_seed(0)
        model, architecture = load_model(directory, attention=attention, fake=fake, device=device)
        if on_cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        baseline = run_step(model, architecture, batch=batch, seq_len=seq_len, dtype=dtype, mode=mode,
                            optimizer=optimizer, device=device, tracker=tracker)
        if on_cuda:
            torch.cuda.synchronize()
            peak, method = int(torch.cuda.max_memory_allocated()), "CUDA max_memory_allocated"
            notes.append("the baseline is the tracker's count of the tensors alive before the step")
        else:
            peak, method = tracker.peak, "live tensor storages (dispatch mode)" + (" over fake tensors" if fake else "")
    return Measurement(architecture, batch, seq_len, dtype, mode, optimizer if mode == "train" else "none",
                       attention, device, fake, method, peak, int(baseline), tracker.peak if on_cuda else None,
                       tracker.peak_at, tracker.operators, time.perf_counter() - started, notes)


def main(argv=None) -> int:
    """``python -m bertconv.memory.measure DIR --batch B --seq-len S ...``: one measurement as JSON
    on stdout (the benchmark runs each real case in its own process, under a memory cap)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--seq-len", type=int, required=True)
    parser.add_argument("--dtype", default="float32", choices=sorted(_DTYPES))
    parser.add_argument("--mode", default="infer", choices=["infer", "train"])
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd", "none"])
    parser.add_argument("--attention", default="sdpa", choices=["eager", "sdpa"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fake", action="store_true")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    result = measure(args.directory, batch=args.batch, seq_len=args.seq_len, dtype=args.dtype, mode=args.mode,
                     optimizer=args.optimizer, attention=args.attention, device=args.device, fake=args.fake,
                     threads=args.threads)
    print(json.dumps(result.to_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
