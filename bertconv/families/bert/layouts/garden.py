"""TF2 Model Garden BERT (tensorflow/models ``official/nlp``): object-based checkpoints -> Hugging
Face ``Bert*`` state-dict names.

Two layouts exist, both tables below:

- ``model/layer_with_weights-N/...`` (the Keras functional ``TransformerEncoder`` saved as
  ``tf.train.Checkpoint(model=encoder)``, tf-models <= 2.3). A functional model names its weighted
  layers by position: 0 word embeddings, 1 positions, 2 token types, 3 the embedding LayerNorm,
  ``4 + i`` encoder layer ``i``, and the pooler comes last, at ``4 + num_layers``.
- ``encoder/_transformer_layers/{i}/...``, ``encoder/_embedding_layer``, ``masked_lm/...`` (the
  ``BertEncoder`` and masked-LM head of a ``BertPretrainerV2``, saved by their attribute names).
- ``encoder/layer_with_weights-N/...`` beside ``masked_lm/...``: a ``BertPretrainerV2`` saved as
  Model Garden saves pretraining results, ``tf.train.Checkpoint(**pretrainer.checkpoint_items)``,
  where the encoder is the functional ``BertEncoder``: the functional numbering under
  ``encoder/`` (its word embeddings are the masked-LM's table, see below). Its classification
  heads are saved as ``<head>.pooler_dense`` only (``ClassificationHead.checkpoint_items`` leaves
  out ``out_proj``): the ``next_sentence`` head of Garden's BERT pretraining is therefore a head
  of its own here, recognised and never exported (no Hugging Face class has a pooler-only
  next-sentence head, and its logits cannot be computed without ``out_proj``).

Attention kernels are einsum kernels that keep the head axis apart: query/key/value
``[H, heads, head_size]`` with biases ``[heads, head_size]``, the attention output
``[heads, head_size, H]``; the head count is stated by those shapes. Every key ends in
``/.ATTRIBUTES/VARIABLE_VALUE``. The Garden's GELU is the tanh form, as in google-research/bert.

Two facts are not in any single name, so the table is resolved once per checkpoint
(:func:`bind`) rather than guessed per name:

- the pooler's ``layer_with_weights`` index, ``4 + num_layers``: the layer count is read from the
  encoder layers present (their indices must run 4, 5, ... without a gap), and only then is the
  pooler's row written. Encoder layers themselves need no count: ``Rule.layer_offset`` says that
  ``layer_with_weights-{4 + i}`` is layer ``i``;
- which key holds a shared variable. An object checkpoint stores a variable once, under the path
  by which the save first reached it: with the masked-LM head sharing the word embeddings the
  table is stored as ``masked_lm/embedding_table`` and the encoder's own key does not exist. The
  ``_CHECKPOINTABLE_OBJECT_GRAPH`` names every object and says under which key each variable's
  value was stored, so a row whose key is absent is followed through the graph to where its
  variable actually is. Without the graph nothing is substituted (the row is reported missing).
"""
from __future__ import annotations

import dataclasses
import re

from ....formats.base import SourceRecords
from ....mapping import MERGE_HEADS as MH
from ....mapping import MERGE_HEADS_IN_T as MHI
from ....mapping import MERGE_HEADS_OUT_T as MHO
from ....mapping import TRANSPOSE as T
from ....mapping import Mapping, Rule
from ...base import Layout
from .google import GOOGLE_ACTIVATIONS, GOOGLE_EXACT_ACTIVATIONS

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
#: the first ``layer_with_weights`` index of an encoder layer (after word, position, type, LayerNorm)
FIRST_LAYER_INDEX = 4

P = "bert.encoder.layer.{layer}."

H, I, V, A, D = "hidden_size", "intermediate_size", "vocab_size", "num_attention_heads", "head_size"

# One encoder layer, relative to its object; the attention output dense is the one row whose
# object differs between the layouts.
_BLOCK = (
    # source (relative)                          target (relative)                      shape       transform
    ("_attention_layer/_query_dense/kernel",     "attention.self.query.weight",          (H, A, D),  MHO),
    ("_attention_layer/_query_dense/bias",       "attention.self.query.bias",            (A, D),     MH),
    ("_attention_layer/_key_dense/kernel",       "attention.self.key.weight",            (H, A, D),  MHO),
    ("_attention_layer/_key_dense/bias",         "attention.self.key.bias",              (A, D),     MH),
    ("_attention_layer/_value_dense/kernel",     "attention.self.value.weight",          (H, A, D),  MHO),
    ("_attention_layer/_value_dense/bias",       "attention.self.value.bias",            (A, D),     MH),
    ("{attention_output}/kernel",                "attention.output.dense.weight",        (A, D, H),  MHI),
    ("{attention_output}/bias",                  "attention.output.dense.bias",          (H,),       None),
    ("_attention_layer_norm/gamma",              "attention.output.LayerNorm.weight",    (H,),       None),
    ("_attention_layer_norm/beta",               "attention.output.LayerNorm.bias",      (H,),       None),
    ("_intermediate_dense/kernel",               "intermediate.dense.weight",            (H, I),     T),
    ("_intermediate_dense/bias",                 "intermediate.dense.bias",              (I,),       None),
    ("_output_dense/kernel",                     "output.dense.weight",                  (I, H),     T),
    ("_output_dense/bias",                       "output.dense.bias",                    (H,),       None),
    ("_output_layer_norm/gamma",                 "output.LayerNorm.weight",              (H,),       None),
    ("_output_layer_norm/beta",                  "output.LayerNorm.bias",                (H,),       None),
)


