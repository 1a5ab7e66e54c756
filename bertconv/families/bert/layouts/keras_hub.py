"""KerasHub ``BertBackbone`` presets (checked on KerasHub 0.32), with the ``BertTextClassifier``
and ``BertMaskedLM`` task weights -> Hugging Face ``Bert*`` names.

Names are those :mod:`bertconv.formats.keras_hub` gives: the Keras layer names, ``vars/<i>`` in
each layer's variable order (Dense: kernel, bias; LayerNormalization: gamma, beta). The
attention's query, key and value are einsum kernels ``[H, heads, head_size]`` with biases
``[heads, head_size]`` and the attention output is ``[heads, head_size, H]``: the head count is
stated by the shapes. The pooler is the backbone's ``pooled_dense`` (tanh on the [CLS] row);
``BertTextClassifier``'s ``logits`` Dense reads it, as ``BertForSequenceClassification`` does.
The masked-LM decoder is the token embedding, reversed; only its bias is stored.

Numerics: the encoder's GELU is the tanh form and its LayerNorm epsilon 1e-12. The masked-LM
head is different: exact erf GELU and epsilon 1e-5 in its transform. Hugging Face's
``BertForMaskedLM`` takes one ``hidden_act`` and one ``layer_norm_eps`` for the encoder and the
head together, so no config computes what KerasHub computed (either choice moves the logits by
~3e-4, both by ~5e-4 on the fixture, a hundred times the tolerance of a faithful conversion):
exporting that head is refused, and ``--head base`` converts the encoder and pooler, which match.
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
from ....errors import ConfigError
from .google import GOOGLE_ACTIVATIONS, GOOGLE_EXACT_ACTIVATIONS

B = "backbone/"
L = B + "transformer_layer_{layer}/"
P = "bert.encoder.layer.{layer}."
H, I, V, A, D = "hidden_size", "intermediate_size", "vocab_size", "num_attention_heads", "head_size"


def _v(layer: str, index: int) -> str:
    return f"{layer}/vars/{index}"


RULES = (
    Rule(_v(B + "token_embedding", 0),                   "bert.embeddings.word_embeddings.weight",       (V, H)),
    Rule(_v(B + "position_embedding", 0),                "bert.embeddings.position_embeddings.weight",   ("max_position_embeddings", H)),
    Rule(_v(B + "segment_embedding", 0),                 "bert.embeddings.token_type_embeddings.weight", ("type_vocab_size", H)),
    Rule(_v(B + "embeddings_layer_norm", 0),             "bert.embeddings.LayerNorm.weight",             (H,)),
    Rule(_v(B + "embeddings_layer_norm", 1),             "bert.embeddings.LayerNorm.bias",               (H,)),
    Rule(_v(L + "self_attention_layer/query", 0),        P + "attention.self.query.weight",              (H, A, D), MHO),
    Rule(_v(L + "self_attention_layer/query", 1),        P + "attention.self.query.bias",                (A, D),    MH),
    Rule(_v(L + "self_attention_layer/key", 0),          P + "attention.self.key.weight",                (H, A, D), MHO),
    Rule(_v(L + "self_attention_layer/key", 1),          P + "attention.self.key.bias",                  (A, D),    MH),
    Rule(_v(L + "self_attention_layer/value", 0),        P + "attention.self.value.weight",              (H, A, D), MHO),
    Rule(_v(L + "self_attention_layer/value", 1),        P + "attention.self.value.bias",                (A, D),    MH),
    Rule(_v(L + "self_attention_layer/attention_output", 0), P + "attention.output.dense.weight",        (A, D, H), MHI),
    Rule(_v(L + "self_attention_layer/attention_output", 1), P + "attention.output.dense.bias",          (H,)),
    Rule(_v(L + "self_attention_layer_norm", 0),         P + "attention.output.LayerNorm.weight",        (H,)),
    Rule(_v(L + "self_attention_layer_norm", 1),         P + "attention.output.LayerNorm.bias",          (H,)),
    Rule(_v(L + "feedforward_intermediate_dense", 0),    P + "intermediate.dense.weight",                (H, I),    T),
    Rule(_v(L + "feedforward_intermediate_dense", 1),    P + "intermediate.dense.bias",                  (I,)),
    Rule(_v(L + "feedforward_output_dense", 0),          P + "output.dense.weight",                      (I, H),    T),
    Rule(_v(L + "feedforward_output_dense", 1),          P + "output.dense.bias",                        (H,)),
    Rule(_v(L + "feedforward_layer_norm", 0),            P + "output.LayerNorm.weight",                  (H,)),
    Rule(_v(L + "feedforward_layer_norm", 1),            P + "output.LayerNorm.bias",                    (H,)),
    Rule(_v(B + "pooled_dense", 0),                      "bert.pooler.dense.weight",                     (H, H),    T,    "pooler"),
    Rule(_v(B + "pooled_dense", 1),                      "bert.pooler.dense.bias",                       (H,),      None, "pooler"),
    # task weights (task.weights.h5)
    Rule(_v("task/logits", 0),                           "classifier.weight",                            (H, "num_labels"), T, "classifier"),
    Rule(_v("task/logits", 1),                           "classifier.bias",                              ("num_labels",), None, "classifier"),
    Rule(_v("task/mlm_head/intermediate_dense", 0),      "cls.predictions.transform.dense.weight",       (H, H),    T,    "mlm"),
    Rule(_v("task/mlm_head/intermediate_dense", 1),      "cls.predictions.transform.dense.bias",         (H,),      None, "mlm"),
    Rule(_v("task/mlm_head/intermediate_layer_norm", 0), "cls.predictions.transform.LayerNorm.weight",   (H,),      None, "mlm"),
    Rule(_v("task/mlm_head/intermediate_layer_norm", 1), "cls.predictions.transform.LayerNorm.bias",     (H,),      None, "mlm"),
    Rule(_v("task/mlm_head", 0),                         "cls.predictions.bias",                         (V,),      None, "mlm"),
)

MAPPING = Mapping(RULES)

MLM_HEAD_REFUSED = ("KerasHub's masked-LM head computes the exact erf GELU with LayerNorm epsilon 1e-5 while its "
                    "encoder uses the tanh GELU and 1e-12; Hugging Face's BertForMaskedLM applies one hidden_act "
                    "and one layer_norm_eps to both, so no config reproduces it (logits would differ by ~5e-4)")


#: BertBackbone's config keys -> the config fields they state
PRESET_SIZES = {"vocabulary_size": "vocab_size", "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
                "hidden_dim": "hidden_size", "intermediate_dim": "intermediate_size",
                "max_sequence_length": "max_position_embeddings", "num_segments": "type_vocab_size"}


def bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """The layout, once the preset's own config.json is found to state the sizes the weights
    have (the sizes are read from the weights; a preset whose config says otherwise is refused)."""
    preset = source.preset_config
    if not preset:
        return dataclasses.replace(layout, bind=None)
    inferred = layout.infer_sizes({n: source.stored_shape(n) for n in names})
    problems = [f"{key} is {preset[key]} in config.json but {inferred[field]} in the weights"
                for key, field in PRESET_SIZES.items()
                if key in preset and field in inferred and preset[key] != inferred[field]]
    if problems:
        raise ConfigError("; ".join(problems), path=source.path / "config.json",
                          hint="the preset's files come from different models: save it again with save_to_preset")
    stated = ", ".join(f"{key}={preset[key]}" for key in PRESET_SIZES if key in preset)
    return dataclasses.replace(layout, bind=None, assumptions=layout.assumptions + (
        f"sizes read from the weights, as the preset's config.json ({source.preset_class}) states them: {stated}",))


LAYOUT = Layout(
    name="keras_hub",
    description="KerasHub BertBackbone preset (model.weights.h5, task.weights.h5)",
    mapping=MAPPING,
    marker=re.compile(r"^backbone/transformer_layer_\d+/self_attention_layer/query/vars/0$"),
    # the preset's encoder uses keras_hub's gelu(approximate=True): the tanh form
    faithful_activation=GOOGLE_ACTIVATIONS,
    exact_activation=GOOGLE_EXACT_ACTIVATIONS,
    bind=bind,
    refused_heads={"mlm": MLM_HEAD_REFUSED},
)
