"""bertconv: faithful conversion of TensorFlow BERT-family checkpoints to PyTorch, with proof."""
from __future__ import annotations

import importlib

from .errors import BertconvError, CheckFailed, InputError

__version__ = "0.1.0"

#: The API, each function imported on first use: `bertconv --version` and `bertconv inspect` start
#: without NumPy, and nothing imports torch or TensorFlow until a model runs.
_API = {
    "convert": "conversion",
    "tf2pt": "conversion",
    "pt2tf": "conversion",
    "ConvertOptions": "conversion",
    "validate": "validation",
    "diff": "comparison",
    "inspect_checkpoint": "inspection",
    "open_source": "formats",
}

__all__ = ["__version__", "BertconvError", "CheckFailed", "InputError", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'bertconv' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
