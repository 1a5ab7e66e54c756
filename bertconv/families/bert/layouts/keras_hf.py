"""Hugging Face's TensorFlow BERT (``TFBert*``) saved as Keras HDF5 (``tf_model.h5``) -> Hugging
Face ``Bert*`` state-dict names.

Weight names are Keras variable names under the model's scope, e.g.
``tf_bert_for_pre_training/bert/encoder/layer_._0/attention/self/query/kernel:0``: the module tree
of the PyTorch model with ``.`` spelled ``_._`` (list items) or ``___`` (``mlm___cls`` for
``cls``), a ``:0`` suffix, Keras' ``kernel``/``gamma``/``beta``/``embeddings`` leaves, and dense
kernels stored ``[in, out]`` (transposed, as in Google's checkpoints). The NSP kernel is a Keras
Dense too, ``[H, 2]``, so unlike Google's ``output_weights`` it is transposed.

The scope (``tf_bert_model``, ``tf_bert_for_pre_training``, ``tf_bert_for_sequence_classification``,
possibly with a ``_1`` suffix when Keras built several models in one session) is not part of the
table: :func:`bind` reads it from the file once. ``classifier/*`` is a sequence classifier only
under ``tf_bert_for_sequence_classification`` (``TFBertForTokenClassification`` uses the same
name per token), so the classifier rows are bound only for that scope; elsewhere the tensors stay
unknown rather than guessed.

keras-bert and bert4keras files (``Embedding-Token``, ``Transformer-0-MultiHeadSelfAttention``...)
are layouts of their own (keras_bert.py, bert4keras.py), mapped by each layer group's weight order.
"""
from __future__ import annotations

import dataclasses
import re

from ....mapping import TRANSPOSE as T
from ....mapping import Mapping, Rule
from ....formats.base import SourceRecords
from ...base import Layout
from .google import MAPPING as GOOGLE_MAPPING

L = "bert/encoder/layer_._{layer}/"
P = "bert.encoder.layer.{layer}."

RULES = (
    # source (under the model scope)                          target (PyTorch)                          transform head
    Rule("bert/embeddings/word_embeddings/weight:0",           "bert.embeddings.word_embeddings.weight"),
    Rule("bert/embeddings/position_embeddings/embeddings:0",   "bert.embeddings.position_embeddings.weight"),
    Rule("bert/embeddings/token_type_embeddings/embeddings:0", "bert.embeddings.token_type_embeddings.weight"),
    Rule("bert/embeddings/LayerNorm/gamma:0",                  "bert.embeddings.LayerNorm.weight"),
    Rule("bert/embeddings/LayerNorm/beta:0",                   "bert.embeddings.LayerNorm.bias"),
    Rule(L + "attention/self/query/kernel:0",                  P + "attention.self.query.weight",            (), T),
    Rule(L + "attention/self/query/bias:0",                    P + "attention.self.query.bias"),
    Rule(L + "attention/self/key/kernel:0",                    P + "attention.self.key.weight",              (), T),
    Rule(L + "attention/self/key/bias:0",                      P + "attention.self.key.bias"),
    Rule(L + "attention/self/value/kernel:0",                  P + "attention.self.value.weight",            (), T),
    Rule(L + "attention/self/value/bias:0",                    P + "attention.self.value.bias"),
    Rule(L + "attention/output/dense/kernel:0",                P + "attention.output.dense.weight",          (), T),
    Rule(L + "attention/output/dense/bias:0",                  P + "attention.output.dense.bias"),
    Rule(L + "attention/output/LayerNorm/gamma:0",             P + "attention.output.LayerNorm.weight"),
    Rule(L + "attention/output/LayerNorm/beta:0",              P + "attention.output.LayerNorm.bias"),
    Rule(L + "intermediate/dense/kernel:0",                    P + "intermediate.dense.weight",              (), T),
    Rule(L + "intermediate/dense/bias:0",                      P + "intermediate.dense.bias"),
    Rule(L + "output/dense/kernel:0",                          P + "output.dense.weight",                    (), T),
    Rule(L + "output/dense/bias:0",                            P + "output.dense.bias"),
    Rule(L + "output/LayerNorm/gamma:0",                       P + "output.LayerNorm.weight"),
    Rule(L + "output/LayerNorm/beta:0",                        P + "output.LayerNorm.bias"),
    Rule("bert/pooler/dense/kernel:0",                         "bert.pooler.dense.weight",                   (), T,    "pooler"),
    Rule("bert/pooler/dense/bias:0",                           "bert.pooler.dense.bias",                     (), None, "pooler"),
    # heads (TFBertMLMHead "mlm___cls", TFBertNSPHead "nsp___cls"); the decoder is the word embeddings
    Rule("mlm___cls/predictions/transform/dense/kernel:0",     "cls.predictions.transform.dense.weight",     (), T,    "mlm"),
    Rule("mlm___cls/predictions/transform/dense/bias:0",       "cls.predictions.transform.dense.bias",       (), None, "mlm"),
    Rule("mlm___cls/predictions/transform/LayerNorm/gamma:0",  "cls.predictions.transform.LayerNorm.weight", (), None, "mlm"),
    Rule("mlm___cls/predictions/transform/LayerNorm/beta:0",   "cls.predictions.transform.LayerNorm.bias",   (), None, "mlm"),
    Rule("mlm___cls/predictions/bias:0",                       "cls.predictions.bias",                       (), None, "mlm"),
    Rule("nsp___cls/seq_relationship/kernel:0",                "cls.seq_relationship.weight",                (), T,    "nsp"),
    Rule("nsp___cls/seq_relationship/bias:0",                  "cls.seq_relationship.bias",                  (), None, "nsp"),
    Rule("qa_outputs/kernel:0",                                "qa_outputs.weight",                          (), T,    "squad"),
    Rule("qa_outputs/bias:0",                                  "qa_outputs.bias",                            (), None, "squad"),
)

