"""tf-models-official's TF Hub / Kaggle SavedModels of a BERT encoder
(``official/nlp/tools/export_tfhub_lib.export_model``) -> Hugging Face ``Bert*`` state-dict names.

The weights are a Model Garden ``BertEncoder``'s (and, exported ``with_mlm``, its masked-LM
head's), but the bundle's keys say nothing about them: a Keras model saves its variables through
its ``variables`` list, ``variables/N/.ATTRIBUTES/VARIABLE_VALUE`` (the ``mlm`` sub-object's list
continues the numbering, ``mlm/variables/N/...``), and N depends on the layer count and on the
export. The checkpoint's object graph still holds the attribute paths that reach each variable:
the root's ``layer_with_weights-0`` is the encoder, with the attributes garden.py's ``encoder/``
rows name, and ``mlm/layer_with_weights-0/masked_lm`` is the head garden.py's ``masked_lm/`` rows
name. So the rows are garden.py's, re-rooted at those objects, and :func:`bind` follows each
through the graph (:func:`~.garden.stored_key`) to the key its variable is stored under, one row
per layer. A SavedModel whose graph does not lead the first layer's query kernel to one of its
keys is not this layout's (:func:`recognise`); any other SavedModel is only listed.

What the export records beside the weights (:func:`recorded_config`), read by the SavedModel
reader from ``keras_metadata.pb`` (or the user objects of older Keras versions): the encoder's
Keras config gives the sizes, the head count and the activation, the ``LayerNormalization``
layers' configs the epsilon; every size is also checked against the weights. tf-models' own
``"Text>gelu"`` is the tanh GELU; a bare ``"gelu"`` is Keras' own, whose default is the exact
erf form (a ``BertEncoder`` given the string ``"gelu"`` computes that); both are written in
google-research/bert's spelling (``gelu`` for tanh, ``gelu_exact`` for erf), which the reference
reads too. The root's ``do_lower_case`` variable is the tokenizer's casing, read by the reader
(``source.lower_case``) and bookkeeping to everything else (``mapping.METADATA_NAMES``).
"""
from __future__ import annotations

import dataclasses
import re

from ....errors import ConfigError
from ....formats.base import SourceRecords
from ....mapping import LAYER, Mapping, Rule
from ...base import Layout
from .garden import ENCODER_RULES, SUFFIX, stored_key
from .google import GOOGLE_ACTIVATIONS, GOOGLE_EXACT_ACTIVATIONS

#: where export_tfhub_lib's model holds the encoder and the masked-LM head
ENCODER_OBJECT = "layer_with_weights-0/"
MLM_OBJECT = "mlm/layer_with_weights-0/masked_lm/"
_GARDEN_SCOPES = (("encoder/", ENCODER_OBJECT), ("masked_lm/", MLM_OBJECT))


def _rerooted(rule: Rule) -> Rule:
    for garden_scope, here in _GARDEN_SCOPES:
        if rule.source.startswith(garden_scope):
            return dataclasses.replace(rule, source=here + rule.source[len(garden_scope):])
    raise ValueError(f"garden row outside the encoder and the masked-LM head: {rule.source}")


#: object paths, not keys: bind turns each into the key its variable is stored under
OBJECT_RULES = tuple(_rerooted(rule) for rule in ENCODER_RULES)
#: a path every export of an encoder has: the first layer's query kernel
PROBE = ENCODER_OBJECT + "_transformer_layers/{layer}/_attention_layer/_query_dense/kernel" + SUFFIX



def recognise(names: list[str], source: SourceRecords) -> bool:
    """Whether the object graph leads the encoder's first query kernel to one of the keys."""
    graph = source.object_graph()
    return bool(graph) and stored_key(graph, PROBE.replace(LAYER, "0")) in set(names)


def _layer_count(graph, present: set[str]) -> int:
    count = 0
    while stored_key(graph, PROBE.replace(LAYER, str(count))) in present:
        count += 1
    return count


def bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """One row per tensor of this checkpoint, each object path followed to its key (a path that
    leads nowhere stays as it is, and is reported missing if the model needs it)."""
    graph = source.object_graph()
    present = set(names)
    layers = _layer_count(graph, present) if graph else 0
    rules = []
    for rule in OBJECT_RULES:
        for layer in (range(layers) if rule.per_layer else (None,)):
            path, target = rule.source, rule.target
            if layer is not None:
                path, target = path.replace(LAYER, str(layer)), target.replace(LAYER, str(layer))
            key = stored_key(graph, path) if graph else None
            rules.append(Rule(key if key in present else path, target, rule.shape, rule.transform, rule.head))
    mapping = Mapping(tuple(rules))
    return dataclasses.replace(layout, mapping=mapping, bind=None)


