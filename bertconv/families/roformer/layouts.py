"""RoFormer v1's source namings -> Hugging Face ``RoFormer*`` state-dict names.

RoFormer v1 (ZhuiyiTechnology) is BERT with the position table replaced by rotary position
embeddings computed on the fly: its checkpoints hold Google's BERT names *without*
``bert/embeddings/position_embeddings``, and that absence is what tells them from BERT (a marker
alone cannot say that a name is missing: :func:`recognise` does). bert4keras writes the same model
(``build_transformer_model(..., model='roformer')``) as Keras HDF5 with its fixed layer names.

Two relatives are recognised only to be refused, since transformers 5 has no class that computes
them: NEZHA (Google names without a position table too, but relative positions: its
``bert_config.json`` says ``use_relative_position``; bert4keras stores the sinusoid table as
``Embedding-Relative-Position``) and RoFormer-v2 (no biases and no LayerNorm parameters).

Transformers' RoFormer has no pooler. A pooler in the source is still written, under
``roformer.pooler.dense``, so that no trained weight is lost; the RoFormer classes ignore it.
"""
from __future__ import annotations

import dataclasses
import json
import re

from ...errors import ConfigError, InputError
from ...mapping import TRANSPOSE as T
from ...mapping import Mapping, Rule
from ..base import Layout

H, I, V = "hidden_size", "intermediate_size", "vocab_size"
L = "bert/encoder/layer_{layer}/"
P = "roformer.encoder.layer.{layer}."

#: where a source's pooler is written (transformers' RoFormer has none; the name is BERT's, under
#: RoFormer's prefix)
POOLER = "roformer.pooler.dense."

