"""What a model family is, and what one source naming of it (a layout) is.

A :class:`Family` (BERT, ALBERT, ELECTRA...) owns everything about itself: its architectures and
heads, which of its classes have no pooler, its tied weights, which PyTorch model and which float64
reference run it, its config files, and the capabilities it has (two towers, a SentencePiece
tokenizer, the way back to the original format, a memory structure of its own). Central modules
call the base's services, which read those; none of them tests a family's name.

A :class:`Layout` is one way the family's weights are named on disk (google-research's TF1 names,
TF2 Model Garden object keys, Hugging Face Keras h5...): a mapping table, how to recognise it, and
the numerics facts of the library that wrote it (what its ``"gelu"`` computes, its LayerNorm
epsilon). A family's first layout is its canonical one: the names its float64 reference reads.
Every other layout is read through it (:mod:`bertconv.families.views`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..errors import InputError
from ..formats.base import NO_RECORDS, SourceRecords
from ..config import SIZE_FIELDS
from ..mapping import Mapping, infer_sizes
from ..vocab import BERT_WORDPIECE, WordPieceConvention

if TYPE_CHECKING:
    from ..config import BertConfig

#: heads that read the pooled output: a model that has one of them cannot go without a pooler
HEADS_NEEDING_POOLER = frozenset({"nsp", "classifier"})


@dataclass(frozen=True, repr=False)
class Layout:
    """One source naming of a family. Most of its fields are the table and the facts of the
    library that wrote it; ``family`` is set when the family is built."""

    name: str
    #: what wrote files of this layout, for reports
    description: str
    mapping: Mapping
    #: a name that only this layout's checkpoints contain
    marker: re.Pattern
    #: the Hugging Face ``hidden_act`` that computes what the writing library computed for its
    #: config's activation name (google-research/bert's "gelu" is the tanh approximation)
    faithful_activation: dict[str, str]
    #: the exact-erf spelling, for ``--gelu exact``
    exact_activation: dict[str, str]
    #: what the source config's ``hidden_act`` means, in the reference pass's names, where it
    #: differs from google-research/bert's reading (a Hugging Face config's "gelu" is the erf form)
    reference_activation: dict[str, str] = field(default_factory=dict)
    #: the LayerNorm epsilon the writing library uses when its config does not say
    layer_norm_eps: float = 1e-12
    #: for layouts whose table cannot be fixed in advance (an index that depends on the layer
    #: count, a variable shared under another object's name, a scope read from the file):
    #: ``bind(layout, names, records)`` returns the layout specialised to one checkpoint
    #: (``records``: the source's :class:`~bertconv.formats.base.SourceRecords`, the empty set
    #: for names listed without a file)
    bind: Callable[["Layout", list, SourceRecords], "Layout"] | None = None
    #: config fields the source records beside its weights (a SavedModel's Keras config, a
    #: TF1 Hub module's graph): ``recorded_config(layout, records)`` -> ``{field: (value, where)}``,
    #: ``where`` naming the file or node it was read from, for the conversion's notes
    recorded_config: Callable[["Layout", SourceRecords], dict[str, tuple[Any, str]]] | None = None
    #: parts that are not heads (the pooler; ELECTRA's other tower)
    structural_parts: frozenset = frozenset({"pooler"})
    #: the heads ``--head auto`` (with no task head) and ``--head pretraining`` export
    pretraining_heads: frozenset = frozenset({"mlm", "nsp"})
    #: checkpoints holding several models (ELECTRA): which one this layout exports
    tower: str | None = None
    #: True when the family's reference reads this layout's names as they are (the original
    #: code's own names); other layouts are read through the first layout's table
    canonical: bool = False
    #: whether, with no config file, the head count may be taken as hidden_size / 64 (Google's
    #: head size); False where the writing library records no head count and its models are not
    #: all 64-wide per head: a config must then state it
    head_count_from_head_size: bool = True
    #: what the layout (bound to one checkpoint) assumed where the file records nothing, for the
    #: conversion report
    assumptions: tuple[str, ...] = ()
    #: heads no Hugging Face config of the family reproduces as this library computes them
    #: (head -> why, one sentence): exporting one is refused rather than written to compute
    #: something else
    refused_heads: dict[str, str] = field(default_factory=dict)
    #: ``recognise(names, records)``: whether a checkpoint whose names contain the marker is this
    #: layout's, for layouts that share names with another and differ by what is absent (bert4keras'
    #: BERT and RoFormer: a position table or none); None: the marker decides alone
    recognise: Callable[[list, SourceRecords], bool] | None = None
    #: config fields whose size the writing library may store otherwise than its config says
    #: (keras-bert cuts the position table to ``seq_len``; bert4keras' ``keep_tokens`` prunes the
    #: vocabulary): field -> why, in words; the weights' size is taken, with a note
    sizes_from_weights: dict[str, str] = field(default_factory=dict)
    #: what a Hugging Face config.json states for this checkpoint besides the source config, read
    #: from it when the layout is bound (TAPAS' aggregation head size: its weights' rows)
    config_fields: dict[str, Any] = field(default_factory=dict)
    family: "Family | None" = None

    def __repr__(self) -> str:
        return f"<Layout {self.name} of {self.family.name if self.family else '?'}>"

    # -- the family's facts, as seen from one of its layouts ------------------------------------
    @property
    def model_type(self) -> str:
        return self.family.model_type

    def for_checkpoint(self, names: Iterable[str], source: SourceRecords | None = None) -> "Layout":
        """This layout with its table resolved for one checkpoint (itself when nothing depends on
        it); ``source`` None: names listed without a file, which record nothing else."""
        if self.bind is None:
            return self
        return self.bind(self, list(names), source if source is not None else NO_RECORDS)

    def recognises(self, names: list[str], source: SourceRecords | None = None) -> bool:
        """Whether a checkpoint with these names is this layout's: its marker, and its
        ``recognise`` where it has one."""
        return any(self.marker.search(n) for n in names) and (
            self.recognise is None or self.recognise(names, source if source is not None else NO_RECORDS))

    def infer_sizes(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
        """Every config field the stored shapes determine through this layout's table (each row's
        symbolic shape; see :func:`bertconv.mapping.infer_sizes`). The structural parts besides
        the pooler are another model's (ELECTRA's other tower): their sizes are not this one's."""
        return infer_sizes(self.mapping, shapes, fields=SIZE_FIELDS, skip_parts=self.structural_parts - {"pooler"})

    def read_config(self, path, stored: dict[str, int], notes: list[str] | None = None, *,
                    prepare=None) -> "BertConfig":
        """A config file as this layout's library wrote it: what the file leaves out is that
        library's default (its LayerNorm epsilon), and the sizes it may store otherwise than its
        config says (:attr:`sizes_from_weights`) are the weights' (``stored``, from
        :meth:`infer_sizes`), each with a note in ``notes``."""
        import dataclasses

        from ..config import load_config_file

        config = load_config_file(path, defaults={"layer_norm_eps": self.layer_norm_eps}, prepare=prepare)
        changes = {}
        for name, why in self.sizes_from_weights.items():
            value, declared = stored.get(name), getattr(config, name)
            if value is not None and value != declared:
                changes[name] = value
                if notes is not None:
                    notes.append(f"{name}={value} as the weights store it, not the config's {declared} ({why})")
        return dataclasses.replace(config, **changes) if changes else config

    def heads_present(self, names: Iterable[str]) -> set[str]:
        """Task heads whose tensors appear among ``names`` (the pooler is a part, not a head)."""
        return {p for p in self.parts_present(names) if p not in self.structural_parts}

    def parts_present(self, names: Iterable[str]) -> set[str]:
        parts = set()
        for name in names:
            m = self.mapping.to_target(name)
            if m and m.rule.head:
                parts.add(m.rule.head)
        return parts

    def exported_parts(self, heads: frozenset, architecture: str) -> frozenset:
        """The optional parts a model of ``architecture`` with ``heads`` is made of."""
        extra = set()
        if "pooler" in self.structural_parts and architecture not in self.family.without_pooler:
            extra.add("pooler")
        return frozenset(heads | extra)

    def architecture(self, heads: frozenset) -> str:
        return self.family.architecture(heads)

    def gelu_meaning(self) -> str:
        """What this layout's library computes for ``"gelu"``, in words."""
        return "the original exact erf form" if self.faithful_activation.get("gelu") == "gelu" \
            else "the original tanh form"


