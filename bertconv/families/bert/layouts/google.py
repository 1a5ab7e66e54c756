"""google-research/bert's TF1 names -> Hugging Face ``Bert*`` state-dict names: Google's releases,
Chinese BERT-wwm and RoBERTa-wwm-ext, BioBERT, and fine-tunes made with Google's scripts.

Dense kernels are stored ``[in, out]`` and ``nn.Linear.weight`` is ``[out, in]``: those rows are
transposed. ``output_weights`` tensors are already ``[out, in]`` (modeling.py multiplies with
``transpose_b=True``), so they are copied as they are. The MLM decoder weight is the word
embedding matrix itself and has no row of its own. Shapes are symbolic: config field names.

Two kinds of files carry these names besides Google's own checkpoints:

- TF1 Hub modules (a SavedModel directory): the variables as they are, the vocabulary and
  ``do_lower_case`` beside them. No config ships and no shape holds the head count, but the
  module's graph does: the query is split into heads by a reshape whose shape holds the head
  count as a Const (:func:`recorded_config`).
- fine-tunes that loaded such a module into their graph: the module's variables under its scope,
  ``module/bert/...`` (and ``module/cls/...`` for heads the module had), the task head the fine-tune
  added at the root (``output_weights``). :func:`bind` writes the prefix into the rows that have it
  in this checkpoint; such a table is not the canonical one, so the reference reads it through
  the unprefixed names.
"""
from __future__ import annotations

import dataclasses
import re

from ....formats.base import SourceRecords
from ....mapping import TRANSPOSE as T
from ....mapping import Mapping, Rule
from ...base import Layout

L = "bert/encoder/layer_{layer}/"
P = "bert.encoder.layer.{layer}."
H, I, V = "hidden_size", "intermediate_size", "vocab_size"

RULES = (
    # source (TensorFlow)                              target (PyTorch)                              shape                                transform  head
    Rule("bert/embeddings/word_embeddings",           "bert.embeddings.word_embeddings.weight",       (V, H)),
    Rule("bert/embeddings/position_embeddings",       "bert.embeddings.position_embeddings.weight",   ("max_position_embeddings", H)),
    Rule("bert/embeddings/token_type_embeddings",     "bert.embeddings.token_type_embeddings.weight", ("type_vocab_size", H)),
    Rule("bert/embeddings/LayerNorm/gamma",           "bert.embeddings.LayerNorm.weight",             (H,)),
    Rule("bert/embeddings/LayerNorm/beta",            "bert.embeddings.LayerNorm.bias",               (H,)),
    Rule(L + "attention/self/query/kernel",           P + "attention.self.query.weight",              (H, H),                              T),
    Rule(L + "attention/self/query/bias",             P + "attention.self.query.bias",                (H,)),
    Rule(L + "attention/self/key/kernel",             P + "attention.self.key.weight",                (H, H),                              T),
    Rule(L + "attention/self/key/bias",               P + "attention.self.key.bias",                  (H,)),
    Rule(L + "attention/self/value/kernel",           P + "attention.self.value.weight",              (H, H),                              T),
    Rule(L + "attention/self/value/bias",             P + "attention.self.value.bias",                (H,)),
    Rule(L + "attention/output/dense/kernel",         P + "attention.output.dense.weight",            (H, H),                              T),
    Rule(L + "attention/output/dense/bias",           P + "attention.output.dense.bias",              (H,)),
    Rule(L + "attention/output/LayerNorm/gamma",      P + "attention.output.LayerNorm.weight",        (H,)),
    Rule(L + "attention/output/LayerNorm/beta",       P + "attention.output.LayerNorm.bias",          (H,)),
    Rule(L + "intermediate/dense/kernel",             P + "intermediate.dense.weight",                (H, I),                              T),
    Rule(L + "intermediate/dense/bias",               P + "intermediate.dense.bias",                  (I,)),
    Rule(L + "output/dense/kernel",                   P + "output.dense.weight",                      (I, H),                              T),
    Rule(L + "output/dense/bias",                     P + "output.dense.bias",                        (H,)),
    Rule(L + "output/LayerNorm/gamma",                P + "output.LayerNorm.weight",                  (H,)),
    Rule(L + "output/LayerNorm/beta",                 P + "output.LayerNorm.bias",                    (H,)),
    Rule("bert/pooler/dense/kernel",                  "bert.pooler.dense.weight",                     (H, H),                              T,    "pooler"),
    Rule("bert/pooler/dense/bias",                    "bert.pooler.dense.bias",                       (H,),                                None, "pooler"),
    # heads
    Rule("cls/predictions/transform/dense/kernel",    "cls.predictions.transform.dense.weight",       (H, H),                              T,    "mlm"),
    Rule("cls/predictions/transform/dense/bias",      "cls.predictions.transform.dense.bias",         (H,),                                None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/gamma", "cls.predictions.transform.LayerNorm.weight",   (H,),                                None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/beta",  "cls.predictions.transform.LayerNorm.bias",     (H,),                                None, "mlm"),
    Rule("cls/predictions/output_bias",               "cls.predictions.bias",                         (V,),                                None, "mlm"),
    Rule("cls/seq_relationship/output_weights",       "cls.seq_relationship.weight",                  (2, H),                              None, "nsp"),
    Rule("cls/seq_relationship/output_bias",          "cls.seq_relationship.bias",                    (2,),                                None, "nsp"),
    Rule("output_weights",                            "classifier.weight",                            ("num_labels", H),                   None, "classifier"),
    Rule("output_bias",                               "classifier.bias",                              ("num_labels",),                     None, "classifier"),
    Rule("cls/squad/output_weights",                  "qa_outputs.weight",                            (2, H),                              None, "squad"),
    Rule("cls/squad/output_bias",                     "qa_outputs.bias",                              (2,),                                None, "squad"),
)

