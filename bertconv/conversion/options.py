"""How a conversion runs, in one frozen object shared by both directions."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .datapath import OUTPUT_DTYPES

#: what ``tf2pt`` writes: a Hugging Face directory or one ``.safetensors`` file
FORMATS = ("hf", "safetensors")
GELU_CHOICES = ("faithful", "exact")


@dataclass(frozen=True)
class ConvertOptions:
    """Options of :func:`bertconv.convert` (``tf2pt``) and :func:`bertconv.pt2tf`.

    Both directions read ``overwrite`` and ``validate`` (check what was written before it gets its
    final name); ``allow_exact_gelu`` is the way back's alone, every other field the way there's.
    A field one direction does not read is left at its default by it."""

    # both directions
    overwrite: bool = False
    validate: bool = True
    # TensorFlow -> PyTorch
    #: hf or safetensors; None: one file for an output named ``*.safetensors``, else a directory
    format: str | None = None
    dtype: str = "float32"
    head: str = "auto"
    #: the classifier's label names, in class order
    labels: tuple[str, ...] | None = None
    #: the tokenizer's casing; None: as the checkpoint's name or record says
    lower_case: bool | None = None
    gelu: str = "faithful"
    family: str | None = None
    config: str | Path | None = None
    vocab: str | Path | None = None
    allow_unknown: bool = False
    verify_crc: bool = True
    progress: bool = False
    tower: str | None = None
    #: which ``model.ckpt-N`` of a training directory to read
    step: int | None = None
    #: a JSON list of the vocab.txt lines a pruned vocabulary kept, in row order
    keep_tokens: str | Path | None = None
    #: also write hubconf.py into the directory, for ``torch.hub.load``
    torch_hub: bool = False
    #: config facts applied to the original's config before it is translated (``--set``; see
    #: :mod:`bertconv.settings`)
    settings: dict | None = None
    # PyTorch -> TensorFlow
    #: write a model whose Hugging Face ``hidden_act`` is the exact erf GELU, which the original
    #: code computes in its tanh form
    allow_exact_gelu: bool = False

    def __post_init__(self) -> None:
        if self.labels is not None and not isinstance(self.labels, tuple):
            object.__setattr__(self, "labels", tuple(self.labels))
        if self.format is not None and self.format not in FORMATS:
            raise InputError(f"unknown output format {self.format!r}", hint=f"choose one of {', '.join(FORMATS)}")
        if self.dtype not in OUTPUT_DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}", hint=f"choose one of {', '.join(OUTPUT_DTYPES)}")
        if self.gelu not in GELU_CHOICES:
            raise InputError(f"unknown --gelu {self.gelu!r}", hint="choose faithful or exact")

    def with_overrides(self, **overrides) -> "ConvertOptions":
        """These options with some fields replaced (an unknown name is a TypeError, as for a
        function's keyword)."""
        return dataclasses.replace(self, **overrides) if overrides else self


def options_of(options: ConvertOptions | None, overrides: dict, *, function: str,
               fields: frozenset[str] | None = None) -> ConvertOptions:
    """``options`` (default: the defaults) with the keyword arguments a caller gave ``function``
    on top; ``fields`` are the names ``function`` reads (others are a TypeError, as before)."""
    allowed = fields if fields is not None else {f.name for f in dataclasses.fields(ConvertOptions)}
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")
    if options is not None and not isinstance(options, ConvertOptions):
        raise TypeError(f"{function}(): options must be a ConvertOptions, not {type(options).__name__}")
    return (options or ConvertOptions()).with_overrides(**overrides)
