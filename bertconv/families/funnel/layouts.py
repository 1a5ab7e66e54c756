"""laiguokun/Funnel-Transformer's TensorFlow names -> bertconv's ``funnel_original.*`` state-dict names.

A pretraining checkpoint (``pretrain.py``'s ELECTRA objective, as the releases were trained) holds
two models: the discriminator under ``model/`` (its encoder, decoder and ``binary_proj`` /
``binary_loss`` head) and the generator under ``generator/`` (the same parts, narrower by
``width_shrink``, with ``lm_proj`` / ``lm_loss``), both reading the embeddings
``model/input/*``. A fine-tune (``classifier.py``) holds ``model/`` alone, with
``sequnece_summary`` (the original's spelling) and ``model/<task>/logit``. One layout per tower;
the other tower's tensors are recognised and left out. Which layers exist depends on
``block_size`` (encoder layers ``layer_0..``, decoder layers numbered after them), so each
checkpoint's table is written out from its names (``bind``).
"""
from __future__ import annotations

import dataclasses
import re

from ...mapping import MERGE_HEADS, MERGE_HEADS_IN_T, MERGE_HEADS_OUT_T
from ...mapping import TRANSPOSE as T
from ...mapping import Mapping, Rule
from ..base import Layout

TOWERS = ("discriminator", "generator")
SCOPES = {"discriminator": "model", "generator": "generator"}
OTHER = {"discriminator": "generator_tower", "generator": "discriminator_tower"}
PREFIX = "funnel_original"
#: pretrain.py's --width_shrink default: the generator's d_model, d_inner and n_head over the discriminator's
WIDTH_SHRINK = 0.25
#: layers per stack in the table of no one checkpoint (the largest release has 30 in its encoder)
MAX_LAYERS = 48
H, I, V, E = "hidden_size", "intermediate_size", "vocab_size", "embedding_size"

_LAYER = (
    # source below <scope>/<encoder|decoder>/layer_<n>/, target below <encoder|decoder>.layers.<i>., transform, shape
    ("rel_attn/q/kernel", "attention.q.weight", MERGE_HEADS_OUT_T, ()),
    ("rel_attn/k/kernel", "attention.k.weight", MERGE_HEADS_OUT_T, ()),
    ("rel_attn/k/bias", "attention.k.bias", MERGE_HEADS, ()),
    ("rel_attn/v/kernel", "attention.v.weight", MERGE_HEADS_OUT_T, ()),
    ("rel_attn/v/bias", "attention.v.bias", MERGE_HEADS, ()),
    ("rel_attn/r/kernel", "attention.r.weight", MERGE_HEADS_OUT_T, ()),
    ("rel_attn/r_w_bias", "attention.r_w_bias", None, ()),
    ("rel_attn/r_r_bias", "attention.r_r_bias", None, ()),
    ("rel_attn/r_s_bias", "attention.r_s_bias", None, ()),
    ("rel_attn/seg_embed", "attention.seg_embed", None, ()),
    ("rel_attn/o/kernel", "attention.o.weight", MERGE_HEADS_IN_T, ()),
    ("rel_attn/o/bias", "attention.o.bias", None, (H,)),
    ("rel_attn/layer_norm/gamma", "attention.layer_norm.weight", None, (H,)),
    ("rel_attn/layer_norm/beta", "attention.layer_norm.bias", None, (H,)),
    ("ff/layer_1/kernel", "ffn.linear_1.weight", T, (H, I)),
    ("ff/layer_1/bias", "ffn.linear_1.bias", None, (I,)),
    ("ff/layer_2/kernel", "ffn.linear_2.weight", T, (I, H)),
    ("ff/layer_2/bias", "ffn.linear_2.bias", None, (H,)),
    ("ff/layer_norm/gamma", "ffn.layer_norm.weight", None, (H,)),
    ("ff/layer_norm/beta", "ffn.layer_norm.bias", None, (H,)),
)
_EMBEDDINGS = (
    ("model/input/word_embedding/lookup_table", f"{PREFIX}.embeddings.word_embeddings.weight", None, (V, E)),
    ("model/input/layer_norm/gamma", f"{PREFIX}.embeddings.layer_norm.weight", None, (E,)),
    ("model/input/layer_norm/beta", f"{PREFIX}.embeddings.layer_norm.bias", None, (E,)),
)
_HEADS = {
    "discriminator": ("discriminator", (
        ("model/binary_proj/dense/kernel", "discriminator_predictions.dense.weight", T, (H, H)),
        ("model/binary_proj/dense/bias", "discriminator_predictions.dense.bias", None, (H,)),
        ("model/binary_loss/weight", "discriminator_predictions.prediction_weight", None, (H,)),
        ("model/binary_loss/bias", "discriminator_predictions.prediction_bias", None, (1,)),
    )),
    "generator": ("mlm", (
        ("generator/lm_proj/dense/kernel", "lm_head.dense.weight", T, (H, E)),
        ("generator/lm_proj/dense/bias", "lm_head.dense.bias", None, (E,)),
        ("generator/lm_proj/layer_norm/gamma", "lm_head.layer_norm.weight", None, (E,)),
        ("generator/lm_proj/layer_norm/beta", "lm_head.layer_norm.bias", None, (E,)),
        ("generator/lm_loss/bias", "lm_head.bias", None, (V,)),
    )),
}
#: classifier.py's scope for the task head: ``--cls_scope``, else the task's name in lower case
DEFAULT_TASK = "classifier"
_TASK = re.compile(r"^model/([^/]+)/logit/kernel$")


