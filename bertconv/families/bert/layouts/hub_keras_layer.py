"""A TF Hub BERT inside a user's own Keras model (TensorFlow's "Classify text with BERT"
tutorial: ``hub.KerasLayer(<Hub BERT>, trainable=True)``, a ``Dropout`` and a ``Dense`` on its
``pooled_output``), saved by ``model.save(dir)`` or ``model.save_weights(prefix)`` -> Hugging Face
``Bert*`` names.

``hub.KerasLayer`` registers each variable of the module it loads as a weight of its own, named by
the variable's name in the module, so the checkpoint keys are the user's model's object path to the
layer, then that name escaped (``/`` as ``.S``, ``.`` as ``..``), then ``:0``:
``layer_with_weights-0/transformer.Slayer_0.Sself_attention.Squery.Skernel:0/.ATTRIBUTES/VARIABLE_VALUE``.
The names are those of tf-models-official's ``BertEncoder`` as ``export_tfhub_lib`` exports it
(the Keras names the SavedModel layout's object graph records, savedmodel.py), with the same
einsum kernel shapes (query/key/value ``[H, heads, head_size]``, attention output
``[heads, head_size, H]``) and tf-models' GELU, the tanh form.

Which ``layer_with_weights-N`` is the encoder depends on the user's model: :func:`bind` reads it
from the key of the first query kernel. The user's other weighted layers are their head. A head is
exported only when what it computes is known: a ``Dense`` whose input is the encoder's
``pooled_output`` (through weightless layers such as ``Dropout``), as ``keras_metadata.pb``'s
functional config records it (:func:`head_reads`), is ``BertForSequenceClassification``'s
classifier. Any other weighted layer (a ``Dense`` per token, a ``Dense`` whose input a
``save_weights`` checkpoint does not record, anything else) is named and kept out, with a note.
"""
from __future__ import annotations

import dataclasses
import re

from ....mapping import Mapping, Rule
from ....mapping import MERGE_HEADS as MH
from ....mapping import MERGE_HEADS_IN_T as MHI
from ....mapping import MERGE_HEADS_OUT_T as MHO
from ....mapping import TRANSPOSE as T
from ....formats.base import SourceRecords
from ...base import Layout
from .garden import SUFFIX, stored_key
from .google import GOOGLE_ACTIVATIONS, GOOGLE_EXACT_ACTIVATIONS

H, I, V, A, D = "hidden_size", "intermediate_size", "vocab_size", "num_attention_heads", "head_size"
P = "bert.encoder.layer.{layer}."
L = "transformer/layer_{layer}/"
#: the head a user's layer that is not exported is filed under (never a class's head)
KEPT_OUT = "user_layer"
#: the Hub module's do_lower_case variable, read by the reader as the tokenizer's casing
CASING = "hub_casing"
LOWER_CASE = "do_lower_case"

#: the Hub module's variable names -> Hugging Face names
ENCODER_NAMES = (
    ("word_embeddings/embeddings",                 "bert.embeddings.word_embeddings.weight",       (V, H),    None, None),
    ("position_embedding/embeddings",              "bert.embeddings.position_embeddings.weight",   ("max_position_embeddings", H), None, None),
    ("type_embeddings/embeddings",                 "bert.embeddings.token_type_embeddings.weight", ("type_vocab_size", H), None, None),
    ("embeddings/layer_norm/gamma",                "bert.embeddings.LayerNorm.weight",             (H,),      None, None),
    ("embeddings/layer_norm/beta",                 "bert.embeddings.LayerNorm.bias",               (H,),      None, None),
    (L + "self_attention/query/kernel",            P + "attention.self.query.weight",              (H, A, D), MHO,  None),
    (L + "self_attention/query/bias",              P + "attention.self.query.bias",                (A, D),    MH,   None),
    (L + "self_attention/key/kernel",              P + "attention.self.key.weight",                (H, A, D), MHO,  None),
    (L + "self_attention/key/bias",                P + "attention.self.key.bias",                  (A, D),    MH,   None),
    (L + "self_attention/value/kernel",            P + "attention.self.value.weight",              (H, A, D), MHO,  None),
    (L + "self_attention/value/bias",              P + "attention.self.value.bias",                (A, D),    MH,   None),
    (L + "self_attention/attention_output/kernel", P + "attention.output.dense.weight",            (A, D, H), MHI,  None),
    (L + "self_attention/attention_output/bias",   P + "attention.output.dense.bias",              (H,),      None, None),
    (L + "self_attention_layer_norm/gamma",        P + "attention.output.LayerNorm.weight",        (H,),      None, None),
    (L + "self_attention_layer_norm/beta",         P + "attention.output.LayerNorm.bias",          (H,),      None, None),
    (L + "intermediate/kernel",                    P + "intermediate.dense.weight",                (H, I),    T,    None),
    (L + "intermediate/bias",                      P + "intermediate.dense.bias",                  (I,),      None, None),
    (L + "output/kernel",                          P + "output.dense.weight",                      (I, H),    T,    None),
    (L + "output/bias",                            P + "output.dense.bias",                        (H,),      None, None),
    (L + "output_layer_norm/gamma",                P + "output.LayerNorm.weight",                  (H,),      None, None),
    (L + "output_layer_norm/beta",                 P + "output.LayerNorm.bias",                    (H,),      None, None),
    ("pooler_transform/kernel",                    "bert.pooler.dense.weight",                     (H, H),    T,    "pooler"),
    ("pooler_transform/bias",                      "bert.pooler.dense.bias",                       (H,),      None, "pooler"),
)

