"""bertconv: faithful conversion of TensorFlow BERT-family checkpoints to PyTorch, with proof."""
from __future__ import annotations

__version__ = "0.1.0"

# The API functions share their names with the modules that define them (bertconv.convert,
# bertconv.validate, bertconv.diff): importing those modules here, before binding the names, keeps
# a later import of a submodule from replacing the function with the module. None of them imports
# torch or TensorFlow at import time.
from .convert import convert  # noqa: E402
from .diff import diff  # noqa: E402
from .errors import BertconvError, CheckFailed, InputError  # noqa: E402
from .formats import open_source  # noqa: E402
from .inspect import inspect_checkpoint  # noqa: E402
from .validate import validate  # noqa: E402

__all__ = ["__version__", "BertconvError", "CheckFailed", "InputError", "open_source",
           "convert", "inspect_checkpoint", "validate", "diff"]