def classifier_rules(task: str) -> tuple[Rule, ...]:
    rows = (("model/sequnece_summary/summary/kernel", "summary.weight", T, (H, H)),
            ("model/sequnece_summary/summary/bias", "summary.bias", None, (H,)),
            (f"model/{task}/logit/kernel", "classifier.weight", T, (H, "num_labels")),
            (f"model/{task}/logit/bias", "classifier.bias", None, ("num_labels",)))
    return tuple(Rule(s, t, shape, tr, "classifier") for s, t, tr, shape in rows)


def _layers(names, scope: str, part: str) -> list[int]:
    """The layer numbers under ``<scope>/<part>/layer_<n>/`` (TF names) or ``<prefix>.<part>.layers.<n>.``
    (PyTorch names) among ``names``."""
    pattern = re.compile(rf"^{re.escape(scope)}[/.]{part}[/.]layers?[_.](\d+)[/.]")
    return sorted({int(m.group(1)) for n in names for m in [pattern.match(n)] if m})


def _rows(tower: str, encoder, decoder, *, projection: bool, head: str | None, template: bool = False):
    scope = SCOPES[tower]
    head_name, head_rows = _HEADS[tower]
    rows = [(s, t, tr, shape, head) for s, t, tr, shape in _EMBEDDINGS]
    if projection:
        rows += [(f"{scope}/encoder/input_projection/kernel", f"{PREFIX}.encoder.input_projection.weight", T, (E, H),
                  head),
                 (f"{scope}/encoder/input_projection/bias", f"{PREFIX}.encoder.input_projection.bias", None, (H,), head)]
    if template:
        # PyTorch names read backwards: every layer number a release may have, written out (a
        # ``{layer}`` row would count the encoder's and the decoder's layers as one stack). The
        # decoder's TF numbers follow the encoder's, which a table of no one checkpoint cannot
        # know: counted from 0 here
        pairs = [(part, i, i, head if part == "encoder" else head or "decoder")
                 for part in ("encoder", "decoder") for i in range(MAX_LAYERS)]
    else:
        pairs = [("encoder", n, i, head) for i, n in enumerate(encoder)]
        pairs += [("decoder", n, i, head or "decoder") for i, n in enumerate(decoder)]
    for part, n, i, in_part in pairs:
        rows += [(f"{scope}/{part}/layer_{n}/{s}", f"{PREFIX}.{part}.layers.{i}.{t}", tr, shape, in_part)
                 for s, t, tr, shape in _LAYER]
    rows += [(s, t, tr, shape, head or head_name) for s, t, tr, shape in head_rows]
    return tuple(Rule(s, t, shape, tr, part) for s, t, tr, shape, part in rows)


def tower_rules(tower: str, names, head: str | None = None) -> tuple[Rule, ...]:
    """One tower's rows for a checkpoint with ``names`` (its TF names, or the PyTorch names of a
    converted model): embeddings, projection, the encoder and decoder layers present, its head.
    ``head``: the part every row is in (the other tower's)."""
    scope = SCOPES[tower]
    encoder, decoder = _layers(names, scope, "encoder"), _layers(names, scope, "decoder")
    projection = f"{scope}/encoder/input_projection/kernel" in names
    if not encoder:  # PyTorch names: the TF numbers are the decoder's after the encoder's
        encoder = _layers(names, PREFIX, "encoder")
        decoder = [len(encoder) + i for i in _layers(names, PREFIX, "decoder")]
        projection = projection or f"{PREFIX}.encoder.input_projection.weight" in names
    return _rows(tower, encoder, decoder, projection=projection, head=head)


