"""Loading a converted output into bertconv's own PyTorch model of its family, strictly, and
running it: what ``validate`` holds against the reference."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import BertConfig
from .converted import _describe, family_of, resolve_files
from .errors import InputError
from .state_dict import load_state_dict_strict as _load_strict


def _encoder_of(model: nn.Module) -> nn.Module:
    """The module that holds the config: the model itself for a bare encoder, else its encoder."""
    return model if hasattr(model, "config") else next(m for m in model.children() if hasattr(m, "config"))


def _as_tensor(array, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=torch.long, device=device)


def run_outputs(model: nn.Module, inputs) -> dict[str, np.ndarray]:
    """Run ``model`` on ``inputs`` (``input_ids``, ``token_type_ids``, ``attention_mask``, int
    arrays ``[B, T]``) and return every named output as a float64 NumPy array."""
    param = next(model.parameters())
    encoder = _encoder_of(model)
    input_ids = _as_tensor(inputs["input_ids"], param.device)
    if input_ids.ndim != 2:
        raise InputError(f"input_ids must be [batch, seq_len], got shape {list(input_ids.shape)}")
    token_type_ids = _as_tensor(inputs.get("token_type_ids", np.zeros(input_ids.shape, np.int64)), param.device)
    attention_mask = _as_tensor(inputs.get("attention_mask", np.ones(input_ids.shape, np.int64)), param.device)
    config = encoder.config
    # [B, T, columns] token types (TAPAS): the segment column is type_vocab_size's, the family's
    # model checks its other columns
    segments = token_type_ids[..., 0] if token_type_ids.ndim == 3 else token_type_ids
    for name, t, upper in (("input_ids", input_ids, config.vocab_size),
                           ("token_type_ids", segments, config.type_vocab_size)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= upper):
            raise InputError(f"{name} holds values outside [0, {upper})")
    if input_ids.shape[1] > config.max_position_embeddings:
        raise InputError(f"seq_len {input_ids.shape[1]} exceeds max_position_embeddings "
                         f"{config.max_position_embeddings}")
    with torch.inference_mode():
        results = model(input_ids, token_type_ids, attention_mask)
    return {name: value.detach().to("cpu", torch.float64).numpy() for name, value in results.items()}


def _num_labels(config_dict: dict[str, Any], tensors: dict[str, torch.Tensor]) -> int:
    if "classifier.weight" in tensors:
        return int(tensors["classifier.weight"].shape[0])
    if isinstance(config_dict.get("id2label"), dict):
        return len(config_dict["id2label"])
    return int(config_dict.get("num_labels", 2))


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict and safetensors metadata of one weights file."""
    if path.suffix in (".bin", ".pt", ".pth"):
        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - pickle and zip failures come in many types
            raise InputError(f"cannot read as a PyTorch state dict: {e}", path=path) from None
        if not isinstance(tensors, dict):
            raise InputError("not a state dict (expected a mapping of names to tensors)", path=path)
        return dict(tensors), {}
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as e:
        raise InputError(f"cannot read as safetensors: {e}", path=path) from None
    return tensors, metadata


def read_converted(path: str | Path, *, config: BertConfig | dict | str | Path | None = None
                   ) -> tuple[dict[str, torch.Tensor], BertConfig, dict[str, Any], str]:
    """Weights, config, the config as a dict and the architecture of a converted output."""
    weights_path, config_path = resolve_files(Path(path))
    tensors, metadata = _read_weights(weights_path)
    return (tensors, *_describe(weights_path, config_path, list(tensors), metadata, config))


def load_state_dict_strict(model: nn.Module, tensors: dict[str, torch.Tensor], family=None, *,
                           path: str | Path | None = None) -> None:
    """:func:`bertconv.state_dict.load_state_dict_strict` with ``family`` BERT's by default."""
    if family is None:
        from .families import default_family
        family = default_family()
    _load_strict(model, tensors, family, path=path)


def load_model(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               config: BertConfig | dict | str | Path | None = None, head: str | None = None) -> nn.Module:
    """Load a converted output strictly: every parameter comes from the file, none is left random.

    ``path``: a Hugging Face directory (``config.json`` + ``model.safetensors``) or a bare
    ``.safetensors`` file (config from ``config``, else from the file's ``bertconv.config``
    metadata). The architecture comes from the config's ``architectures``, the file's metadata, or
    the tensor names; ``head`` (an architecture name of the same family) overrides it.
    """
    tensors, parsed, config_dict, architecture = read_converted(path, config=config)
    family = family_of(config_dict, architecture)
    if head is not None:
        if head not in family.architecture_heads:
            raise InputError(f"unknown architecture {head!r}",
                             hint=f"choose one of {', '.join(family.architecture_heads)}")
        architecture = head
    model = family.load_model(tensors, parsed, architecture, path=path,
                              num_labels=_num_labels(config_dict, tensors))
    return _finish(model, tensors, config_dict, device, dtype)


def _finish(model: nn.Module, tensors, config_dict, device, dtype) -> nn.Module:
    stored = [t.dtype for t in tensors.values() if t.is_floating_point()]
    #: the least precise dtype the weights were stored in (validation judges by it)
    model.stored_dtype = max(stored, key=lambda d: torch.finfo(d).eps) if stored else torch.float32
    model.source_config = config_dict
    return model.to(device=device, dtype=dtype).eval()