GOOGLE_RULES = (
    # source (TensorFlow)                              target (PyTorch)                                  shape                  transform  part
    Rule("bert/embeddings/word_embeddings",           "roformer.embeddings.word_embeddings.weight",       (V, H)),
    Rule("bert/embeddings/token_type_embeddings",     "roformer.embeddings.token_type_embeddings.weight", ("type_vocab_size", H)),
    Rule("bert/embeddings/LayerNorm/gamma",           "roformer.embeddings.LayerNorm.weight",             (H,)),
    Rule("bert/embeddings/LayerNorm/beta",            "roformer.embeddings.LayerNorm.bias",               (H,)),
    Rule(L + "attention/self/query/kernel",           P + "attention.self.query.weight",                  (H, H),                T),
    Rule(L + "attention/self/query/bias",             P + "attention.self.query.bias",                    (H,)),
    Rule(L + "attention/self/key/kernel",             P + "attention.self.key.weight",                    (H, H),                T),
    Rule(L + "attention/self/key/bias",               P + "attention.self.key.bias",                      (H,)),
    Rule(L + "attention/self/value/kernel",           P + "attention.self.value.weight",                  (H, H),                T),
    Rule(L + "attention/self/value/bias",             P + "attention.self.value.bias",                    (H,)),
    Rule(L + "attention/output/dense/kernel",         P + "attention.output.dense.weight",                (H, H),                T),
    Rule(L + "attention/output/dense/bias",           P + "attention.output.dense.bias",                  (H,)),
    Rule(L + "attention/output/LayerNorm/gamma",      P + "attention.output.LayerNorm.weight",            (H,)),
    Rule(L + "attention/output/LayerNorm/beta",       P + "attention.output.LayerNorm.bias",              (H,)),
    Rule(L + "intermediate/dense/kernel",             P + "intermediate.dense.weight",                    (H, I),                T),
    Rule(L + "intermediate/dense/bias",               P + "intermediate.dense.bias",                      (I,)),
    Rule(L + "output/dense/kernel",                   P + "output.dense.weight",                          (I, H),                T),
    Rule(L + "output/dense/bias",                     P + "output.dense.bias",                            (H,)),
    Rule(L + "output/LayerNorm/gamma",                P + "output.LayerNorm.weight",                      (H,)),
    Rule(L + "output/LayerNorm/beta",                 P + "output.LayerNorm.bias",                        (H,)),
    Rule("bert/pooler/dense/kernel",                  POOLER + "weight",                                  (H, H),                T,    "pooler"),
    Rule("bert/pooler/dense/bias",                    POOLER + "bias",                                    (H,),                  None, "pooler"),
    Rule("cls/predictions/transform/dense/kernel",    "cls.predictions.transform.dense.weight",           (H, H),                T,    "mlm"),
    Rule("cls/predictions/transform/dense/bias",      "cls.predictions.transform.dense.bias",             (H,),                  None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/gamma", "cls.predictions.transform.LayerNorm.weight",       (H,),                  None, "mlm"),
    Rule("cls/predictions/transform/LayerNorm/beta",  "cls.predictions.transform.LayerNorm.bias",         (H,),                  None, "mlm"),
    Rule("cls/predictions/output_bias",               "cls.predictions.bias",                             (V,),                  None, "mlm"),
    # recognised so that it is reported as not exported: no RoFormer class has an NSP head
    Rule("cls/seq_relationship/output_weights",       "cls.seq_relationship.weight",                      (2, H),                None, "nsp"),
    Rule("cls/seq_relationship/output_bias",          "cls.seq_relationship.bias",                        (2,),                  None, "nsp"),
)
GOOGLE_MAPPING = Mapping(GOOGLE_RULES)

# -- bert4keras (model='roformer') -------------------------------------------------------------
# Each Keras layer group lists its weights in ``weight_names``; the sub-layer names inside a group
# (``dense``, ``dense_1``...) are generated by Keras' name counters, which restart per custom
# layer in eager mode and run across the whole process in graph mode. So a group's tensors are
# identified by their position in the group, never by their names: each entry below is a group
# and its targets in weight_names order. LayerNormalization creates beta before gamma.
G = "Transformer-{layer}-"
B4K_GROUPS = (
    # group                                   targets in weight_names order (target, leaf, transform)
    ("Embedding-Token",                       (("roformer.embeddings.word_embeddings.weight", "embeddings", None),)),
    ("Embedding-Segment",                     (("roformer.embeddings.token_type_embeddings.weight", "embeddings", None),)),
    ("Embedding-Norm",                        (("roformer.embeddings.LayerNorm.bias", "beta", None),
                                               ("roformer.embeddings.LayerNorm.weight", "gamma", None))),
    (G + "MultiHeadSelfAttention",            ((P + "attention.self.query.weight", "kernel", T),
                                               (P + "attention.self.query.bias", "bias", None),
                                               (P + "attention.self.key.weight", "kernel", T),
                                               (P + "attention.self.key.bias", "bias", None),
                                               (P + "attention.self.value.weight", "kernel", T),
                                               (P + "attention.self.value.bias", "bias", None),
                                               (P + "attention.output.dense.weight", "kernel", T),
                                               (P + "attention.output.dense.bias", "bias", None))),
    (G + "MultiHeadSelfAttention-Norm",       ((P + "attention.output.LayerNorm.bias", "beta", None),
                                               (P + "attention.output.LayerNorm.weight", "gamma", None))),
    (G + "FeedForward",                       ((P + "intermediate.dense.weight", "kernel", T),
                                               (P + "intermediate.dense.bias", "bias", None),
                                               (P + "output.dense.weight", "kernel", T),
                                               (P + "output.dense.bias", "bias", None))),
    (G + "FeedForward-Norm",                  ((P + "output.LayerNorm.bias", "beta", None),
                                               (P + "output.LayerNorm.weight", "gamma", None))),
    ("Pooler-Dense",                          ((POOLER + "weight", "kernel", T), (POOLER + "bias", "bias", None))),
    ("MLM-Dense",                             (("cls.predictions.transform.dense.weight", "kernel", T),
                                               ("cls.predictions.transform.dense.bias", "bias", None))),
    ("MLM-Norm",                              (("cls.predictions.transform.LayerNorm.bias", "beta", None),
                                               ("cls.predictions.transform.LayerNorm.weight", "gamma", None))),
    ("MLM-Bias",                              (("cls.predictions.bias", "beta", None),)),
    # a Keras Dense [H, 2]: transposed, unlike Google's output_weights
    ("NSP-Proba",                             (("cls.seq_relationship.weight", "kernel", T),
                                               ("cls.seq_relationship.bias", "bias", None))),
)
#: the sub-layer path eager-mode bert4keras gives each position of a group (the unbound table)
_EAGER_SUBLAYERS = {4: ("dense", "dense", "dense_1", "dense_1"), 8: ("dense", "dense", "dense_1", "dense_1",
                                                                    "dense_2", "dense_2", "dense_3", "dense_3")}


def _part(target: str) -> str | None:
    rule = GOOGLE_MAPPING.to_source(target.replace("{layer}", "0")).rule
    return rule.head


def _google_shape(target: str, transform) -> tuple:
    """The symbolic shape of the Keras tensor: the Google row's, flipped where the two tables
    disagree on transposing (Google's output_weights are [out, in], a Keras kernel [in, out])."""
    rule = GOOGLE_MAPPING.to_source(target.replace("{layer}", "0")).rule
    target_shape = tuple(reversed(rule.shape)) if rule.transform == T else tuple(rule.shape)
    return tuple(reversed(target_shape)) if transform == T else target_shape


def _b4k_rules(names_of_group) -> tuple[Rule, ...]:
    """The rows, with each group's source names given by ``names_of_group(group, entries)`` (one
    name per entry, in weight_names order)."""
    rules = []
    for group, entries in B4K_GROUPS:
        names = names_of_group(group, entries)
        for name, (target, _leaf, transform) in zip(names, entries):
            rules.append(Rule(name, target, _google_shape(target, transform), transform, _part(target)))
    return tuple(rules)


def _eager_names(group: str, entries) -> tuple[str, ...]:
    if len(entries) in _EAGER_SUBLAYERS:
        return tuple(f"{group}/{sub}/{leaf}:0" for sub, (_t, leaf, _x) in zip(_EAGER_SUBLAYERS[len(entries)], entries))
    return tuple(f"{group}/{leaf}:0" for _t, leaf, _x in entries)


#: the table before it is bound to a file: the names eager-mode bert4keras writes (bind() maps
#: each file by its own group order instead)
B4K_MAPPING = Mapping(_b4k_rules(_eager_names))

# -- recognition -------------------------------------------------------------------------------
#: a learned position table in any of the namings (Google, Hugging Face, bert4keras): BERT's, not RoFormer's
_POSITION_TABLE = re.compile(r"(^|[/.])position_embeddings([/.]|$)|^Embedding-Position(_\d+)?/")


def recognise(names: list[str], source=None) -> bool:
    """RoFormer, not BERT: no position table among the names."""
    return not any(_POSITION_TABLE.search(n) for n in names)


def _refuse(model: str, why: str, source) -> None:
    raise InputError(f"{model} checkpoint: {why}; transformers 5 has no {model} class, and converting it to "
                     f"RoFormer would compute something else", path=getattr(source, "path", None),
                     hint="bertconv does not convert it")


def _sidecar_config(source) -> dict | None:
    if source is None or not hasattr(source, "sidecar"):
        return None
    path = source.sidecar("bert_config.json", "config.json")
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"not readable as JSON ({e})", path=path) from None


