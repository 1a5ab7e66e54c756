"""TF2 Model Garden's ``BertClassifier`` (the "Fine-tune a BERT model" tutorial:
``models.BertClassifier(network=BertEncoder, num_classes=N)``), saved by
``tf.train.Checkpoint(model=classifier, optimizer=...)`` or exported by ``tf.saved_model.save`` of a
module holding it -> Hugging Face ``BertForSequenceClassification`` names.

``BertClassifier`` is a Keras functional model: its weighted layers are its encoder network
(``layer_with_weights-0``, itself the functional ``BertEncoder`` whose layers garden.py's
``layer_with_weights`` rows name: 0 word embeddings, 1 positions, 2 types, 3 the embedding
LayerNorm, ``4 + i`` layer ``i``, then the pooler) and its ``ClassificationHead``
(``layer_with_weights-1``). Where the classifier sits is the user's choice (the checkpoint's
``model=``, the exported module's attribute): :func:`bind` takes it from the key of the first query
kernel or, in an export whose keys are positional (``classifier/variables/N``), finds it through
the object graph, and then follows each row's object path to its key (garden.py's
:func:`~.garden.stored_key`).

The head: with ``use_encoder_pooler`` (the default) the ``ClassificationHead`` has no inner dense
(``inner_dim=0``) and applies dropout and ``out_proj`` to the encoder's pooled output, which is
``BertForSequenceClassification``'s classifier on ``BertModel``'s pooler. A head with an inner
``dense`` reads the first token of the sequence output through a layer of its own instead: it is
named and kept out, with a note.
"""
from __future__ import annotations

import dataclasses
import re

from ....mapping import LAYER, Mapping, Rule
from ....mapping import TRANSPOSE as T
from ....formats.base import SourceRecords
from ...base import Layout
from .garden import FIRST_LAYER_INDEX, SUFFIX, functional_pooler_rules, functional_rules, stored_key
from .google import GOOGLE_ACTIVATIONS, GOOGLE_EXACT_ACTIVATIONS

H = "hidden_size"
ENCODER = "layer_with_weights-0/"
HEAD = "layer_with_weights-1/"
KEPT_OUT = "garden_head"
QUERY = "_attention_layer/_query_dense/kernel" + SUFFIX
MARKER = re.compile(r"^(?P<scope>(?:[^/]+/)+?)" + ENCODER + r"layer_with_weights-\d+/" + re.escape(QUERY) + "$")
#: an export's positional keys: the object graph decides (:func:`recognise`)
POSITIONAL = re.compile(r"^(?:[^/]+/)+variables/\d+" + re.escape(SUFFIX) + "$")


def _numbered(scope: str) -> str:
    return scope + ENCODER + "layer_with_weights-"


def _query_path(scope: str, layer: int) -> str:
    return f"{_numbered(scope)}{FIRST_LAYER_INDEX + layer}/{QUERY}"


def _scope(names: list[str], source: SourceRecords) -> tuple[str | None, bool]:
    """(the object path of the classifier, whether its keys are positional and need the graph)."""
    for name in names:
        m = MARKER.match(name)
        if m:
            return m.group("scope"), False
    graph = source.object_graph()
    if not graph:
        return None, False
    present = set(names)
    for child in graph[0].children:
        scope = child.local_name + "/"
        if stored_key(graph, _query_path(scope, 0)) in present:
            return scope, True
    return None, False


def recognise(names: list[str], source: SourceRecords) -> bool:
    return _scope(names, source)[0] is not None


def _rules(scope: str, num_layers: int) -> list[Rule]:
    numbered = _numbered(scope)
    rules = list(functional_rules(numbered, "_attention_layer/_output_dense"))
    rules += functional_pooler_rules(num_layers, numbered)
    rules += [Rule(scope + HEAD + "out_proj/kernel" + SUFFIX, "classifier.weight", (H, "num_labels"), T, "classifier"),
              Rule(scope + HEAD + "out_proj/bias" + SUFFIX, "classifier.bias", ("num_labels",), None, "classifier")]
    return rules


def bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    scope, positional = _scope(names, source)
    if scope is None:
        return dataclasses.replace(layout, bind=None)
    graph = source.object_graph() if positional else None
    present = set(names)

    def key(path: str) -> str:
        if graph is None:
            return path
        found = stored_key(graph, path)
        return found if found in present else path

    num_layers = 0
    while key(_query_path(scope, num_layers)) in present:
        num_layers += 1
    rules = []
    for rule in _rules(scope, num_layers):
        for layer in (range(num_layers) if rule.per_layer else (None,)):
            path, target = rule.source, rule.target
            if layer is not None:
                path = path.replace(LAYER, str(layer + rule.layer_offset))
                target = target.replace(LAYER, str(layer))
            rules.append(Rule(key(path), target, rule.shape, rule.transform, rule.head))
    notes = [f"the encoder is the BertClassifier's encoder network, {scope}{ENCODER} ({num_layers} layers)"]
    inner = [n for n in (key(scope + HEAD + f"dense/{v}" + SUFFIX) for v in ("kernel", "bias")) if n in present]
    if inner:
        rules = [r for r in rules if r.head != "classifier"]
        for name in inner + [key(scope + HEAD + f"out_proj/{v}" + SUFFIX) for v in ("kernel", "bias")]:
            if name in present:
                rules.append(Rule(name, f"{KEPT_OUT}.{name}", (), None, KEPT_OUT))
        notes.append(f"the ClassificationHead {scope}{HEAD} kept out: it has an inner dense of its own on the first "
                     "token (use_encoder_pooler=False), which no Bert* head computes")
    else:
        notes.append(f"the user's head, the ClassificationHead {scope}{HEAD} (out_proj on the encoder's pooled "
                     "output), is BertForSequenceClassification's classifier")
    mapping = Mapping(tuple(rules))
    return dataclasses.replace(layout, mapping=mapping, bind=None, assumptions=tuple(notes))


_DEFAULT_RULES = tuple(_rules("model/", 0))

LAYOUT = Layout(
    name="tf2_garden_classifier",
    description="TF2 Model Garden BertClassifier (tf.train.Checkpoint of the model, or its exported SavedModel)",
    mapping=Mapping(_DEFAULT_RULES),
    marker=re.compile(MARKER.pattern + "|" + POSITIONAL.pattern),
    recognise=recognise,
    faithful_activation=GOOGLE_ACTIVATIONS,
    exact_activation=GOOGLE_EXACT_ACTIVATIONS,
    bind=bind,
    structural_parts=frozenset({"pooler", KEPT_OUT}),
)
