"""google-research/electra's TF1 names -> Hugging Face ``Electra*`` state-dict names.

A pretraining checkpoint holds two models. The discriminator (``ElectraForPreTraining``) lives under
``electra/``, its head under ``discriminator_predictions/{dense,dense_1}``; the generator
(``ElectraForMaskedLM``) under ``generator/``, its head under ``generator_predictions/`` with the
decoder tied to the word embeddings. Both read the embeddings ``electra/embeddings/*`` (the
generator has its own ``generator/embeddings/*`` only when trained with untied embeddings). Each
tower maps its embeddings to its own width with ``<tower>/embeddings_project`` when the widths
differ. Which tower is exported is the user's choice (``--tower``); this module holds one layout per
tower, and the other tower's tensors are recognised and left out, never exported by mistake.
Below the scope, the encoder is BERT's, row for row.
"""
from __future__ import annotations

import dataclasses
import re

from ...mapping import TRANSPOSE as T
from ...mapping import Mapping, Rule
from ...formats.base import SourceRecords
from ..base import Layout

TOWERS = ("discriminator", "generator")
#: the TensorFlow scope of each tower's encoder
SCOPES = {"discriminator": "electra", "generator": "generator"}
#: the part name under which a family carries the *other* tower's tensors (recognised, not exported)
OTHER = {"discriminator": "generator_tower", "generator": "discriminator_tower"}

_LAYER = (
    # source, relative to <scope>/encoder/layer_{i}/      target, relative to electra.encoder.layer.{i}.  transform
    ("attention/self/query/kernel",                      "attention.self.query.weight",                   T),
    ("attention/self/query/bias",                        "attention.self.query.bias",                     None),
    ("attention/self/key/kernel",                        "attention.self.key.weight",                     T),
    ("attention/self/key/bias",                          "attention.self.key.bias",                       None),
    ("attention/self/value/kernel",                      "attention.self.value.weight",                   T),
    ("attention/self/value/bias",                        "attention.self.value.bias",                     None),
    ("attention/output/dense/kernel",                    "attention.output.dense.weight",                 T),
    ("attention/output/dense/bias",                      "attention.output.dense.bias",                   None),
    ("attention/output/LayerNorm/gamma",                 "attention.output.LayerNorm.weight",             None),
    ("attention/output/LayerNorm/beta",                  "attention.output.LayerNorm.bias",               None),
    ("intermediate/dense/kernel",                        "intermediate.dense.weight",                     T),
    ("intermediate/dense/bias",                          "intermediate.dense.bias",                       None),
    ("output/dense/kernel",                              "output.dense.weight",                           T),
    ("output/dense/bias",                                "output.dense.bias",                             None),
    ("output/LayerNorm/gamma",                           "output.LayerNorm.weight",                       None),
    ("output/LayerNorm/beta",                            "output.LayerNorm.bias",                         None),
)
_EMBEDDINGS = (
    ("word_embeddings",                                  "word_embeddings.weight"),
    ("position_embeddings",                              "position_embeddings.weight"),
    ("token_type_embeddings",                            "token_type_embeddings.weight"),
    ("LayerNorm/gamma",                                  "LayerNorm.weight"),
    ("LayerNorm/beta",                                   "LayerNorm.bias"),
)
_HEADS = {
    # tower: (head, rows (source, target, transform))
    "discriminator": ("discriminator", (
        ("discriminator_predictions/dense/kernel",       "discriminator_predictions.dense.weight",            T),
        ("discriminator_predictions/dense/bias",         "discriminator_predictions.dense.bias",              None),
        ("discriminator_predictions/dense_1/kernel",     "discriminator_predictions.dense_prediction.weight", T),
        ("discriminator_predictions/dense_1/bias",       "discriminator_predictions.dense_prediction.bias",   None),
    )),
    "generator": ("mlm", (
        ("generator_predictions/dense/kernel",           "generator_predictions.dense.weight",                T),
        ("generator_predictions/dense/bias",             "generator_predictions.dense.bias",                  None),
        ("generator_predictions/LayerNorm/gamma",        "generator_predictions.LayerNorm.weight",            None),
        ("generator_predictions/LayerNorm/beta",         "generator_predictions.LayerNorm.bias",              None),
        ("generator_predictions/output_bias",            "generator_lm_head.bias",                            None),
    )),
}

