"""NEZHA's source naming -> the ``Nezha*`` state-dict names of its own modeling code.

huawei-noah's NEZHA-TensorFlow checkpoints hold google-research/bert's names (``bert/...``,
``cls/...``, run_classifier's ``output_weights``) without ``bert/embeddings/position_embeddings``:
positions are relative and computed. RoFormer v1's checkpoints lack that table too; what tells
NEZHA apart is its ``bert_config.json``, which says ``use_relative_position`` (a NEZHA checkpoint
without its config reads as RoFormer, which then asks for it). Its pretraining runs LAMB: the
``<weight>/lamb_m`` and ``lamb_v`` slots are training state by the common rule.
"""
from __future__ import annotations

import dataclasses
import re

from ...config import read_config_json
from ...formats.base import NO_RECORDS, SourceRecords
from ...mapping import Mapping, Rule
from ..base import Layout
from ..bert.layouts.google import RULES as BERT_GOOGLE_RULES

#: NEZHA's attention_layer clips relative distances here, whatever the config says (model.py
#: states it too: it imports nothing of bertconv's)
MAX_RELATIVE_POSITION = 64

#: BERT's rows without the position table (NEZHA's positions are relative) and the SQuAD head
#: (no NEZHA class here carries it)
_NOT_IN_NEZHA = ("bert/embeddings/position_embeddings",)


def _retarget(rule):
    if not rule.target.startswith("bert."):
        return rule
    return dataclasses.replace(rule, target="nezha." + rule.target.removeprefix("bert."))


#: the part that is bert4keras' stored sinusoid table: the model computes it, so it is never written
RELATIVE_TABLE = "relative_positions"

RULES = tuple(_retarget(rule) for rule in BERT_GOOGLE_RULES
              if rule.source not in _NOT_IN_NEZHA and rule.head != "squad") + (
    # the canonical name of the table bert4keras stores (NEZHA-TensorFlow computes it and stores
    # nothing): the reference computes with it where a source has it, as bert4keras does
    Rule("bert/encoder/relative_positions", "nezha.encoder." + RELATIVE_TABLE, (), None, RELATIVE_TABLE),
)
MAPPING = Mapping(RULES)

#: a learned position table in Google's or Hugging Face's naming: BERT's, not NEZHA's
_POSITION_TABLE = re.compile(r"(^|[/.])position_embeddings([/.]|$)")


def sidecar_config(source: SourceRecords) -> dict | None:
    path = source.sidecar("bert_config.json", "config.json")
    return read_config_json(path) if path is not None else None


def says_relative_positions(config: dict | None) -> bool:
    return bool(config) and bool(config.get("use_relative_position") or "max_relative_position" in config)


def recognise(names: list[str], source: SourceRecords = NO_RECORDS) -> bool:
    """NEZHA: no position table, and either NEZHA's own PyTorch names or a config that says
    ``use_relative_position``."""
    if any(_POSITION_TABLE.search(n) for n in names):
        return False
    if any(n.startswith("nezha.") for n in names):
        return True
    return says_relative_positions(sidecar_config(source))


def _bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    config = sidecar_config(source) or {}
    said = []
    stated = config.get("max_relative_position")
    if stated is not None and stated != MAX_RELATIVE_POSITION:
        said.append(f"max_relative_position {stated} in the config, but NEZHA's attention_layer clips at "
                    f"{MAX_RELATIVE_POSITION} whatever the config says: {MAX_RELATIVE_POSITION} is used")
    elif stated is None:
        said.append(f"relative positions clipped at {MAX_RELATIVE_POSITION} (NEZHA's attention_layer fixes it; "
                    "the config states none)")
    return dataclasses.replace(layout, bind=None, assumptions=tuple(said))


#: NEZHA's get_activation() is google-research/bert's: its "gelu" is the tanh approximation
ACTIVATIONS = {"gelu": "gelu_new", "gelu_new": "gelu_new", "relu": "relu", "tanh": "tanh", "linear": "linear"}
EXACT_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu"}