@dataclass(frozen=True)
class Towers:
    """Capability: checkpoints that hold several models (ELECTRA's discriminator and generator),
    one layout exporting each."""

    #: tower -> the name of the family's layout that exports it; the first is the default
    layouts: dict[str, str]
    #: architecture -> the tower a converted model of it comes from (its head says)
    by_architecture: dict[str, str] = field(default_factory=dict)


class SentencePieceTokenizer:
    """Capability: a SentencePiece model shipped instead of vocab.txt (ALBERT), found beside the
    checkpoint and written as the family's Hugging Face tokenizer files."""

    #: the model's file names as releases ship it, in order of preference
    model_names: tuple[str, ...] = ()

    def find(self, source) -> Path | None:
        """One of :attr:`model_names` beside the checkpoint, else the one ``*.model`` there."""
        found = source.sidecar(*self.model_names)
        if found is None and source.directory is not None:
            models = sorted(p for p in Path(source.directory).glob("*.model") if p.is_file())
            found = models[0] if len(models) == 1 else None
        return found

    def write(self, directory: Path, model: Path, *, model_max_length: int) -> list[str]:
        """The tokenizer files of a Hugging Face directory (their names)."""
        raise NotImplementedError


class OriginalFormat:
    """Capability: the way back to the original code's files (``pt2tf``)."""

    #: the checkpoint prefix written, as the original code names it
    checkpoint_name: str = ""
    #: the config file written beside it
    config_file: str = ""
    #: whether the original's files hold a vocabulary (CANINE's inputs are codepoints: none)
    vocabulary: bool = True

    def config(self, hf: dict, config_path: Path, *, allow_exact_gelu: bool, notes: list[str]) -> dict:
        """A Hugging Face config.json -> the original code's config."""
        raise NotImplementedError

    @staticmethod
    def tanh_gelu_activation(hf: dict, known: dict[str, str], config_path: Path, *, allow_exact_gelu: bool,
                             notes: list[str], where: str) -> str:
        """The original's name for ``hf``'s hidden_act, for originals whose ``gelu`` is the tanh form
        (``known``: transformers' names -> the original's). transformers' exact ``gelu`` only with
        ``allow_exact_gelu``, said in a note; another is an error naming ``where`` it is looked up."""
        from ..errors import ConfigError

        act = hf.get("hidden_act", "gelu_new")
        if act == "gelu" and allow_exact_gelu:
            notes.append("hidden_act 'gelu' (exact erf) written as the original's 'gelu', which computes the tanh "
                         "approximation: the TF model's outputs differ slightly from this model's")
            return "gelu"
        if act not in known:
            raise ConfigError(f"hidden_act {act!r} has no counterpart in {where}", path=config_path,
                              hint="pass --allow-exact-gelu to write the exact form as the original's gelu anyway"
                              if act == "gelu" else None)
        return known[act]

    def table(self, family: "Family", names: list[str], original: dict) -> Layout:
        """The layout whose table the way back reads for a model with these state-dict names and
        ``original``, the config :meth:`config` wrote: the canonical one (a family whose names
        depend on the checkpoint binds it to them, or to the structure its config states)."""
        return family.layouts[0]


