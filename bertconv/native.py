"""The compiled kernels (``bertconv/_kernels.c``), where setup.py could build them: the one place
that says whether they are present and whether this CPU hashes CRC-32C with them. Importing this
module imports neither NumPy nor anything else heavy (``bertconv --version`` asks it)."""
from __future__ import annotations

try:  # built at install time where a C compiler is present (setup.py); NumPy otherwise
    from . import _kernels as kernels
except ImportError:  # pragma: no cover - depends on how bertconv was installed
    kernels = None


def hardware_crc32c() -> bool:
    """Whether the kernels are built and this CPU has the CRC-32C instruction they use."""
    return kernels is not None and bool(kernels.HARDWARE_CRC32C)
