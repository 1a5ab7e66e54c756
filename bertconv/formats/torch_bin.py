"""PyTorch pickled state dicts (``pytorch_model.bin``, ``.pt``, ``.pth``).

Loaded with ``weights_only=True`` only: a pickle that would build anything but tensors and plain
containers (and so could run code) is refused, never executed. torch is imported here and only
here, when such a file is opened.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..errors import CheckpointFormatError, InputError
from ..torch_import import import_torch
from .availability import require_available
from .base import TensorInfo, TensorSource

__all__ = ["TorchBinSource"]

#: keys under which training scripts nest the state dict beside other things
_NESTED_KEYS = ("state_dict", "model")


def _to_numpy(tensor) -> np.ndarray:
    tensor = tensor.detach()
    via = _integer_views().get(tensor.dtype)
    if via is None:
        return tensor.numpy()
    # NumPy has no bfloat16/float8: reinterpret the bits as integers of the same width, then as the
    # matching ml_dtypes type, so the values are carried bit for bit.
    import ml_dtypes

    int_type, np_type = via
    return tensor.contiguous().view(int_type).numpy().view(getattr(ml_dtypes, np_type))


@functools.lru_cache(maxsize=None)
def _integer_views() -> dict:
    import torch

    table = {torch.bfloat16: (torch.int16, "bfloat16")}
    for name in ("float8_e5m2", "float8_e4m3fn", "float8_e8m0fnu"):
        if hasattr(torch, name):
            table[getattr(torch, name)] = (torch.uint8, name)
    return table


class TorchBinSource(TensorSource):
    format_name = "torch-bin"

    def __init__(self, path: str | Path, directory: str | Path | None = None):
        super().__init__(path, directory)
        require_available(self.path, what="weights file")  # before torch: a pointer is no pickle
        if not self.path.is_file():
            raise InputError("no such file", path=self.path)
        torch = import_torch()
        loaded = self._load(torch)
        self._tensors = self._state_dict(loaded, torch)

    def _load(self, torch):
        try:
            # mmap keeps the tensors on disk until read; only the zip format (torch >= 1.6) has it.
            return torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
            if _is_weights_only_refusal(e):
                raise self._unsafe(e) from None
            if not _is_not_zip(e):
                raise self._unreadable(e) from None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            if _is_weights_only_refusal(e):
                raise self._unsafe(e) from None
            raise self._unreadable(e) from None

    def _unsafe(self, error: Exception) -> CheckpointFormatError:
        detail = _refusal_detail(error)
        return CheckpointFormatError(
            f"the pickle holds more than tensors (it would run code to load: {detail}); refused",
            path=self.path,
            hint="only load it with full pickle trust if you know its origin, and re-save its "
                 "state dict (or use safetensors)")

    def _unreadable(self, error: Exception) -> CheckpointFormatError:
        return CheckpointFormatError(f"not a readable PyTorch checkpoint ({_first_line(error)})",
                                     path=self.path)

    def _state_dict(self, loaded, torch) -> dict:
        if isinstance(loaded, dict) and not _all_tensors(loaded, torch):
            for key in _NESTED_KEYS:
                inner = loaded.get(key)
                if isinstance(inner, dict) and inner and _all_tensors(inner, torch):
                    loaded = inner
                    break
        if not isinstance(loaded, dict):
            raise CheckpointFormatError(f"holds a {type(loaded).__name__}, not a state dict", path=self.path,
                                        hint="expected a dict of tensor name -> tensor")
        for name, value in loaded.items():
            if not isinstance(name, str):
                raise CheckpointFormatError(f"key {name!r} is not a tensor name", path=self.path)
            if not isinstance(value, torch.Tensor):
                raise CheckpointFormatError(
                    f"holds a {type(value).__name__} where a tensor was expected, and no "
                    f"{'/'.join(_NESTED_KEYS)} key holding a state dict", path=self.path, tensor=name)
        return dict(loaded)

    def _list(self) -> list[TensorInfo]:
        out = []
        for name, tensor in self._tensors.items():
            dtype = str(tensor.dtype).removeprefix("torch.")
            out.append(TensorInfo(name, dtype, tuple(tensor.shape), tensor.numel() * tensor.element_size()))
        return out

    def _read(self, name: str) -> np.ndarray:
        tensor = self._tensors[name]
        try:
            array = _to_numpy(tensor)
        except (TypeError, RuntimeError) as e:  # quantized, sparse or other non-strided tensors
            raise CheckpointFormatError(f"a {tensor.dtype} {tensor.layout} tensor cannot be read as plain "
                                        f"numbers ({_first_line(e)})", path=self.path, tensor=name) from None
        array.flags.writeable = False
        return array

    def close(self) -> None:
        self._tensors = {}


def _all_tensors(mapping: dict, torch) -> bool:
    return all(isinstance(v, torch.Tensor) for v in mapping.values())


def _is_weights_only_refusal(error: Exception) -> bool:
    text = str(error)
    return "weights_only" in text or "Weights only load failed" in text or "Unsupported global" in text


def _is_not_zip(error: Exception) -> bool:
    return "mmap" in str(error) or "zip" in str(error).lower()


def _refusal_detail(error: Exception) -> str:
    """The line of torch's long refusal message that says what the pickle asked for."""
    for line in str(error).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if "GLOBAL" in line or "nsupported" in line:
            return line[:300].rstrip(".")
    return "it is not a weights-only pickle"


def _first_line(error: Exception) -> str:
    for line in str(error).splitlines():
        line = line.strip()
        if line:
            return line.split(". ")[0][:300]
    return type(error).__name__
