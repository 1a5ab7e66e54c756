"""bert4keras (0.11.x) BERT models -> Hugging Face ``Bert*`` state-dict names, in the two files the
library's users save: Keras HDF5 (``model.save_weights('x.h5')``, ``model.save('x.h5')``) and the
TF object checkpoint of ``model.save_weights('best_model.weights')`` in its examples.

**HDF5.** Layers have fixed names (``Embedding-Token``, ``Embedding-Segment``,
``Embedding-Position``, ``Embedding-Norm``, ``Transformer-{i}-MultiHeadSelfAttention`` counted from
0 and its ``-Norm``, ``Transformer-{i}-FeedForward`` and its ``-Norm``, ``Pooler-Dense``,
``NSP-Proba``, ``MLM-Dense``, ``MLM-Norm``, ``MLM-Bias``), but the sub-layers inside the attention
and feed-forward layers are plain Keras ``Dense`` layers with generated names: ``dense`` ...
``dense_3`` in eager mode, and process-wide counters (``dense_7`` ... ``dense_10``) with a ``_1``
scope suffix in graph mode or when several models were built in one process. So the table is made
per file (:func:`bind_h5`): each layer is found by its group name, and its weights are taken in the
layer's ``weight_names`` order, the order the layer created them (q, k, v, o; intermediate, output),
never by sorted names (``dense_10`` sorts before ``dense_7``). LayerNorm weights are matched by their
leaf (``beta`` and ``gamma``: bert4keras stores beta first).

**Object checkpoint.** Keys are positional only, ``layer_with_weights-N/<attribute>``: 0 token, 1
segment, 2 position embeddings, 3 the embedding LayerNorm, then four per encoder layer (attention,
its LayerNorm, feed-forward, its LayerNorm) from 4, then the heads in the graph's order. The heads
are told apart by their shapes and neighbours (:func:`bind_checkpoint`), and every such reading is
stated in the conversion's notes:

- a ``[H, H]`` dense followed by a ``{beta, gamma}`` group is MLM-Dense (then MLM-Norm); one that is
  not is Pooler-Dense (the two have the same shape);
- a ``beta``-only ``[V]`` group is MLM-Bias;
- after Pooler-Dense, a last dense ``[H, n]``: NSP-Proba when ``n == 2`` and the masked-LM head is
  there too (a pretraining model), otherwise the user's classifier with ``n`` labels. A 2-label
  classifier and NSP-Proba are shape-identical; both are a linear map of the pooled output, so the
  logits are the same whichever it was, and the note says which class was chosen and why.

Anything else (a layer the user added that is not a final dense on the pooled output) is left
unmapped, and so reported as unknown by name.

Numerics facts: bert4keras' ``"gelu"`` is the exact erf form (``gelu_erf``; ``gelu_tanh`` is the
approximation); LayerNorm epsilon 1e-12 for BERT; NSP-Proba and any Dense kernel are ``[in, out]``
(transposed against Google's ``output_weights``). Vocabularies pruned with ``keep_tokens`` keep
fewer rows than vocab.txt: the embedding and MLM-Bias shapes say so, and the kept token list is
needed to write a vocabulary consistent with them (``tf2pt --keep-tokens``).
"""
from __future__ import annotations

import dataclasses
import re

from ....formats.base import SourceRecords
from ....mapping import TRANSPOSE as T
from ....mapping import Mapping, Rule
from ...base import Layout
from ....formats.keras_model_config import model_config_layers
from ...keras_layers import (
    ATTENTION_ATTRIBUTES,
    FEED_FORWARD_ATTRIBUTES,
    PositionalCheckpoint,
    model_config_records,
    reading_note,
    reads_output_of,
    rules_by_group,
)
from ...keras_layers import checkpoint_key as _key

H, I, V = "hidden_size", "intermediate_size", "vocab_size"
P = "bert.encoder.layer.{layer}."

#: what bert4keras computes for each activation name its config may hold, as Hugging Face names it
BERT4KERAS_ACTIVATIONS = {"gelu": "gelu", "gelu_erf": "gelu", "gelu_tanh": "gelu_new", "relu": "relu",
                          "tanh": "tanh", "swish": "swish"}
