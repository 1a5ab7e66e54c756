"""keras-bert (CyberZHG, 0.89) models saved as Keras HDF5 -> Hugging Face ``Bert*`` state-dict names.

Layers are named ``Embedding-Token``, ``Embedding-Segment``, ``Embedding-Position``,
``Embedding-Norm``, then per encoder layer ``Encoder-{k}-MultiHeadSelfAttention`` (counted from 1),
its ``-Norm``, ``Encoder-{k}-FeedForward`` and its ``-Norm``; the heads are ``MLM-Dense``,
``MLM-Norm``, ``MLM-Sim`` (its ``bias`` is the output bias; the decoder is the token table),
``NSP-Dense`` (BERT's tanh pooler) and ``NSP`` (its kernel ``[H, 2]`` is transposed against
Google's ``output_weights``). Weights are named by the layer with a suffix, e.g.
``Encoder-1-MultiHeadSelfAttention_Wq:0``, ``..._bq``, ``Encoder-1-FeedForward_W1:0``; they are
matched by that suffix within the layer's group (the reader's ``layer_weights``), so the table is
made per file (:func:`bind`). LayerNorm weights are stored gamma, then beta (matched by name).

Numerics facts of keras-bert: its ``"gelu"`` is the tanh approximation (Hugging Face ``gelu_new``),
its LayerNormalization epsilon is ``K.epsilon() ** 2`` (about 1e-14), and
``build_model_from_config(seq_len=N)`` keeps only the first ``N`` rows of the position table
(while bert_config.json still states the full ``max_position_embeddings``): the converted model
then has ``N`` positions, which is what the saved model could compute, and the report says so.
"""
from __future__ import annotations

import re

from ....formats.base import SourceRecords
from ....mapping import Mapping, Rule
from ...base import Layout
from ...keras_layers import model_config_records, rules_by_group
from .bert4keras import (
    CLASSIFIER,
    EMBEDDINGS,
    MLM_BIAS,
    MLM_DENSE,
    MLM_NORM,
    NSP,
    POOLER,
    P,
    _bound,
    _by_leaf,
    _leaf,
    _norm,
    _rule,
    attention_rows,
    feed_forward_rows,
)
from .google import GOOGLE_ACTIVATIONS, GOOGLE_EXACT_ACTIVATIONS

#: keras-bert's LayerNormalization default: K.epsilon() ** 2, as float64 computes it
KERAS_BERT_EPSILON = 1e-7 ** 2

_ATTENTION = re.compile(r"^Encoder-(\d+)-MultiHeadSelfAttention$")
_ATTENTION_NORM = re.compile(r"^Encoder-(\d+)-MultiHeadSelfAttention-Norm$")
_FEED_FORWARD = re.compile(r"^Encoder-(\d+)-FeedForward$")
_FEED_FORWARD_NORM = re.compile(r"^Encoder-(\d+)-FeedForward-Norm$")

_ATTENTION_SUFFIXES = ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")
_FEED_FORWARD_SUFFIXES = ("W1", "b1", "W2", "b2")
_FIXED = {"Embedding-Token": {"embeddings": EMBEDDINGS["token"]},
          "Embedding-Segment": {"embeddings": EMBEDDINGS["segment"]},
          "Embedding-Position": {"embeddings": EMBEDDINGS["position"]},
          "MLM-Dense": dict(zip(("kernel", "bias"), MLM_DENSE)),
          "MLM-Sim": {"bias": MLM_BIAS},
          "NSP-Dense": dict(zip(("kernel", "bias"), POOLER)),
          "NSP": dict(zip(("kernel", "bias"), NSP)),
          "Embedding-Norm": _norm("bert.embeddings.LayerNorm"),
          "MLM-Norm": MLM_NORM}


def _suffixed(group: str, names: list[str], suffixes: tuple, rows: list[tuple]) -> list[Rule] | None:
    by_suffix = dict(zip(suffixes, rows))
    found = {}
    for name in names:
        leaf = _leaf(name)
        suffix = leaf[len(group) + 1:] if leaf.startswith(group + "_") else None
        if suffix not in by_suffix or suffix in found:
            return None
        found[suffix] = name
    if set(found) != set(suffixes):
        return None
    return [_rule(found[s], by_suffix[s]) for s in suffixes]


def _layer_rules(group: str, names: list[str]) -> list[Rule] | None:
    if group in _FIXED:
        return _by_leaf(names, _FIXED[group])
    for pattern, rows_of, suffixes in ((_ATTENTION, attention_rows, _ATTENTION_SUFFIXES),
                                       (_FEED_FORWARD, feed_forward_rows, _FEED_FORWARD_SUFFIXES)):
        m = pattern.match(group)
        if m and int(m.group(1)) >= 1:
            return _suffixed(group, names, suffixes, rows_of(int(m.group(1)) - 1))
    for pattern, target in ((_ATTENTION_NORM, "attention.output.LayerNorm"), (_FEED_FORWARD_NORM, "output.LayerNorm")):
        m = pattern.match(group)
        if m and int(m.group(1)) >= 1:
            return _by_leaf(names, _norm(P.format(layer=int(m.group(1)) - 1) + target))
    return None


def bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """The table of one keras-bert HDF5 file, from its layer groups."""
    layer_weights = source.layer_weights
    if not layer_weights:
        return layout
    rules, others = rules_by_group(layer_weights, _layer_rules)
    notes: list[str] = []
    groups = list(layer_weights)
    # The user's own head: a final dense [H, n] after NSP-Dense (keras-bert's pooler), when the
    # model has no NSP head of its own.
    if others and "NSP-Dense" in layer_weights and "NSP" not in layer_weights and groups[-1] == others[-1]:
        weights = layer_weights[others[-1]]
        kernel = source.stored_shape(weights[0]) or ()
        if [_leaf(w) for w in weights] == ["kernel", "bias"] and len(kernel) == 2:
            rules += [_rule(name, row) for name, row in zip(weights, CLASSIFIER)]
            notes.append(f"layer {others[-1]} (kernel {list(kernel)}) read as a classifier with {kernel[1]} labels "
                         "on the pooled output (the last layer with weights, after NSP-Dense)")
            others.pop()
    if others:
        notes.append("layers that are not keras-bert's BERT, left unmapped: " + ", ".join(others))
    return _bound(layout, rules, notes)


def recorded_config(layout: Layout, source) -> dict:
    return model_config_records(source, attention="Encoder-1-MultiHeadSelfAttention", heads_key="head_num",
                                feed_forward="Encoder-1-FeedForward")


LAYOUT = Layout(
    name="keras_bert",
    description="keras-bert (CyberZHG) BERT saved as Keras HDF5",
    mapping=Mapping(()),
    marker=re.compile(r"^Encoder-\d+-MultiHeadSelfAttention(_\d+)?/Encoder-\d+-MultiHeadSelfAttention_Wq:0$"),
    # keras-bert's gelu is the tanh form, as google-research/bert's
    faithful_activation=GOOGLE_ACTIVATIONS,
    exact_activation=GOOGLE_EXACT_ACTIVATIONS,
    layer_norm_eps=KERAS_BERT_EPSILON,
    bind=bind,
    recorded_config=recorded_config,
    head_count_from_head_size=False,
    sizes_from_weights={"max_position_embeddings": "keras-bert's build_model_from_config(seq_len=N) keeps N rows "
                                                   "of the position table; the model computes no further"},
)