GOOGLE = Layout(
    name="google_nezha",
    description="NEZHA TF1 checkpoint (huawei-noah NEZHA-TensorFlow: Google's BERT names, relative positions)",
    mapping=MAPPING,
    marker=re.compile(r"^bert/(embeddings|encoder/layer_\d+)/(?!.*(:\d+$|/\.ATTRIBUTES/))"),
    recognise=recognise,
    faithful_activation=ACTIVATIONS,
    exact_activation=EXACT_ACTIVATIONS,
    layer_norm_eps=1e-12,
    bind=_bind,
    canonical=True,
    structural_parts=frozenset({"pooler", RELATIVE_TABLE}),
)



# -- bert4keras (model='nezha') ----------------------------------------------------------------
# bert4keras' NEZHA is its BERT without the position table, plus ``Embedding-Relative-Position``:
# the 129-row sinusoid table, not trainable, stored with the weights. The groups are RoFormer v1's
# (bert4keras builds both from one class), each mapped by its weight_names order.
#: bert4keras' NEZHA LayerNorm epsilon (K.epsilon()); its MLM-Norm passes 1e-12
B4K_LAYER_NORM_EPS = 1e-7
B4K_MLM_LAYER_NORM_EPS = 1e-12


def _nezha_target(target: str) -> str:
    return "nezha." + target.removeprefix("roformer.") if target.startswith("roformer.") else target


def _source_shape(target: str, transform) -> tuple:
    from ...mapping import TRANSPOSE

    rule = MAPPING.to_source(target.replace("{layer}", "0")).rule
    target_shape = tuple(reversed(rule.shape)) if rule.transform == TRANSPOSE else tuple(rule.shape)
    return tuple(reversed(target_shape)) if transform == TRANSPOSE else target_shape


def _bind_b4k(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    from ..roformer.layouts import B4K_GROUPS, group_weights

    groups = group_weights(names, source)
    rules = []
    for pattern, entries in B4K_GROUPS:
        regex = re.compile(re.escape(pattern).replace(re.escape("{layer}"), r"(\d+)") + "$")
        for group, members in groups.items():
            m = regex.match(group)
            # a group that is not what bert4keras writes for this layer stays unmapped (unknown)
            if not m or len(members) != len(entries) or \
                    any(n.rsplit("/", 1)[-1].split(":")[0] != leaf for n, (_t, leaf, _x) in zip(members, entries)):
                continue
            for name, (target, _leaf, transform) in zip(members, entries):
                target = _nezha_target(target)
                shape = _source_shape(target, transform)
                head = MAPPING.to_source(target.replace("{layer}", "0")).rule.head
                rules.append(Rule(name, target.replace("{layer}", m.group(1)) if m.groups() else target, shape,
                                  transform, head))
    said = [f"LayerNorm epsilon {B4K_LAYER_NORM_EPS} (bert4keras' K.epsilon()), the MLM head's "
            f"{B4K_MLM_LAYER_NORM_EPS} (bert4keras' MLM-Norm): no file states them",
            "bert4keras masks keys whose token id is 0; here the attention mask does: the same wherever "
            "padding, and only padding, is id 0"]
    for table in groups.get("Embedding-Relative-Position", []):
        # the reference computes with the stored table (as bert4keras does), the model with the
        # one it computes: the check before publishing holds the two together
        said.append(f"{table}: the sinusoid table the model computes, not written (the check compares the "
                    "model with the reference, which uses the stored table)")
        rules.append(Rule(table, "nezha.encoder." + RELATIVE_TABLE, (), None, RELATIVE_TABLE))
    mapping = Mapping(rules)
    return dataclasses.replace(layout, mapping=mapping, bind=None, assumptions=tuple(said))


#: bert4keras registers the exact erf GELU as "gelu"
B4K_ACTIVATIONS = {"gelu": "gelu", "gelu_erf": "gelu", "relu": "relu", "tanh": "tanh", "linear": "linear"}

BERT4KERAS = Layout(
    name="bert4keras_nezha",
    description="bert4keras NEZHA (model='nezha') Keras HDF5",
    mapping=Mapping(()),
    marker=re.compile(r"^Embedding-Relative-Position(_\d+)?/"),
    faithful_activation=B4K_ACTIVATIONS,
    exact_activation=B4K_ACTIVATIONS,
    reference_activation={"gelu": "gelu_exact"},
    layer_norm_eps=B4K_LAYER_NORM_EPS,
    bind=_bind_b4k,
    structural_parts=frozenset({"pooler", RELATIVE_TABLE}),
)

LAYOUTS = (GOOGLE, BERT4KERAS)
