"""The structure of an encoder, as far as memory is concerned, and the adapter that builds it.

:class:`EncoderShape` is family-neutral: sizes, which parts exist, and the exact parameter count.
What depends on the family (factorised embeddings, layers sharing one block, a head's own width,
no position table) is its ``memory`` (:class:`bertconv.families.base.MemoryStructure`); which model a TF checkpoint becomes is tf2pt's own plan.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

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
    #: a learned position table among the embeddings (RoFormer's rotary positions have none)
    position_table: bool = True
    #: weights of one encoder layer where the layer is not BERT's (ConvBERT's convolution heads and
    #: grouped feed-forward); 0: BERT's
    layer_weights: int = 0
    #: the family's own count of its structure's parameters, where the parts above do not describe
    #: it (TAPAS' seven token-type tables and table heads, MobileBERT's bottlenecks); None: theirs
    family_parameters: int | None = None
    #: the family's own settings its replay reads (CANINE's downsampling rate, Funnel's blocks)
    family_settings: dict[str, Any] = field(default_factory=dict)
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
        if self.layer_weights:
            return self.layer_weights
        h, i = self.hidden, self.intermediate
        return 4 * h * h + 4 * h + 2 * h + 2 * h * i + i + h + 2 * h

    def embedding_parameters(self) -> int:
        e = self.embedding_size
        positions = self.max_positions if self.position_table else 0
        return (self.vocab + positions + self.type_vocab) * e + 2 * e

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
        return (4 + self.position_table + 2 * self.embedding_projection + 16 * self.distinct_layers + 2 * self.pooler
                + sum(per_head[h] for h in self.outputs))

    def structural_parameters(self) -> int:
        if self.family_parameters is not None:
            return self.family_parameters
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


def encoder_shape(path: str | Path, *, family: str | None = None, tower: str | None = None,
                  step: int | None = None) -> EncoderShape:
    """The :class:`EncoderShape` of a TF checkpoint or a converted directory (any source
    bertconv reads), from its tensors and its config.

    For a TF checkpoint, the model is the one ``bertconv tf2pt`` writes by default: its plan
    (heads, sizes, activation, the tower ``tower`` picks, a training directory's ``step``). For a
    converted output, what its config.json names. Either way, the weights counted are those the
    class loads (a pooler kept beside a class without one is not)."""
    from ..families import source_view
    from ..formats import open_source

    with open_source(path, step=step) as src:
        layout, naming, to_source = source_view(src.names(), family, source=src)
        if layout is None:
            raise InputError("not a model bertconv knows: no BERT-family tensors found", path=path)
        if naming == "tf":
            from ..conversion.plan import plan_conversion

            plan = plan_conversion(src, family=family, tower=tower, allow_unknown=True)
            # the config.json tf2pt writes states these too (TAPAS' aggregation head size)
            config = {**plan.family.hf_config_extras(plan.layout), **plan.config.to_dict()}
            config["hidden_act"] = plan.layout.faithful_activation.get(config["hidden_act"], config["hidden_act"])
            if plan.num_labels is not None:
                config["num_labels"] = plan.num_labels
            architecture, fam = plan.architecture, plan.family
            ignored = set(plan.ignored_by_class)  # written beside the class, not loaded by it
            loaded = [src.info(t.source) for t in plan.tensors if t.target not in ignored]
            notes = [n for n in plan.notes if "assumed" in n]
        else:
            from ..converted import describe_converted, family_of

            _, config, architecture = describe_converted(path)
            fam = family_of(config, architecture)
            recorded = (config.get("bertconv") or {}).get("tower") if isinstance(config.get("bertconv"), dict) else None
            tower_layout = fam.towers.get(fam.tower_of(architecture, recorded))
            if tower_layout is not None and tower_layout is not layout:
                # a checkpoint of several models: the names are read through the exported tower's table
                layout, to_source = _pytorch_names(src.names(), tower_layout)
            parts = layout.exported_parts(fam.architecture_heads.get(architecture, frozenset()), architecture)
            loaded = []
            for name, source_name in to_source.items():
                match = layout.mapping.to_target(source_name)
                if name not in fam.tied and (match.rule.head is None or match.rule.head in parts):
                    loaded.append(src.info(name))
            notes = []
    try:
        shape = shape_from_config(config, architecture=architecture, family=fam)
    except KeyError as e:
        raise ConfigError(f"{e.args[0]} is neither in a config file nor in any tensor's shape", path=path,
                          hint="put the config file beside the checkpoint") from None
    by_dtype: Counter = Counter()
    for info in loaded:
        by_dtype[info.dtype] += info.nbytes
    parameters = sum(info.numel for info in loaded)
    if shape.structural_parameters() != parameters:
        notes.append(f"the tensors hold {parameters:,} parameters, the structure {shape.structural_parameters():,}: "
                     "the estimate counts weights from the tensors")
    return shape.with_(parameters=parameters, stored_dtype=by_dtype.most_common(1)[0][0] if by_dtype else "float32",
                       notes=tuple(notes))


def _pytorch_names(names, layout) -> tuple[Any, dict[str, str]]:
    """PyTorch names -> the source names of ``layout``'s table (the prefix optional)."""
    prefix = layout.family.encoder_prefix + "."
    to_source = {}
    for name in names:
        for candidate in (name, prefix + name):
            match = layout.mapping.to_source(candidate)
            if match:
                to_source[name] = match.source
                break
    return layout, to_source


def shape_from_config(config: dict[str, Any], *, architecture: str | None = None, family=None) -> EncoderShape:
    """An :class:`EncoderShape` from a Hugging Face ``config.json`` alone (no tensors: the parameter
    count is the structure's). What differs between families (factorised embeddings, shared
    layers, a head's own width, no position table) is the family's ``memory``."""
    from ..converted import family_of

    architecture = architecture or (config.get("architectures") or [None])[0]
    family = family or family_of(config, architecture)
    architecture = architecture or family.architectures[frozenset()]
    if architecture not in family.architecture_heads:
        raise InputError(f"no memory model for {architecture}",
                         hint=f"one of {', '.join(sorted(family.architecture_heads))}")
    heads = family.architecture_heads[architecture]
    hidden = int(config["hidden_size"])
    activation = config.get("hidden_act", "gelu")
    labels = config.get("id2label")
    structure = {"layers": int(config["num_hidden_layers"]), "distinct_layers": int(config["num_hidden_layers"]),
                 "embedding_size": hidden, "embedding_projection": False, "ffn_dropout": True,
                 "mlm_width": hidden, "mlm_activation": activation, "projection_in_encoder": True,
                 "vocab": int(config["vocab_size"]),
                 **family.memory.structure({**config, "architectures": [architecture]})}
    shape = EncoderShape(
        family=family.name, architecture=architecture, hidden=hidden,
        heads=int(config["num_attention_heads"]), intermediate=int(config["intermediate_size"]),
        max_positions=int(config.get("max_position_embeddings", 512)),
        type_vocab=int(config.get("type_vocab_size", 2)),
        pooler=architecture not in family.without_pooler, hidden_act=activation,
        hidden_dropout=float(config.get("hidden_dropout_prob", 0.1)),
        attention_dropout=float(config.get("attention_probs_dropout_prob", 0.1)),
        outputs=tuple(h for h in HEAD_NAMES if h in heads),
        num_labels=int(config.get("num_labels") or (len(labels) if labels else 2)), **structure)
    return shape.with_(parameters=shape.structural_parameters())
