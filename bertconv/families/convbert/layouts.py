"""yitu-opensource/ConvBert's TF1 names -> Hugging Face ``ConvBert*`` state-dict names.

ConvBERT is built on ELECTRA's code: a pretraining checkpoint holds the discriminator under
``electra/`` (head ``discriminator_predictions/{dense,dense_1}``) and the generator under
``generator/`` (head ``generator_predictions/``, decoder tied to the word embeddings), both reading
``electra/embeddings/*``, each projecting them with ``<tower>/embeddings_project`` where the widths
differ. One layout per tower, as ELECTRA's; the other tower is recognised and left out.

Below ELECTRA's scopes each layer has, besides BERT's query/key/value, the span-based dynamic
convolution (``conv_attn_key``: a separable conv1d, ``conv_attn_kernel``, ``conv_attn_point``), and
a feed-forward that is grouped (``g_dense``, kernel ``[groups, in/groups, out/groups]``) when
``linear_groups`` > 1, else a plain ``dense``. The checkpoint records no config: the head count,
``head_ratio``, ``conv_kernel_size`` and ``linear_groups`` are read from the shapes
(:func:`recorded_config`).
"""
from __future__ import annotations

import dataclasses
import re

from ...errors import MappingError
from ...formats.base import SourceRecords
from ...mapping import TRANSPOSE as T
from ...mapping import Mapping, Rule
from ..base import Layout

TOWERS = ("discriminator", "generator")
SCOPES = {"discriminator": "electra", "generator": "generator"}
OTHER = {"discriminator": "generator_tower", "generator": "discriminator_tower"}
H, I, V, E = "hidden_size", "intermediate_size", "vocab_size", "embedding_size"
DEPTHWISE, POINTWISE, COLUMN = "conv1d_depthwise", "conv1d_pointwise", "column"

_ATTENTION = (
    # source below <scope>/encoder/layer_{i}/, target below convbert.encoder.layer.{i}., transform, shape
    ("attention/self/query/kernel", "attention.self.query.weight", T, (H, None)),
    ("attention/self/query/bias", "attention.self.query.bias", None, ()),
    ("attention/self/key/kernel", "attention.self.key.weight", T, (H, None)),
    ("attention/self/key/bias", "attention.self.key.bias", None, ()),
    ("attention/self/value/kernel", "attention.self.value.weight", T, (H, None)),
    ("attention/self/value/bias", "attention.self.value.bias", None, ()),
    ("attention/self/conv_attn_key/depthwise_kernel", "attention.self.key_conv_attn_layer.depthwise.weight",
     DEPTHWISE, (None, H, 1)),
    ("attention/self/conv_attn_key/pointwise_kernel", "attention.self.key_conv_attn_layer.pointwise.weight",
     POINTWISE, (1, H, None)),
    ("attention/self/conv_attn_key/bias", "attention.self.key_conv_attn_layer.bias", COLUMN, ()),
    ("attention/self/conv_attn_kernel/kernel", "attention.self.conv_kernel_layer.weight", T, ()),
    ("attention/self/conv_attn_kernel/bias", "attention.self.conv_kernel_layer.bias", None, ()),
    ("attention/self/conv_attn_point/kernel", "attention.self.conv_out_layer.weight", T, (H, None)),
    ("attention/self/conv_attn_point/bias", "attention.self.conv_out_layer.bias", None, ()),
    ("attention/output/dense/kernel", "attention.output.dense.weight", T, (H, H)),
    ("attention/output/dense/bias", "attention.output.dense.bias", None, (H,)),
    ("attention/output/LayerNorm/gamma", "attention.output.LayerNorm.weight", None, (H,)),
    ("attention/output/LayerNorm/beta", "attention.output.LayerNorm.bias", None, (H,)),
    ("output/LayerNorm/gamma", "output.LayerNorm.weight", None, (H,)),
    ("output/LayerNorm/beta", "output.LayerNorm.bias", None, (H,)),
)
#: the feed-forward: grouped (``linear_groups`` > 1) or dense; the kernel of a grouped one is
#: Hugging Face's GroupedLinearLayer weight as it is
_GROUPED = (
    ("intermediate/g_dense/kernel", "intermediate.dense.weight", None, ()),
    ("intermediate/g_dense/bias", "intermediate.dense.bias", None, (I,)),
    ("output/g_dense/kernel", "output.dense.weight", None, ()),
    ("output/g_dense/bias", "output.dense.bias", None, (H,)),
)
_DENSE = (
    ("intermediate/dense/kernel", "intermediate.dense.weight", T, (H, I)),
    ("intermediate/dense/bias", "intermediate.dense.bias", None, (I,)),
    ("output/dense/kernel", "output.dense.weight", T, (I, H)),
    ("output/dense/bias", "output.dense.bias", None, (H,)),
)
_EMBEDDINGS = (
    ("word_embeddings", "word_embeddings.weight", (V, E)),
    ("position_embeddings", "position_embeddings.weight", ("max_position_embeddings", E)),
    ("token_type_embeddings", "token_type_embeddings.weight", ("type_vocab_size", E)),
    ("LayerNorm/gamma", "LayerNorm.weight", (E,)),
    ("LayerNorm/beta", "LayerNorm.bias", (E,)),
)
_HEADS = {
    "discriminator": ("discriminator", (
        ("discriminator_predictions/dense/kernel", "discriminator_predictions.dense.weight", T, (H, H)),
        ("discriminator_predictions/dense/bias", "discriminator_predictions.dense.bias", None, (H,)),
        ("discriminator_predictions/dense_1/kernel", "discriminator_predictions.dense_prediction.weight", T, (H, 1)),
        ("discriminator_predictions/dense_1/bias", "discriminator_predictions.dense_prediction.bias", None, (1,)),
    )),
    "generator": ("mlm", (
        ("generator_predictions/dense/kernel", "generator_predictions.dense.weight", T, (H, E)),
        ("generator_predictions/dense/bias", "generator_predictions.dense.bias", None, (E,)),
        ("generator_predictions/LayerNorm/gamma", "generator_predictions.LayerNorm.weight", None, (E,)),
        ("generator_predictions/LayerNorm/beta", "generator_predictions.LayerNorm.bias", None, (E,)),
        ("generator_predictions/output_bias", "generator_lm_head.bias", None, (V,)),
    )),
}

