"""Readers (and the one streaming writer) for every format bertconv touches.

``open_source(path)`` works out the format from what the user named and returns a
:class:`~bertconv.formats.base.TensorSource`. Format modules are imported only when needed, so
that reading a TF checkpoint or a safetensors file never imports torch or TensorFlow.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import CheckpointFormatError, InputError
from .base import TensorInfo, TensorSource

__all__ = ["open_source", "detect_format", "TensorInfo", "TensorSource"]

_DATA_FILE = re.compile(r"^(?P<prefix>.+)\.data-\d{5}-of-\d{5}$")
_HF_WEIGHT_FILES = (
    ("model.safetensors", "safetensors"),
    ("pytorch_model.bin", "torch-bin"),
    ("tf_model.h5", "keras-h5"),
)


def detect_format(path: str | Path) -> tuple[str, Path]:
    """Return ``(format, location)``: one of ``tf-bundle`` (location: the bundle prefix),
    ``safetensors``, ``torch-bin``, ``keras-h5`` (location: the file)."""
    p = Path(path)
    if p.is_dir():
        for filename, fmt in _HF_WEIGHT_FILES:
            if (p / filename).is_file():
                return fmt, p / filename
        if (p / "model.safetensors.index.json").is_file():
            return "safetensors", p / "model.safetensors.index.json"
        if any(p.glob("*.index")) or (p / "checkpoint").is_file():
            return "tf-bundle", p
        if any(p.glob("*.safetensors")):
            found = sorted(p.glob("*.safetensors"))
            if len(found) == 1:
                return "safetensors", found[0]
        raise InputError("directory holds no checkpoint bertconv can read", path=p,
                         hint="expected a TF checkpoint (*.index + *.data-*), model.safetensors, "
                              "pytorch_model.bin or tf_model.h5")
    name = p.name
    if name.endswith(".index") or _DATA_FILE.match(name):
        return "tf-bundle", p
    if not p.exists():
        if Path(str(p) + ".index").is_file():
            return "tf-bundle", p
        if Path(str(p) + ".meta").is_file():
            raise CheckpointFormatError(
                "a V1 checkpoint (no .index file) or only a graph (.meta); bertconv reads V2 checkpoints",
                path=p, hint="re-save it with TensorFlow's tf.train.Saver (V2 is its default)")
        raise InputError("no such file or directory", path=p)
    suffix = p.suffix.lower()
    if suffix == ".safetensors" or name.endswith(".safetensors.index.json"):
        return "safetensors", p
    if suffix in (".bin", ".pt", ".pth"):
        return "torch-bin", p
    if suffix in (".h5", ".hdf5", ".keras"):
        return "keras-h5", p
    with open(p, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF"):
        return "keras-h5", p
    if head.startswith(b"PK\x03\x04"):
        return "torch-bin", p
    raise CheckpointFormatError("not a checkpoint of a format bertconv reads", path=p,
                                hint="supported: TF V2 checkpoints, .safetensors, pytorch_model.bin, Keras .h5")


def open_source(path: str | Path, *, verify_crc: bool = True) -> TensorSource:
    """Open any supported checkpoint for reading (see :func:`detect_format`)."""
    fmt, location = detect_format(path)
    given = Path(path)
    directory = given if given.is_dir() else None
    if fmt == "tf-bundle":
        from .tf_bundle import TFBundleSource
        return TFBundleSource(location, verify_crc=verify_crc)
    if fmt == "safetensors":
        from .safetensors_io import SafetensorsSource
        return SafetensorsSource(location, directory=directory)
    if fmt == "torch-bin":
        from .torch_bin import TorchBinSource
        return TorchBinSource(location, directory=directory)
    if fmt == "keras-h5":
        from .keras_h5 import KerasH5Source
        return KerasH5Source(location, directory=directory)
    raise AssertionError(fmt)
