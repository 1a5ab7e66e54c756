"""The layer graph of a Keras ``model_config`` (what ``model.save()`` writes into an HDF5 file's
attributes): each layer's class, config and the layers it reads from. Format knowledge only; what a
layer's config means for a model is the layout's to say."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class KerasLayer:
    name: str
    class_name: str | None
    config: dict[str, Any] = field(default_factory=dict)
    #: the names of the layers whose outputs this layer takes, in order
    inbound: tuple[str, ...] = ()


def model_config_layers(model_config: dict | None) -> dict[str, KerasLayer]:
    """layer name -> :class:`KerasLayer`, from a parsed ``model_config`` (empty without one). An
    inbound node is a list of ``[layer name, node index, tensor index, ...]`` entries, or a dict
    whose ``args`` holds them."""
    if not isinstance(model_config, dict):
        return {}
    layers = (model_config.get("config") or {}).get("layers") or []
    out = {}
    for layer in layers:
        config = layer.get("config") or {}
        inbound = []
        for node in layer.get("inbound_nodes") or []:
            for item in node if isinstance(node, list) else node.get("args", []):
                if isinstance(item, list) and item and isinstance(item[0], str):
                    inbound.append(item[0])
        name = config.get("name", layer.get("name"))
        out[name] = KerasLayer(name, layer.get("class_name"), config, tuple(inbound))
    return out


def activation_name(value) -> str | None:
    """A Keras activation as model_config spells it: a name, a serialized function
    (``{"config": name}``), or a list holding one."""
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, dict):
        value = value.get("config")
    return value if isinstance(value, str) else None
