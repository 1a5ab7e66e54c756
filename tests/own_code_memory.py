"""Shared by the tests of families whose directories carry their own modeling code (CANINE,
Funnel): the peak of live tensor memory of one inference forward of the converted model, measured
operator by operator (bertconv.memory.measure's tracker) over bertconv's own model, the module
those directories carry word for word; and the layers it runs, with the lengths they run at."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the measurement runs the model in torch")

from bertconv.memory.measure import LiveTensorTracker  # noqa: E402
from bertconv.runtime import load_model  # noqa: E402


def measured_forward(directory, *, batch: int, seq_len: int, layer_type: type, vocab: int = 100):
    """(peak bytes of a no_grad forward, with the weights and inputs; [(query length, key length)]
    of each layer run, in order). One position of the last row is padding."""
    model = load_model(directory)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (batch, seq_len), generator=generator)
    mask = torch.ones(batch, seq_len, dtype=torch.long)
    mask[-1, -1] = 0
    inputs = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask}
    runs = []

    def record(module, args, kwargs):
        # a second [batch, length, hidden] argument is the keys' sequence (Funnel's), else a mask
        second = args[1] if len(args) > 1 else None
        query = args[0]
        key = second if isinstance(second, torch.Tensor) and second.dim() == 3 else query
        runs.append((query.shape[1], key.shape[1]))

    hooks = [m.register_forward_pre_hook(record, with_kwargs=True) for m in model.modules()
             if isinstance(m, layer_type)]
    tracker = LiveTensorTracker()
    for t in [*model.parameters(), *model.buffers(), *inputs.values()]:
        tracker.track(t)
    with torch.no_grad(), tracker:
        outputs = model(**inputs)
        del outputs
    for hook in hooks:
        hook.remove()
    return tracker.peak, runs