MAPPING = Mapping(RULES)


#: google-research/bert's get_activation(): its "gelu" is the tanh approximation
GOOGLE_ACTIVATIONS = {"gelu": "gelu_new", "gelu_new": "gelu_new", "relu": "relu", "tanh": "tanh", "swish": "swish"}
GOOGLE_EXACT_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu"}

#: the scope tensorflow_hub gives a module's variables in the graph that loads it
HUB_PREFIX = "module/"


def bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """The table with ``module/`` written into the rows whose tensors carry it here: the encoder's
    always (the module is the encoder), a head's where the module brought it rather than the
    fine-tune's own graph."""
    if not any(n.startswith(HUB_PREFIX + "bert/") for n in names):
        return dataclasses.replace(layout, bind=None)
    present = set(names)
    rules = tuple(dataclasses.replace(rule, source=HUB_PREFIX + rule.source)
                  if rule.head in (None, "pooler") or HUB_PREFIX + rule.source in present else rule
                  for rule in RULES)
    mapping = Mapping(rules)
    return dataclasses.replace(layout, mapping=mapping, canonical=False, bind=None)


#: the reshape of layer 0's query into [batch, length, heads, head_size] (modeling.py's
#: transpose_for_scores); with a dynamic batch its shape is packed from Consts ``/2`` and ``/3``,
#: with a static one it is a single Const
HEAD_SPLIT_SHAPE = "bert/encoder/layer_0/attention/self/Reshape/shape"


def recorded_config(layout: Layout, source: SourceRecords) -> dict:
    """The head count of a TF1 Hub module, read from its graph; nothing for other sources. A
    value that does not split the hidden size into heads of the graph's own head size is not
    the reshape it is taken for, and is ignored."""
    constant = source.graph_constant
    heads, head_size = constant(HEAD_SPLIT_SHAPE + "/2"), constant(HEAD_SPLIT_SHAPE + "/3")
    where = f"the module's graph (Const {HEAD_SPLIT_SHAPE}/2)"
    if heads is None:
        whole = constant(HEAD_SPLIT_SHAPE)
        if isinstance(whole, tuple) and len(whole) == 4:
            heads, head_size = whole[2], whole[3]
            where = f"the module's graph (Const {HEAD_SPLIT_SHAPE}, element 2)"
    word = "bert/embeddings/word_embeddings"
    stored = source.stored_shape(word)
    hidden = stored[-1] if stored else None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (heads, head_size)) \
            or heads * head_size != hidden:
        return {}
    return {"num_attention_heads": (heads, where)}


LAYOUT = Layout(
    name="google_bert",
    description="google-research/bert TF1 checkpoint",
    mapping=MAPPING,
    # TF1 checkpoint keys never end in a Keras ":0" nor hold a TF2 object path: bert-for-tf2's
    # h5 (bert/encoder/layer_0/...:0) and Hugging Face's object checkpoints (bert/embeddings/
    # weight/.ATTRIBUTES/...) begin like Google's names and belong to their own layouts
    marker=re.compile(r"^(module/)?bert/(embeddings|encoder/layer_\d+)/(?!.*(:\d+$|/\.ATTRIBUTES/))"),
    faithful_activation=GOOGLE_ACTIVATIONS,
    exact_activation=GOOGLE_EXACT_ACTIVATIONS,
    bind=bind,
    recorded_config=recorded_config,
    canonical=True,
)