DISCRIMINATOR_HEAD_REFUSED = (
    "transformers 5 has no ConvBERT class for the discriminator head (discriminator_predictions: dense, "
    "gelu, dense to one logit per token); the discriminator tower is exported as ConvBertModel")


def _symbolic(shape: tuple) -> tuple:
    # a dimension no config field names (the attention width, the kernel size) is not checked here:
    # strict loading into the model built from the config checks it
    return () if None in shape else shape


def tower_rules(tower: str, *, embeddings_scope: str = "electra", project: bool = True, grouped: bool = True,
                head: str | None = None) -> tuple[Rule, ...]:
    scope = SCOPES[tower]
    head_name, head_rows = _HEADS[tower]
    rows = [(f"{embeddings_scope}/embeddings/{s}", f"convbert.embeddings.{t}", None, shape, head)
            for s, t, shape in _EMBEDDINGS]
    if project:
        rows += [(f"{scope}/embeddings_project/kernel", "convbert.embeddings_project.weight", T, (E, H), head),
                 (f"{scope}/embeddings_project/bias", "convbert.embeddings_project.bias", None, (H,), head)]
    rows += [(f"{scope}/encoder/layer_{{layer}}/{s}", f"convbert.encoder.layer.{{layer}}.{t}", tr, shape, head)
             for s, t, tr, shape in _ATTENTION + (_GROUPED if grouped else _DENSE)]
    rows += [(s, t, tr, shape, head or head_name) for s, t, tr, shape in head_rows]
    return tuple(Rule(source, target, _symbolic(shape), transform, part)
                 for source, target, transform, shape, part in rows)


def _layer0(tower: str, rest: str) -> str:
    return f"{SCOPES[tower]}/encoder/layer_0/{rest}"


