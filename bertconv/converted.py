"""What a converted output is (config, architecture, file names), read without torch: so that
``validate`` can compute its reference while torch is still being imported."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import BertConfig, read_config_json
from .errors import ConfigError, InputError, MappingError

def family_of(config_dict: dict[str, Any], architecture: str | None = None):
    """The family a converted model belongs to: its config's ``model_type``, else its
    architecture's family; BERT when neither says (a bare state dict of BERT names)."""
    from .families import default_family, family_for_architecture, family_for_model_type

    family = family_for_model_type(config_dict.get("model_type"))
    if family is None and architecture:
        family = family_for_architecture(architecture)
    return family or default_family()


def infer_architecture(names, family=None) -> str:
    """The architecture a set of state-dict names implies (BERT's names unless ``family``)."""
    from .families import default_family

    family = family or default_family()
    heads = family.state_dict_heads(names)
    if heads not in family.architectures:
        raise MappingError(f"the weights hold heads ({', '.join(sorted(heads))}) that no "
                           f"{family.model_type.upper()} architecture carries together")
    return family.architectures[heads]


def resolve_files(path: Path) -> tuple[Path, Path | None]:
    """(weights file, config.json or None)."""
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                config = path / "config.json"
                return path / name, config if config.is_file() else None
        raise InputError("directory holds no model.safetensors or pytorch_model.bin", path=path,
                         hint="point at a converted output")
    if not path.is_file():
        raise InputError("no such file or directory", path=path)
    return path, None


def weights_header(path: Path) -> tuple[list[str], dict[str, str]]:
    """Tensor names and metadata, without reading tensor data (and without torch for
    safetensors files)."""
    if path.suffix in (".bin", ".pt", ".pth"):
        from .formats.torch_bin import TorchBinSource
        with TorchBinSource(path) as source:
            return source.names(), {}
    from .formats.safetensors_io import SafetensorsSource
    with SafetensorsSource(path) as source:
        return source.names(), dict(source.metadata or {})


def describe_converted(path: str | Path, *, config: BertConfig | dict | str | Path | None = None
                       ) -> tuple[BertConfig, dict[str, Any], str]:
    """Config, the config as a dict (Hugging Face keys) and the architecture of a converted output
    (a Hugging Face directory or a bare weights file), reading no tensor data."""
    weights_path, config_path = resolve_files(Path(path))
    names, metadata = weights_header(weights_path)
    return _describe(weights_path, config_path, names, metadata, config)


def _describe(weights_path: Path, config_path: Path | None, names: list[str], metadata: dict[str, str],
              config) -> tuple[BertConfig, dict[str, Any], str]:
    config_dict: dict[str, Any] | None = None
    origin = None
    if isinstance(config, BertConfig):
        config_dict = config.to_dict()
    elif isinstance(config, dict):
        config_dict = dict(config)
    elif config is not None:
        config_dict, origin = read_config_json(Path(config)), Path(config)
    elif config_path is not None:
        config_dict, origin = read_config_json(config_path), config_path
    elif "bertconv.config" in metadata:
        try:
            config_dict = json.loads(metadata["bertconv.config"])
        except json.JSONDecodeError:
            raise ConfigError("the file's bertconv.config metadata is not valid JSON", path=weights_path) from None
        if not isinstance(config_dict, dict):
            raise ConfigError("the file's bertconv.config metadata is not a JSON object", path=weights_path)
        origin = weights_path
    else:
        raise ConfigError("no config: the file has no bertconv.config metadata and no config.json is beside it",
                          path=weights_path, hint="pass the config (a config.json) explicitly")
    parsed = BertConfig.from_dict(config_dict, path=origin)
    architecture = None
    archs = config_dict.get("architectures")
    if isinstance(archs, list) and archs:
        architecture = archs[0]
    elif "bertconv.architecture" in metadata:
        architecture = metadata["bertconv.architecture"]
    if architecture is not None and not isinstance(architecture, str):
        raise ConfigError(f"architectures must name classes, and its first is {architecture!r}",
                          path=origin or weights_path)
    if architecture is None:
        architecture = infer_architecture(names, family_of(config_dict))
    family = family_of(config_dict, architecture)
    if architecture not in family.architecture_heads:
        raise ConfigError(f"architecture {architecture!r} is not one bertconv runs", path=origin or weights_path,
                          hint=f"supported: {', '.join(family.architecture_heads)}")
    return parsed, config_dict, architecture