#: bound only under a sequence-classification scope (see the module docstring)
CLASSIFIER_RULES = (
    Rule("classifier/kernel:0",                                "classifier.weight",                          (), T,    "classifier"),
    Rule("classifier/bias:0",                                  "classifier.bias",                            (), None, "classifier"),
)

#: the scopes of Hugging Face's TFBert* classes; recognised before a file is bound
KNOWN_SCOPES = ("tf_bert_model", "tf_bert_for_pre_training", "tf_bert_for_masked_lm",
                "tf_bert_for_next_sentence_prediction", "tf_bert_for_sequence_classification",
                "tf_bert_for_question_answering", "tf_bert_for_token_classification",
                "tf_bert_for_multiple_choice")
_SEQUENCE_CLASSIFIER_SCOPE = re.compile(r"^tf_bert_for_sequence_classification(_\d+)?$")
_SCOPE = re.compile(r"^([^/]+)/bert/(embeddings|encoder/layer_\._\d+)/")



def _with_shape(rule: Rule) -> Rule:
    """The row with its symbolic shape: the Google table's shape of the same target, brought to
    this layout's side of the transform (the two tables differ only in which kernels transpose)."""
    google = GOOGLE_MAPPING.to_source(rule.target.replace("{layer}", "0")).rule
    target = tuple(reversed(google.shape)) if google.transform == T else tuple(google.shape)
    return dataclasses.replace(rule, shape=tuple(reversed(target)) if rule.transform == T else target)


RULES = tuple(_with_shape(rule) for rule in RULES)
CLASSIFIER_RULES = tuple(_with_shape(rule) for rule in CLASSIFIER_RULES)
MAPPING = Mapping(RULES + CLASSIFIER_RULES, optional_prefixes=tuple(s + "/" for s in KNOWN_SCOPES))


def model_scope(names) -> str | None:
    """The model's scope, the first component of every BERT weight name (None when the names
    disagree, or none is a BERT weight)."""
    scopes = {m.group(1) for n in names for m in [_SCOPE.match(n)] if m}
    return scopes.pop() if len(scopes) == 1 else None


def bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """The table with this file's model scope written into every source name."""
    scope = model_scope(names)
    if scope is None:
        return layout
    rules = RULES + (CLASSIFIER_RULES if _SEQUENCE_CLASSIFIER_SCOPE.match(scope) else ())
    rules = tuple(dataclasses.replace(rule, source=f"{scope}/{rule.source}") for rule in rules)
    mapping = Mapping(rules)
    return dataclasses.replace(layout, mapping=mapping, bind=None)


LAYOUT = Layout(
    name="keras_hf",
    description="Hugging Face TFBert* Keras HDF5 (tf_model.h5)",
    mapping=MAPPING,
    marker=re.compile(r"^[^/]+/bert/(embeddings|encoder/layer_\._\d+)/[^:]*:0$"),
    # The config beside a tf_model.h5 is Hugging Face's own: its "gelu" is already the exact
    # erf GELU that TFBert computed, so every name is kept as it is.
    faithful_activation={"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_pytorch_tanh",
                         "relu": "relu", "tanh": "tanh", "swish": "swish", "silu": "silu"},
    exact_activation={"gelu": "gelu", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu"},
    reference_activation={"gelu": "gelu_exact"},
    bind=bind,
)