def attention_structure(tower: str, source: SourceRecords) -> dict | None:
    """What the shapes of layer 0 say of a tower's attention (None: names listed without a file):
    ``hidden``, the attention ``width`` (query), ``kernel_size``, ``conv_heads`` (the attention heads
    after ``head_ratio``), ``heads`` (the config's head count), ``groups``."""
    query = source.stored_shape(_layer0(tower, "attention/self/query/kernel"))
    depthwise = source.stored_shape(_layer0(tower, "attention/self/conv_attn_key/depthwise_kernel"))
    kernel = source.stored_shape(_layer0(tower, "attention/self/conv_attn_kernel/kernel"))
    output = source.stored_shape(_layer0(tower, "attention/output/dense/kernel"))
    if None in (query, depthwise, kernel, output):
        return None
    grouped = source.stored_shape(_layer0(tower, "intermediate/g_dense/kernel"))
    hidden, width = query
    size = depthwise[0]
    attention_heads = kernel[1] // size
    head_size = width // attention_heads
    return {"hidden": hidden, "width": width, "kernel_size": size, "attention_heads": attention_heads,
            "heads": hidden // head_size, "groups": grouped[0] if grouped else 1, "output_in": output[0]}


def holdable(s: dict) -> str | None:
    """Why transformers 5's ConvBert cannot hold a tower of this structure (None: it can). Its
    layers concatenate attention and convolution to ``2 * heads // head_ratio * head_size`` and
    project that with a ``hidden x hidden`` dense, its head size ``hidden // (heads // head_ratio) // 2``."""
    if s["output_in"] != s["hidden"]:
        return (f"its attention reaches one head ({s['heads']} heads below head_ratio: the original then gives the "
                f"single head the whole width and projects attention and convolution, {s['output_in']} wide, back "
                f"to {s['hidden']}); transformers 5's ConvBert projects {s['hidden']} x {s['hidden']}, so no "
                "ConvBertConfig holds this tower")
    if s["attention_heads"] * 2 != s["heads"] or (s["hidden"] // s["attention_heads"]) // 2 != s["width"] // s["attention_heads"]:
        return (f"its {s['attention_heads']} attention head(s) of width {s['width'] // s['attention_heads']} out of "
                f"{s['heads']} are not half of the heads, which is the only split transformers 5's ConvBert computes")
    return None


def recorded_config(layout: Layout, source: SourceRecords) -> dict:
    s = attention_structure(layout.tower, source)
    if s is None:
        return {}
    where = f"the shapes of {_layer0(layout.tower, 'attention/self/')}*"
    facts = {"num_attention_heads": s["heads"], "head_ratio": s["heads"] // s["attention_heads"],
             "conv_kernel_size": s["kernel_size"], "num_groups": s["groups"]}
    return {k: (v, where) for k, v in facts.items()}


def bind(layout: Layout, names: list[str], source: SourceRecords) -> Layout:
    tower = layout.tower
    other = TOWERS[1 - TOWERS.index(tower)]
    present = set(names)
    if tower == "generator" and not any(n.startswith("generator/encoder/layer_") for n in names):
        raise MappingError("--tower generator: the checkpoint holds no generator (no generator/encoder/layer_* "
                           "tensors)", hint="fine-tuned checkpoints keep only the discriminator; leave out --tower")
    structure = attention_structure(tower, source)
    why = holdable(structure) if structure else None
    if why:
        raise MappingError(f"--tower {tower}: the ConvBERT {tower} cannot be converted: {why}",
                           path=source.path, hint="convert the other tower" if tower == "generator"
                           else "this checkpoint's layers are not ConvBERT's released structure")

    def embeddings_of(t: str) -> str:
        own = SCOPES[t]
        return own if t == "generator" and f"{own}/embeddings/word_embeddings" in present else "electra"

    def rules_of(t: str, part=None):
        return tower_rules(t, embeddings_scope=embeddings_of(t),
                           project=f"{SCOPES[t]}/embeddings_project/kernel" in present,
                           grouped=any(n.startswith(f"{SCOPES[t]}/encoder/") and "/g_dense/" in n for n in names),
                           head=part)

    rules = rules_of(tower)
    mine = {r.source for r in rules}
    rules += tuple(dataclasses.replace(r, target=f"{OTHER[tower]}.{r.target}")
                   for r in rules_of(other, OTHER[tower]) if r.source not in mine)
    assumptions = layout.assumptions
    if tower == "discriminator" and "discriminator_predictions/dense/kernel" in present:
        assumptions += (f"discriminator_predictions left out: {DISCRIMINATOR_HEAD_REFUSED}",)
    return dataclasses.replace(layout, mapping=Mapping(rules), bind=None, assumptions=assumptions)


MARKER = re.compile(r"^(electra|generator)/encoder/layer_\d+/attention/self/conv_attn_key/")


def _layout(tower: str) -> Layout:
    return Layout(
        name="convbert" if tower == "discriminator" else "convbert_generator",
        description=f"yitu-opensource/ConvBert TF1 checkpoint ({tower})",
        mapping=Mapping(tower_rules(tower)),
        marker=MARKER,
        # ConvBERT's modeling.py (ELECTRA's) computes the exact erf GELU for "gelu"
        faithful_activation={"gelu": "gelu", "relu": "relu", "tanh": "tanh"},
        exact_activation={"gelu": "gelu"},
        reference_activation={"gelu": "gelu_exact"},
        structural_parts=frozenset({OTHER[tower]}),
        pretraining_heads=frozenset({"mlm"}) if tower == "generator" else frozenset(),
        refused_heads={"discriminator": DISCRIMINATOR_HEAD_REFUSED},
        tower=tower,
        canonical=True,
        bind=bind,
        recorded_config=recorded_config,
    )


DISCRIMINATOR = _layout("discriminator")
GENERATOR = _layout("generator")