class MemoryStructure:
    """What a memory estimate needs to know of a family's structure beyond BERT's (the default:
    nothing), and how its forward is replayed operator by operator where it is not BERT's."""

    #: the attention the family's own modeling code always computes (``eager``: the scores
    #: materialised), whatever the estimate's setting; None: the setting's
    attention: str | None = None

    def structure(self, config: dict) -> dict[str, Any]:
        """From a Hugging Face config: any of ``layers`` (run per forward), ``distinct_layers``
        (with weights of their own), ``embedding_size``, ``embedding_projection``,
        ``position_table``, ``ffn_dropout``, ``mlm_width``, ``mlm_activation``,
        ``projection_in_encoder``, ``family_parameters`` (the family's own parameter count, where
        BERT's parts do not describe its structure), ``family_settings`` (what the family's own
        replay reads; see :class:`bertconv.memory.shape.EncoderShape`)."""
        return {}

    def replay_attention(self, replay, q, k, v, mask):
        """The attention function of one layer, from its queries, keys and values; returns its
        output and the attention weights the layer holds until it returns (or None). transformers'
        (eager or SDPA, as the estimate's setting says) by default."""
        return replay.attention(q, k, v, mask)

    def replay_mask(self, replay, source):
        """The attention mask the model makes once for its layers, from the embeddings' output
        ``source``; returns it. transformers' [batch, seq, seq] by default."""
        return replay.bert_mask(source)

    def replay_embeddings(self, replay):
        """The embeddings' forward on ``replay`` (the estimate's operators,
        ``bertconv.memory.estimate``); returns their output. BERT's by default."""
        return replay.bert_embeddings()

    def replay_layer(self, replay, x, index: int, mask):
        """One encoder layer's forward on ``replay``, from ``x``; returns its output. BERT's by default."""
        return replay.bert_layer(x, index, mask)