def _block(prefix: str, attention_output: str, layer_offset: int = 0) -> tuple[Rule, ...]:
    return tuple(Rule(prefix + source.replace("{attention_output}", attention_output) + SUFFIX, P + target,
                      shape, transform, None, layer_offset)
                 for source, target, shape, transform in _BLOCK)


def _v(path: str) -> str:
    return path + SUFFIX


# encoder/_transformer_layers/{i}/... (BertEncoder, BertPretrainerV2 checkpoint items)
ENCODER_RULES = (
    Rule(_v("encoder/_embedding_layer/embeddings"),          "bert.embeddings.word_embeddings.weight",       (V, H)),
    Rule(_v("encoder/_position_embedding_layer/embeddings"), "bert.embeddings.position_embeddings.weight",   ("max_position_embeddings", H)),
    Rule(_v("encoder/_type_embedding_layer/embeddings"),     "bert.embeddings.token_type_embeddings.weight", ("type_vocab_size", H)),
    Rule(_v("encoder/_embedding_norm_layer/gamma"),          "bert.embeddings.LayerNorm.weight",             (H,)),
    Rule(_v("encoder/_embedding_norm_layer/beta"),           "bert.embeddings.LayerNorm.bias",               (H,)),
    *_block("encoder/_transformer_layers/{layer}/", "_attention_layer/_output_dense"),
    Rule(_v("encoder/_pooler_layer/kernel"),                 "bert.pooler.dense.weight",                     (H, H), T,    "pooler"),
    Rule(_v("encoder/_pooler_layer/bias"),                   "bert.pooler.dense.bias",                       (H,),   None, "pooler"),
)
# masked-LM head; its embedding_table is the word embeddings (resolved by bind when stored there)
MASKED_LM_RULES = (
    Rule(_v("masked_lm/dense/kernel"),                       "cls.predictions.transform.dense.weight",       (H, H), T,    "mlm"),
    Rule(_v("masked_lm/dense/bias"),                         "cls.predictions.transform.dense.bias",         (H,),   None, "mlm"),
    Rule(_v("masked_lm/layer_norm/gamma"),                   "cls.predictions.transform.LayerNorm.weight",   (H,),   None, "mlm"),
    Rule(_v("masked_lm/layer_norm/beta"),                    "cls.predictions.transform.LayerNorm.bias",     (H,),   None, "mlm"),
    Rule(_v("masked_lm/output_bias.Sbias"),                  "cls.predictions.bias",                         (V,),   None, "mlm"),
)
# a pretrainer's next-sentence ClassificationHead, as checkpoint_items saves it: its pooler only
# (the item is named "next_sentence.pooler_dense"; a "." in a key is escaped as "..")
NEXT_SENTENCE_RULES = (
    Rule(_v("next_sentence..pooler_dense/kernel"),           "next_sentence.pooler_dense.weight",            (H, H), T,    "next_sentence"),
    Rule(_v("next_sentence..pooler_dense/bias"),             "next_sentence.pooler_dense.bias",              (H,),   None, "next_sentence"),
)
ENCODER_RULES += MASKED_LM_RULES

# <scope>/layer_with_weights-N/... (a Keras functional encoder: TransformerEncoder saved as
# model/..., tf-models <= 2.3; the functional BertEncoder of a pretrainer's checkpoint_items, as
# encoder/...); the pooler row is added by bind
KERAS_FUNCTIONAL = "model/layer_with_weights-"
PRETRAINER_FUNCTIONAL = "encoder/layer_with_weights-"


def functional_rules(numbered: str, attention_output: str) -> tuple[Rule, ...]:
    """The rows of a functional encoder whose weighted layers are ``numbered`` + index."""
    return (
        Rule(_v(numbered + "0/embeddings"), "bert.embeddings.word_embeddings.weight",       (V, H)),
        Rule(_v(numbered + "1/embeddings"), "bert.embeddings.position_embeddings.weight",   ("max_position_embeddings", H)),
        Rule(_v(numbered + "2/embeddings"), "bert.embeddings.token_type_embeddings.weight", ("type_vocab_size", H)),
        Rule(_v(numbered + "3/gamma"),      "bert.embeddings.LayerNorm.weight",             (H,)),
        Rule(_v(numbered + "3/beta"),       "bert.embeddings.LayerNorm.bias",               (H,)),
        *_block(numbered + "{layer}/", attention_output, FIRST_LAYER_INDEX),
    )