BERT4KERAS_EXACT_ACTIVATIONS = {"gelu": "gelu", "gelu_erf": "gelu", "gelu_tanh": "gelu"}
#: the same in the float64 reference's names
BERT4KERAS_REFERENCE_ACTIVATIONS = {"gelu": "gelu_exact", "gelu_erf": "gelu_exact", "gelu_tanh": "gelu_new"}
#: what both of bert4keras' BERT files (HDF5 and object checkpoint) share: the library's numerics
#: (LayerNorm epsilon 1e-12 for BERT), no record of the head count, and keep_tokens' pruned vocabulary
_BERT4KERAS_FACTS = {
    "faithful_activation": BERT4KERAS_ACTIVATIONS,
    "exact_activation": BERT4KERAS_EXACT_ACTIVATIONS,
    "reference_activation": BERT4KERAS_REFERENCE_ACTIVATIONS,
    "layer_norm_eps": 1e-12,
    "head_count_from_head_size": False,
    "sizes_from_weights": {"vocab_size": "a vocabulary pruned with bert4keras' keep_tokens keeps fewer rows"},
}

# -- the parts, each as (target, symbolic source shape, transform, head) per weight --------------

EMBEDDINGS = {
    "token": ("bert.embeddings.word_embeddings.weight", (V, H), None, None),
    "segment": ("bert.embeddings.token_type_embeddings.weight", ("type_vocab_size", H), None, None),
    "position": ("bert.embeddings.position_embeddings.weight", ("max_position_embeddings", H), None, None),
}


def _dense(target: str, shape: tuple, head: str | None = None) -> list[tuple]:
    """A Keras Dense: kernel [in, out] (transposed for nn.Linear), then bias [out]."""
    return [(target + ".weight", shape, T, head), (target + ".bias", (shape[1],), None, head)]


def _norm(target: str, head: str | None = None) -> dict[str, tuple]:
    return {"gamma": (target + ".weight", (H,), None, head), "beta": (target + ".bias", (H,), None, head)}


def attention_rows(layer: int) -> list[tuple]:
    p = P.format(layer=layer)
    return (_dense(p + "attention.self.query", (H, H)) + _dense(p + "attention.self.key", (H, H))
            + _dense(p + "attention.self.value", (H, H)) + _dense(p + "attention.output.dense", (H, H)))


def feed_forward_rows(layer: int) -> list[tuple]:
    p = P.format(layer=layer)
    return _dense(p + "intermediate.dense", (H, I)) + _dense(p + "output.dense", (I, H))


POOLER = _dense("bert.pooler.dense", (H, H), "pooler")
MLM_DENSE = _dense("cls.predictions.transform.dense", (H, H), "mlm")
MLM_NORM = _norm("cls.predictions.transform.LayerNorm", "mlm")
MLM_BIAS = ("cls.predictions.bias", (V,), None, "mlm")
NSP = _dense("cls.seq_relationship", (H, 2), "nsp")
CLASSIFIER = _dense("classifier", (H, "num_labels"), "classifier")


def _rule(source: str, row: tuple) -> Rule:
    target, shape, transform, head = row
    return Rule(source, target, shape, transform, head)


def _leaf(name: str) -> str:
    """``Embedding-Norm/beta:0`` -> ``beta``; a checkpoint key's attribute likewise."""
    name = name.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE").removesuffix(":0")
    return name.rsplit("/", 1)[-1]


def _bound(layout: Layout, rules: list[Rule], notes: list[str]) -> Layout:
    mapping = Mapping(tuple(rules))
    return dataclasses.replace(layout, mapping=mapping, bind=None,
                               assumptions=tuple(notes))


# -- HDF5 -------------------------------------------------------------------------------------------

_ATTENTION = re.compile(r"^Transformer-(\d+)-MultiHeadSelfAttention$")
_ATTENTION_NORM = re.compile(r"^Transformer-(\d+)-MultiHeadSelfAttention-Norm$")
_FEED_FORWARD = re.compile(r"^Transformer-(\d+)-FeedForward$")
_FEED_FORWARD_NORM = re.compile(r"^Transformer-(\d+)-FeedForward-Norm$")
_FIXED_GROUPS = {"Embedding-Token": [EMBEDDINGS["token"]], "Embedding-Segment": [EMBEDDINGS["segment"]],
                 "Embedding-Position": [EMBEDDINGS["position"]], "Pooler-Dense": POOLER,
                 "MLM-Dense": MLM_DENSE, "NSP-Proba": NSP, "MLM-Bias": [MLM_BIAS]}
_NORM_GROUPS = {"Embedding-Norm": _norm("bert.embeddings.LayerNorm"), "MLM-Norm": MLM_NORM}


def _positional(group: str, names: list[str], rows: list[tuple], leaves: list[str]) -> list[Rule] | None:
    """The group's weights taken in weight_names order, when their leaves are the expected ones."""
    if [_leaf(n) for n in names] != leaves:
        return None
    return [_rule(name, row) for name, row in zip(names, rows)]


