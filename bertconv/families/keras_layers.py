"""What bert4keras' files look like whatever model it built: shared by BERT's and RoFormer's
bert4keras layouts, which differ only in the model's layers (RoFormer has no position table).

``model.save_weights('x.weights')`` writes a TF object checkpoint whose keys are positional only,
``layer_with_weights-N/<attribute>/.ATTRIBUTES/VARIABLE_VALUE``, N counting the model's layers that
have weights in ``model.layers`` order. bert4keras' own attention and feed-forward layers keep their
Dense sub-layers as attributes (``q_dense``, ``i0_dense``...); every other layer's attributes are its
weights' leaves (``embeddings``, ``kernel``, ``bias``, ``beta``, ``gamma``).
"""
from __future__ import annotations

import re

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_KEY = re.compile(r"^layer_with_weights-(\d+)/(.+)/\.ATTRIBUTES/VARIABLE_VALUE$")

#: MultiHeadAttention's attributes, in the order of its weights (q, k, v, o; kernel before bias)
ATTENTION_ATTRIBUTES = tuple(f"{x}_dense/{leaf}" for x in "qkvo" for leaf in ("kernel", "bias"))
#: FeedForward's attributes, in the order of its weights (intermediate, then output)
FEED_FORWARD_ATTRIBUTES = tuple(f"{x}_dense/{leaf}" for x in ("i0", "o") for leaf in ("kernel", "bias"))
NORM_ATTRIBUTES = frozenset({"beta", "gamma"})


def checkpoint_key(index: int, attribute: str) -> str:
    return f"layer_with_weights-{index}/{attribute}{SUFFIX}"


class PositionalCheckpoint:
    """A bert4keras object checkpoint's keys, grouped by the weighted layer they belong to."""

    def __init__(self, names: list[str], source=None):
        self.source = source
        self.groups: dict[int, dict[str, str]] = {}
        for name in names:
            m = _KEY.match(name)
            if m:
                self.groups.setdefault(int(m.group(1)), {})[m.group(2)] = name

    def attributes(self, index: int) -> set[str]:
        return set(self.groups.get(index, {}))

    def shape(self, name: str) -> tuple:
        """The tensor's shape; ``()`` where only the names are known (no source)."""
        return tuple(self.source.info(name).shape) if self.source is not None else ()

    def encoder_layers(self, first: int) -> list[int]:
        """The index of each encoder layer's first weighted layer, from ``first`` on: four each
        (attention, its LayerNorm, feed-forward, its LayerNorm), for as long as that pattern holds."""
        starts, index = [], first
        while (self.attributes(index) == set(ATTENTION_ATTRIBUTES) and self.attributes(index + 1) == NORM_ATTRIBUTES
               and self.attributes(index + 2) == set(FEED_FORWARD_ATTRIBUTES)
               and self.attributes(index + 3) == NORM_ATTRIBUTES):
            starts.append(index)
            index += 4
        return starts

    def heads_from(self, index: int) -> list[int]:
        """The weighted layers from ``index`` on, in order: the heads, told apart by shape and
        neighbours."""
        return sorted(i for i in self.groups if i >= index)


def rules_by_group(layer_weights: dict[str, list[str]], layer_rules) -> tuple[list, list[str]]:
    """``layer_rules(group, weights)`` for each layer group of an HDF5 file, in file order: the
    rows of the groups it knows, and the groups it does not (it returned None)."""
    rules, others = [], []
    for group, weights in layer_weights.items():
        found = layer_rules(group, weights)
        if found is None:
            others.append(group)
        else:
            rules += found
    return rules, others
