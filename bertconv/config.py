"""The model configuration: read from ``bert_config.json``, inferred from tensor shapes, and
checked one against the other so that every disagreement is named."""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError

#: Google's released models all use 64-wide attention heads; the head count is not in any shape.
DEFAULT_HEAD_SIZE = 64

#: the config fields a tensor's shape may state (``num_labels``: a classifier's), in the order
#: reports list them
SIZE_FIELDS = ("vocab_size", "embedding_size", "hidden_size", "max_position_embeddings", "type_vocab_size",
               "intermediate_size", "num_hidden_layers", "num_labels", "num_attention_heads")


@dataclass
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    #: set for ALBERT / ELECTRA when the embedding width differs from hidden_size
    embedding_size: int | None = None
    #: anything else the source config held, kept for the output config
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "extra"}
        if d["embedding_size"] is None:
            del d["embedding_size"]
        return {**self.extra, **d}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, path: str | Path | None = None) -> "BertConfig":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ConfigError(f"missing field(s) {', '.join(missing)}", path=path,
                              hint="add them, or remove the file to infer the config from the weights")
        kwargs = {}
        for name in names & set(data):
            value = data[name]
            want = cls.__dataclass_fields__[name].type
            if "int" in str(want) and not (isinstance(value, int) and not isinstance(value, bool)):
                if not (name == "embedding_size" and value is None):
                    raise ConfigError(f"field {name!r} must be an integer, got {value!r}", path=path)
            if "float" in str(want) and not isinstance(value, (int, float)):
                raise ConfigError(f"field {name!r} must be a number, got {value!r}", path=path)
            if str(want) == "str" and not isinstance(value, str):
                raise ConfigError(f"field {name!r} must be a string, got {value!r}", path=path)
            kwargs[name] = value
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            if kwargs[name] <= 0:
                raise ConfigError(f"field {name!r} must be positive, got {kwargs[name]}", path=path)
        if kwargs["hidden_size"] % kwargs["num_attention_heads"]:
            raise ConfigError(f"hidden_size {kwargs['hidden_size']} is not a multiple of "
                              f"num_attention_heads {kwargs['num_attention_heads']}", path=path)
        extra = {k: v for k, v in data.items() if k not in names}
        return cls(**kwargs, extra=extra)


def read_config_json(path: str | Path) -> dict[str, Any]:
    """A JSON config file's object (``bert_config.json``, a Hugging Face ``config.json``...), with
    one error style for every way it can be unreadable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", path=path) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", path=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", path=path) from None
    except RecursionError:
        raise ConfigError("JSON nested too deeply to read", path=path) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object", path=path)
    return data


def load_config_file(path: str | Path, *, defaults: dict[str, Any] | None = None,
                     prepare: Callable[[dict, Path], dict] | None = None) -> BertConfig:
    """The config a JSON file states; ``defaults`` fills fields the file leaves out (the numerics
    of the library that wrote the checkpoint, such as its LayerNorm epsilon); ``prepare(data,
    path)`` turns the original code's config into BertConfig's fields first (``--set``, a
    family's own keys: :func:`bertconv.settings.original_config`)."""
    data = read_config_json(path)
    if prepare is not None:
        data = prepare(data, Path(path))
    return BertConfig.from_dict({**(defaults or {}), **data}, path=Path(path))


def compare_configs(declared: BertConfig, inferred: dict[str, int]) -> list[str]:
    """Each field the weights determine whose declared value differs, as one sentence."""
    problems = []
    for name, value in inferred.items():
        have = getattr(declared, name, None)
        if have is not None and have != value:
            problems.append(f"{name} is {have} in the config but {value} in the weights")
    return problems


_LAYER = re.compile(r"layer_(\d+)/")


def count_layers(names) -> int:
    seen = {int(m.group(1)) for n in names for m in [_LAYER.search(n)] if m}
    return max(seen) + 1 if seen else 0