H, I, V, E = "hidden_size", "intermediate_size", "vocab_size", "embedding_size"
#: symbolic shapes, by the name's last components (encoder rows by their path below layer_{i}/)
_SHAPES = {
    "embeddings/word_embeddings": (V, E), "embeddings/position_embeddings": ("max_position_embeddings", E),
    "embeddings/token_type_embeddings": ("type_vocab_size", E),
    "embeddings/LayerNorm/gamma": (E,), "embeddings/LayerNorm/beta": (E,),
    "embeddings_project/kernel": (E, H), "embeddings_project/bias": (H,),
    "intermediate/dense/kernel": (H, I), "intermediate/dense/bias": (I,),
    "output/dense/kernel": (I, H), "attention/output/dense/kernel": (H, H),
    "discriminator_predictions/dense/kernel": (H, H), "discriminator_predictions/dense/bias": (H,),
    "discriminator_predictions/dense_1/kernel": (H, 1), "discriminator_predictions/dense_1/bias": (1,),
    "generator_predictions/dense/kernel": (H, E), "generator_predictions/dense/bias": (E,),
    "generator_predictions/LayerNorm/gamma": (E,), "generator_predictions/LayerNorm/beta": (E,),
    "generator_predictions/output_bias": (V,),
}
_BELOW_LAYER = re.compile(r"/layer_(\d+|\{layer\})/(.*)$")


def _shape(source: str) -> tuple:
    m = _BELOW_LAYER.search(source)
    key = m.group(2) if m else source.split("/", 1)[1] if source.split("/", 1)[0] in ("electra", "generator") \
        else source
    if key in _SHAPES:
        return _SHAPES[key]
    return (H, H) if key.endswith("kernel") else (H,)  # query/key/value, LayerNorms and biases of width H


def tower_rules(tower: str, *, embeddings_scope: str = "electra", project: bool = True,
                head: str | None = None) -> tuple[Rule, ...]:
    """One tower's rows: embeddings (from ``embeddings_scope``), its projection when ``project``,
    its encoder and its prediction head. ``head``: the part every row belongs to (None: the
    tower's own, exported; a part name: the other tower's, recognised but left out)."""
    scope = SCOPES[tower]
    head_name, head_rows = _HEADS[tower]
    rows = [(f"{embeddings_scope}/embeddings/{s}", f"electra.embeddings.{t}", None, head) for s, t in _EMBEDDINGS]
    if project:
        rows += [(f"{scope}/embeddings_project/kernel", "electra.embeddings_project.weight", T, head),
                 (f"{scope}/embeddings_project/bias", "electra.embeddings_project.bias", None, head)]
    rows += [(f"{scope}/encoder/layer_{{layer}}/{s}", f"electra.encoder.layer.{{layer}}.{t}", tr, head)
             for s, t, tr in _LAYER]
    rows += [(s, t, tr, head or head_name) for s, t, tr in head_rows]
    return tuple(Rule(source, target, _shape(source), transform, part) for source, target, transform, part in rows)


def bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    """The table for this checkpoint: the layout's tower with or without its projection and with
    the embeddings it really reads, plus whatever the other tower left in the file."""
    tower = layout.tower
    other = TOWERS[1 - TOWERS.index(tower)]
    present = set(names)
    if tower == "generator" and not any(n.startswith("generator/encoder/layer_") for n in names):
        from ...errors import MappingError
        raise MappingError("--tower generator: the checkpoint holds no generator (no generator/encoder/layer_* "
                           "tensors)", hint="released fine-tuned and discriminator-only checkpoints keep only "
                           "the discriminator; leave out --tower")

    def embeddings_of(t: str) -> str:
        own = SCOPES[t]
        return own if t == "generator" and f"{own}/embeddings/word_embeddings" in present else "electra"

    def projects(t: str) -> bool:
        return f"{SCOPES[t]}/embeddings_project/kernel" in present

    rules = tower_rules(tower, embeddings_scope=embeddings_of(tower), project=projects(tower))
    mine = {r.source for r in rules}
    # The other tower's rows get targets of their own (its part name in front): they are never
    # written, and must not pair with this tower's tensors (diff) or claim its names (pt -> tf).
    rules += tuple(dataclasses.replace(r, target=f"{OTHER[tower]}.{r.target}")
                   for r in tower_rules(other, embeddings_scope=embeddings_of(other), project=projects(other),
                                        head=OTHER[tower]) if r.source not in mine)
    return dataclasses.replace(layout, mapping=Mapping(rules), bind=None)


MARKER = re.compile(r"^(electra|generator)/(embeddings|encoder/layer_\d+)/|^discriminator_predictions/")


def _layout(tower: str) -> Layout:
    return Layout(
        name="google_electra" if tower == "discriminator" else "google_electra_generator",
        description=f"google-research/electra TF1 checkpoint ({tower})",
        mapping=Mapping(tower_rules(tower)),
        marker=MARKER,
        # ELECTRA's modeling.py computes the exact erf GELU for "gelu": Hugging Face's "gelu" is that
        faithful_activation={"gelu": "gelu", "relu": "relu", "tanh": "tanh"},
        exact_activation={"gelu": "gelu"},
        reference_activation={"gelu": "gelu_exact"},
        structural_parts=frozenset({OTHER[tower]}),
        pretraining_heads=frozenset({_HEADS[tower][0]}),
        tower=tower,
        canonical=True,
        bind=bind,
    )


DISCRIMINATOR = _layout("discriminator")
GENERATOR = _layout("generator")
