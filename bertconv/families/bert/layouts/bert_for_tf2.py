"""bert-for-tf2 (kpe, ``bert.BertModelLayer`` inside a user's Keras model; checked on 0.14.9) ->
Hugging Face ``Bert*`` names, from both ways such a model is saved:

- ``model.save_weights('x.h5')``: Keras HDF5 whose weight names are Google's under the user's
  name for the layer (``bert/encoder/layer_0/attention/self/query/kernel:0`` for a layer named
  ``bert``), except ``intermediate/kernel:0`` (no ``dense/``), the name that marks this layout;
- ``model.save_weights('x')``: a TF2 object checkpoint keyed by the library's attribute names,
  ``layer_with_weights-0/embeddings_layer/word_embeddings_layer/embeddings/.ATTRIBUTES/...`` and
  ``layer_with_weights-0/encoders_layer/encoder_layers/{i}/self_attention_layer/...``.

BertModelLayer ends at the sequence output: the pooler and the classifier are the user's own
Dense layers after it (a tanh ``Dense(H)`` on the [CLS] row, then ``Dense(labels)``). Their names
are generated (``dense_2``, ``dense_3``; ``layer_with_weights-1``, ``-2``) and their activations are
not stored, so :func:`bind` recognises them by their shapes only where that is unambiguous: one
``[H, H]`` dense is taken as the tanh pooler, and one ``[H, labels]`` dense after it as the
classifier; any other arrangement stays unknown, listed by name. What was assumed is said.

Nothing in either file records the head count, and the library's models are not all 64-wide per
head, so the layout does not assume Google's head size: a ``bert_config.json`` (beside the file,
or ``--config``) must state it. Numerics: GELU is the tanh form (``params_flow``'s ``gelu``),
LayerNorm epsilon 1e-12. Padding is attended to unless the layer was built with
``mask_zero=True`` (the library's default is False); the converted model masks by
``attention_mask`` as BERT does, and all-ones masks give the unmasked model's outputs.
"""
from __future__ import annotations

import dataclasses
import re

from ....formats.base import SourceRecords
from ....mapping import TRANSPOSE as T
from ....mapping import Mapping, Rule
from ...base import Layout
from .google import GOOGLE_ACTIVATIONS, GOOGLE_EXACT_ACTIVATIONS
from .keras_hf import _with_shape as with_google_shape

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
P = "bert.encoder.layer.{layer}."

# (h5 name under the layer's scope, checkpoint path under the BertModelLayer object, target, transform)
_ENCODER = (
    ("embeddings/word_embeddings/embeddings",        "embeddings_layer/word_embeddings_layer/embeddings",
     "bert.embeddings.word_embeddings.weight", None),
    ("embeddings/position_embeddings/embeddings",    "embeddings_layer/position_embeddings_layer/embeddings",
     "bert.embeddings.position_embeddings.weight", None),
    ("embeddings/token_type_embeddings/embeddings",  "embeddings_layer/token_type_embeddings_layer/embeddings",
     "bert.embeddings.token_type_embeddings.weight", None),
    ("embeddings/LayerNorm/gamma",                   "embeddings_layer/layer_norm_layer/gamma",
     "bert.embeddings.LayerNorm.weight", None),
    ("embeddings/LayerNorm/beta",                    "embeddings_layer/layer_norm_layer/beta",
     "bert.embeddings.LayerNorm.bias", None),
)
_LAYER = (
    ("attention/self/query/kernel",       "self_attention_layer/attention_layer/query_layer/kernel",   "attention.self.query.weight", T),
    ("attention/self/query/bias",         "self_attention_layer/attention_layer/query_layer/bias",     "attention.self.query.bias", None),
    ("attention/self/key/kernel",         "self_attention_layer/attention_layer/key_layer/kernel",     "attention.self.key.weight", T),
    ("attention/self/key/bias",           "self_attention_layer/attention_layer/key_layer/bias",       "attention.self.key.bias", None),
    ("attention/self/value/kernel",       "self_attention_layer/attention_layer/value_layer/kernel",   "attention.self.value.weight", T),
    ("attention/self/value/bias",         "self_attention_layer/attention_layer/value_layer/bias",     "attention.self.value.bias", None),
    ("attention/output/dense/kernel",     "self_attention_layer/attention_projector/dense/kernel",     "attention.output.dense.weight", T),
    ("attention/output/dense/bias",       "self_attention_layer/attention_projector/dense/bias",       "attention.output.dense.bias", None),
    ("attention/output/LayerNorm/gamma",  "self_attention_layer/attention_projector/layer_norm/gamma", "attention.output.LayerNorm.weight", None),
    ("attention/output/LayerNorm/beta",   "self_attention_layer/attention_projector/layer_norm/beta",  "attention.output.LayerNorm.bias", None),
    ("intermediate/kernel",               "intermediate_layer/kernel",                                 "intermediate.dense.weight", T),
    ("intermediate/bias",                 "intermediate_layer/bias",                                   "intermediate.dense.bias", None),
    ("output/dense/kernel",               "output_projector/dense/kernel",                             "output.dense.weight", T),
    ("output/dense/bias",                 "output_projector/dense/bias",                               "output.dense.bias", None),
    ("output/LayerNorm/gamma",            "output_projector/layer_norm/gamma",                         "output.LayerNorm.weight", None),
    ("output/LayerNorm/beta",             "output_projector/layer_norm/beta",                          "output.LayerNorm.bias", None),
)


