"""The structure of an encoder, as far as memory is concerned, and the one adapter that builds it.

:class:`EncoderShape` is family-neutral: sizes, which parts exist, and the exact parameter count.
Everything that depends on the family (BERT, ALBERT, ELECTRA) is in :func:`encoder_shape` and the
tables just above it, so that it can move behind a family hook in one piece.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import DEFAULT_HEAD_SIZE
from ..errors import ConfigError, InputError

#: the heads an estimate knows, each a Hugging Face head module
HEAD_NAMES = ("mlm", "nsp", "classifier", "squad", "discriminator")


@dataclass(frozen=True)
class EncoderShape:
    """What the memory of one encoder model depends on."""

    family: str
    #: the Hugging Face class the converted directory loads as
    architecture: str
    #: layers run in one forward pass
    layers: int
    #: layers with weights of their own (ALBERT runs one shared block ``layers`` times)
    distinct_layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    #: width of the embedding tables (``hidden`` for BERT)
    embedding_size: int
    #: a Linear(embedding_size -> hidden) between the embeddings and the first layer
    embedding_projection: bool
    pooler: bool
    #: a dropout after each layer's feed-forward output (ALBERT's layers have none)
    ffn_dropout: bool
    hidden_act: str
    hidden_dropout: float
    attention_dropout: float
    #: the heads on top, from :data:`HEAD_NAMES`
    outputs: tuple[str, ...]
    num_labels: int = 2
    #: the masked-LM transform's width and activation (BERT: hidden and hidden_act; ALBERT and
    #: ELECTRA's generator: embedding_size; ELECTRA's generator always uses the erf GELU)
    mlm_width: int = 0
    mlm_activation: str = "gelu"
    #: the masked-LM decoder reuses the word embeddings (one tensor, one gradient)
    tied_decoder: bool = True
    #: the projection runs inside the encoder, after the attention mask is made from the
    #: embeddings (ALBERT); otherwise it replaces the embeddings' output first (ELECTRA)
    projection_in_encoder: bool = True
    #: parameters of the loaded model, counted from the checkpoint's tensors
    parameters: int = 0
    #: the dtype the tensors are stored in
    stored_dtype: str = "float32"
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def shared_layers(self) -> bool:
        return self.distinct_layers < self.layers

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads

    # parameter counts, part by part, from the structure alone
    def layer_parameters(self) -> int:
        h, i = self.hidden, self.intermediate
        return 4 * h * h + 4 * h + 2 * h + 2 * h * i + i + h + 2 * h

    def embedding_parameters(self) -> int:
        e = self.embedding_size
        return (self.vocab + self.max_positions + self.type_vocab) * e + 2 * e

    def projection_parameters(self) -> int:
        return self.embedding_size * self.hidden + self.hidden if self.embedding_projection else 0

    def head_parameters(self) -> dict[str, int]:
        h, w, v = self.hidden, self.mlm_width, self.vocab
        parts = {"pooler": h * h + h} if self.pooler else {}
        sizes = {"mlm": h * w + w + 2 * w + v + (0 if self.tied_decoder else v * w), "nsp": 2 * h + 2,
                 "classifier": h * self.num_labels + self.num_labels, "squad": 2 * h + 2,
                 "discriminator": h * h + h + h + 1}
        parts.update({name: sizes[name] for name in self.outputs})
        return parts

    def parameter_tensors(self) -> int:
        """How many parameter tensors the model has (each gets its own optimizer step count)."""
        per_head = {"mlm": 5, "nsp": 2, "classifier": 2, "squad": 2, "discriminator": 4}
        return (5 + 2 * self.embedding_projection + 16 * self.distinct_layers + 2 * self.pooler
                + sum(per_head[h] for h in self.outputs))

    def structural_parameters(self) -> int:
        return (self.embedding_parameters() + self.projection_parameters()
                + self.distinct_layers * self.layer_parameters() + sum(self.head_parameters().values()))

    def buffers_bytes(self) -> int:
        """Hugging Face's embeddings register position_ids and token_type_ids, int64, one row each."""
        return 2 * self.max_positions * 8

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outputs"] = list(self.outputs)
        d["notes"] = list(self.notes)
        d["shared_layers"] = self.shared_layers
        return d

    def with_(self, **changes) -> EncoderShape:
        return replace(self, **changes)


# ================================================================================================
# Family-specific facts: everything below this line knows BERT, ALBERT and ELECTRA by name.
# ================================================================================================

