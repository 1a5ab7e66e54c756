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

from ..formats.base import SourceRecords
from ..formats.keras_model_config import KerasLayer, activation_name, model_config_layers

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

    def __init__(self, names: list[str], source: SourceRecords):
        self.source = source
        self.groups: dict[int, dict[str, str]] = {}
        for name in names:
            m = _KEY.match(name)
            if m:
                self.groups.setdefault(int(m.group(1)), {})[m.group(2)] = name

    def attributes(self, index: int) -> set[str]:
        return set(self.groups.get(index, {}))

    def shape(self, name: str) -> tuple:
        """The tensor's shape; ``()`` where only the names are known (no file)."""
        return self.source.stored_shape(name) or ()

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
        neighbours (:meth:`read_heads`)."""
        return sorted(i for i in self.groups if i >= index)

    def read_heads(self, index: int, hidden: tuple) -> list[tuple[str, int]]:
        """bert4keras' heads after the encoder, from ``index`` on, told apart by shape and
        neighbours, in order: ``(part, weighted layer)``, part one of ``mlm_dense`` (a
        square dense followed by a LayerNorm; ``mlm_norm`` follows it), ``pooler`` (a square
        dense not followed by one), ``mlm_bias`` (a beta-only vector) and ``last_dense`` (a
        last ``[H, n]`` dense after the pooler: NSP-Proba or a user's classifier, which the
        family tells apart). ``hidden``: the embeddings' width, as a 1-tuple (empty when unknown)."""
        heads = self.heads_from(index)
        found: list[tuple[str, int]] = []
        parts: set[str] = set()
        for i, following in zip(heads, heads[1:] + [None]):
            attributes = self.attributes(i)
            if attributes == {"kernel", "bias"}:
                kernel = self.shape(checkpoint_key(i, "kernel"))
                square = len(kernel) == 2 and kernel[0] == kernel[1] and kernel[:1] == hidden
                if square and "mlm_dense" not in parts and following is not None \
                        and self.attributes(following) == NORM_ATTRIBUTES:
                    found += [("mlm_dense", i), ("mlm_norm", following)]
                    parts.add("mlm_dense")
                elif square and "pooler" not in parts:
                    found.append(("pooler", i))
                    parts.add("pooler")
                elif "pooler" in parts and following is None and len(kernel) == 2 and kernel[:1] == hidden:
                    found.append(("last_dense", i))
            elif attributes == {"beta"} and len(self.shape(checkpoint_key(i, "beta"))) == 1:
                found.append(("mlm_bias", i))
        return found

    def has_mlm_bias(self, index: int) -> bool:
        return any(self.attributes(i) == {"beta"} for i in self.heads_from(index))


def reading_note(part: str, index: int, following: int | None = None) -> str:
    """What a reading of :meth:`PositionalCheckpoint.read_heads` says in a conversion's notes."""
    return {"mlm_dense": f"{index} MLM-Dense and {following} MLM-Norm (a square dense followed by a LayerNorm)",
            "pooler": f"{index} Pooler-Dense (a square dense not followed by a LayerNorm)",
            "mlm_bias": f"{index} MLM-Bias (a beta-only vector)"}[part]


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


def reads_output_of(layer: str, producer: str, config_layers: dict[str, KerasLayer]) -> bool | None:
    """Whether ``layer``'s input is ``producer``'s output (through Dropout layers): True or False
    from a model_config's graph, None when the file does not record the graph."""
    if not config_layers:
        return None
    seen = set()
    current = layer
    while current not in seen:
        seen.add(current)
        found = config_layers.get(current)
        inbound = found.inbound if found else ()
        if len(inbound) != 1:
            return False
        current = inbound[0]
        if current == producer:
            return True
        found = config_layers.get(current)
        if (found.class_name if found else None) != "Dropout":
            return False
    return False


def model_config_records(source: SourceRecords, *, attention: str, heads_key: str, feed_forward: str,
                         norm: str = "Embedding-Norm") -> dict:
    """What a ``model.save()`` file's model_config records that the shapes do not: the head
    count, the activation (the library's own name for it) and the LayerNorm epsilon, each as
    ``{field: (value, where)}`` (``Layout.recorded_config``); empty for weights-only files."""
    layers = model_config_layers(source.model_config())
    if not layers:
        return {}

    def config_of(name: str) -> dict:
        found = layers.get(name)
        return found.config if found else {}

    where = f"the model_config of {source.path.name}"
    recorded = {}
    heads = config_of(attention).get(heads_key)
    if isinstance(heads, int) and not isinstance(heads, bool):
        recorded["num_attention_heads"] = (heads, where)
    activation = activation_name(config_of(feed_forward).get("activation"))
    if activation:
        recorded["hidden_act"] = (activation, where)
    epsilon = config_of(norm).get("epsilon")
    if isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool):
        recorded["layer_norm_eps"] = (float(epsilon), where)
    return recorded
