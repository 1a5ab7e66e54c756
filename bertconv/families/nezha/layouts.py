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
import json
import re

from ...errors import ConfigError
from ...mapping import Mapping
from ..base import Layout
from ..bert.layouts.google import RULES as BERT_GOOGLE_RULES
from ..bert.layouts.google import infer_sizes as bert_infer_sizes

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


RULES = tuple(_retarget(rule) for rule in BERT_GOOGLE_RULES
              if rule.source not in _NOT_IN_NEZHA and rule.head != "squad")
MAPPING = Mapping(RULES)

#: a learned position table in Google's or Hugging Face's naming: BERT's, not NEZHA's
_POSITION_TABLE = re.compile(r"(^|[/.])position_embeddings([/.]|$)")


def sidecar_config(source) -> dict | None:
    if source is None or not hasattr(source, "sidecar"):
        return None
    path = source.sidecar("bert_config.json", "config.json")
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"not readable as JSON ({e})", path=path) from None


def says_relative_positions(config: dict | None) -> bool:
    return bool(config) and bool(config.get("use_relative_position") or "max_relative_position" in config)


def recognise(names: list[str], source=None) -> bool:
    """NEZHA: no position table, and either NEZHA's own PyTorch names or a config that says
    ``use_relative_position``."""
    if any(_POSITION_TABLE.search(n) for n in names):
        return False
    if any(n.startswith("nezha.") for n in names):
        return True
    return says_relative_positions(sidecar_config(source))


def _bind(layout: Layout, names: list[str], source=None) -> Layout:
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


def infer_sizes(shapes: dict) -> dict:
    """BERT's sizes from the same source names (no position table: no max_position_embeddings)."""
    return bert_infer_sizes(shapes)


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
    infer_sizes=infer_sizes,
    bind=_bind,
    canonical=True,
)

LAYOUTS = (GOOGLE,)