def refuse_relative_positions(config: dict | None, source=None) -> None:
    """NEZHA's config states its relative positions: refuse (see the module docstring)."""
    if config and (config.get("use_relative_position") or "max_relative_position" in config):
        _refuse("NEZHA", "its config sets use_relative_position/max_relative_position (relative position "
                "embeddings, not RoFormer's rotary ones)", source)


def assumptions(config: dict | None, has_mlm: bool) -> tuple[str, ...]:
    """What the conversion takes from bert4keras where the files say nothing, for the report."""
    said = []
    if config is not None and "layer_norm_eps" not in config:
        said.append(f"LayerNorm epsilon {ROFORMER_LAYER_NORM_EPS} assumed (bert4keras' RoFormer; the config "
                    "states none)")
    if has_mlm:
        said.append("the MLM head's LayerNorm epsilon is 1e-12 in bert4keras; transformers has one "
                    "layer_norm_eps, so the head uses the encoder's: mlm_logits move by about 2e-6")
    return tuple(said)


def _bind_google(layout: Layout, names: list[str], source=None) -> Layout:
    encoder = [n for n in names if n.startswith("bert/encoder/layer_")]
    if encoder and not any(n.endswith("LayerNorm/gamma") for n in encoder) \
            and not any(n.endswith("/bias") for n in encoder):
        _refuse("RoFormer-v2", "its layers have no biases and no LayerNorm parameters", source)
    config = _sidecar_config(source)
    refuse_relative_positions(config, source)
    has_mlm = "cls/predictions/transform/LayerNorm/gamma" in names
    return dataclasses.replace(layout, bind=None, assumptions=assumptions(config, has_mlm))