FUNCTIONAL_RULES = functional_rules(KERAS_FUNCTIONAL, "_attention_output_dense")
# BertEncoder's TransformerEncoderBlock keeps the attention output inside the attention layer
PRETRAINER_RULES = functional_rules(PRETRAINER_FUNCTIONAL, "_attention_layer/_output_dense")


def functional_pooler_rules(num_layers: int, numbered: str = KERAS_FUNCTIONAL) -> tuple[Rule, ...]:
    index = FIRST_LAYER_INDEX + num_layers
    return (Rule(_v(f"{numbered}{index}/kernel"), "bert.pooler.dense.weight", (H, H), T, "pooler"),
            Rule(_v(f"{numbered}{index}/bias"), "bert.pooler.dense.bias", (H,), None, "pooler"))


RULES = ENCODER_RULES + NEXT_SENTENCE_RULES + FUNCTIONAL_RULES + PRETRAINER_RULES
MAPPING = Mapping(RULES)

# -- resolving the table for one checkpoint ------------------------------------------------------

_FUNCTIONAL_LAYER = re.compile(r"^(?:model|encoder)/layer_with_weights-(\d+)/_attention_layer/")


def functional_layer_count(names) -> int | None:
    """The number of encoder layers of a ``layer_with_weights`` checkpoint, when their indices
    run from 4 without a gap (None when there are none, or a gap makes the numbering unknown)."""
    found = {int(m.group(1)) for n in names for m in [_FUNCTIONAL_LAYER.match(n)] if m}
    if not found or found != set(range(FIRST_LAYER_INDEX, FIRST_LAYER_INDEX + len(found))):
        return None
    return len(found)


def _unescape(component: str) -> str:
    # checkpoint keys escape a name's "." as ".." and "/" as ".S"
    return re.sub(r"\.(.)", lambda m: "." if m.group(1) == "." else "/" if m.group(1) == "S" else m.group(0),
                  component)


def stored_key(graph, key: str) -> str | None:
    """Where the variable reached by the object path of ``key`` is stored (its checkpoint key),
    following the object graph; None when the path does not lead to a variable."""
    if not key.endswith(SUFFIX) or not graph:
        return None
    node = graph[0]
    for component in key[:-len(SUFFIX)].split("/"):
        local = _unescape(component)
        child = next((c for c in node.children if c.local_name == local), None)
        if child is None or not 0 <= child.node_id < len(graph):
            return None
        node = graph[child.node_id]
    for attribute in node.attributes:
        if attribute.name == "VARIABLE_VALUE":
            return attribute.checkpoint_key
    return None


def bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """The layout with its table resolved for this checkpoint (see the module docstring)."""
    present = set(names)
    # One layout per checkpoint: the other layouts' rows would only be reported missing.
    if any(n.startswith(KERAS_FUNCTIONAL) for n in names):
        rules = list(FUNCTIONAL_RULES)
        count = functional_layer_count(names)
        if count is not None:
            rules += functional_pooler_rules(count)
    elif any(n.startswith(PRETRAINER_FUNCTIONAL) for n in names):
        rules = list(PRETRAINER_RULES + MASKED_LM_RULES + NEXT_SENTENCE_RULES)
        count = functional_layer_count(names)
        if count is not None:
            rules += functional_pooler_rules(count, PRETRAINER_FUNCTIONAL)
    else:
        rules = list(ENCODER_RULES + NEXT_SENTENCE_RULES)
    graph = source.object_graph()
    if graph:
        resolved = []
        for rule in rules:
            if not rule.per_layer and rule.source not in present:
                where = stored_key(graph, rule.source)
                if where is not None and where != rule.source and where in present:
                    rule = dataclasses.replace(rule, source=where)
            resolved.append(rule)
        rules = resolved
    mapping = Mapping(tuple(rules), layout.mapping.optional_prefixes)
    return dataclasses.replace(layout, mapping=mapping, bind=None)


LAYOUT = Layout(
    name="tf2_garden",
    description="TF2 Model Garden object checkpoint (tf-models-official)",
    mapping=MAPPING,
    marker=re.compile(r"^(model/layer_with_weights-\d+/_attention_layer/|"
                      r"encoder/(_transformer_layers/|layer_with_weights-)\d+/_attention_layer/)"),
    # tf-models' BertEncoder and MaskedLM default to the tanh GELU
    faithful_activation=GOOGLE_ACTIVATIONS,
    exact_activation=GOOGLE_EXACT_ACTIVATIONS,
    bind=bind,
)
