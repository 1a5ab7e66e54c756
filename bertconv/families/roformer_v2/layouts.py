"""RoFormer-v2's source namings -> the ``RoFormerV2*`` state-dict names of its own modeling code.

ZhuiyiTechnology released RoFormer-v2 as Google-format TF checkpoints written by bert4keras'
``save_weights_as_checkpoint``: Google's BERT names for the kernels and embedding tables only
(RoFormer-v2 has no biases, no norm parameters, no position table, no pooler, and its MLM head is
the embedding table itself). Fine-tunes are bert4keras Keras files (``model.save_weights``, HDF5
whatever their suffix): each attention layer's four projections are ``dense`` ... ``dense_3``
(query, key, value, output) in weight_names order, the feed-forward's two ``dense``, ``dense_1``;
a fine-tune's classifier is a top-level Dense. What tells RoFormer-v2 from RoFormer v1 and BERT
is what is absent: no biases and no norm weights in the encoder (:func:`recognise`).
"""
from __future__ import annotations

import dataclasses
import re

from ...formats.base import NO_RECORDS, SourceRecords
from ...mapping import TRANSPOSE as T
from ...mapping import Mapping, Rule
from ..base import Layout

L = "bert/encoder/layer_{layer}/"
P = "roformer_v2.encoder.layer.{layer}."
H, I, V = "hidden_size", "intermediate_size", "vocab_size"

GOOGLE_RULES = (
    Rule("bert/embeddings/word_embeddings",       "roformer_v2.embeddings.word_embeddings.weight",       (V, H)),
    Rule("bert/embeddings/token_type_embeddings", "roformer_v2.embeddings.token_type_embeddings.weight", ("type_vocab_size", H)),
    Rule(L + "attention/self/query/kernel",       P + "attention.self.query.weight",   (H, H), T),
    Rule(L + "attention/self/key/kernel",         P + "attention.self.key.weight",     (H, H), T),
    Rule(L + "attention/self/value/kernel",       P + "attention.self.value.weight",   (H, H), T),
    Rule(L + "attention/output/dense/kernel",     P + "attention.output.dense.weight", (H, H), T),
    Rule(L + "intermediate/dense/kernel",         P + "intermediate.dense.weight",     (H, I), T),
    Rule(L + "output/dense/kernel",               P + "output.dense.weight",           (I, H), T),
    # the canonical names of a fine-tune's classifier (a Keras Dense on the first token): no
    # release in this format has one, but bert4keras' fine-tunes are read through these names
    Rule("classifier/kernel",                     "classifier.weight",                 (H, "num_labels"), T, "classifier"),
    Rule("classifier/bias",                       "classifier.bias",                   ("num_labels",), None, "classifier"),
)
GOOGLE_MAPPING = Mapping(GOOGLE_RULES)

#: a bert4keras group -> the targets of its weights in weight_names order
G = "Transformer-{layer}-"
B4K_GROUPS = (
    ("Embedding-Token", ("roformer_v2.embeddings.word_embeddings.weight",)),
    ("Embedding-Segment", ("roformer_v2.embeddings.token_type_embeddings.weight",)),
    (G + "MultiHeadSelfAttention", (P + "attention.self.query.weight", P + "attention.self.key.weight",
                                    P + "attention.self.value.weight", P + "attention.output.dense.weight")),
    (G + "FeedForward", (P + "intermediate.dense.weight", P + "output.dense.weight")),
)

_POSITION_TABLE = re.compile(r"(^|[/.])position_embeddings([/.]|$)|^Embedding-Position(_\d+)?/")
_NORM_OR_BIAS = re.compile(r"(LayerNorm|-Norm|/bias|/beta|/gamma|\.bias$)")


def recognise(names: list[str], source: SourceRecords = NO_RECORDS) -> bool:
    """RoFormer-v2: encoder tensors, none of them a bias or a norm weight, and no position table
    (a fine-tune's own head may have a bias)."""
    names = list(names)
    # Google's, bert4keras' or the PyTorch names (with or without the prefix a bare encoder is saved without)
    encoder = [n for n in names if re.match(r"^(bert/encoder/layer_\d+/|Transformer-\d+-|(roformer_v2\.)?encoder\.layer\.)",
                                            n)]
    return bool(encoder) and not any(_NORM_OR_BIAS.search(n) for n in encoder) \
        and not any(_POSITION_TABLE.search(n) for n in names) \
        and not any(re.match(r"^(bert/embeddings/LayerNorm|Embedding-Norm/|(roformer_v2\.)?embeddings\.LayerNorm)", n)
                    for n in names)


