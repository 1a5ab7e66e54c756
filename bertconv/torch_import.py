"""torch, imported only where a model runs or a PyTorch ``.bin`` file is read.

Every other path (conversion without validation, inspect, diff of files that need no model) never
imports it: the import alone costs more time and memory than a whole conversion (docs/performance.md).
"""
from __future__ import annotations

import gc
import sys

#: Whether to move every object alive once torch is imported out of the collector's reach
#: (``gc.freeze``). Set by the console script (:func:`bertconv.cli.run`), whose process ends with
#: its command: left in the collector, torch's objects are walked again, to free nothing, by every
#: collection that building and running a model triggers. Off by default: a program calling the
#: API goes on, and its own objects frozen at that moment would never be collected.
freeze_after_import = False


def import_torch():
    """The torch module, imported with Python's cyclic garbage collector paused.

    The import creates a great many objects the collector tracks, and every 700 of them trigger a
    collection, the larger ones walking everything allocated so far to free nothing. Pausing
    changes nothing else: collection resumes as soon as the import returns, and every object stays
    collectable.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        import torch
        if freeze_after_import:
            gc.freeze()
    finally:
        if was_enabled:
            gc.enable()
    return torch