# -- what the export records ------------------------------------------------------------------------
#: the encoder's Keras config field -> the config field it states
ENCODER_FIELDS = {"vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
                  "num_attention_heads": "num_attention_heads", "max_sequence_length": "max_position_embeddings",
                  "type_vocab_size": "type_vocab_size", "inner_dim": "intermediate_size"}
#: a Keras activation as serialized in tf-models' configs -> (google-research/bert's spelling of
#: what it computes, in words)
ACTIVATIONS = {
    "Text>gelu": ("gelu", "tf-models' gelu, the tanh form"),
    "gelu": ("gelu_exact", "Keras' gelu, the exact erf form"),
    "relu": ("relu", "relu"),
    "tanh": ("tanh", "tanh"),
    "swish": ("swish", "swish"),
    "silu": ("swish", "silu, which is swish"),
    "linear": ("linear", "no activation"),
}
#: BertEncoder's default activation is a lambda computing the tanh GELU; Keras saves it by that name
UNNAMED_DEFAULT = "<lambda>"


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def recorded_config(layout: Layout, source: SourceRecords) -> dict:
    """Config fields from the encoder's Keras config and the LayerNorm layers' epsilon, each with
    where it was read; a config this model cannot be converted faithfully from is refused."""
    config = source.encoder_config
    if not isinstance(config, dict):
        return {}
    where = f"the SavedModel's Keras config of {source.encoder_class or 'the encoder'}"
    if config.get("norm_first"):
        raise ConfigError(f"norm_first is true in {where}: the encoder normalises before each sublayer, and "
                          "Hugging Face's BERT after it", path=source.path,
                          hint="no Bert* class computes this model; it cannot be converted faithfully")
    width = config.get("embedding_width")
    if width is not None and width != config.get("hidden_size"):
        raise ConfigError(f"embedding_width is {width} in {where} but hidden_size is {config.get('hidden_size')}: "
                          "the embeddings are projected up, which Hugging Face's BERT has no layer for",
                          path=source.path, hint="no Bert* class computes this model; it cannot be converted faithfully")
    out = {ours: (config[theirs], where) for theirs, ours in ENCODER_FIELDS.items() if _is_size(config.get(theirs))}
    activation = config.get("inner_activation")
    if activation == UNNAMED_DEFAULT:
        out["hidden_act"] = ("gelu", f"{where} (inner_activation {UNNAMED_DEFAULT!r}: assumed to be BertEncoder's "
                                     "default, the tanh GELU, since a lambda is saved without its function)")
    elif activation is not None:
        if activation not in ACTIVATIONS:
            raise ConfigError(f"inner_activation {activation!r} in {where} is not one bertconv converts",
                              path=source.path, hint=f"known: {', '.join(ACTIVATIONS)}")
        spelling, meaning = ACTIVATIONS[activation]
        out["hidden_act"] = (spelling, f"{where} (inner_activation {activation!r}: {meaning})")
    objects = source.keras_objects or ()
    # Hugging Face's BERT runs its MLM transform with hidden_act: the head's own must be the same
    head = [o.config.get("mlm_activation") for o in objects
            if isinstance(o.config, dict) and "mlm_activation" in o.config]
    if activation is not None and head and any(a != activation for a in head):
        raise ConfigError(f"the masked-LM head's mlm_activation {head[0]!r} differs from the encoder's "
                          f"inner_activation {activation!r} ({where})", path=source.path,
                          hint="Hugging Face's BERT uses one activation for both; convert with --head base")
    epsilons = sorted({o.config["epsilon"] for o in objects if o.class_name == "LayerNormalization"
                       and isinstance(o.config, dict) and isinstance(o.config.get("epsilon"), (int, float))})
    if len(epsilons) > 1:
        raise ConfigError(f"the LayerNormalization layers' epsilons differ ({', '.join(map(str, epsilons))}) in "
                          "the SavedModel's Keras configs", path=source.path,
                          hint="Hugging Face's BERT has one layer_norm_eps for every LayerNorm")
    if epsilons:
        out["layer_norm_eps"] = (float(epsilons[0]), "the SavedModel's Keras configs of its LayerNormalization layers")
    return out


LAYOUT = Layout(
    name="tf2_savedmodel",
    description="tf-models-official TF Hub SavedModel (export_tfhub_lib)",
    mapping=Mapping(OBJECT_RULES),
    # positional keys any Keras SavedModel has: recognise() decides through the object graph
    marker=re.compile(r"^variables/\d+/\.ATTRIBUTES/VARIABLE_VALUE$"),
    recognise=recognise,
    faithful_activation={**GOOGLE_ACTIVATIONS, "gelu_exact": "gelu", "linear": "linear"},
    exact_activation={**GOOGLE_EXACT_ACTIVATIONS, "gelu_exact": "gelu"},
    bind=bind,
    recorded_config=recorded_config,
)