def bind(layout: Layout, names: list[str], source) -> Layout:
    tower = layout.tower
    present = set(names)
    if tower == "generator" and not _layers(present, "generator", "encoder"):
        from ...errors import MappingError
        raise MappingError("--tower generator: the checkpoint holds no generator (no generator/encoder/layer_* "
                           "tensors)", hint="a fine-tune keeps only the discriminator's model/; leave out --tower")
    rules = tower_rules(tower, present)
    if tower == "discriminator":
        tasks = sorted({m.group(1) for n in names for m in [_TASK.match(n)] if m})
        rules += classifier_rules(tasks[0] if tasks else DEFAULT_TASK)
    mine = {r.source for r in rules}
    other = TOWERS[1 - TOWERS.index(tower)]
    if _layers(present, SCOPES[other], "encoder"):
        rules += tuple(dataclasses.replace(r, target=f"{OTHER[tower]}.{r.target}")
                       for r in tower_rules(other, present, head=OTHER[tower]) if r.source not in mine)
    return dataclasses.replace(layout, mapping=Mapping(rules), bind=None)


@dataclasses.dataclass(frozen=True, repr=False)
class FunnelLayout(Layout):
    """A Funnel tower's layout: a model with the discriminator or generator head runs the decoder
    too, and the generator's config is the discriminator's narrowed by ``width_shrink``."""

    def exported_parts(self, heads, architecture):
        parts = super().exported_parts(heads, architecture)
        return parts | {"decoder"} if heads & {"discriminator", "mlm"} else parts

    def read_config(self, path, stored, notes=None, *, prepare=None):
        config = super().read_config(path, stored, notes, prepare=prepare)
        if self.tower != "generator":
            return config
        stated = config.extra.get("width_shrink")
        shrink = WIDTH_SHRINK if stated is None else stated
        narrowed = {f: int(getattr(config, f) * shrink)
                    for f in ("hidden_size", "intermediate_size", "num_attention_heads")}
        if notes is not None:
            where = "as --set states" if stated is not None else \
                "not in the files: pretrain.py's --width_shrink flag default (state it with --set width_shrink=...)"
            notes.append(f"the generator's d_model, d_inner and n_head are net_config.json's times width_shrink "
                         f"{shrink} ({where}; pretrain.py's get_generator_config): "
                         + ", ".join(f"{k}={v}" for k, v in narrowed.items()))
        return dataclasses.replace(config, **narrowed)


MARKER = re.compile(r"^model/input/word_embedding/lookup_table$|^model/encoder/layer_\d+/rel_attn/")


def _layout(tower: str) -> Layout:
    # the table of no one checkpoint: every row of every part, layers as templates, for names
    # read backwards (PyTorch names); bind writes each checkpoint's own
    rows = _rows(tower, [], [], projection=True, head=None, template=True)
    if tower == "discriminator":
        rows += _rows("generator", [], [], projection=False, head=None)[len(_EMBEDDINGS):]
        rows += classifier_rules(DEFAULT_TASK)
    return FunnelLayout(
        name="funnel_tf" if tower == "discriminator" else "funnel_tf_generator",
        description=f"laiguokun/Funnel-Transformer TensorFlow checkpoint ({tower})",
        mapping=Mapping(rows),
        marker=MARKER,
        # ops.gelu is the tanh approximation, ops.layer_norm_op's epsilon 1e-8
        faithful_activation={"gelu": "gelu_new", "relu": "relu", "tanh": "tanh"},
        exact_activation={"gelu": "gelu"},
        layer_norm_eps=1e-8,
        structural_parts=frozenset({OTHER[tower], "decoder"}),
        pretraining_heads=frozenset({_HEADS[tower][0]}),
        tower=tower,
        canonical=True,
        head_count_from_head_size=False,
        bind=bind,
    )


DISCRIMINATOR = _layout("discriminator")
GENERATOR = _layout("generator")
LAYOUTS = (DISCRIMINATOR, GENERATOR)
