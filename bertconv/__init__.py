"""bertconv: faithful conversion of TensorFlow BERT-family checkpoints to PyTorch, with proof."""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import BertconvError, CheckFailed, InputError  # noqa: E402
from .formats import open_source  # noqa: E402

__all__ = ["__version__", "BertconvError", "CheckFailed", "InputError", "open_source",
           "convert", "inspect_checkpoint", "validate", "diff"]


def __getattr__(name):
    # The API entry points import torch or heavy modules only when they are used.
    if name == "convert":
        from .convert import convert
        return convert
    if name == "inspect_checkpoint":
        from .inspect import inspect_checkpoint
        return inspect_checkpoint
    if name == "validate":
        from .validate import validate
        return validate
    if name == "diff":
        from .diff import diff
        return diff
    raise AttributeError(name)
