"""google-research/albert's TF1 names (and TF-Hub module exports) -> Hugging Face ``Albert*``
state-dict names.

ALBERT keeps BERT's ``bert/`` scope but its embeddings have their own width (``embedding_size``),
mapped up to ``hidden_size`` by ``embedding_hidden_mapping_in``, and every layer runs one shared
block, ``transformer/group_0/inner_group_0``: its ``LayerNorm`` follows the attention and its
``LayerNorm_1`` the feed-forward network. Since the layers share their weights, no shape says how
many there are: the count comes from ``albert_config.json``. Released models all have one group of
one inner block; the table covers exactly that. The attention kernels are stored 2-D (``[H, H]``,
reshaped to heads in code), so they transpose like any dense kernel. TF-Hub exports prefix every
name with ``module/``; :func:`bind` writes the prefix a checkpoint uses into the table.
"""
from __future__ import annotations

import dataclasses
import re

from ...mapping import TRANSPOSE as T
from ...mapping import Mapping, Rule
from ...formats.base import SourceRecords
from ..base import Layout

G = "bert/encoder/transformer/group_0/inner_group_0/"
H, I, V, E = "hidden_size", "intermediate_size", "vocab_size", "embedding_size"
A = "albert.encoder.albert_layer_groups.0.albert_layers.0."

RULES = (
    # source (TensorFlow)                                  target (PyTorch)                                      shape     transform  head
    Rule("bert/embeddings/word_embeddings",                  "albert.embeddings.word_embeddings.weight",           (V, E)),
    Rule("bert/embeddings/position_embeddings",              "albert.embeddings.position_embeddings.weight",       ("max_position_embeddings", E)),
    Rule("bert/embeddings/token_type_embeddings",            "albert.embeddings.token_type_embeddings.weight",     ("type_vocab_size", E)),
    Rule("bert/embeddings/LayerNorm/gamma",                  "albert.embeddings.LayerNorm.weight",                 (E,)),
    Rule("bert/embeddings/LayerNorm/beta",                   "albert.embeddings.LayerNorm.bias",                   (E,)),
    Rule("bert/encoder/embedding_hidden_mapping_in/kernel",  "albert.encoder.embedding_hidden_mapping_in.weight",  (E, H),   T),
    Rule("bert/encoder/embedding_hidden_mapping_in/bias",    "albert.encoder.embedding_hidden_mapping_in.bias",    (H,)),
    Rule(G + "attention_1/self/query/kernel",                A + "attention.query.weight",                         (H, H),   T),
    Rule(G + "attention_1/self/query/bias",                  A + "attention.query.bias",                           (H,)),
    Rule(G + "attention_1/self/key/kernel",                  A + "attention.key.weight",                           (H, H),   T),
    Rule(G + "attention_1/self/key/bias",                    A + "attention.key.bias",                             (H,)),
    Rule(G + "attention_1/self/value/kernel",                A + "attention.value.weight",                         (H, H),   T),
    Rule(G + "attention_1/self/value/bias",                  A + "attention.value.bias",                           (H,)),
    Rule(G + "attention_1/output/dense/kernel",              A + "attention.dense.weight",                         (H, H),   T),
    Rule(G + "attention_1/output/dense/bias",                A + "attention.dense.bias",                           (H,)),
    Rule(G + "LayerNorm/gamma",                              A + "attention.LayerNorm.weight",                     (H,)),
    Rule(G + "LayerNorm/beta",                               A + "attention.LayerNorm.bias",                       (H,)),
    Rule(G + "ffn_1/intermediate/dense/kernel",              A + "ffn.weight",                                     (H, I),   T),
    Rule(G + "ffn_1/intermediate/dense/bias",                A + "ffn.bias",                                       (I,)),
    Rule(G + "ffn_1/intermediate/output/dense/kernel",       A + "ffn_output.weight",                              (I, H),   T),
    Rule(G + "ffn_1/intermediate/output/dense/bias",         A + "ffn_output.bias",                                (H,)),
    Rule(G + "LayerNorm_1/gamma",                            A + "full_layer_layer_norm.weight",                   (H,)),
    Rule(G + "LayerNorm_1/beta",                             A + "full_layer_layer_norm.bias",                     (H,)),
    Rule("bert/pooler/dense/kernel",                         "albert.pooler.weight",                               (H, H),   T, "pooler"),
    Rule("bert/pooler/dense/bias",                           "albert.pooler.bias",                                 (H,),     None, "pooler"),
    # heads (run_pretraining.py): MLM with a transform of width embedding_size; sentence order
    Rule("cls/predictions/transform/dense/kernel",           "predictions.dense.weight",                           (H, E),   T, "mlm"),
    Rule("cls/predictions/transform/dense/bias",             "predictions.dense.bias",                             (E,),     None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/gamma",        "predictions.LayerNorm.weight",                       (E,),     None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/beta",         "predictions.LayerNorm.bias",                         (E,),     None, "mlm"),
    Rule("cls/predictions/output_bias",                      "predictions.bias",                                   (V,),     None, "mlm"),
    Rule("cls/seq_relationship/output_weights",              "sop_classifier.classifier.weight",                   (2, H),   None, "nsp"),
    Rule("cls/seq_relationship/output_bias",                 "sop_classifier.classifier.bias",                     (2,),     None, "nsp"),
)

HUB_PREFIX = "module/"
MAPPING = Mapping(RULES)


MARKER = re.compile(r"^(module/)?bert/encoder/(transformer/group_\d+/|embedding_hidden_mapping_in/)")


def bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """The table with the ``module/`` prefix written in when this checkpoint's names carry it."""
    if not any(n.startswith(HUB_PREFIX + "bert/") for n in names):
        return dataclasses.replace(layout, bind=None)
    rules = tuple(dataclasses.replace(rule, source=HUB_PREFIX + rule.source) for rule in RULES)
    return dataclasses.replace(layout, mapping=Mapping(rules), bind=None)


LAYOUT = Layout(
    name="google_albert",
    description="google-research/albert TF1 checkpoint",
    mapping=MAPPING,
    marker=MARKER,
    # albert's modeling.py computes the tanh GELU for "gelu", as google-research/bert does
    faithful_activation={"gelu": "gelu_new", "gelu_new": "gelu_new", "relu": "relu", "tanh": "tanh"},
    exact_activation={"gelu": "gelu", "gelu_new": "gelu"},
    canonical=True,
    bind=bind,
)