#: the user's model's object path to its weighted layers: a Keras model tracks them by position
WEIGHTED_LAYER = "layer_with_weights-{index}/"
DEFAULT_SCOPE = WEIGHTED_LAYER.format(index=0)
_SCOPE = re.compile(r"^(layer_with_weights-\d+/)")
_WEIGHTED = re.compile(r"^layer_with_weights-(\d+)/(.+)" + re.escape(SUFFIX) + "$")


def escape(name: str) -> str:
    """A variable name as one component of a checkpoint key (trackable's escaping)."""
    return name.replace(".", "..").replace("/", ".S")


def variable_key(scope: str, variable: str) -> str:
    return scope + escape(variable + ":0") + SUFFIX


def encoder_rules(scope: str) -> tuple[Rule, ...]:
    return tuple(Rule(variable_key(scope, name), target, shape, transform, head)
                 for name, target, shape, transform, head in ENCODER_NAMES)


RULES = encoder_rules(DEFAULT_SCOPE)
#: the first layer's query kernel, the key that says where the encoder is
MARKER = re.compile(r"^layer_with_weights-\d+/" + re.escape(escape("transformer/layer_0/self_attention/query/kernel:0"))
                    + re.escape(SUFFIX) + "$")


# -- the user's head ---------------------------------------------------------------------------
def _keras_model_config(source: SourceRecords) -> dict | None:
    """The user's functional model's Keras config, from the root object of keras_metadata.pb."""
    for obj in source.keras_objects or ():
        if obj.node_path == "root" and isinstance(obj.config, dict):
            return obj.config
    return None


