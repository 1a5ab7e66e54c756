"""The model families bertconv knows, and how a checkpoint's family and layout are recognised.

Each family is a package of its own (``bertconv/families/<name>/``) exposing ``FAMILY``; adding one
is a new package and one entry in :data:`REGISTRY`. Families load on first use, in detection order,
each only when detection reaches it (their packages hold tables, not models: a model, a reference
or a tokenizer loads only when it is used). Nothing here knows anything about any one family.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

from ..errors import InputError
from ..formats.base import NO_RECORDS, SourceRecords
from .base import Family, Layout

#: Detection order. ALBERT's names begin like BERT's (``bert/embeddings``), so its more specific
#: marker is tried first. MobileBERT's (bottlenecks, FakeLayerNorm) and TAPAS' names (numbered
#: token-type tables) are BERT's with more: before BERT.
#: ELECTRA comes after BERT: below their prefixes their PyTorch names are
#: the same, so a bare state dict without ELECTRA's own names reads as BERT. RoFormer's names are
#: BERT's without the position table; its ``recognise`` claims only checkpoints that lack one.
#: NEZHA's are too, and its config says so (``use_relative_position``); RoFormer-v2's lack the
#: biases and norm weights as well: both are tried before RoFormer.
#: Funnel's generator/encoder/layer_N names are ELECTRA's too: its own marker goes before ConvBERT and ELECTRA.
#: BigBird's begin like BERT's too, its marker (the encoder's own LayerNorm) goes before BERT.
#: CANINE's names (hash tables, character encoders) are no other family's, but a bare CANINE state
#: dict's ``encoder.layer.N`` reads as BERT's or RoFormer's: it is tried first.
def _albert() -> Family:
    from .albert import FAMILY
    return FAMILY


def _nezha() -> Family:
    from .nezha import FAMILY
    return FAMILY


def _roformer_v2() -> Family:
    from .roformer_v2 import FAMILY
    return FAMILY


def _roformer() -> Family:
    from .roformer import FAMILY
    return FAMILY


def _bigbird() -> Family:
    from .bigbird import FAMILY
    return FAMILY


def _mobilebert() -> Family:
    from .mobilebert import FAMILY
    return FAMILY


def _tapas() -> Family:
    from .tapas import FAMILY
    return FAMILY


def _bert() -> Family:
    from .bert import FAMILY
    return FAMILY


def _electra() -> Family:
    from .electra import FAMILY
    return FAMILY


def _funnel() -> Family:
    from .funnel import FAMILY
    return FAMILY


def _canine() -> Family:
    from .canine import FAMILY
    return FAMILY


def _convbert() -> Family:
    from .convbert import FAMILY
    return FAMILY


#: family name -> what loads it, in detection order
REGISTRY: dict[str, Callable[[], Family]] = {"canine": _canine,
                                             "albert": _albert, "nezha": _nezha, "roformer_v2": _roformer_v2,
                                             "roformer": _roformer, "mobilebert": _mobilebert, "tapas": _tapas,
                                             "bigbird": _bigbird, "bert": _bert, "funnel": _funnel,
                                             "convbert": _convbert, "electra": _electra}

#: user-facing head names accepted by ``--head``, besides ``auto``
HEAD_CHOICES = ("auto", "base", "pretraining", "mlm", "nsp", "classifier", "squad", "table_qa")

__all__ = ["Family", "Layout", "REGISTRY", "HEAD_CHOICES", "get_family", "families", "find_layout",
           "detect_layout", "candidate_layouts", "default_family", "source_view", "select_tower", "family_for_model_type", "family_for_architecture",
           "layout_names"]


def get_family(name: str) -> Family:
    if name not in REGISTRY:
        raise InputError(f"unknown model family {name!r}", hint=f"choose one of {', '.join(layout_names())}")
    return REGISTRY[name]()


def families() -> Iterator[Family]:
    """Every family, in detection order, each loaded only when reached."""
    return (get_family(name) for name in REGISTRY)


def layout_names() -> list[str]:
    """What ``--family`` accepts: a family (any of its layouts) or one layout."""
    names = list(REGISTRY)
    for family in families():
        names += [layout.name for layout in family.layouts if layout.name not in names]
    return names


def candidate_layouts(name: str | None) -> Iterator[Layout]:
    """The layouts ``--family name`` allows, in detection order (all of them for None)."""
    if name is None:
        for family in families():
            yield from family.layouts
        return
    if name in REGISTRY:
        yield from get_family(name).layouts
        return
    yield find_layout(name)


def find_layout(name: str) -> Layout:
    for family in families():
        for layout in family.layouts:
            if layout.name == name:
                return layout
    raise InputError(f"unknown model family {name!r}", hint=f"choose one of {', '.join(layout_names())}")


def detect_layout(names: Iterable[str], family: str | None = None,
                  source: SourceRecords | None = None) -> Layout | None:
    """The layout whose marker the names contain and whose ``recognise`` (where it has one)
    accepts them (None when none matches)."""
    names = list(names)
    for layout in candidate_layouts(family):
        if layout.recognises(names, source):
            return layout
    return None


def default_family() -> Family:
    """The family a bare state dict is read as when nothing names one: BERT, whose PyTorch names
    the others share below their prefixes (see REGISTRY's order)."""
    return get_family("bert")


def family_for_model_type(model_type: str | None) -> Family | None:
    """The family a Hugging Face config's ``model_type`` names (None: none bertconv knows)."""
    # a family's own modeling code may name its own model_type (MobileBERT's layer_norm checkpoints)
    return next((f for f in families() if model_type in (f.model_type, getattr(f.remote_code, "model_type", None))),
                None) if model_type else None


def family_for_architecture(architecture: str) -> Family | None:
    return next((f for f in families() if architecture in f.architecture_heads), None)


def select_tower(layout: Layout, tower: str | None) -> Layout:
    """The layout that exports ``tower`` of a multi-model checkpoint (``layout`` itself for None)."""
    if tower is None:
        return layout
    towers = layout.family.towers
    if not towers:
        raise InputError(f"--tower {tower}: {layout.family.name} checkpoints hold a single model",
                         hint="leave out --tower")
    if tower not in towers:
        raise InputError(f"unknown tower {tower!r} for {layout.family.name}",
                         hint=f"choose one of {', '.join(towers)}")
    return towers[tower]


def source_view(names: Iterable[str], family: str | None = None, *,
                source: SourceRecords | None = None) -> tuple[Layout | None, str, dict[str, str]]:
    """Recognise a checkpoint's layout from either naming side.

    Returns ``(layout, side, to_source)``: ``side`` is ``"tf"`` when the names are a layout's own
    (TensorFlow-side) names and ``"pt"`` when they are PyTorch names; ``to_source`` maps each
    recognised name to its source-side name (identity on the TF side). A family's tied duplicates
    are recognised as their originals. ``source``, when given, lets a layout resolve its table
    from the checkpoint itself (see :meth:`Layout.for_checkpoint`).
    """
    names = list(names)
    layout = detect_layout(names, family, source)
    if layout is not None:
        layout = layout.for_checkpoint(names, source)
        return layout, "tf", {n: n for n in names if layout.mapping.to_target(n)}
    # PyTorch names: each family's canonical table, read backwards
    seen = set()
    for candidate in candidate_layouts(family):
        if candidate.family.name in seen:
            continue
        seen.add(candidate.family.name)
        canonical = candidate.family.layouts[0] if family in (None, candidate.family.name) else candidate
        prefix = canonical.family.encoder_prefix + "."
        to_source = {}
        for n in names:
            for name in (n, prefix + n, canonical.family.tied.get(n)):
                if name is None:
                    continue
                m = canonical.mapping.to_source(name)
                if m:
                    to_source[n] = m.source
                    break
        if any(canonical.marker.search(s) for s in to_source.values()) and (
                canonical.recognise is None or canonical.recognise(names, source if source is not None
                                                                    else NO_RECORDS)):
            return canonical, "pt", to_source
    fallback = next(candidate_layouts(family), None) if family else None
    return fallback, "?", {}
