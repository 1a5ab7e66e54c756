"""Model families: each is a declarative mapping table plus the few facts that cannot be a table
(how to recognise it, which architecture a set of heads means, how to read sizes off shapes)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..errors import InputError
from .base import Mapping

#: user-facing head names accepted by ``--head``, besides ``auto``
HEAD_CHOICES = ("auto", "base", "pretraining", "mlm", "nsp", "classifier", "squad")


@dataclass(frozen=True, repr=False)
class Family:
    name: str
    model_type: str
    mapping: Mapping
    #: a name that only this family's checkpoints contain
    marker: re.Pattern
    #: frozenset of heads -> Hugging Face architecture class name
    architectures: dict[frozenset, str]
    #: the Hugging Face ``hidden_act`` that computes what the original code computed for the
    #: config's activation name (BERT's modeling.py "gelu" is the tanh approximation)
    faithful_activation: dict[str, str]
    #: the exact-erf spelling, for ``--gelu exact``
    exact_activation: dict[str, str]
    #: architectures whose Hugging Face class has no pooler, though the checkpoint may have one
    without_pooler: frozenset = frozenset()
    #: symbolic shape of each source tensor, for checking weights against the config
    shapes: dict[str, tuple] = field(default_factory=dict)
    infer_sizes: Callable[[dict], dict] | None = None
    structural_parts: frozenset = frozenset({"pooler"})
    #: what the source config's ``hidden_act`` means, in the reference pass's names, where it
    #: differs from google-research/bert's reading (a Hugging Face config's "gelu" is the erf form)
    reference_activation: dict = field(default_factory=dict)
    #: for families whose table cannot be fixed in advance (an index that depends on the layer
    #: count, a variable shared under another object's name): ``bind(family, names, source)``
    #: returns the family specialised to one checkpoint; ``source`` may be None (names only)
    bind: Callable[["Family", list, object], "Family"] | None = None
    #: the heads ``--head auto`` (with no task head) and ``--head pretraining`` export
    pretraining_heads: frozenset = frozenset({"mlm", "nsp"})
    #: checkpoints that hold more than one model (ELECTRA's discriminator and generator): the
    #: model this family exports, and each tower's name -> loader of the family that exports it
    tower: str | None = None
    towers: dict = field(default_factory=dict)
    #: the config file a release ships, named when the weights cannot stand in for it
    config_file: str = "bert_config.json"

    def __repr__(self) -> str:
        return f"<Family {self.name}>"

    def for_checkpoint(self, names: Iterable[str], source=None) -> "Family":
        """This family with its table resolved for one checkpoint (itself when nothing depends on it)."""
        return self.bind(self, list(names), source) if self.bind is not None else self

    def heads_present(self, names: Iterable[str]) -> set[str]:
        """Task heads whose tensors appear among ``names`` (the pooler is a part, not a head)."""
        return {p for p in self.parts_present(names) if p not in self.structural_parts}

    def parts_present(self, names: Iterable[str]) -> set[str]:
        parts = set()
        for name in names:
            m = self.mapping.to_target(name)
            if m and m.rule.head:
                parts.add(m.rule.head)
        return parts

    def exported_parts(self, heads: frozenset, architecture: str) -> frozenset:
        """The optional parts a model of ``architecture`` with ``heads`` is made of."""
        extra = set()
        if "pooler" in self.structural_parts and architecture not in self.without_pooler:
            extra.add("pooler")
        return frozenset(heads | extra)

    def architecture(self, heads: frozenset) -> str:
        try:
            return self.architectures[heads]
        except KeyError:
            raise InputError(f"no {self.model_type} architecture carries the heads "
                             f"{', '.join(sorted(heads))} together",
                             hint="choose one with --head") from None


def _bert() -> Family:
    from . import bert
    return bert.FAMILY


def _tf2_garden() -> Family:
    from . import tf2_garden
    return tf2_garden.FAMILY


def _keras_hf() -> Family:
    from . import keras_hf
    return keras_hf.FAMILY


def _albert() -> Family:
    from . import albert
    return albert.FAMILY


def _electra() -> Family:
    from . import electra
    return electra.FAMILY


# Detection tries families in this order. ALBERT's names begin like BERT's (``bert/embeddings``),
# so its more specific marker is tried first. ELECTRA comes after BERT: below their prefixes their
# PyTorch names are the same, so a bare state dict without ELECTRA's own names reads as BERT.
_LOADERS = {"albert": _albert, "bert": _bert, "electra": _electra, "tf2_garden": _tf2_garden,
            "keras_hf": _keras_hf}


def family_names() -> list[str]:
    return list(_LOADERS)


def get_family(name: str) -> Family:
    try:
        return _LOADERS[name]()
    except KeyError:
        raise InputError(f"unknown model family {name!r}",
                         hint=f"choose one of {', '.join(family_names())}") from None


def select_tower(family: Family, tower: str | None) -> Family:
    """The family that exports ``tower`` of a multi-model checkpoint (``family`` itself for None)."""
    if tower is None:
        return family
    if not family.towers:
        raise InputError(f"--tower {tower}: {family.name} checkpoints hold a single model",
                         hint="leave out --tower")
    if tower not in family.towers:
        raise InputError(f"unknown tower {tower!r} for {family.name}",
                         hint=f"choose one of {', '.join(family.towers)}")
    return family.towers[tower]()


def detect_family(names: Iterable[str]) -> Family | None:
    """The family whose marker the names contain (None when no family matches)."""
    names = list(names)
    for loader in _LOADERS.values():
        family = loader()
        if any(family.marker.search(n) for n in names):
            return family
    return None


def source_view(names: Iterable[str], family: str | None = None, *,
                source=None) -> tuple[Family | None, str, dict[str, str]]:
    """Recognise a checkpoint's family from either naming side.

    Returns ``(family, side, to_source)``: ``side`` is ``"tf"`` when the names are the original
    TensorFlow ones and ``"pt"`` when they are PyTorch names; ``to_source`` maps each recognised
    name to its TensorFlow name (identity on the TF side). Hugging Face's duplicate keys of tied
    weights are recognised as their originals. ``source``, when given, lets a family resolve
    its table from the checkpoint itself (see :meth:`Family.for_checkpoint`).
    """
    names = list(names)
    # Families load one at a time, in detection order: a BERT checkpoint never builds the others.
    loaders = [lambda: get_family(family)] if family else list(_LOADERS.values())
    for load in loaders:
        fam = load()
        if any(fam.marker.search(n) for n in names):
            fam = fam.for_checkpoint(names, source)
            return fam, "tf", {n: n for n in names if fam.mapping.to_target(n)}
    for fam in (load() for load in loaders):
        prefix = fam.model_type + "."
        to_source = {}
        for n in names:
            for candidate in (n, prefix + n, _TIED_ALIASES.get(n)):
                if candidate is None:
                    continue
                m = fam.mapping.to_source(candidate)
                if m:
                    to_source[n] = m.source
                    break
        if any(fam.marker.search(s) for s in to_source.values()):
            return fam, "pt", to_source
    return (get_family(family) if family else None), "?", {}


#: Hugging Face state dicts may repeat tied weights under the decoder's own names.
_TIED_ALIASES = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}