def _bind_google(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    return dataclasses.replace(layout, bind=None, assumptions=ASSUMPTIONS)


def _bind_b4k(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    from ..roformer.layouts import group_weights

    groups = group_weights(names, source)
    rules, used = [], set()
    for pattern, targets in B4K_GROUPS:
        regex = re.compile(re.escape(pattern).replace(re.escape("{layer}"), r"(\d+)") + "$")
        for group, members in groups.items():
            m = regex.match(group)
            # a group that is not what bert4keras writes for this layer stays unmapped (unknown)
            if not m or len(members) != len(targets):
                continue
            for name, target in zip(members, targets):
                transform = None if "embeddings" in target else T
                rule = GOOGLE_MAPPING.to_source(target.replace("{layer}", "0")).rule
                if m.groups():
                    target = target.replace("{layer}", m.group(1))
                rules.append(Rule(name, target, rule.shape, transform))
                used.add(group)
    # a fine-tune's head: one top-level Dense with a bias (clue/tnews.py's classifier)
    heads = [g for g in groups if g not in used and re.match(r"^dense(_\d+)?$", g)]
    notes = []
    if len(heads) == 1 and [_leaf(n) for n in groups[heads[0]]] == ["kernel", "bias"]:
        kernel, bias = groups[heads[0]]
        rules += [Rule(kernel, "classifier.weight", (H, "num_labels"), T, "classifier"),
                  Rule(bias, "classifier.bias", ("num_labels",), None, "classifier")]
        notes.append(f"the top-level Dense {heads[0]!r} read as the classifier on the first token's hidden state "
                     "(as the repository's fine-tune scripts build it; its softmax is not part of the logits)")
    mapping = Mapping(rules)
    return dataclasses.replace(layout, mapping=mapping, bind=None, assumptions=tuple(notes) + ASSUMPTIONS)


def _leaf(name: str) -> str:
    return name.rsplit("/", 1)[-1].split(":", 1)[0]


#: the norm's epsilon: bert4keras' LayerNormalization default (K.epsilon())
LAYER_NORM_EPS = 1e-7
ASSUMPTIONS = (
    f"norm epsilon {LAYER_NORM_EPS} (bert4keras' K.epsilon(); no file states it)",
    "bert4keras masks keys whose token id is 0; here the attention mask does: the same wherever "
    "padding, and only padding, is id 0",
)
#: bert4keras registers the exact erf GELU as "gelu"
_ACTIVATIONS = {"gelu": "gelu", "gelu_erf": "gelu", "relu": "relu", "tanh": "tanh", "swish": "silu", "linear": "linear"}
_NUMERICS = {
    "faithful_activation": _ACTIVATIONS,
    "exact_activation": _ACTIVATIONS,
    "reference_activation": {"gelu": "gelu_exact"},
    "layer_norm_eps": LAYER_NORM_EPS,
    # the masked-LM head has no weights: it is always there, in any export (see the family)
    "pretraining_heads": frozenset(),
    "structural_parts": frozenset(),
}

GOOGLE = Layout(
    name="google_roformer_v2",
    description="RoFormer-v2 TF checkpoint (bert4keras save_weights_as_checkpoint: Google's names, kernels only)",
    mapping=GOOGLE_MAPPING,
    marker=re.compile(r"^bert/encoder/layer_\d+/attention/self/query/kernel$"),
    recognise=recognise,
    **_NUMERICS,
    bind=_bind_google,
    canonical=True,
)

BERT4KERAS = Layout(
    name="bert4keras_roformer_v2",
    description="bert4keras RoFormer-v2 (model='roformer_v2') Keras HDF5",
    mapping=Mapping(()),
    marker=re.compile(r"^Transformer-\d+-MultiHeadSelfAttention(_\d+)?/"),
    recognise=recognise,
    **_NUMERICS,
    bind=_bind_b4k,
)

LAYOUTS = (GOOGLE, BERT4KERAS)
