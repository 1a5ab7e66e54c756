"""A checkpoint of another layout of BERT itself (TF2 Model Garden, Hugging Face Keras .h5) seen
under google-research/bert's TF1 names: what the float64 reference reads."""
from __future__ import annotations

from collections.abc import Mapping as MappingABC
from typing import TYPE_CHECKING

from .base import apply_transform, invert_transform

if TYPE_CHECKING:  # NumPy is imported where arrays are made, not to list a checkpoint
    import numpy as np


def reads_through_bert_names(family) -> bool:
    """True for a family that is BERT stored in another layout: its outputs are checked by the
    BERT reference through :func:`google_names_view` (ALBERT and ELECTRA have references of their own)."""
    return family is not None and family.model_type == "bert" and family.name != "bert"


class GoogleNamesView(MappingABC):
    """A read-only, lazy mapping from google-research/bert (TF1) variable names to arrays, over a
    checkpoint of another layout: each name goes through its family's table to the Hugging Face
    name, then back through the BERT table, and each array through both transforms (a pure
    relayout, no arithmetic). Reading happens on access, one tensor at a time."""

    def __init__(self, source, family=None):
        from . import detect_family
        from .bert import MAPPING as BERT_MAPPING

        names = source.names()
        fam = family if family is not None else detect_family(names)
        if fam is None:
            from ..errors import InputError
            raise InputError("no BERT-family tensors found", path=getattr(source, "path", None))
        fam = fam.for_checkpoint(names, source)
        self._source = source
        self.family = fam
        self._where: dict[str, tuple[str, str | None, str | None]] = {}
        for name in names:
            forward = fam.mapping.to_target(name)
            if forward is None:
                continue
            back = BERT_MAPPING.to_source(forward.target)
            if back is not None:
                self._where[back.source] = (name, forward.rule.transform, back.rule.transform)

    def __getitem__(self, key: str) -> np.ndarray:
        name, forward, back = self._where[key]
        return invert_transform(back, apply_transform(forward, self._source.read(name)))

    def __iter__(self):
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def source_name(self, key: str) -> str:
        """The checkpoint's own name for a google-research/bert name."""
        return self._where[key][0]

    def sidecar(self, *candidates: str):
        return self._source.sidecar(*candidates)


def google_names_view(source, family=None) -> GoogleNamesView:
    """``source`` (an open checkpoint of any layout a family maps to BERT) seen under
    google-research/bert's TF1 names, lazily."""
    return GoogleNamesView(source, family)
