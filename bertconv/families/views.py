"""A checkpoint of a family's non-canonical layout (TF2 Model Garden, Hugging Face Keras .h5...)
seen under the canonical layout's names: what the family's float64 reference reads."""
from __future__ import annotations

from collections.abc import Mapping as MappingABC
from typing import TYPE_CHECKING

from ..mapping import apply_transform, invert_transform

if TYPE_CHECKING:  # NumPy is imported where arrays are made, not to list a checkpoint
    import numpy as np

    from .base import Layout


class CanonicalNamesView(MappingABC):
    """A read-only, lazy mapping from the canonical layout's names to arrays, over a checkpoint
    of another layout of the same family: each name goes through its layout's table to the
    Hugging Face name, then back through the canonical table, and each array through both
    transforms (a pure relayout, no arithmetic). Reading happens on access, one tensor at a time."""

    def __init__(self, source, layout: "Layout"):
        canonical = layout.family.layouts[0].mapping
        names = source.names()
        self._source = source
        self.layout = layout.for_checkpoint(names, source)
        self._where: dict[str, tuple[str, str | None, str | None]] = {}
        for name in names:
            forward = self.layout.mapping.to_target(name)
            if forward is None:
                continue
            back = canonical.to_source(forward.target)
            if back is not None:
                self._where[back.source] = (name, forward.rule.transform, back.rule.transform)

    def __getitem__(self, key: str) -> np.ndarray:
        name, forward, back = self._where[key]
        return invert_transform(back, apply_transform(forward, self._source.read(name)))

    def __iter__(self):
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The checkpoint's own names -> shapes (what ``Layout.infer_sizes`` reads)."""
        return {info.name: tuple(info.shape) for info in self._source}

    def release(self, key: str) -> None:
        """Pass the reference's hint on to the checkpoint, under the checkpoint's own name."""
        self._source.release(self._where[key][0])

    def source_name(self, key: str) -> str:
        """The checkpoint's own name for a canonical name."""
        return self._where[key][0]

    def sidecar(self, *candidates: str):
        return self._source.sidecar(*candidates)

    @property
    def directory(self):
        return self._source.directory


def canonical_view(source, layout: "Layout"):
    """What the family's reference reads from ``source``: the source itself for the canonical
    layout, else a lazy view of it under the canonical names."""
    return source if layout.canonical else CanonicalNamesView(source, layout)
