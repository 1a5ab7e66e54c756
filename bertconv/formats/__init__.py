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

_DATA_FILE = re.compile(r"^(?P<prefix>.*)\.data-\d{5,}-of-\d{5,}$")


_V1_MESSAGE = ("a V1 checkpoint (no .index file) or only a graph (.meta); bertconv reads V2 checkpoints",
               "re-save it with TensorFlow's tf.train.Saver (V2 is its default)")
#: the last 8 bytes of every LevelDB-style table TensorFlow writes (a V2 .index, or a V1 checkpoint)
_TABLE_MAGIC = bytes.fromhex("57fb808b247547db")


def _pytorch_weights_in(p: Path) -> tuple[str, Path] | None:
    # Hugging Face directories may hold the same weights several times: the safest copy first.
    for filename, fmt in (("model.safetensors", "safetensors"), ("model.safetensors.index.json", "safetensors"),
                          ("pytorch_model.bin", "torch-bin")):
        if (p / filename).is_file():
            return fmt, p / filename
    found = sorted(p.glob("*.safetensors"))
    return ("safetensors", found[0]) if len(found) == 1 else None


def detect_format(path: str | Path, prefer: str | None = None) -> tuple[str, Path]:
    """Return ``(format, location)``: one of ``tf-bundle`` (location: the bundle prefix),
    ``saved-model`` (location: the SavedModel directory, named as itself or its
    ``saved_model.pb``), ``keras-hub`` (location: the KerasHub preset directory, named as itself
    or one of its weight files), ``keras-archive`` (a Keras 3 ``.keras`` zip), ``safetensors``, ``torch-bin``, ``keras-h5`` (location: the file).

    A directory holding a TensorFlow checkpoint and PyTorch weights is ambiguous: with
    ``prefer="tf"`` (what ``tf2pt`` converts) the TensorFlow one is taken, otherwise it is an error
    naming both."""
    p = Path(path)
    if p.is_dir():
        if (p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file():
            return "saved-model", p  # the reader says when it is the text format it cannot read
        from .saved_model import is_partial_keras_saved_model
        if is_partial_keras_saved_model(p):
            return "saved-model", p
        from .keras_hub import is_keras_hub_preset
        if is_keras_hub_preset(p):
            return "keras-hub", p
        tf_found = None
        if any(p.glob("*.index")) or (p / "checkpoint").is_file():
            tf_found = ("tf-bundle", p)
        elif (p / "tf_model.h5").is_file():
            tf_found = ("keras-h5", p / "tf_model.h5")
        elif len(h5_files := sorted(p.glob("*.h5"))) == 1:
            # Keras libraries save under names the user chose (bert4keras' best_model.h5)
            tf_found = ("keras-h5", h5_files[0])
        pt_found = _pytorch_weights_in(p)
        if tf_found and pt_found and prefer != "tf":
            raise InputError(f"directory holds both a TensorFlow checkpoint and {pt_found[1].name}", path=p,
                             hint="name the file (or the checkpoint prefix) to read")
        if tf_found and (prefer == "tf" or not pt_found):
            return tf_found
        if pt_found:
            return pt_found
        if any(p.glob("*.meta")):
            raise CheckpointFormatError(_V1_MESSAGE[0], path=p, hint=_V1_MESSAGE[1])
        from .bundle_location import describe_contents
        raise InputError(f"directory holds no checkpoint bertconv can read; it {describe_contents(p)}",
                         path=p,
                         hint="expected a TF checkpoint (*.index + *.data-*), model.safetensors, "
                              "pytorch_model.bin or tf_model.h5")
    name = p.name
    if name == "saved_model.pb" and p.is_file():
        return "saved-model", p.parent
    if name.endswith(".index") or _DATA_FILE.match(name):
        return "tf-bundle", p
    if name.endswith(".meta"):
        prefix = Path(str(p)[:-len(".meta")])
        if Path(str(prefix) + ".index").is_file():
            return "tf-bundle", prefix
        if not prefix.is_file():
            raise CheckpointFormatError(_V1_MESSAGE[0], path=p, hint=_V1_MESSAGE[1])
        return "tf-bundle", prefix  # a V1 checkpoint file: the TF reader names it as such
    if not p.exists():
        if Path(str(p) + ".index").is_file() or _is_series_stem(p):
            return "tf-bundle", p
        if Path(str(p) + ".meta").is_file():
            raise CheckpointFormatError(_V1_MESSAGE[0], path=p, hint=_V1_MESSAGE[1])
        raise InputError("no such file or directory", path=p)
    suffix = p.suffix.lower()
    if suffix == ".safetensors" or name.endswith(".safetensors.index.json"):
        return "safetensors", p
    if suffix in (".bin", ".pt", ".pth"):
        return "torch-bin", p
    if suffix == ".keras":
        from .keras_archive import is_keras_archive
        if is_keras_archive(p):
            return "keras-archive", p
    if suffix in (".h5", ".hdf5", ".keras"):
        from .keras_hub import BACKBONE_WEIGHTS, TASK_WEIGHTS, is_keras_hub_preset
        if name in (BACKBONE_WEIGHTS, TASK_WEIGHTS) and is_keras_hub_preset(p.parent):
            return "keras-hub", p.parent  # one file of a preset stands for the preset
        return "keras-h5", p
    # A bundle prefix that is also a file: Keras Tuner's prefix "checkpoint" beside the state file
    # of that name. The state file named on its own stands for its directory.
    if Path(str(p) + ".index").is_file() or name == "checkpoint":
        return "tf-bundle", p
    # No telling suffix: look at the bytes (of a file that is there to be looked at).
    from .availability import unavailable
    missing = unavailable(p)
    if missing is not None and missing.reason != "missing":
        raise missing.error(what="file")
    with open(p, "rb") as f:
        head = f.read(9)
        size = f.seek(0, 2)
        tail = b""
        if size >= 8:
            f.seek(size - 8)
            tail = f.read(8)
    if head.startswith(b"\x89HDF"):
        return "keras-h5", p
    if head.startswith(b"PK\x03\x04"):
        return "torch-bin", p
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors", p
    if tail == _TABLE_MAGIC:
        return "tf-bundle", p  # an index under another name, or a V1 checkpoint: the reader says which
    raise CheckpointFormatError("not a checkpoint of a format bertconv reads", path=p,
                                hint="supported: TF V2 checkpoints, .safetensors, pytorch_model.bin, Keras .h5")


def _other_sources_beside(directory: Path, prefix) -> list[str]:
    """A note for each SavedModel folder in ``directory``, whose TF checkpoint was taken: which was
    read, and how to read the other (a Keras ``save_weights`` beside a ``model.save``)."""
    saved = sorted(child.name for child in directory.iterdir()
                   if child.is_dir() and (child / "saved_model.pb").is_file())
    return [f"read the TensorFlow checkpoint {Path(str(prefix)).name}; this directory also holds the "
            f"SavedModel {name}/, read by naming it ({directory / name})" for name in saved]


def _is_series_stem(p: Path) -> bool:
    """Whether ``p`` is the stem of a training run's bundles (``model.ckpt`` of ``model.ckpt-N``)."""
    pattern = re.compile(re.escape(p.name) + r"-\d+\.index$")
    return p.parent.is_dir() and any(pattern.match(child.name) for child in p.parent.iterdir())


def open_source(path: str | Path, *, verify_crc: bool = True, prefer: str | None = None,
                step: int | None = None) -> TensorSource:
    """Open any supported checkpoint for reading (see :func:`detect_format`). ``step`` picks a
    step of a TensorFlow training run (``model.ckpt-N``) other than the one named, or than a
    directory's newest."""
    fmt, location = detect_format(path, prefer)
    given = Path(path)
    directory = given if given.is_dir() else None
    if step is not None and fmt != "tf-bundle":
        raise InputError(f"a step is chosen among TensorFlow checkpoints, and this is a {fmt} source",
                         path=given, hint="leave the step out")
    if fmt == "tf-bundle":
        from .tf_bundle import TFBundleSource
        source = TFBundleSource(location, verify_crc=verify_crc, step=step)
        if directory is not None:
            source.notes += _other_sources_beside(directory, source.prefix)
        return source
    if fmt == "keras-hub":
        from .keras_hub import KerasHubSource
        return KerasHubSource(location)
    if fmt == "keras-archive":
        from .keras_archive import KerasArchiveSource
        return KerasArchiveSource(location)
    if fmt == "saved-model":
        from .saved_model import SavedModelSource
        return SavedModelSource(location, verify_crc=verify_crc)
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
