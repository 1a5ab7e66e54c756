"""google-research/tapas' TF1 names -> Hugging Face ``Tapas*`` state-dict names.

TAPAS is google-research/bert's model with seven token-type tables instead of one
(``bert/embeddings/token_type_embeddings_0`` ... ``_6``: segment, column, row, previous label,
column rank, inverse column rank, numeric relation), so every other encoder row is BERT's, under
``tapas.``. Its heads:

- ``mlm``: the pretraining script's masked LM, BERT's names (``cls/predictions``);
- ``nsp``: the pretraining script's next-sentence head, which no ``Tapas*`` class carries: reported,
  not exported;
- ``table_qa``: the classifier model's cell selection (``output_weights`` [H], ``output_bias`` [],
  ``column_output_weights``, ``column_output_bias``) and, where the fine-tune aggregates,
  ``output_weights_agg`` / ``output_bias_agg`` ([labels, H], multiplied transposed):
  ``TapasForQuestionAnswering``;
- ``classifier``: ``output_weights_cls`` / ``output_bias_cls`` on the pooled output (TabFact):
  ``TapasForSequenceClassification``.
"""
from __future__ import annotations

import dataclasses
import re

from ...mapping import Mapping, Rule
from ..base import Layout
from ..bert.layouts.google import GOOGLE_ACTIVATIONS, GOOGLE_EXACT_ACTIVATIONS
from ..bert.layouts.google import RULES as BERT_GOOGLE_RULES

#: the seven token-type tables, in the order of the config's ``type_vocab_size`` list
TOKEN_TYPES = 7
H = "hidden_size"

_BERT_HEADS_NOT_IN_TAPAS = ("classifier", "squad")


def _retarget(rule: Rule) -> Rule:
    if not rule.target.startswith("bert."):
        return rule
    return dataclasses.replace(rule, target="tapas." + rule.target.removeprefix("bert."))


TOKEN_TYPE_RULES = tuple(
    # table 0 is the segment table BertConfig's type_vocab_size stands for; the others' sizes are
    # TapasConfig's type_vocab_sizes, checked when the model is built
    Rule(f"bert/embeddings/token_type_embeddings_{i}", f"tapas.embeddings.token_type_embeddings_{i}.weight",
         ("type_vocab_size", H) if i == 0 else ())
    for i in range(TOKEN_TYPES))

RULES = tuple(_retarget(rule) for rule in BERT_GOOGLE_RULES
              if rule.source != "bert/embeddings/token_type_embeddings"
              and rule.head not in _BERT_HEADS_NOT_IN_TAPAS) + TOKEN_TYPE_RULES + (
    Rule("output_weights",          "output_weights",                  (H,),               None, "table_qa"),
    Rule("output_bias",             "output_bias",                     (),                 None, "table_qa"),
    Rule("column_output_weights",   "column_output_weights",           (H,),               None, "table_qa"),
    Rule("column_output_bias",      "column_output_bias",              (),                 None, "table_qa"),
    Rule("output_weights_agg",      "aggregation_classifier.weight",   (),                 None, "table_qa"),
    Rule("output_bias_agg",         "aggregation_classifier.bias",     (),                 None, "table_qa"),
    Rule("output_weights_cls",      "classifier.weight",               ("num_labels", H),  None, "classifier"),
    Rule("output_bias_cls",         "classifier.bias",                 ("num_labels",),    None, "classifier"),
)

MAPPING = Mapping(RULES)

#: the original's tensors each head needs, all of them (table_qa's aggregation pair is optional)
HEAD_TENSORS = {
    "mlm": ("cls/predictions/transform/dense/kernel", "cls/predictions/transform/dense/bias",
            "cls/predictions/transform/LayerNorm/gamma", "cls/predictions/transform/LayerNorm/beta",
            "cls/predictions/output_bias"),
    "nsp": ("cls/seq_relationship/output_weights", "cls/seq_relationship/output_bias"),
    "table_qa": ("output_weights", "output_bias"),
    "classifier": ("output_weights_cls", "output_bias_cls"),
}


LAYOUT = Layout(
    name="google_tapas",
    description="google-research/tapas TF1 checkpoint",
    mapping=MAPPING,
    # only TAPAS numbers its token-type tables
    marker=re.compile(r"^bert/embeddings/token_type_embeddings_\d+$"),
    faithful_activation=GOOGLE_ACTIVATIONS,
    exact_activation=GOOGLE_EXACT_ACTIVATIONS,
    # no Tapas class has the NSP head: a pretraining checkpoint exports its MLM
    pretraining_heads=frozenset({"mlm"}),
    canonical=True,
)