def _inbound(layer: dict) -> list[tuple[str, int]]:
    """The (layer name, tensor index) a functional layer's first call reads, in either of the
    forms tf-keras writes (``[[name, node, index, kwargs]]`` lists, or ``keras_history``)."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            history = value.get("keras_history") or (value.get("config") or {}).get("keras_history")
            if isinstance(history, list) and len(history) == 3:
                found.append((str(history[0]), int(history[2])))
                return
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[2], int):
                found.append((value[0], value[2]))
                return
            for item in value:
                walk(item)

    nodes = layer.get("inbound_nodes") or []
    if nodes:
        walk(nodes[0])
    return found


def _hub_output_name(index: int, num_layers: int) -> str:
    """The output of a TF2 Hub BERT at ``index`` in the order Keras flattens the dict it returns
    (keys sorted: ``default``, the ``encoder_outputs`` list of one tensor per layer,
    ``pooled_output``, ``sequence_output``): a functional config names a dict output by position."""
    if index == 0:
        return "default"  # the pooled output, under the name TF1 Hub modules gave it
    if index <= num_layers:
        return f"encoder_outputs[{index - 1}]"
    return {num_layers + 1: "pooled_output", num_layers + 2: "sequence_output"}.get(index, f"output {index}")


def head_reads(source: SourceRecords, encoder_layer: str, head_layer: str, num_layers: int) -> str | None:
    """Which output of the encoder layer ``head_layer`` reads (through weightless layers), as the
    user's model's functional config records it; None where it records none."""
    config = _keras_model_config(source)
    layers = {layer.get("name"): layer for layer in (config or {}).get("layers", []) if isinstance(layer, dict)}
    name, seen = head_layer, set()
    while name in layers and name not in seen:
        seen.add(name)
        inbound = _inbound(layers[name])
        if len(inbound) != 1:
            return None
        reads, index = inbound[0]
        if reads == encoder_layer:
            return _hub_output_name(index, num_layers)
        if layers.get(reads, {}).get("class_name") not in WEIGHTLESS:
            return None
        name = reads
    return None


#: layers that pass their input on unchanged at inference (as BertForSequenceClassification's own
#: dropout before its classifier does)
WEIGHTLESS = frozenset({"Dropout"})


def weighted_layers(source: SourceRecords) -> dict[int, tuple[str, str, dict]]:
    """``layer_with_weights`` index -> (class, name, Keras config) of the user's model's weighted
    layers, as keras_metadata.pb records them by object path (empty where it is absent)."""
    out = {}
    for obj in source.keras_objects or ():
        m = _METADATA_PATH.match(obj.node_path)
        if m:
            out[int(m.group(1))] = (obj.class_name, obj.name, obj.config if isinstance(obj.config, dict) else {})
    return out


_METADATA_PATH = re.compile(r"^root\.layer_with_weights-(\d+)$")


def _casing_node(source: SourceRecords, scope: str) -> str | None:
    """The key under ``scope`` of the Hub module's ``do_lower_case`` variable, which the Keras
    layer also registers as a weight of its own, named as its variable is (``Variable:0``)."""
    graph = source.object_graph()
    return stored_key(graph, scope + "_func/" + LOWER_CASE + SUFFIX) if graph else None


def bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """The table for this checkpoint: the encoder's rows under the object path the first query
    kernel is stored at, and the user's other weighted layers as a classifier or kept out."""
    scope = next((m.group(1) for n in names if MARKER.match(n) for m in [_SCOPE.match(n)]), DEFAULT_SCOPE)
    rules = list(encoder_rules(scope))
    encoder_table = Mapping(rules)
    layer_prefix = scope + escape("transformer/layer_")
    num_layers = len({n[len(layer_prefix):].split(".S", 1)[0] for n in names if n.startswith(layer_prefix)})
    described = weighted_layers(source)
    encoder_index = int(scope.split("-")[1].rstrip("/"))
    notes = list(layout.assumptions)
    encoder = described.get(encoder_index)
    if encoder:
        handle = encoder[2].get("handle")
        notes.append(f"the encoder is the user's layer {encoder[1]!r} ({encoder[0]}"
                     + (f" of {handle}" if handle else "") + f"), stored under {scope}")
    else:
        notes.append(f"the encoder is the Hub module stored under {scope} (the file records no layer names)")
    casing = _casing_node(source, scope)
    others: dict[int, list[tuple[str, str]]] = {}
    for name in names:
        m = _WEIGHTED.match(name)
        if not m or encoder_table.to_target(name) is not None or "/" in m.group(2):
            continue  # optimizer slots (``.../.OPTIMIZER_SLOT/...``) are training state
        if name == casing:
            rules.append(Rule(name, "hub_module.do_lower_case", (), None, CASING))
        elif name.startswith(scope):
            rules.append(Rule(name, f"hub_module.{m.group(2)}", (), None, KEPT_OUT))
            notes.append(f"{name} is a variable of the Hub module that no Bert* weight holds: kept out")
        else:
            others.setdefault(int(m.group(1)), []).append((m.group(2), name))
    for index, variables in sorted(others.items()):
        cls, layer_name, config = described.get(index, (None, None, {}))
        attrs = {attr for attr, _ in variables}
        keyed = dict(variables)
        what = f"layer {layer_name!r} ({cls})" if layer_name else f"the weighted layer {WEIGHTED_LAYER.format(index=index)}"
        reads = head_reads(source, encoder[1], layer_name, num_layers) if layer_name and encoder else None
        if cls == "Dense" and attrs == {"kernel", "bias"} and reads in ("pooled_output", "default") \
                and config.get("activation") in ("linear", None):
            rules += [Rule(keyed["kernel"], "classifier.weight", (H, "num_labels"), T, "classifier"),
                      Rule(keyed["bias"], "classifier.bias", ("num_labels",), None, "classifier")]
            notes.append(f"the user's head, {what} on the encoder's {reads}, is BertForSequenceClassification's "
                         "classifier")
            continue
        for attr, key in variables:
            rules.append(Rule(key, f"{KEPT_OUT}.{index}.{attr}", (), None, KEPT_OUT))
        if reads == "sequence_output" and cls == "Dense":
            why = ("it scores each token of the encoder's sequence_output (a token classifier, or a span head where it "
                   "has 2 units: the file does not say which), and bertconv exports neither head from these files")
        elif reads:
            why = f"it reads the encoder's {reads}, which no Bert* head takes"
        elif not described:
            why = ("the file records no model config (a save_weights checkpoint), so what it reads is unknown; "
                   "a model.save() directory of the same model records it")
        else:
            why = "it is not a Dense without activation on the encoder's pooled output"
        notes.append(f"{what} kept out ({', '.join(sorted(attrs))}): {why}")
    mapping = Mapping(tuple(rules))
    return dataclasses.replace(layout, mapping=mapping, bind=None, assumptions=tuple(notes))


LAYOUT = Layout(
    name="tf2_hub_keras_layer",
    description="a TF Hub BERT (hub.KerasLayer) inside a user's Keras model (model.save, save_weights)",
    mapping=Mapping(RULES),
    marker=MARKER,
    faithful_activation=GOOGLE_ACTIVATIONS,
    exact_activation=GOOGLE_EXACT_ACTIVATIONS,
    bind=bind,
    structural_parts=frozenset({"pooler", KEPT_OUT, CASING}),
)