#: BERT's memory structure, the default
BERT_MEMORY = MemoryStructure()

#: The contract, by kind of member (docs/architecture.md's tables list the same; a test holds the
#: two together). Required: what every family states. Optional: facts whose defaults are BERT's.
#: Capabilities: objects a family opts into (None: it has none). Services: what central modules
#: call, implemented once by the base from the rest.
REQUIRED = ("name", "model_type", "architectures", "tied", "build_model", "reference")
OPTIONAL = ("state_dict_prefix", "without_pooler", "pooler_weight", "index_buffers", "config_file", "config_files",
            "head_descriptions", "task_heads", "head_tensors", "hf_config_fields", "runs_in_transformers",
            "config_pattern", "config_keys", "unrecorded_config", "heads_built_beside", "translate_config",
            "validation_inputs", "wordpiece")
CAPABILITIES = ("two_towers", "sentencepiece", "original_format", "memory", "remote_code")
SERVICES = ("layout", "architecture", "state_dict_heads", "needs_pooler", "load_model", "own_model",
            "numpy_reference_only", "reference_heads", "transformers_outputs", "tokenizer_source", "write_tokenizer", "hf_config_extras",
            "tower_of", "checkpoint_name", "to_original_config", "encoder_prefix", "find_config")


class Family:
    """A model family. A subclass (one per package under ``bertconv/families/``) states what it
    must (its architectures, its tied weights, how to build its PyTorch model, its float64
    reference; its layouts are given to the constructor) and opts into capabilities, each an
    object of its own (``two_towers``, ``sentencepiece``, ``original_format``, ``memory``).

    The methods under "services" are what central modules call. The base implements each once
    from what the family states; a family does not override them."""

    # -- required -------------------------------------------------------------------------------
    name: str = ""
    #: Hugging Face's ``model_type``; also the prefix of the encoder's state-dict names
    model_type: str = ""
    #: frozenset of heads -> Hugging Face architecture class name
    architectures: dict[frozenset, str] = {}
    #: tied weights Hugging Face state dicts may repeat: duplicate name -> the name it duplicates;
    #: each is accepted only when equal to what it duplicates
    tied: dict[str, str] = {}

    def build_model(self, config: "BertConfig", architecture: str, *, with_pooler: bool, num_labels: int):
        """bertconv's own PyTorch model of ``architecture``, its weights to be filled next (the base
        calls it on the meta device)."""
        raise NotImplementedError

    def reference(self, weights, config: "BertConfig", inputs, *, heads=None, tower: str | None = None,
                  kind: str = "numpy") -> dict:
        """The original's outputs, computed by the family's independent float64 reference over the
        canonical layout's names. ``kind``: ``numpy`` or ``tf`` (TensorFlow itself, where the
        family has such an oracle)."""
        raise NotImplementedError

    # -- optional facts (the defaults are BERT's) --------------------------------------------------
    #: the encoder's attribute in Hugging Face's classes, which prefixes its state-dict names, where
    #: it is not ``model_type`` (BigBird's classes call theirs ``bert``); empty: ``model_type``
    state_dict_prefix: str = ""
    #: architectures whose Hugging Face class has no pooler, though the checkpoint may have one
    without_pooler: frozenset = frozenset()
    #: the state-dict name of the pooler's weight: a model is built with a pooler when the weights
    #: have one (or its class needs one); None: the family has no pooler
    pooler_weight: str | None = None
    #: non-weight buffers older Hugging Face state dicts carry (position and token type ids)
    index_buffers: re.Pattern = re.compile(r"^(\w+\.)?embeddings\.(position_ids|token_type_ids)$")
    #: the config file a release ships, named when the weights cannot stand in for it
    config_file: str = "bert_config.json"
    #: config files looked for beside a checkpoint, in order
    config_files: tuple[str, ...] = ("bert_config.json", "config.json")
    #: where no file of :attr:`config_files` is found: a glob of the names the family's releases
    #: give their config (MobileBERT names it after the model), used when exactly one file matches
    config_pattern: str | None = None
    #: how inspect describes each head (and which heads inspect reports present or absent)
    head_descriptions: dict[str, str] = {"mlm": "masked LM", "nsp": "next sentence",
                                         "classifier": "sequence classifier", "squad": "SQuAD span"}
    #: heads of fine-tuned task models: ``--head auto`` exports the one present instead of the
    #: pretraining heads
    task_heads: frozenset = frozenset({"classifier", "squad"})
    #: task head -> task heads whose weights the script that trains it always creates as well,
    #: untrained: with ``--head auto`` the first is the fine-tuned one
    heads_built_beside: dict[str, frozenset] = {}
    #: head -> the original's tensors (canonical names) it needs, all of them: the heads the
    #: reference computes for a converted model (empty: every head the original has)
    head_tensors: dict[str, tuple[str, ...]] = {}
    #: what a Hugging Face config.json of this family states besides the source config
    hf_config_fields: dict[str, Any] = {"pad_token_id": 0, "position_embedding_type": "absolute",
                                        "tie_word_embeddings": True}
    #: whether ``validate --with-transformers`` can run this family's models (through
    #: :meth:`transformers_outputs`)
    runs_in_transformers: bool = False
    #: the keys the original code's config knows, which ``--set`` may state (empty: BertConfig's fields)
    config_keys: frozenset = frozenset()
    #: settings the original code takes from its run, not its files: key -> (the code's own
    #: default, where that default is); used, with a note, where neither the config nor ``--set``
    #: states them
    unrecorded_config: dict[str, tuple[Any, str]] = {}
    #: its releases' WordPiece vocabulary: the file's names, the special tokens, the segment id its
    #: models read at the classification token (Funnel: ``<cls>``, type 2)
    wordpiece: WordPieceConvention = BERT_WORDPIECE

    # -- capabilities (None: the family has none) -----------------------------------------------
    two_towers: Towers | None = None
    sentencepiece: SentencePieceTokenizer | None = None
    original_format: OriginalFormat | None = None
    #: modeling code of the family's own, written into Hugging Face directories where
    #: transformers has no class for it (:class:`bertconv.families.remote_code.RemoteCode`)
    remote_code: Any = None
    #: the memory estimate's view of the structure
    memory: MemoryStructure = BERT_MEMORY

    def __init__(self, layouts: Iterable[Layout]):
        self.layouts = tuple(layouts)
        for layout in self.layouts:
            # a layout belongs to exactly one family, set once here (the dataclass is frozen so
            # that nothing else changes it; bound copies made by ``bind`` keep the reference)
            if layout.family not in (None, self):
                raise ValueError(f"layout {layout.name} already belongs to {layout.family.name}")
            object.__setattr__(layout, "family", self)
        by_name = {layout.name: layout for layout in self.layouts}
        #: checkpoints holding several models: tower -> the layout that exports it (empty: one model)
        self.towers = {tower: by_name[name] for tower, name in
                       (self.two_towers.layouts if self.two_towers else {}).items()}
        #: architecture -> its heads
        self.architecture_heads = {arch: heads for heads, arch in self.architectures.items()}

    def __repr__(self) -> str:
        return f"<Family {self.name}>"

    def translate_config(self, original: dict) -> dict:
        """The original code's config (``--set`` applied) -> BertConfig's fields; keys it does not
        know are kept in ``extra``."""
        return original

    def validation_inputs(self, inputs: dict, config: "BertConfig") -> dict:
        """Generated validation inputs made the family's own (TAPAS: seven token-type columns);
        by default the classification token gets its segment id (:attr:`wordpiece`)."""
        if not self.wordpiece.cls_token_type_id:
            return inputs
        inputs = dict(inputs)
        types = inputs["token_type_ids"].copy()
        types[:, 0] = self.wordpiece.cls_token_type_id
        inputs["token_type_ids"] = types
        return inputs

    # -- services -------------------------------------------------------------------------------
    @property
    def encoder_prefix(self) -> str:
        """The first part of the encoder's state-dict names (``bert`` in ``bert.embeddings...``)."""
        return self.state_dict_prefix or self.model_type

    def layout(self, name: str) -> Layout:
        for layout in self.layouts:
            if layout.name == name:
                return layout
        raise InputError(f"{self.name} has no layout {name!r}",
                         hint=f"choose one of {', '.join(l.name for l in self.layouts)}")

    def architecture(self, heads: frozenset) -> str:
        try:
            return self.architectures[heads]
        except KeyError:
            raise InputError(f"no {self.model_type} architecture carries the heads "
                             f"{', '.join(sorted(heads))} together",
                             hint="choose one with --head") from None

    def state_dict_heads(self, names: Iterable[str]) -> frozenset:
        """The heads whose PyTorch names (any of their tensors) appear among ``names``."""
        names = set(names)
        canonical = self.layouts[0]
        return frozenset(rule.head for rule in canonical.mapping.rules
                         if rule.head and rule.head not in canonical.structural_parts
                         and (rule.target in names or rule.target.removeprefix(self.encoder_prefix + ".") in names))

    def needs_pooler(self, architecture: str) -> bool:
        return bool(self.architecture_heads.get(architecture, frozenset()) & HEADS_NEEDING_POOLER)

    def load_model(self, tensors: dict, config: "BertConfig", architecture: str, *, path=None,
                   num_labels: int = 2):
        """bertconv's own PyTorch model of ``architecture`` holding exactly ``tensors``: built on the
        meta device (no time or memory for values that are replaced next), then filled strictly."""
        import torch

        from ..state_dict import load_state_dict_strict

        pooler = self.pooler_weight
        has_pooler = pooler is not None and (pooler in tensors
                                             or pooler.removeprefix(self.encoder_prefix + ".") in tensors)
        with torch.device("meta"):
            model = self.build_model(config, architecture, with_pooler=self.needs_pooler(architecture) or has_pooler,
                                     num_labels=num_labels)
        load_state_dict_strict(model, tensors, self, path=path)
        return model

    def own_model(self, classes: dict[str, Any], architecture: str, config, **keywords):
        """A model of the family's own classes (architecture -> class; ``keywords`` go to the class),
        in eval mode, carrying its heads and class name as the runtime reads them."""
        if architecture not in classes:
            raise InputError(f"unknown architecture {architecture!r}", hint=f"choose one of {', '.join(classes)}")
        model = classes[architecture](config, **keywords)
        model.heads = self.architecture_heads.get(architecture, frozenset())
        model.architecture = architecture
        return model.eval()

    def numpy_reference_only(self, kind: str) -> None:
        """For :meth:`reference` of a family without a TensorFlow oracle."""
        if kind != "numpy":
            raise InputError(f"--reference {kind} covers BERT only; {self.name} is checked by its NumPy reference",
                             hint="use --reference numpy")

    def reference_heads(self, weights, architecture: str) -> list[str] | None:
        """The heads the reference is to compute for a converted model of ``architecture``: those
        its class carries whose tensors the original has (None: every head the original has).
        The original's other heads are not computed (an NSP head without a pooler need not stop
        an MLM check); a head the converted model has and the original lacks stays without a
        reference, and fails."""
        wanted = self.architecture_heads.get(architecture)
        if not self.head_tensors or wanted is None:
            return None
        return [h for h in sorted(wanted) if h in self.head_tensors
                and all(_has(weights, n) for n in self.head_tensors[h])]

    def transformers_outputs(self, model, result) -> dict:
        """Named outputs (``bertconv.outputs``) of a transformers model's forward ``result``
        (``output_hidden_states=True``), for families that ``runs_in_transformers``."""
        import torch

        from .. import outputs as out

        hidden = result.hidden_states
        named = {out.EMBEDDINGS: hidden[0], out.SEQUENCE: hidden[-1]}
        named.update({out.layer(i): h for i, h in enumerate(hidden[1:])})
        encoder = getattr(model, self.encoder_prefix, None)
        if getattr(result, "pooler_output", None) is not None:
            named[out.POOLED] = result.pooler_output
        elif isinstance(getattr(encoder, "pooler", None), torch.nn.Linear):
            # a bare linear pooler (BigBird's): the encoder applies it and its tanh to the first token
            named[out.POOLED] = encoder.activation(encoder.pooler(hidden[-1][:, 0]))
        elif getattr(encoder, "pooler", None) is not None:
            named[out.POOLED] = encoder.pooler(hidden[-1])  # the head classes do not return it
        heads = self.architecture_heads.get(type(model).__name__, frozenset())
        if heads == {"mlm", "nsp"}:
            named[out.MLM_LOGITS], named[out.NSP_LOGITS] = result.prediction_logits, result.seq_relationship_logits
        elif heads == {"squad"}:
            import torch
            named[out.SPAN_LOGITS] = torch.stack([result.start_logits, result.end_logits], dim=-1)
        elif len(heads) == 1:
            named[out.HEAD_OUTPUTS[next(iter(heads))]] = result.logits
        return named

    def find_config(self, source) -> Path | None:
        """The config file beside a checkpoint (``source``: its records, a TensorSource or a view
        of one): one of :attr:`config_files`, else the one file matching :attr:`config_pattern`."""
        found = source.sidecar(*self.config_files)
        if found is None and self.config_pattern and source.directory is not None:
            matches = sorted(p for p in Path(source.directory).glob(self.config_pattern) if p.is_file())
            found = matches[0] if len(matches) == 1 else None
        return found

    def tokenizer_source(self, source, vocab) -> Path | None:
        """A tokenizer model the family ships instead of a WordPiece vocabulary (its
        ``sentencepiece``), when none was found."""
        return self.sentencepiece.find(source) if self.sentencepiece is not None else None

    def write_tokenizer(self, directory: Path, plan, lower_case: bool | None) -> tuple[list[str], bool | None,
                                                                                     str | None]:
        """The tokenizer files of a Hugging Face directory: (files written, do_lower_case, a note
        on how casing was decided, or None). WordPiece from vocab.txt, else the family's
        SentencePiece model."""
        if plan.vocab is None and plan.tokenizer_model is not None and self.sentencepiece is not None:
            files = self.sentencepiece.write(directory, plan.tokenizer_model,
                                             model_max_length=plan.config.max_position_embeddings)
            return files, None, None
        from ..vocab import infer_lower_case, write_tokenizer_files

        if plan.vocab is None:
            return [], None, None
        note = None
        recorded = plan.recorded_lower_case
        if lower_case is None and recorded is not None:
            # the file says how its model was trained: that beats any guess from names or tokens
            lower_case = recorded
            note = f"do_lower_case={lower_case} (recorded in {plan.recorded_lower_case_origin}; override with " \
                   "--cased/--uncased)"
        elif lower_case is None:
            # the vocabulary's own name may say (Funnel's vocab.uncased.txt)
            hints = [str(Path(plan.source_path).resolve()), str(plan.vocab.path.resolve())]
            lower_case, why = infer_lower_case(plan.vocab, hints)
            note = f"do_lower_case={lower_case} ({why}; override with --cased/--uncased)"
        elif recorded is not None and recorded != lower_case:
            note = f"do_lower_case={lower_case} as asked, although {plan.recorded_lower_case_origin} records {recorded}"
        files = write_tokenizer_files(directory, plan.vocab, do_lower_case=lower_case,
                                      model_max_length=plan.config.max_position_embeddings,
                                      convention=self.wordpiece)
        return files, lower_case, note

    def hf_config_extras(self, layout: Layout) -> dict[str, Any]:
        """What a Hugging Face config.json of this family states besides the source config (and
        the bound layout's facts of one checkpoint)."""
        return {**self.hf_config_fields, **layout.config_fields}

    def tower_of(self, architecture: str, recorded: str | None) -> str | None:
        """For checkpoints of several models: the tower a converted model of ``architecture`` was
        exported from (its head says, else ``recorded``, the conversion's record; None: unknown)."""
        if self.two_towers is None:
            return recorded
        return self.two_towers.by_architecture.get(architecture) or recorded

    @property
    def checkpoint_name(self) -> str:
        """The checkpoint prefix ``pt2tf`` writes (the original format's)."""
        return self.original_format.checkpoint_name if self.original_format else ""

    def to_original_config(self, hf: dict, config_path: Path, *, allow_exact_gelu: bool,
                           notes: list[str]) -> dict:
        """A Hugging Face config.json -> the original code's config (``pt2tf``)."""
        if self.original_format is None:
            raise InputError(f"pt2tf writes no {self.name} checkpoints", path=config_path,
                             hint="pt2tf converts Hugging Face BERT models")
        return self.original_format.config(hf, config_path, allow_exact_gelu=allow_exact_gelu, notes=notes)


def _has(weights, name: str) -> bool:
    try:
        return name in weights
    except TypeError:
        return False