#: Hugging Face class -> (heads on top, has a pooler), for the classes a conversion writes
_ARCHITECTURES = {
    "BertForPreTraining": (("mlm", "nsp"), True),
    "BertForMaskedLM": (("mlm",), False),
    "BertForNextSentencePrediction": (("nsp",), True),
    "BertForSequenceClassification": (("classifier",), True),
    "BertForQuestionAnswering": (("squad",), False),
    "BertModel": ((), True),
    "AlbertForPreTraining": (("mlm", "nsp"), True),
    "AlbertForMaskedLM": (("mlm",), False),
    "AlbertForSequenceClassification": (("classifier",), True),
    "AlbertForQuestionAnswering": (("squad",), False),
    "AlbertModel": ((), True),
    "ElectraForPreTraining": (("discriminator",), False),
    "ElectraForMaskedLM": (("mlm",), False),
    "ElectraModel": ((), False),
}
_PREFIX = {"bert": "Bert", "albert": "Albert", "electra": "Electra", "tf2_garden": "Bert", "keras_hf": "Bert"}
#: what ``tf2pt`` writes as hidden_act for a TF config's activation (Google's BERT and ALBERT compute
#: the tanh GELU for "gelu"; ELECTRA's code is the erf GELU)
_TF_ACTIVATION = {"bert": {"gelu": "gelu_new"}, "albert": {"gelu": "gelu_new"}, "electra": {}}


def _tf_architecture(family: str, heads: dict[str, Any], tower: str) -> str:
    """The class tf2pt's ``--head auto`` writes for the heads a TF checkpoint holds."""
    if family == "electra":
        return "ElectraForMaskedLM" if tower == "generator" else "ElectraForPreTraining"
    prefix = _PREFIX.get(family, "Bert")
    if heads.get("mlm") and heads.get("nsp"):
        return f"{prefix}ForPreTraining"
    for head, suffix in (("mlm", "ForMaskedLM"), ("classifier", "ForSequenceClassification"),
                         ("squad", "ForQuestionAnswering")):
        if heads.get(head):
            return prefix + suffix
    return f"{prefix}Model"


def _belongs(family: str, tf_name: str, architecture: str, tower: str, converted: bool) -> bool:
    """Whether a checkpoint tensor is a parameter of the model the architecture class builds (a
    TF ELECTRA checkpoint holds both towers; a converted directory, only its own)."""
    if family == "electra" and not converted:
        generator = tf_name.startswith(("generator/", "generator_predictions/"))
        if tower == "generator":
            return generator or "embeddings/" in tf_name and not tf_name.startswith("electra/embeddings_project")
        return not generator
    # the QA and MLM-only classes have no pooler; a checkpoint's is unused
    return "pooler" not in tf_name or _ARCHITECTURES.get(architecture, ((), True))[1]


def _generator_sizes(rows) -> dict[str, int]:
    """ELECTRA's generator tower: its sizes, from its tensors' shapes (TF names)."""
    shapes = {r.role or r.name: r.shape for r in rows}
    sizes = {}
    for name, shape in shapes.items():
        if name == "generator/embeddings_project/kernel":
            sizes["hidden_size"] = shape[1]
        elif name == "generator/encoder/layer_0/intermediate/dense/kernel":
            sizes["intermediate_size"] = shape[1]
    sizes["num_hidden_layers"] = len({n.split("/")[2] for n in shapes if n.startswith("generator/encoder/layer_")})
    return sizes


