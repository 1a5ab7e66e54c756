"""The ALBERT family: google-research/albert TF1 names -> Hugging Face ``Albert*`` state-dict names.

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
from functools import partial

from .base import TRANSPOSE as T
from .base import Mapping, Rule

G = "bert/encoder/transformer/group_0/inner_group_0/"
A = "albert.encoder.albert_layer_groups.0.albert_layers.0."

RULES = (
    # source (TensorFlow)                                  target (PyTorch)                             transform  head
    Rule("bert/embeddings/word_embeddings",               "albert.embeddings.word_embeddings.weight"),
    Rule("bert/embeddings/position_embeddings",           "albert.embeddings.position_embeddings.weight"),
    Rule("bert/embeddings/token_type_embeddings",         "albert.embeddings.token_type_embeddings.weight"),
    Rule("bert/embeddings/LayerNorm/gamma",               "albert.embeddings.LayerNorm.weight"),
    Rule("bert/embeddings/LayerNorm/beta",                "albert.embeddings.LayerNorm.bias"),
    Rule("bert/encoder/embedding_hidden_mapping_in/kernel", "albert.encoder.embedding_hidden_mapping_in.weight", T),
    Rule("bert/encoder/embedding_hidden_mapping_in/bias", "albert.encoder.embedding_hidden_mapping_in.bias"),
    Rule(G + "attention_1/self/query/kernel",             A + "attention.query.weight",                T),
    Rule(G + "attention_1/self/query/bias",               A + "attention.query.bias"),
    Rule(G + "attention_1/self/key/kernel",               A + "attention.key.weight",                  T),
    Rule(G + "attention_1/self/key/bias",                 A + "attention.key.bias"),
    Rule(G + "attention_1/self/value/kernel",             A + "attention.value.weight",                T),
    Rule(G + "attention_1/self/value/bias",               A + "attention.value.bias"),
    Rule(G + "attention_1/output/dense/kernel",           A + "attention.dense.weight",                T),
    Rule(G + "attention_1/output/dense/bias",             A + "attention.dense.bias"),
    Rule(G + "LayerNorm/gamma",                           A + "attention.LayerNorm.weight"),
    Rule(G + "LayerNorm/beta",                            A + "attention.LayerNorm.bias"),
    Rule(G + "ffn_1/intermediate/dense/kernel",           A + "ffn.weight",                            T),
    Rule(G + "ffn_1/intermediate/dense/bias",             A + "ffn.bias"),
    Rule(G + "ffn_1/intermediate/output/dense/kernel",    A + "ffn_output.weight",                     T),
    Rule(G + "ffn_1/intermediate/output/dense/bias",      A + "ffn_output.bias"),
    Rule(G + "LayerNorm_1/gamma",                         A + "full_layer_layer_norm.weight"),
    Rule(G + "LayerNorm_1/beta",                          A + "full_layer_layer_norm.bias"),
    Rule("bert/pooler/dense/kernel",                      "albert.pooler.weight",                      T,    "pooler"),
    Rule("bert/pooler/dense/bias",                        "albert.pooler.bias",                        None, "pooler"),
    # heads (run_pretraining.py): MLM with a transform of width embedding_size; sentence order
    Rule("cls/predictions/transform/dense/kernel",        "predictions.dense.weight",                  T,    "mlm"),
    Rule("cls/predictions/transform/dense/bias",          "predictions.dense.bias",                    None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/gamma",     "predictions.LayerNorm.weight",              None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/beta",      "predictions.LayerNorm.bias",                None, "mlm"),
    Rule("cls/predictions/output_bias",                   "predictions.bias",                          None, "mlm"),
    Rule("cls/seq_relationship/output_weights",           "sop_classifier.classifier.weight",          None, "nsp"),
    Rule("cls/seq_relationship/output_bias",              "sop_classifier.classifier.bias",            None, "nsp"),
)

HUB_PREFIX = "module/"
MAPPING = Mapping(RULES)

H, I, V, E = "hidden_size", "intermediate_size", "vocab_size", "embedding_size"
SHAPES = {
    "bert/embeddings/word_embeddings":                    (V, E),
    "bert/embeddings/position_embeddings":                ("max_position_embeddings", E),
    "bert/embeddings/token_type_embeddings":              ("type_vocab_size", E),
    "bert/embeddings/LayerNorm/gamma":                    (E,),
    "bert/embeddings/LayerNorm/beta":                     (E,),
    "bert/encoder/embedding_hidden_mapping_in/kernel":    (E, H),
    "bert/encoder/embedding_hidden_mapping_in/bias":      (H,),
    G + "attention_1/self/query/kernel":                  (H, H),
    G + "attention_1/self/query/bias":                    (H,),
    G + "attention_1/self/key/kernel":                    (H, H),
    G + "attention_1/self/key/bias":                      (H,),
    G + "attention_1/self/value/kernel":                  (H, H),
    G + "attention_1/self/value/bias":                    (H,),
    G + "attention_1/output/dense/kernel":                (H, H),
    G + "attention_1/output/dense/bias":                  (H,),
    G + "LayerNorm/gamma":                                (H,),
    G + "LayerNorm/beta":                                 (H,),
    G + "ffn_1/intermediate/dense/kernel":                (H, I),
    G + "ffn_1/intermediate/dense/bias":                  (I,),
    G + "ffn_1/intermediate/output/dense/kernel":         (I, H),
    G + "ffn_1/intermediate/output/dense/bias":           (H,),
    G + "LayerNorm_1/gamma":                              (H,),
    G + "LayerNorm_1/beta":                               (H,),
    "bert/pooler/dense/kernel":                           (H, H),
    "bert/pooler/dense/bias":                             (H,),
    "cls/predictions/transform/dense/kernel":             (H, E),
    "cls/predictions/transform/dense/bias":               (E,),
    "cls/predictions/transform/LayerNorm/gamma":          (E,),
    "cls/predictions/transform/LayerNorm/beta":           (E,),
    "cls/predictions/output_bias":                        (V,),
    "cls/seq_relationship/output_weights":                (2, H),
    "cls/seq_relationship/output_bias":                   (2,),
}


def infer_sizes(shapes: dict[str, tuple[int, ...]], prefix: str = "") -> dict[str, int]:
    """Every config field the shapes determine. Not the layer count: the layers share one block."""
    def dim(name, axis):
        shape = shapes.get(prefix + name)
        return shape[axis] if shape is not None and len(shape) > axis else None

    sizes = {
        "vocab_size": dim("bert/embeddings/word_embeddings", 0),
        "embedding_size": dim("bert/embeddings/word_embeddings", 1),
        "hidden_size": dim("bert/encoder/embedding_hidden_mapping_in/kernel", 1),
        "max_position_embeddings": dim("bert/embeddings/position_embeddings", 0),
        "type_vocab_size": dim("bert/embeddings/token_type_embeddings", 0),
        "intermediate_size": dim(G + "ffn_1/intermediate/dense/kernel", 1),
    }
    return {k: v for k, v in sizes.items() if v is not None}


MARKER = re.compile(r"^(module/)?bert/encoder/(transformer/group_\d+/|embedding_hidden_mapping_in/)")


def bind(family, names: list[str], source=None):
    """The table with the ``module/`` prefix written in when this checkpoint's names carry it."""
    if not any(n.startswith(HUB_PREFIX + "bert/") for n in names):
        return dataclasses.replace(family, bind=None)
    rules = tuple(dataclasses.replace(rule, source=HUB_PREFIX + rule.source) for rule in RULES)
    return dataclasses.replace(family, mapping=Mapping(rules),
                               shapes={HUB_PREFIX + k: v for k, v in SHAPES.items()},
                               infer_sizes=partial(infer_sizes, prefix=HUB_PREFIX), bind=None)


def _family():
    from . import Family
    return Family(
        name="albert",
        model_type="albert",
        mapping=MAPPING,
        marker=MARKER,
        architectures={
            frozenset(): "AlbertModel",
            frozenset({"mlm", "nsp"}): "AlbertForPreTraining",
            frozenset({"mlm"}): "AlbertForMaskedLM",
        },
        without_pooler=frozenset({"AlbertForMaskedLM"}),
        # albert's modeling.py computes the tanh GELU for "gelu", as google-research/bert does
        faithful_activation={"gelu": "gelu_new", "gelu_new": "gelu_new", "relu": "relu", "tanh": "tanh"},
        exact_activation={"gelu": "gelu", "gelu_new": "gelu"},
        shapes=SHAPES,
        infer_sizes=infer_sizes,
        bind=bind,
        config_file="albert_config.json",
    )


FAMILY = _family()