def _h5_rules(scope: str) -> tuple[Rule, ...]:
    rules = [Rule(f"{scope}/{h5}:0", target, (), transform) for h5, _, target, transform in _ENCODER]
    rules += [Rule(f"{scope}/encoder/layer_{{layer}}/{h5}:0", P + target, (), transform)
              for h5, _, target, transform in _LAYER]
    return tuple(with_google_shape(r) for r in rules)


def _checkpoint_rules(obj: str) -> tuple[Rule, ...]:
    rules = [Rule(f"{obj}/{path}{SUFFIX}", target, (), transform) for _, path, target, transform in _ENCODER]
    rules += [Rule(f"{obj}/encoders_layer/encoder_layers/{{layer}}/{path}{SUFFIX}", P + target, (), transform)
              for _, path, target, transform in _LAYER]
    return tuple(with_google_shape(r) for r in rules)


def _head_rules(pooler: str | None, classifier: str | None, leaf) -> tuple[Rule, ...]:
    rules = []
    if pooler:
        rules += [Rule(leaf(pooler, "kernel"), "bert.pooler.dense.weight", (), T, "pooler"),
                  Rule(leaf(pooler, "bias"), "bert.pooler.dense.bias", (), None, "pooler")]
    if classifier:
        rules += [Rule(leaf(classifier, "kernel"), "classifier.weight", (), T, "classifier"),
                  Rule(leaf(classifier, "bias"), "classifier.bias", (), None, "classifier")]
    return tuple(with_google_shape(r) for r in rules)


# Unbound, the table holds the layer-scope "bert" (the library's examples' name) and object 0.
MAPPING = Mapping(_h5_rules("bert") + _checkpoint_rules("layer_with_weights-0"))

_H5_SCOPE = re.compile(r"^(?P<scope>[^/]+)/encoder/layer_\d+/intermediate/kernel:0$")
_CHECKPOINT_OBJECT = re.compile(r"^(?P<obj>layer_with_weights-\d+)/encoders_layer/encoder_layers/\d+/")
_H5_DENSE = re.compile(r"^(?P<layer>[^/]+)/(?P<leaf>kernel|bias):0$")
_CHECKPOINT_DENSE = re.compile(r"^layer_with_weights-(?P<index>\d+)/(?P<leaf>kernel|bias)" + re.escape(SUFFIX) + "$")


def _dense_layers(names, shapes, pattern, order) -> list[tuple[str, tuple, tuple]]:
    """The user's Dense layers after BertModelLayer: (layer, kernel shape, bias shape), in
    ``order``; a layer without both a 2-D kernel and its bias is left out (it stays unknown)."""
    found: dict[str, dict[str, tuple]] = {}
    for name in names:
        m = pattern.match(name)
        if m:
            found.setdefault(m.group(1), {})[m.group("leaf")] = tuple(shapes(name))
    layers = []
    for layer, leaves in found.items():
        kernel, bias = leaves.get("kernel"), leaves.get("bias")
        if kernel is not None and bias is not None and len(kernel) == 2 and bias == (kernel[1],):
            layers.append((layer, kernel, bias))
    return sorted(layers, key=lambda item: order(item[0]))