def encoder_shape(path: str | Path, *, family: str | None = None, tower: str | None = None,
                  step: int | None = None) -> EncoderShape:
    """The :class:`EncoderShape` of a TF checkpoint or a converted directory (any source
    :func:`bertconv.inspect_checkpoint` reads), from its tensors and its config file.

    For a TF checkpoint, the model is the one ``bertconv tf2pt`` writes by default (its heads,
    its activation); ``tower`` picks ELECTRA's discriminator (default) or generator; ``step``, a
    training directory's model.ckpt-N."""
    from ..inspection import inspect_checkpoint

    report = inspect_checkpoint(path, family=family, step=step)
    fam = report.family
    if fam is None:
        raise InputError("not a model bertconv knows: no BERT, ALBERT or ELECTRA tensors found", path=path)
    declared: dict[str, Any] = {}
    if report.config_file:
        try:
            declared = json.loads(Path(report.config_file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read: {e}", path=report.config_file) from None
    declared_tower = (declared.get("bertconv") or {}).get("tower")
    tower = tower or declared_tower or "discriminator"
    converted = report.naming == "pt"
    notes: list[str] = []

    architecture = (declared.get("architectures") or [None])[0] if converted else None
    if architecture is None:
        architecture = _tf_architecture(fam, report.heads, tower)
    family_name = _family_of(architecture)

    # A converted directory's config.json is what transformers builds; for a TF checkpoint the
    # shapes decide the sizes and its config file the rest (bertconv checks that they agree).
    sizes = dict(report.inferred_config)
    if family_name == "electra" and tower == "generator" and not converted:
        sizes.update(_generator_sizes(report.tensors))
    config = {**sizes, **declared} if converted else {**declared, **sizes}
    if "num_attention_heads" not in config and "hidden_size" in config:
        config["num_attention_heads"] = max(1, config["hidden_size"] // DEFAULT_HEAD_SIZE)
        notes.append(f"num_attention_heads is in no config or shape; {config['num_attention_heads']} assumed "
                     f"(head size {DEFAULT_HEAD_SIZE})")
    if not converted:
        activation = config.get("hidden_act", "gelu")
        config["hidden_act"] = _TF_ACTIVATION.get(family_name, {}).get(activation, activation)
        if report.heads.get("num_labels"):
            config["num_labels"] = report.heads["num_labels"]
    try:
        shape = shape_from_config(config, architecture=architecture)
    except KeyError as e:
        raise ConfigError(f"{e.args[0]} is neither in a config file nor in any tensor's shape", path=path,
                          hint="put the config file beside the checkpoint") from None

    # a converted directory holds its model and nothing else (inspect does not place every head of
    # every tower: ELECTRA's generator head reads as "other")
    kept = [r for r in report.tensors if (r.category != "training" if converted else r.category == "model")
            and _belongs(family_name, r.role or r.name, architecture, tower, converted)]
    by_dtype: Counter = Counter()
    for r in kept:
        by_dtype[r.dtype] += r.bytes
    parameters = sum(r.params for r in kept)
    if shape.structural_parameters() != parameters:
        notes.append(f"the tensors hold {parameters:,} parameters, the structure {shape.structural_parameters():,}: "
                     "the estimate counts weights from the tensors")
    return shape.with_(parameters=parameters, stored_dtype=by_dtype.most_common(1)[0][0] if by_dtype else "float32",
                       notes=tuple(notes))


def _family_of(architecture: str) -> str:
    if architecture not in _ARCHITECTURES:
        raise InputError(f"no memory model for {architecture}", hint=f"one of {', '.join(sorted(_ARCHITECTURES))}")
    return "albert" if architecture.startswith("Albert") else "electra" if architecture.startswith("Electra") else "bert"


def shape_from_config(config: dict[str, Any], *, architecture: str | None = None) -> EncoderShape:
    """An :class:`EncoderShape` from a Hugging Face ``config.json`` alone (no tensors: the parameter
    count is the structure's)."""
    architecture = architecture or (config.get("architectures") or ["BertModel"])[0]
    family = _family_of(architecture)
    outputs, pooler = _ARCHITECTURES[architecture]
    hidden = int(config["hidden_size"])
    embedding_size = int(config.get("embedding_size") or hidden) if family != "bert" else hidden
    layers = int(config["num_hidden_layers"])
    distinct = layers
    if family == "albert":
        inner = int(config.get("inner_group_num", 1))
        distinct = int(config.get("num_hidden_groups", 1)) * inner
        layers *= inner
    activation = config.get("hidden_act", "gelu")
    labels = config.get("id2label")
    # ALBERT always maps its embeddings in; ELECTRA projects only when the widths differ;
    # ALBERT's layers have no dropout after the feed-forward output
    shape = EncoderShape(
        family=family, architecture=architecture, layers=layers, distinct_layers=distinct, hidden=hidden,
        heads=int(config["num_attention_heads"]), intermediate=int(config["intermediate_size"]),
        vocab=int(config["vocab_size"]), max_positions=int(config.get("max_position_embeddings", 512)),
        type_vocab=int(config.get("type_vocab_size", 2)), embedding_size=embedding_size,
        embedding_projection=family == "albert" or (family == "electra" and embedding_size != hidden),
        pooler=pooler, ffn_dropout=family != "albert", hidden_act=activation,
        hidden_dropout=float(config.get("hidden_dropout_prob", 0.1)),
        attention_dropout=float(config.get("attention_probs_dropout_prob", 0.1)), outputs=outputs,
        num_labels=int(config.get("num_labels") or (len(labels) if labels else 2)),
        mlm_width=embedding_size if family != "bert" else hidden,
        mlm_activation="gelu" if family == "electra" else activation, projection_in_encoder=family == "albert")
    return shape.with_(parameters=shape.structural_parameters())