def _by_leaf(names: list[str], rows: dict[str, tuple]) -> list[Rule] | None:
    if sorted(_leaf(n) for n in names) != sorted(rows):
        return None
    return [_rule(name, rows[_leaf(name)]) for name in names]


def h5_layer_rules(group: str, names: list[str]) -> list[Rule] | None:
    """The rules of one bert4keras layer group (None: not a layer of bert4keras' BERT). Its
    RoFormer writes the same groups, less the position table."""
    dense = ["kernel", "bias"]
    if group in _FIXED_GROUPS:
        rows = _FIXED_GROUPS[group]
        leaves = {1: ["embeddings"] if group.startswith("Embedding") else ["beta"], 2: dense}[len(rows)]
        return _positional(group, names, rows, leaves)
    if group in _NORM_GROUPS:
        return _by_leaf(names, _NORM_GROUPS[group])
    for pattern, rows_of, leaves in ((_ATTENTION, attention_rows, dense * 4),
                                     (_FEED_FORWARD, feed_forward_rows, dense * 2)):
        m = pattern.match(group)
        if m:
            return _positional(group, names, rows_of(int(m.group(1))), leaves)
    for pattern, target in ((_ATTENTION_NORM, "attention.output.LayerNorm"), (_FEED_FORWARD_NORM, "output.LayerNorm")):
        m = pattern.match(group)
        if m:
            return _by_leaf(names, _norm(P.format(layer=int(m.group(1))) + target))
    return None