def _user_heads(layers, hidden: int | None, ordered: bool) -> tuple[str | None, str | None]:
    """(pooler layer, classifier layer) among the user's Dense layers, where their shapes (and,
    in an object checkpoint, their order) leave one reading; None for either otherwise."""
    if hidden is None or not layers or len(layers) > 2:
        return None, None
    square = [layer for layer, kernel, _ in layers if kernel == (hidden, hidden)]
    if len(layers) == 1:
        return (square[0], None) if square else (None, None)
    (first, k1, _), (second, k2, _) = layers
    if k1[0] != hidden or k2[0] != hidden:
        return None, None
    if ordered:  # the checkpoint numbers weighted layers in the model's order
        return (first, second) if k1 == (hidden, hidden) else (None, None)
    if len(square) == 1:  # h5: the square one is the pooler, the other can only come after it
        return square[0], (second if square[0] == first else first)
    return None, None


def bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """The table for this file: the user's name for the layer (h5) or its object index
    (checkpoint), and the user's pooler and classifier where their shapes say which is which."""
    def shape(name):
        return source.stored_shape(name) or ()

    h5_scopes = {m.group("scope") for n in names for m in [_H5_SCOPE.match(n)] if m}
    objects = {m.group("obj") for n in names for m in [_CHECKPOINT_OBJECT.match(n)] if m}
    if len(h5_scopes) == 1:
        scope = h5_scopes.pop()
        rules = _h5_rules(scope)
        layers = [item for item in _dense_layers(names, shape, _H5_DENSE, str) if item[0] != scope]
        ordered = False
        leaf = lambda layer, what: f"{layer}/{what}:0"  # noqa: E731 - the two layouts' spellings side by side
        where = "the h5 file"
    elif len(objects) == 1:
        obj = objects.pop()
        index = int(obj.rsplit("-", 1)[1])
        rules = _checkpoint_rules(obj)
        layers = [item for item in _dense_layers(names, shape, _CHECKPOINT_DENSE, int) if int(item[0]) > index]
        ordered = True
        leaf = lambda layer, what: f"layer_with_weights-{layer}/{what}{SUFFIX}"  # noqa: E731
        where = "the checkpoint"
    else:
        return layout
    word = Mapping(rules).to_source("bert.embeddings.word_embeddings.weight").source
    hidden = shape(word)[1] if len(shape(word)) == 2 else None
    pooler, classifier = _user_heads(layers, hidden, ordered)
    assumptions = list(layout.assumptions)
    named = {layer: layer if ordered is False else f"layer_with_weights-{layer}" for layer, _, _ in layers}
    if pooler:
        assumptions.append(f"{named[pooler]} (a Dense [{hidden}, {hidden}] after BertModelLayer) taken as the tanh "
                           f"pooler on the [CLS] row, as in bert-for-tf2's examples: {where} stores no activation")
    if classifier:
        assumptions.append(f"{named[classifier]} taken as the classifier on the pooled output "
                           "(its logits, before any softmax the model applied)")
    mapping = Mapping(rules + _head_rules(pooler, classifier, leaf))
    return dataclasses.replace(layout, mapping=mapping, bind=None,
                               assumptions=tuple(assumptions))


LAYOUT = Layout(
    name="bert_for_tf2",
    description="bert-for-tf2 BertModelLayer (save_weights: h5 or TF object checkpoint)",
    mapping=MAPPING,
    marker=re.compile(r"^[^/]+/encoder/layer_\d+/intermediate/kernel:0$|"
                      r"^layer_with_weights-\d+/encoders_layer/encoder_layers/\d+/self_attention_layer/"),
    # params_flow's gelu is the tanh approximation, as google-research/bert's
    faithful_activation=GOOGLE_ACTIVATIONS,
    exact_activation=GOOGLE_EXACT_ACTIVATIONS,
    bind=bind,
    head_count_from_head_size=False,
    assumptions=("bert-for-tf2 attends to padding unless its layer was built with mask_zero=True (the default "
                 "is False); the converted model masks by attention_mask as BERT does: feed all-ones masks "
                 "to reproduce a model built without mask_zero",),
)