def _natural(text: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


#: the order Keras creates a layer's weights in (Dense: kernel, bias; bert4keras LayerNorm: beta, gamma)
_LEAF_ORDER = {"embeddings": 0, "kernel": 0, "beta": 0, "bias": 1, "gamma": 1}


def _leaf(name: str) -> str:
    return name.rsplit("/", 1)[-1].split(":", 1)[0]


def group_weights(names: list[str], source=None) -> dict[str, list[str]]:
    """Each Keras layer group -> its weights' names in weight_names order.

    The HDF5 reader states it (``layer_weights``). Where a source does not (a listing without the
    file), it is rebuilt from the names: within a group bert4keras' sub-layers are numbered in
    creation order (``dense``, ``dense_1``..., or ``dense_7``...``dense_10`` in graph mode, where
    the group's prefix may also carry a ``_1``) and each layer creates kernel before bias and beta
    before gamma, so a natural sort on the sub-layer and that leaf order give weight_names back.
    """
    stated = getattr(source, "layer_weights", None)
    if stated:
        return {group: list(members) for group, members in stated.items()}
    groups: dict[str, list[str]] = {}
    for name in names:
        if "/" not in name:
            continue
        group = re.sub(r"_\d+$", "", name.split("/", 1)[0])
        groups.setdefault(group, []).append(name)
    for members in groups.values():
        members.sort(key=lambda n: (_natural(n.split("/", 1)[1].rsplit("/", 1)[0] if n.count("/") > 1 else ""),
                                    _LEAF_ORDER.get(_leaf(n), 2)))
    return groups


def _bind_b4k(layout: Layout, names: list[str], source=None) -> Layout:
    if any(re.match(r"^Embedding-Relative-Position(_\d+)?/", n) for n in names):
        _refuse("NEZHA", "it has bert4keras' Embedding-Relative-Position table (relative positions)", source)
    groups = group_weights(names, source)
    attention = [n for g, ns in groups.items() if g.endswith("-MultiHeadSelfAttention") for n in ns]
    has_norm = any(g.endswith("-Norm") for g in groups)
    if attention and not has_norm and not any(_leaf(n) == "bias" for n in attention):
        _refuse("RoFormer-v2", "its layers have no biases and no LayerNorm parameters", source)
    config = _sidecar_config(source)
    refuse_relative_positions(config, source)
    rules = []
    for pattern, entries in B4K_GROUPS:
        regex = re.compile(re.escape(pattern).replace(re.escape("{layer}"), r"(\d+)") + "$")
        for group, members in groups.items():
            m = regex.match(group)
            # a group that is not what bert4keras writes for this layer stays unmapped, and so is
            # reported as unknown rather than guessed
            if not m or len(members) != len(entries) or \
                    any(_leaf(n) != leaf for n, (_t, leaf, _x) in zip(members, entries)):
                continue
            for name, (target, _leaf_name, transform) in zip(members, entries):
                shape = _google_shape(target, transform)
                if m.groups():
                    target = target.replace("{layer}", m.group(1))
                rules.append(Rule(name, target, shape, transform, _part(target)))
    mapping = Mapping(rules)
    has_mlm = any(rule.head == "mlm" for rule in rules)
    return dataclasses.replace(layout, mapping=mapping, bind=None, assumptions=assumptions(config, has_mlm),
                               infer_sizes=lambda shapes: infer_sizes_through(mapping, shapes))


_LAYER_OF_TARGET = re.compile(r"^roformer\.encoder\.layer\.(\d+)\.")


# -- bert4keras TF object checkpoint (model.save_weights('best_model.weights')) ----------------
# Keys are positional only, ``layer_with_weights-N/<attribute>``, N counting the model's layers
# that have weights in model.layers order: 0 Embedding-Token, 1 Embedding-Segment, 2 Embedding-Norm
# (RoFormer has no position table: BERT's third layer is gone), then four per encoder layer
# (attention, its Norm, feed-forward, its Norm) from 3, then the heads in the graph's order
# (MLM-Dense, MLM-Norm, MLM-Bias, Pooler-Dense for a model with both). The heads are told apart by
# shape and neighbours, and what was read is stated in the report.
_CKPT_KEY = re.compile(r"^layer_with_weights-(\d+)/(.+)/\.ATTRIBUTES/VARIABLE_VALUE$")
#: a group's attributes in the order of its B4K_GROUPS entries, where they are not the entries'
#: leaves (bert4keras' own layers keep their Dense sub-layers as attributes)
_CKPT_ATTRIBUTES = {
    G + "MultiHeadSelfAttention": tuple(f"{x}_dense/{leaf}" for x in "qkvo" for leaf in ("kernel", "bias")),
    G + "FeedForward": tuple(f"{x}_dense/{leaf}" for x in ("i0", "o") for leaf in ("kernel", "bias")),
}


def _ckpt_key(index: int, attribute: str) -> str:
    return f"layer_with_weights-{index}/{attribute}/.ATTRIBUTES/VARIABLE_VALUE"


def recognise_checkpoint(names: list[str], source=None) -> bool:
    """bert4keras' RoFormer (and NEZHA, RoFormer-v2, refused when bound): no position table third,
    where bert4keras' BERT keeps it."""
    return _ckpt_key(2, "embeddings") not in set(names) and _ckpt_key(0, "embeddings") in set(names)


def _bind_checkpoint(layout: Layout, names: list[str], source=None) -> Layout:
    groups: dict[int, dict[str, str]] = {}
    for name in names:
        m = _CKPT_KEY.match(name)
        if m:
            groups.setdefault(int(m.group(1)), {})[m.group(2)] = name
    entries_of = dict(B4K_GROUPS)
    shape = (lambda n: tuple(source.info(n).shape)) if source is not None else (lambda n: ())

    def attributes(index):
        return set(groups.get(index, {}))

    if any(attributes(i) == {"embeddings"} for i in groups if i > 1):
        _refuse("NEZHA", "it has a third embedding table (bert4keras' Embedding-Relative-Position: relative "
                "positions)", source)
    if any({a for a in attributes(i) if a.endswith("/kernel")} == {f"{x}_dense/kernel" for x in "qkvo"}
           and not any(a.endswith("/bias") for a in attributes(i)) for i in groups):
        _refuse("RoFormer-v2", "its layers have no biases and no LayerNorm parameters", source)
    config = _sidecar_config(source)
    refuse_relative_positions(config, source)

    rules: list[Rule] = []

    def take(index: int, group: str, layer: int | None = None) -> None:
        entries = entries_of[group]
        keys = _CKPT_ATTRIBUTES.get(group) or tuple(leaf for _t, leaf, _x in entries)
        for attribute, (target, _leaf_name, transform) in zip(keys, entries):
            shape_ = _google_shape(target, transform)
            if layer is not None:
                target = target.replace("{layer}", str(layer))
            rules.append(Rule(_ckpt_key(index, attribute), target, shape_, transform, _part(target)))

    for index, group in enumerate(("Embedding-Token", "Embedding-Segment")):
        if attributes(index) == {"embeddings"}:
            take(index, group)
    if attributes(2) == {"beta", "gamma"}:
        take(2, "Embedding-Norm")
    layer, index = 0, 3
    while (attributes(index) == set(_CKPT_ATTRIBUTES[G + "MultiHeadSelfAttention"]) and attributes(index + 1) == {"beta", "gamma"}
           and attributes(index + 2) == set(_CKPT_ATTRIBUTES[G + "FeedForward"])
           and attributes(index + 3) == {"beta", "gamma"}):
        take(index, G + "MultiHeadSelfAttention", layer)
        take(index + 1, G + "MultiHeadSelfAttention-Norm", layer)
        take(index + 2, G + "FeedForward", layer)
        take(index + 3, G + "FeedForward-Norm", layer)
        layer, index = layer + 1, index + 4

    hidden = shape(_ckpt_key(0, "embeddings"))[1:2]
    heads = sorted(i for i in groups if i >= index)
    read, mlm, pooler = [], None, None
    for position, i in enumerate(heads):
        following = heads[position + 1] if position + 1 < len(heads) else None
        if attributes(i) == {"kernel", "bias"}:
            kernel = shape(_ckpt_key(i, "kernel"))
            square = len(kernel) == 2 and kernel[0] == kernel[1] and kernel[:1] == hidden
            if square and mlm is None and following is not None and attributes(following) == {"beta", "gamma"}:
                mlm = i
                take(i, "MLM-Dense")
                take(following, "MLM-Norm")
                read.append(f"{i} MLM-Dense and {following} MLM-Norm (a square dense followed by a LayerNorm)")
            elif square and pooler is None:
                pooler = i
                take(i, "Pooler-Dense")
                read.append(f"{i} Pooler-Dense (a square dense not followed by a LayerNorm)")
            elif pooler is not None and following is None and kernel[:1] == hidden and kernel[1:] == (2,) \
                    and any(attributes(j) == {"beta"} for j in heads):
                take(i, "NSP-Proba")
                read.append(f"{i} NSP-Proba (a last [H, 2] dense in a model with the masked-LM head)")
        elif attributes(i) == {"beta"}:
            take(i, "MLM-Bias")
            read.append(f"{i} MLM-Bias (a beta-only vector)")
    notes = [f"positional checkpoint: {layer} encoder layer(s) in layer_with_weights-3 to -{index - 1}, four each; "
             "read " + ("; ".join(read) if read else "no heads")] if source is not None else []
    known = {r.source for r in rules}
    left = sorted({i for i in groups for n in groups[i].values() if n not in known})
    if left:
        notes.append("layer_with_weights-" + ", -".join(str(i) for i in left)
                     + " match no part of bert4keras' RoFormer by shape and order: left unmapped")
    mapping = Mapping(rules)
    has_mlm = mlm is not None
    return dataclasses.replace(layout, mapping=mapping, bind=None,
                               assumptions=tuple(notes) + assumptions(config, has_mlm),
                               infer_sizes=lambda shapes: infer_sizes_through(mapping, shapes))


def infer_sizes_through(mapping: Mapping, shapes: dict) -> dict[str, int]:
    """Every config field the shapes determine through ``mapping`` (not the head count, and not
    max_position_embeddings: rotary positions have no table)."""
    by_target, layers = {}, set()
    for name, shape in shapes.items():
        m = mapping.to_target(name)
        if m is not None:
            by_target[m.target] = tuple(shape)
            # bound tables name each layer outright, so the layer is read off the target
            layer = _LAYER_OF_TARGET.match(m.target)
            if layer:
                layers.add(int(layer.group(1)))
    word = by_target.get("roformer.embeddings.word_embeddings.weight")
    token_type = by_target.get("roformer.embeddings.token_type_embeddings.weight")
    intermediate = by_target.get("roformer.encoder.layer.0.intermediate.dense.weight")  # source [in, out]
    sizes = {
        "vocab_size": word[0] if word else None,
        "hidden_size": word[1] if word else None,
        "type_vocab_size": token_type[0] if token_type else None,
        "intermediate_size": intermediate[1] if intermediate and len(intermediate) == 2 else None,
        "num_hidden_layers": (max(layers) + 1) if layers else None,
    }
    return {k: v for k, v in sizes.items() if v is not None}


#: the writing code's LayerNorm epsilon in the encoder: bert4keras' LayerNormalization default
#: (K.epsilon()), which its RoFormer keeps; its MLM-Norm passes 1e-12 (see reference.py)
ROFORMER_LAYER_NORM_EPS = 1e-7
#: bert4keras registers the exact erf GELU as "gelu"
_EXACT = {"gelu": "gelu", "gelu_erf": "gelu", "relu": "relu", "tanh": "tanh", "swish": "silu", "linear": "linear"}

GOOGLE = Layout(
    name="google_roformer",
    description="RoFormer v1 TF1 checkpoint (Google's BERT names without a position table)",
    mapping=GOOGLE_MAPPING,
    # as BERT's marker: TF1 keys never end in a Keras ":0" nor hold a TF2 object path (Hugging
    # Face's TF object checkpoints begin with bert/embeddings/ and name their position table otherwise)
    marker=re.compile(r"^bert/(embeddings|encoder/layer_\d+)/(?!.*(:\d+$|/\.ATTRIBUTES/))"),
    recognise=recognise,
    faithful_activation=_EXACT,
    exact_activation=_EXACT,
    reference_activation={"gelu": "gelu_exact"},
    layer_norm_eps=ROFORMER_LAYER_NORM_EPS,
    infer_sizes=lambda shapes: infer_sizes_through(GOOGLE_MAPPING, shapes),
    bind=_bind_google,
    pretraining_heads=frozenset({"mlm"}),
    canonical=True,
)

BERT4KERAS = Layout(
    name="bert4keras_roformer",
    description="bert4keras RoFormer (model='roformer') Keras HDF5",
    mapping=B4K_MAPPING,
    marker=re.compile(r"^(Embedding-Token|Transformer-\d+-MultiHeadSelfAttention)(_\d+)?/"),
    recognise=recognise,
    faithful_activation=_EXACT,
    exact_activation=_EXACT,
    reference_activation={"gelu": "gelu_exact"},
    layer_norm_eps=ROFORMER_LAYER_NORM_EPS,
    infer_sizes=lambda shapes: infer_sizes_through(B4K_MAPPING, shapes),
    bind=_bind_b4k,
    pretraining_heads=frozenset({"mlm"}),
)

BERT4KERAS_CHECKPOINT = Layout(
    name="bert4keras_roformer_checkpoint",
    description="bert4keras RoFormer saved with save_weights as a TF object checkpoint (positional keys)",
    mapping=Mapping(()),
    marker=re.compile(r"^layer_with_weights-\d+/q_dense/kernel/\.ATTRIBUTES/VARIABLE_VALUE$"),
    recognise=recognise_checkpoint,
    faithful_activation=_EXACT,
    exact_activation=_EXACT,
    reference_activation={"gelu": "gelu_exact"},
    layer_norm_eps=ROFORMER_LAYER_NORM_EPS,
    bind=_bind_checkpoint,
    pretraining_heads=frozenset({"mlm"}),
    # nothing in the checkpoint records the head count, and RoFormers are not all 64-wide per head
    head_count_from_head_size=False,
)

LAYOUTS = (GOOGLE, BERT4KERAS, BERT4KERAS_CHECKPOINT)