def bind_h5(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """The table of one bert4keras HDF5 file, from its layer groups (see the module docstring)."""
    layer_weights = source.layer_weights
    if not layer_weights:
        return layout
    config_layers = model_config_layers(source.model_config())
    notes: list[str] = []
    rules, others = rules_by_group(layer_weights, h5_layer_rules)
    groups = list(layer_weights)
    # The user's own head: the last layer with weights, a dense [H, n] on the pooled output.
    if others and "Pooler-Dense" in layer_weights and groups[-1] == others[-1]:
        head = others[-1]
        weights = layer_weights[head]
        kernel = source.stored_shape(weights[0]) or ()
        pooled = reads_output_of(head, "Pooler-Dense", config_layers)
        if ([_leaf(w) for w in weights] == ["kernel", "bias"] and len(kernel) == 2
                and not {"NSP-Proba", "MLM-Dense"} & set(layer_weights) and pooled is not False):
            rules += [_rule(name, row) for name, row in zip(weights, CLASSIFIER)]
            others.pop()
            how = ("model_config says its input is Pooler-Dense" if pooled else
                   "the last layer with weights, after Pooler-Dense; weights-only files do not record a layer's input")
            notes.append(f"layer {head} (kernel {list(kernel)}) read as a classifier with {kernel[1]} labels on "
                          f"the pooled output ({how})")
    if others:
        notes.append("layers that are not bert4keras' BERT, left unmapped: " + ", ".join(others))
    return _bound(layout, rules, notes)


def recorded_config(layout: Layout, source) -> dict:
    return model_config_records(source, attention="Transformer-0-MultiHeadSelfAttention", heads_key="heads",
                                feed_forward="Transformer-0-FeedForward")


def recognise_h5(names: list[str], source: SourceRecords) -> bool:
    """bert4keras' BERT has a learned position table; its RoFormer and NEZHA (same layer names
    otherwise) have none."""
    return any(_POSITION_H5.match(n) for n in names)


_POSITION_H5 = re.compile(r"^Embedding-Position(_\d+)?/embeddings:0$")

LAYOUT = Layout(
    name="bert4keras",
    description="bert4keras BERT saved as Keras HDF5 (save_weights / save)",
    mapping=Mapping(()),
    marker=re.compile(r"^Transformer-\d+-MultiHeadSelfAttention(_\d+)?/dense(_\d+)?/kernel:0$"),
    **_BERT4KERAS_FACTS,
    bind=bind_h5,
    recorded_config=recorded_config,
    recognise=recognise_h5,
)

# -- TF object checkpoint ---------------------------------------------------------------------------

def bind_checkpoint(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """The table of one ``save_weights('x.weights')`` checkpoint, from the layer count, the heads'
    shapes and their order (see the module docstring)."""
    ckpt = PositionalCheckpoint(names, source)
    groups, shape, attributes = ckpt.groups, ckpt.shape, ckpt.attributes

    rules: list[Rule] = []
    notes: list[str] = []
    for index, part in enumerate(("token", "segment", "position")):
        if attributes(index) == {"embeddings"}:
            rules.append(_rule(_key(index, "embeddings"), EMBEDDINGS[part]))
    if attributes(3) == {"beta", "gamma"}:
        rules += [_rule(_key(3, leaf), row) for leaf, row in _norm("bert.embeddings.LayerNorm").items()]
    starts = ckpt.encoder_layers(4)
    for layer, index in enumerate(starts):
        p = P.format(layer=layer)
        rules += [_rule(_key(index, a), row) for a, row in zip(ATTENTION_ATTRIBUTES, attention_rows(layer))]
        rules += [_rule(_key(index + 1, leaf), row) for leaf, row in _norm(p + "attention.output.LayerNorm").items()]
        rules += [_rule(_key(index + 2, a), row) for a, row in zip(FEED_FORWARD_ATTRIBUTES, feed_forward_rows(layer))]
        rules += [_rule(_key(index + 3, leaf), row) for leaf, row in _norm(p + "output.LayerNorm").items()]
    layer, index = len(starts), 4 + 4 * len(starts)
    hidden = shape(_key(0, "embeddings"))[1:2] if 0 in groups else ()
    heads = ckpt.heads_from(index)
    read: list[str] = []
    readings = ckpt.read_heads(index, hidden)
    has_mlm = any(part == "mlm_dense" for part, _ in readings) or ckpt.has_mlm_bias(index)
    for (part, i), (_next_part, following) in zip(readings, readings[1:] + [(None, None)]):
        if part == "mlm_dense":
            rules += [_rule(_key(i, "kernel"), MLM_DENSE[0]), _rule(_key(i, "bias"), MLM_DENSE[1])]
            rules += [_rule(_key(following, leaf), row) for leaf, row in MLM_NORM.items()]
            read.append(reading_note(part, i, following))
        elif part == "pooler":
            rules += [_rule(_key(i, "kernel"), POOLER[0]), _rule(_key(i, "bias"), POOLER[1])]
            read.append(reading_note(part, i))
        elif part == "mlm_bias":
            rules.append(_rule(_key(i, "beta"), MLM_BIAS))
            read.append(reading_note(part, i))
        elif part == "last_dense":
            labels = shape(_key(i, "kernel"))[1]
            if labels == 2 and has_mlm:
                rules += [_rule(_key(i, "kernel"), NSP[0]), _rule(_key(i, "bias"), NSP[1])]
                read.append(f"{i} NSP-Proba (a last [H, 2] dense in a model with the masked-LM head; a "
                            "2-label classifier would have the same shape and compute the same logits)")
            else:
                rules += [_rule(_key(i, "kernel"), CLASSIFIER[0]), _rule(_key(i, "bias"), CLASSIFIER[1])]
                read.append(f"{i} the user's classifier with {labels} labels on the pooled output (the last dense, "
                            "after Pooler-Dense" + ("; bert4keras' NSP-Proba has the same shape and would compute "
                                                    "the same logits" if labels == 2 else "") + ")")
    known = {r.source for r in rules}
    if heads and source.path is not None:
        notes.append(f"positional checkpoint: {layer} encoder layer(s) in layer_with_weights-4 to -{index - 1}, four "
                      "each; read " + ("; ".join(read) if read else "no heads"))
    left = sorted({i for i in heads for n in groups[i].values() if n not in known})
    if left:
        notes.append("layer_with_weights-" + ", -".join(str(i) for i in left)
              + " match no part of bert4keras' BERT by shape and order: left unmapped")
    return _bound(layout, rules, notes)


def recognise_checkpoint(names: list[str], source: SourceRecords) -> bool:
    """bert4keras' BERT keeps its position table third (layer_with_weights-2); RoFormer and NEZHA
    have none there (their third weighted layer is the embedding LayerNorm)."""
    return _key(2, "embeddings") in set(names)


CHECKPOINT_LAYOUT = Layout(
    name="bert4keras_checkpoint",
    description="bert4keras BERT saved with save_weights as a TF object checkpoint (positional keys)",
    mapping=Mapping(()),
    marker=re.compile(r"^layer_with_weights-\d+/q_dense/kernel/\.ATTRIBUTES/VARIABLE_VALUE$"),
    **_BERT4KERAS_FACTS,
    bind=bind_checkpoint,
    recognise=recognise_checkpoint,
)

LAYOUTS = (LAYOUT, CHECKPOINT_LAYOUT)
