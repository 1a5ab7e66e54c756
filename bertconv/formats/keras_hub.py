"""KerasHub (formerly KerasNLP) presets: a directory written by ``model.save_to_preset(dir)``.

What a preset holds:

- ``config.json``: the backbone's Keras config, ``registered_name`` ``keras_hub>...Backbone`` (or
  ``keras_nlp>...`` before the rename), its sizes under ``config``;
- ``model.weights.h5``: the backbone's weights in the Keras 3 layout, one group per layer named by
  its class and a per-model counter (``layers/transformer_encoder_1/...``), each layer's variables
  as ``.../vars/0``, ``.../vars/1`` in the layer's own order, and on each ``vars`` group an
  attribute ``name``: the layer's Keras name (``transformer_layer_1``, ``pooled_dense``);
- optionally ``task.json`` and ``task.weights.h5``: a task model's config and its own layers (the
  classifier's ``logits``, the masked-LM head), with the optimizer's variables under ``optimizer/``;
- ``tokenizer.json`` (``config.lowercase``) and the vocabulary in ``assets/tokenizer/``.

Tensor names are stable across saves: the Keras layer names from the ``name`` attributes (set by
the model's code, unlike the class counters of the paths) joined by ``/``, then ``vars/<i>``,
under ``backbone/`` or ``task/``: ``backbone/transformer_layer_0/self_attention_layer/query/vars/0``,
``task/logits/vars/0``. Optimizer variables keep their path (``optimizer/vars/0``): they are
training state. A group without a ``name`` attribute contributes its path component instead.

The reader knows the file format only: which name is which weight is a layout's table.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import CheckpointFormatError, InputError
from .availability import require_available, unavailable
from .base import TensorInfo, TensorSource

__all__ = ["KerasHubSource", "is_keras_hub_preset", "PRESET_CONFIG", "BACKBONE_WEIGHTS", "TASK_WEIGHTS"]

PRESET_CONFIG = "config.json"
BACKBONE_WEIGHTS = "model.weights.h5"
TASK_CONFIG = "task.json"
TASK_WEIGHTS = "task.weights.h5"
TOKENIZER_CONFIG = "tokenizer.json"
VOCABULARY = Path("assets") / "tokenizer" / "vocabulary.txt"
#: registered-name prefixes of the library, before and after KerasNLP became KerasHub
_REGISTERED_PREFIXES = ("keras_hub>", "keras_nlp>")


def _registered_name(config_path: Path) -> str | None:
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    name = data.get("registered_name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def is_keras_hub_preset(directory: Path) -> bool:
    """Whether ``directory`` is a KerasHub preset: backbone weights beside a config.json that
    names a class registered by the library."""
    directory = Path(directory)
    if not ((directory / PRESET_CONFIG).is_file() and (directory / BACKBONE_WEIGHTS).is_file()):
        return False
    if unavailable(directory / PRESET_CONFIG) is not None:
        return True  # a pointer or an empty file: the reader names it, rather than misreading the weights
    name = _registered_name(directory / PRESET_CONFIG)
    return name is not None and name.startswith(_REGISTERED_PREFIXES)


def _read_json(path: Path) -> dict:
    require_available(path, what="preset file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path=path) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # RecursionError: nested too deeply
        raise CheckpointFormatError(f"not a JSON file ({e})", path=path) from None
    if not isinstance(data, dict):
        raise CheckpointFormatError("expected a JSON object", path=path)
    return data


class KerasHubSource(TensorSource):
    """A KerasHub preset directory as one source: the backbone's and the task's weights.

    Attributes besides the tensors: ``registered_name`` (the backbone's, e.g.
    ``keras_hub>BertBackbone``), ``preset_config`` (the backbone's ``config`` dict), ``task_class``
    (the task's ``class_name`` from task.json, or None), ``lower_case`` and ``lower_case_origin``
    (the tokenizer's ``lowercase``, where tokenizer.json records it)."""

    format_name = "keras-hub"

    def __init__(self, path: str | Path):
        super().__init__(path, path)
        import h5py

        from .keras_h5 import KerasH5Source, h5_errors

        config = _read_json(self.path / PRESET_CONFIG)
        self.registered_name: str = str(config.get("registered_name"))
        self.preset_class = self.registered_name
        self.preset_config = config.get("config") if isinstance(config.get("config"), dict) else None
        self.task_class: str | None = None
        task_config = self.path / TASK_CONFIG
        if task_config.is_file():
            task_class = _read_json(task_config).get("class_name")
            self.task_class = task_class if isinstance(task_class, str) else None
        self.lower_case: bool | None = None
        self.lower_case_origin: str | None = None
        tokenizer = self.path / TOKENIZER_CONFIG
        if tokenizer.is_file():
            described = _read_json(tokenizer).get("config")
            value = described.get("lowercase") if isinstance(described, dict) else None
            if isinstance(value, bool):
                self.lower_case, self.lower_case_origin = value, f"{tokenizer} (config.lowercase)"
        #: stable name -> (the file's reader, the dataset's path in it)
        self._where: dict[str, tuple[KerasH5Source, str]] = {}
        self._files: list[KerasH5Source] = []
        try:
            for filename, prefix in ((BACKBONE_WEIGHTS, "backbone"), (TASK_WEIGHTS, "task")):
                file = self.path / filename
                if not file.is_file():
                    continue
                reader = KerasH5Source(file, directory=self.path)
                self._files.append(reader)
                with h5_errors(file), h5py.File(file, "r") as h5:
                    names = _stable_names(h5, h5py, prefix)
                for dataset_path in reader.names():
                    name = names.get(dataset_path, f"{prefix}/{dataset_path}")
                    if name in self._where:
                        raise CheckpointFormatError("two variables have the same layer names", path=file,
                                                    tensor=name)
                    self._where[name] = (reader, dataset_path)
        except BaseException:
            self.close()
            raise

    def _list(self) -> list[TensorInfo]:
        out = []
        for name, (reader, dataset_path) in self._where.items():
            info = reader.info(dataset_path)
            out.append(TensorInfo(name, info.dtype, info.shape, info.nbytes))
        return out

    def _read(self, name: str):
        reader, dataset_path = self._where[name]
        return reader.read(dataset_path)

    def sidecar(self, *candidates: str) -> Path | None:
        """As for any source, except that the preset's own config.json (a Keras config, not a
        model config) is never offered, and ``vocab.txt`` is the preset's vocabulary asset."""
        for candidate in candidates:
            if candidate == PRESET_CONFIG:
                continue
            found = super().sidecar(candidate)
            if found is not None:
                return found
            if candidate == "vocab.txt" and (self.path / VOCABULARY).is_file():
                return self.path / VOCABULARY
        return None

    def close(self) -> None:
        for reader in getattr(self, "_files", []):
            reader.close()
        self._files, self._where = [], {}


def _stable_names(h5, h5py, prefix: str) -> dict[str, str]:
    """Dataset path -> its stable name (see the module docstring)."""
    names: dict[str, str] = {}

    def component(group_path: str) -> str:
        group = h5.get(group_path + "/vars")
        name = group.attrs.get("name") if isinstance(group, h5py.Group) else None
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        return name if isinstance(name, str) and name else group_path.rsplit("/", 1)[-1]

    def visit(path: str, obj) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        parts = path.split("/")
        if parts[0] == "optimizer":
            names[path] = path
            return
        if parts[0] != "layers" or len(parts) < 4 or parts[-2] != "vars":
            return  # left under its path
        layers = [component("/".join(parts[:i])) for i in range(2, len(parts) - 1)]
        names[path] = "/".join([prefix, *layers, "vars", parts[-1]])

    h5.visititems(visit)
    return names
