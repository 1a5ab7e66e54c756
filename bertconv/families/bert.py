"""The BERT family: google-research/bert TF1 names -> Hugging Face ``Bert*`` state-dict names.

Dense kernels are stored ``[in, out]`` and ``nn.Linear.weight`` is ``[out, in]``: those rows are
transposed. ``output_weights`` tensors are already ``[out, in]`` (modeling.py multiplies with
``transpose_b=True``), so they are copied as they are. The MLM decoder weight is the word
embedding matrix itself and has no row of its own.
"""
from __future__ import annotations

from .base import TRANSPOSE as T
from .base import Mapping, Rule

L = "bert/encoder/layer_{layer}/"
P = "bert.encoder.layer.{layer}."

RULES = (
    # source (TensorFlow)                                  target (PyTorch)                              transform  head
    Rule("bert/embeddings/word_embeddings",              "bert.embeddings.word_embeddings.weight"),
    Rule("bert/embeddings/position_embeddings",          "bert.embeddings.position_embeddings.weight"),
    Rule("bert/embeddings/token_type_embeddings",        "bert.embeddings.token_type_embeddings.weight"),
    Rule("bert/embeddings/LayerNorm/gamma",              "bert.embeddings.LayerNorm.weight"),
    Rule("bert/embeddings/LayerNorm/beta",               "bert.embeddings.LayerNorm.bias"),
    Rule(L + "attention/self/query/kernel",              P + "attention.self.query.weight",             T),
    Rule(L + "attention/self/query/bias",                P + "attention.self.query.bias"),
    Rule(L + "attention/self/key/kernel",                P + "attention.self.key.weight",               T),
    Rule(L + "attention/self/key/bias",                  P + "attention.self.key.bias"),
    Rule(L + "attention/self/value/kernel",              P + "attention.self.value.weight",             T),
    Rule(L + "attention/self/value/bias",                P + "attention.self.value.bias"),
    Rule(L + "attention/output/dense/kernel",            P + "attention.output.dense.weight",           T),
    Rule(L + "attention/output/dense/bias",              P + "attention.output.dense.bias"),
    Rule(L + "attention/output/LayerNorm/gamma",         P + "attention.output.LayerNorm.weight"),
    Rule(L + "attention/output/LayerNorm/beta",          P + "attention.output.LayerNorm.bias"),
    Rule(L + "intermediate/dense/kernel",                P + "intermediate.dense.weight",               T),
    Rule(L + "intermediate/dense/bias",                  P + "intermediate.dense.bias"),
    Rule(L + "output/dense/kernel",                      P + "output.dense.weight",                     T),
    Rule(L + "output/dense/bias",                        P + "output.dense.bias"),
    Rule(L + "output/LayerNorm/gamma",                   P + "output.LayerNorm.weight"),
    Rule(L + "output/LayerNorm/beta",                    P + "output.LayerNorm.bias"),
    Rule("bert/pooler/dense/kernel",                     "bert.pooler.dense.weight",                    T),
    Rule("bert/pooler/dense/bias",                       "bert.pooler.dense.bias"),
    # heads
    Rule("cls/predictions/transform/dense/kernel",       "cls.predictions.transform.dense.weight",      T,    "mlm"),
    Rule("cls/predictions/transform/dense/bias",         "cls.predictions.transform.dense.bias",        None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/gamma",    "cls.predictions.transform.LayerNorm.weight",  None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/beta",     "cls.predictions.transform.LayerNorm.bias",    None, "mlm"),
    Rule("cls/predictions/output_bias",                  "cls.predictions.bias",                        None, "mlm"),
    Rule("cls/seq_relationship/output_weights",          "cls.seq_relationship.weight",                 None, "nsp"),
    Rule("cls/seq_relationship/output_bias",             "cls.seq_relationship.bias",                   None, "nsp"),
    Rule("output_weights",                               "classifier.weight",                           None, "classifier"),
    Rule("output_bias",                                  "classifier.bias",                             None, "classifier"),
    Rule("cls/squad/output_weights",                     "qa_outputs.weight",                           None, "squad"),
    Rule("cls/squad/output_bias",                        "qa_outputs.bias",                             None, "squad"),
)

MAPPING = Mapping(RULES)
