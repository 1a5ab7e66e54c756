"""Hugging Face's TensorFlow BERT (``TFBert*``) saved with ``save_weights('dir/weights')``: a TF2
object checkpoint, not the ``tf_model.h5`` of :mod:`.keras_hf` -> Hugging Face ``Bert*`` names.

Keys are the Keras attribute paths of the model object (checked on transformers 4.46.3), each
ending in ``/.ATTRIBUTES/VARIABLE_VALUE``: ``bert/embeddings/weight`` is the word table,
``bert/embeddings/embeddings`` the position table; per layer ``bert/encoder/layer/{i}/`` with
``attention/self_attention``, ``attention/dense_output``, ``intermediate`` and ``bert_output``;
then ``bert/pooler/dense`` and the heads (``mlm/predictions``, ``nsp/seq_relationship``,
``qa_outputs``, ``classifier``). Dense kernels are Keras' ``[in, out]``; the MLM decoder is the
word table, stored once. Adam's state is in the same file (``<var>/.OPTIMIZER_SLOT/optimizer/m``
and ``optimizer/...``): training state, recognised by :mod:`bertconv.mapping.training_state`.

``classifier/*`` names both ``TFBertForSequenceClassification``'s head (on the pooled output)
and ``TFBertForTokenClassification``'s (on every token, a model built without a pooler). No
class name is stored in an object checkpoint, so :func:`bind` takes ``classifier`` as a sequence
classifier only where the pooler is there too, or where the config.json beside it names a
sequence-classification architecture; otherwise the tensors stay unknown rather than guessed.

The config.json beside the checkpoint is Hugging Face's own: its ``"gelu"`` is the exact erf
GELU that TFBert computed.
"""
from __future__ import annotations

import dataclasses
import re

from ....config import read_config_json
from ....errors import ConfigError
from ....formats.base import SourceRecords
from ....mapping import TRANSPOSE as T
from ....mapping import Mapping, Rule
from ...base import Layout
from .keras_hf import LAYOUT as KERAS_HF
from .keras_hf import _with_shape as with_google_shape

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
L = "bert/encoder/layer/{layer}/"
P = "bert.encoder.layer.{layer}."


def _rule(source: str, target: str, transform: str | None = None, head: str | None = None) -> Rule:
    return with_google_shape(Rule(source + SUFFIX, target, (), transform, head))


RULES = (
    _rule("bert/embeddings/weight",                            "bert.embeddings.word_embeddings.weight"),
    _rule("bert/embeddings/embeddings",                        "bert.embeddings.position_embeddings.weight"),
    _rule("bert/embeddings/token_type_embeddings",             "bert.embeddings.token_type_embeddings.weight"),
    _rule("bert/embeddings/LayerNorm/gamma",                   "bert.embeddings.LayerNorm.weight"),
    _rule("bert/embeddings/LayerNorm/beta",                    "bert.embeddings.LayerNorm.bias"),
    _rule(L + "attention/self_attention/query/kernel",         P + "attention.self.query.weight", T),
    _rule(L + "attention/self_attention/query/bias",           P + "attention.self.query.bias"),
    _rule(L + "attention/self_attention/key/kernel",           P + "attention.self.key.weight", T),
    _rule(L + "attention/self_attention/key/bias",             P + "attention.self.key.bias"),
    _rule(L + "attention/self_attention/value/kernel",         P + "attention.self.value.weight", T),
    _rule(L + "attention/self_attention/value/bias",           P + "attention.self.value.bias"),
    _rule(L + "attention/dense_output/dense/kernel",           P + "attention.output.dense.weight", T),
    _rule(L + "attention/dense_output/dense/bias",             P + "attention.output.dense.bias"),
    _rule(L + "attention/dense_output/LayerNorm/gamma",        P + "attention.output.LayerNorm.weight"),
    _rule(L + "attention/dense_output/LayerNorm/beta",         P + "attention.output.LayerNorm.bias"),
    _rule(L + "intermediate/dense/kernel",                     P + "intermediate.dense.weight", T),
    _rule(L + "intermediate/dense/bias",                       P + "intermediate.dense.bias"),
    _rule(L + "bert_output/dense/kernel",                      P + "output.dense.weight", T),
    _rule(L + "bert_output/dense/bias",                        P + "output.dense.bias"),
    _rule(L + "bert_output/LayerNorm/gamma",                   P + "output.LayerNorm.weight"),
    _rule(L + "bert_output/LayerNorm/beta",                    P + "output.LayerNorm.bias"),
    _rule("bert/pooler/dense/kernel",                          "bert.pooler.dense.weight", T, "pooler"),
    _rule("bert/pooler/dense/bias",                            "bert.pooler.dense.bias", None, "pooler"),
    _rule("mlm/predictions/transform/dense/kernel",            "cls.predictions.transform.dense.weight", T, "mlm"),
    _rule("mlm/predictions/transform/dense/bias",              "cls.predictions.transform.dense.bias", None, "mlm"),
    _rule("mlm/predictions/transform/LayerNorm/gamma",         "cls.predictions.transform.LayerNorm.weight", None, "mlm"),
    _rule("mlm/predictions/transform/LayerNorm/beta",          "cls.predictions.transform.LayerNorm.bias", None, "mlm"),
    _rule("mlm/predictions/bias",                              "cls.predictions.bias", None, "mlm"),
    _rule("nsp/seq_relationship/kernel",                       "cls.seq_relationship.weight", T, "nsp"),
    _rule("nsp/seq_relationship/bias",                         "cls.seq_relationship.bias", None, "nsp"),
    _rule("qa_outputs/kernel",                                 "qa_outputs.weight", T, "squad"),
    _rule("qa_outputs/bias",                                   "qa_outputs.bias", None, "squad"),
)

#: bound only where the file is a sequence classifier (see the module docstring)
CLASSIFIER_RULES = (
    _rule("classifier/kernel",                                 "classifier.weight", T, "classifier"),
    _rule("classifier/bias",                                   "classifier.bias", None, "classifier"),
)

MAPPING = Mapping(RULES + CLASSIFIER_RULES)
_POOLER_KEY = "bert/pooler/dense/kernel" + SUFFIX
_SEQUENCE_CLASSIFIER = re.compile(r"^(TF)?BertForSequenceClassification$")


def _config_names_sequence_classifier(source: SourceRecords) -> bool:
    path = source.sidecar("config.json")
    if path is None:
        return False
    try:
        architectures = read_config_json(path).get("architectures") or []
    except ConfigError:
        return False  # the config's own errors are reported when it is read as the config
    return isinstance(architectures, list) and any(_SEQUENCE_CLASSIFIER.match(str(a)) for a in architectures)


def bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """The table with the classifier rows where this checkpoint is a sequence classifier."""
    sequence_classifier = _POOLER_KEY in set(names) or _config_names_sequence_classifier(source)
    mapping = Mapping(RULES + (CLASSIFIER_RULES if sequence_classifier else ()))
    return dataclasses.replace(layout, mapping=mapping, bind=None)


LAYOUT = Layout(
    name="hf_tf_checkpoint",
    description="Hugging Face TFBert* object checkpoint (save_weights without .h5)",
    mapping=MAPPING,
    marker=re.compile(r"^bert/encoder/layer/\d+/attention/self_attention/"),
    # the same library as tf_model.h5, so the same meaning of its config's names
    faithful_activation=KERAS_HF.faithful_activation,
    exact_activation=KERAS_HF.exact_activation,
    reference_activation=KERAS_HF.reference_activation,
    bind=bind,
)
