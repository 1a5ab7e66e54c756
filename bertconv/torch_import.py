"""torch, imported only where a model runs or a PyTorch ``.bin`` file is read.

Every other path (conversion without validation, inspect, diff of files that need no model) never
imports it: the import alone takes 1.5-2 s and ~300 MB.
"""
from __future__ import annotations

import gc
import sys


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
    finally:
        if was_enabled:
            gc.enable()
    return torch
