"""torch, imported only where a model runs or a PyTorch ``.bin`` file is read.

Every other path (conversion without validation, inspect, diff of files that need no model) never
imports it: the import alone takes 1.5-2 s and ~300 MB.
"""
from __future__ import annotations

import gc
import sys

#: Whether to move every object alive once torch is imported out of the collector's reach
#: (``gc.freeze``). Set by the console script (:func:`bertconv.cli.run`), whose process ends with
#: its command: left in the collector, torch's objects are walked again by the collections that
#: building and running a model trigger (0.2 s of a ~4 s ``validate``, measured). Off by default:
#: a program calling the API goes on, and its own objects frozen at that moment would never be
#: collected.
freeze_after_import = False


def import_torch():
    """The torch module, imported with Python's cyclic garbage collector paused.

    The import creates some 160,000 objects the collector tracks, and every 700 of them trigger a
    collection, the larger ones walking everything allocated so far to free nothing (measured:
    ~0.2 s of a ~1.9 s import on a 2-core machine). Pausing changes nothing else:
    collection resumes as soon as the import returns, and every object stays collectable.
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
