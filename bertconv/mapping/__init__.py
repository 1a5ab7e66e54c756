"""Name mapping as data.

A layout's mapping is a table of :class:`Rule` rows: a source (TensorFlow-side) name, a target
(PyTorch) name, the source tensor's symbolic shape and a transform. ``{layer}`` in a name stands for
a layer index. The same table maps in both directions (TF -> PyTorch for ``tf2pt`` and ``diff``,
PyTorch -> TF for ``pt2tf``), so a row is the single statement of how one tensor corresponds to
another, and of the shape it must have.

Lookups are dictionary lookups: fixed names directly, per-layer names by the text around the
layer number (a checkpoint holds thousands of names, a table dozens of rows); :meth:`Mapping.table`
expands the rows once for a layer count into one flat dict.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Collection, Iterable, Sequence

from .training_state import METADATA_NAMES, training_state_kind
from .transforms import (MERGE_HEADS, MERGE_HEADS_IN_T, MERGE_HEADS_OUT_T, SHAPE_AWARE, TRANSPOSE, apply_transform,
                         invert_transform, transformed_shape, transposed_matrix)

__all__ = ["Rule", "Match", "Mapping", "TRANSPOSE", "MERGE_HEADS", "MERGE_HEADS_IN_T", "MERGE_HEADS_OUT_T",
           "SHAPE_AWARE", "apply_transform", "invert_transform", "transformed_shape", "transposed_matrix",
           "training_state_kind", "METADATA_NAMES", "LAYER", "infer_sizes"]

#: the placeholder for a layer index in a rule's names
LAYER = "{layer}"


@dataclass(frozen=True)
class Rule:
    source: str
    target: str
    #: the source tensor's symbolic shape: config field names (``"hidden_size"``) or literal sizes;
    #: empty when the layout states no shape
    shape: tuple = ()
    transform: str | None = None
    #: the part the tensor belongs to (a head, the pooler; None: the encoder, in every model)
    head: str | None = None
    #: the number a source name carries for layer 0: Keras functional models number their
    #: weighted layers in order (``layer_with_weights-4`` is encoder layer 0 when four embedding
    #: layers come first); target names always count from 0
    layer_offset: int = 0

    @property
    def per_layer(self) -> bool:
        return LAYER in self.source


@dataclass(frozen=True)
class Match:
    rule: Rule
    source: str
    target: str
    layer: int | None


def _fill(pattern: str, layer: int | None, offset: int = 0) -> str:
    return pattern.replace(LAYER, str(layer + offset)) if layer is not None else pattern


class _Side:
    """One side's names of a table: fixed names in a dict, per-layer names as the text before the
    layer number -> the text after it -> rule."""

    def __init__(self, rules: Iterable[Rule], side: str):
        self.side = side
        self.fixed: dict[str, Rule] = {}
        self.around: dict[str, dict[str, Rule]] = {}
        for rule in rules:
            name = getattr(rule, side)
            if rule.per_layer:
                before, after = name.split(LAYER, 1)
                self.around.setdefault(before, {}).setdefault(after, rule)
            else:
                self.fixed.setdefault(name, rule)

    def find(self, name: str) -> tuple[Rule, int | None] | None:
        rule = self.fixed.get(name)
        if rule is not None:
            return rule, None
        for before, rules in self.around.items():
            if not name.startswith(before):
                continue
            rest = name[len(before):]
            digits = len(rest) - len(rest.lstrip("0123456789"))
            if digits == 0 or (digits > 1 and rest[0] == "0"):
                continue
            rule = rules.get(rest[digits:])
            if rule is not None:
                return rule, int(rest[:digits])
        return None


class Mapping:
    """A table of rules, looked up from either side."""

    def __init__(self, rules: Iterable[Rule], optional_prefixes: Iterable[str] = ()):
        self.rules = tuple(rules)
        #: source prefixes that some exports add (``module/`` for TF-Hub); stripped before lookup
        self.optional_prefixes = tuple(optional_prefixes)
        self._tables: dict[int, dict[str, Match]] = {}

    @cached_property
    def _source(self) -> _Side:
        return _Side(self.rules, "source")

    @cached_property
    def _target(self) -> _Side:
        return _Side(self.rules, "target")

    @cached_property
    def _to_target_cache(self) -> dict[str, Match | None]:
        return {}

    def to_target(self, source_name: str) -> Match | None:
        cache = self._to_target_cache
        if source_name not in cache:
            cache[source_name] = self._lookup_source(source_name)
        return cache[source_name]

    def _lookup_source(self, source_name: str) -> Match | None:
        name = source_name
        for prefix in self.optional_prefixes:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        found = self._source.find(name)
        if found is None:
            return None
        rule, number = found
        layer = None if number is None else number - rule.layer_offset
        if layer is not None and layer < 0:
            return None
        return Match(rule, source_name, _fill(rule.target, layer), layer)

    def to_source(self, target_name: str) -> Match | None:
        found = self._target.find(target_name)
        if found is None:
            return None
        rule, layer = found
        return Match(rule, _fill(rule.source, layer, rule.layer_offset), target_name, layer)

    def table(self, num_layers: int) -> dict[str, Match]:
        """Every source name of a model with ``num_layers`` layers -> its match, as one flat dict."""
        if num_layers not in self._tables:
            table = {}
            for rule in self.rules:
                for layer in (range(num_layers) if rule.per_layer else [None]):
                    source = _fill(rule.source, layer, rule.layer_offset)
                    table.setdefault(source, Match(rule, source, _fill(rule.target, layer), layer))
            self._tables[num_layers] = table
        return self._tables[num_layers]

    def expected(self, num_layers: int, heads: Iterable[str | None]) -> list[Match]:
        """Every tensor a model with these parts must have, as matches (source and target)."""
        wanted = set(heads) | {None}
        return [m for m in self.table(num_layers).values() if m.rule.head in wanted]

#: the layer number in a Hugging Face encoder's state-dict name (``bert.encoder.layer.3.``): tables
#: bound to one checkpoint write each layer's rows out, with the layer in the target only
_TARGET_LAYER = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")


def infer_sizes(mapping: Mapping, shapes: dict[str, tuple[int, ...]], *, fields: Sequence[str],
                skip_parts: Collection[str] = ()) -> dict[str, int]:
    """The sizes the stored shapes state through ``mapping``: each tensor's shape matched against
    its row's symbolic shape, a field taken from the first row (in table order, layer 0 first)
    that states it, and ``num_hidden_layers`` from the layers the tensors belong to. Only
    ``fields`` are returned, in their order; rows of ``skip_parts`` (another model's, in a checkpoint of
    several) are not read. Sizes that disagree between tensors are not reconciled here: the
    plan checks every tensor against the config these sizes go into."""
    order = {rule: i for i, rule in reversed(list(enumerate(mapping.rules)))}
    stated, layers = [], set()
    for name, shape in shapes.items():
        match = mapping.to_target(name)
        if match is None or match.rule.head in skip_parts:
            continue
        layer = match.layer
        if layer is None:
            found = _TARGET_LAYER.search(match.target)
            layer = int(found.group(1)) if found else None
        if layer is not None:
            layers.add(layer)
        if match.rule.shape and len(match.rule.shape) == len(shape):
            stated.append((order[match.rule], layer or 0, name, match.rule.shape, tuple(shape)))
    sizes: dict[str, int] = {}
    for _order, _layer, _name, symbolic, stored in sorted(stated):
        for dim, value in zip(symbolic, stored):
            if isinstance(dim, str) and dim in fields and dim not in sizes:
                sizes[dim] = value
    if layers and "num_hidden_layers" in fields:
        sizes["num_hidden_layers"] = max(layers) + 1
    return {field: sizes[field] for field in fields if field in sizes}
