"""Filling a model from a state dict strictly: below the families (whose ``load_model`` uses it)
and the commands alike. torch is imported on first use."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import MappingError

if TYPE_CHECKING:
    import torch
    from torch import nn


def load_state_dict_strict(model: nn.Module, tensors: dict[str, torch.Tensor], family, *,
                           path: str | Path | None = None) -> None:
    """Fill every parameter of ``model`` from ``tensors``: a missing name, an unexpected name or a
    shape that does not fit is an error, all of them named at once. Nothing stays randomly
    initialised. The family's tied duplicates are accepted only when equal to what they duplicate,
    and its index buffers are dropped (they are not weights)."""
    import torch

    expected = model.state_dict()
    tensors = dict(tensors)
    problems = []
    prefix = family.encoder_prefix + "."
    bare = not any(n.startswith(prefix) for n in expected)
    if bare and tensors and all(n.startswith(prefix) for n in tensors):
        # a bare encoder saved by others may carry the model-type prefix; accept it when every name has it
        tensors = {n[len(prefix):]: t for n, t in tensors.items()}
    for redundant, original in family.tied.items():
        if bare:
            redundant, original = redundant.removeprefix(prefix), original.removeprefix(prefix)
        if redundant in tensors and original in tensors:
            if not torch.equal(tensors[redundant], tensors[original]):
                problems.append(f"{redundant} differs from {original}, which it must equal (tied)")
            del tensors[redundant]
    for name in [n for n in tensors if family.index_buffers.match(n)]:
        del tensors[name]  # buffers older releases saved; never weights
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:8])}"
                        + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected[:8])}"
                        + (" ..." if len(unexpected) > 8 else ""))
    for name in sorted(set(expected) & set(tensors)):
        if tuple(tensors[name].shape) != tuple(expected[name].shape):
            problems.append(f"{name} has shape {list(tensors[name].shape)}, the model expects "
                            f"{list(expected[name].shape)}")
        elif not tensors[name].is_floating_point():
            problems.append(f"{name} has dtype {tensors[name].dtype}, not a floating-point weight")
    if problems:
        raise MappingError("; ".join(problems), path=path,
                           hint=f"the weights do not fit a {getattr(model, 'architecture', family.name)} "
                                f"(prefix {'' if bare else prefix!r}) with this config")
    # assign: the file's tensors become the parameters, so the weights are never held twice
    model.load_state_dict(tensors, strict=True, assign=True)
