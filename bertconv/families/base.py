"""What a model family is, and what one source naming of it (a layout) is.

A :class:`Family` (BERT, ALBERT, ELECTRA...) owns everything about itself: its architectures and
heads, which of its classes have no pooler, its tied weights, which PyTorch model and which float64
reference run it, its config files and its tokenizer. Central modules call these hooks; none of
them tests a family's name.

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
from ..mapping import Mapping

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
    #: every config field the shapes determine: ``infer_sizes({name: shape})``
    infer_sizes: Callable[[dict], dict] | None = None
    #: for layouts whose table cannot be fixed in advance (an index that depends on the layer
    #: count, a variable shared under another object's name, a scope read from the file):
    #: ``bind(layout, names, source)`` returns the layout specialised to one checkpoint
    bind: Callable[["Layout", list, object], "Layout"] | None = None
    #: config fields the source records beside its weights (a SavedModel's Keras config, a
    #: TF1 Hub module's graph): ``recorded_config(layout, source)`` -> ``{field: (value, where)}``,
    #: ``where`` naming the file or node it was read from, for the conversion's notes
    recorded_config: Callable[["Layout", object], dict[str, tuple[Any, str]]] | None = None
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
    #: ``recognise(names, source)``: whether a checkpoint whose names contain the marker is this
    #: layout's, for layouts that share names with another and differ by what is absent (bert4keras'
    #: BERT and RoFormer: a position table or none); None: the marker decides alone
    recognise: Callable[[list, object], bool] | None = None
    #: config fields whose size the writing library may store otherwise than its config says
    #: (keras-bert cuts the position table to ``seq_len``; bert4keras' ``keep_tokens`` prunes the
    #: vocabulary): field -> why, in words; the weights' size is taken, with a note
    sizes_from_weights: dict[str, str] = field(default_factory=dict)
    family: "Family | None" = None

    def __repr__(self) -> str:
        return f"<Layout {self.name} of {self.family.name if self.family else '?'}>"

    # -- the family's facts, as seen from one of its layouts ------------------------------------
    @property
    def model_type(self) -> str:
        return self.family.model_type

    def for_checkpoint(self, names: Iterable[str], source=None) -> "Layout":
        """This layout with its table resolved for one checkpoint (itself when nothing depends on it)."""
        return self.bind(self, list(names), source) if self.bind is not None else self

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


class Family:
    """A model family. Subclasses (one per package under ``bertconv/families/``) set the class
    attributes and override the hooks that differ; the defaults are BERT's way."""

    name: str = ""
    #: Hugging Face's ``model_type``; also the prefix of the encoder's state-dict names
    model_type: str = ""
    #: frozenset of heads -> Hugging Face architecture class name
    architectures: dict[frozenset, str] = {}
    #: architectures whose Hugging Face class has no pooler, though the checkpoint may have one
    without_pooler: frozenset = frozenset()
    #: tied weights Hugging Face state dicts may repeat: duplicate name -> the name it duplicates;
    #: each is accepted only when equal to what it duplicates
    tied: dict[str, str] = {}
    #: non-weight buffers older Hugging Face state dicts carry (position and token type ids)
    index_buffers: re.Pattern = re.compile(r"^(\w+\.)?embeddings\.(position_ids|token_type_ids)$")
    #: the config file a release ships, named when the weights cannot stand in for it
    config_file: str = "bert_config.json"
    #: config files looked for beside a checkpoint, in order
    config_files: tuple[str, ...] = ("bert_config.json", "config.json", "albert_config.json")
    #: how inspect describes each head (and which heads inspect reports present or absent)
    head_descriptions: dict[str, str] = {"mlm": "masked LM", "nsp": "next sentence",
                                         "classifier": "sequence classifier", "squad": "SQuAD span"}
    #: heads of fine-tuned task models: ``--head auto`` exports the one present instead of the
    #: pretraining heads
    task_heads: frozenset = frozenset({"classifier", "squad"})
    #: the checkpoint prefix ``pt2tf`` writes, as the original code names it
    checkpoint_name: str = "bert_model.ckpt"
    #: whether ``validate --with-transformers`` can run this family's models (see
    #: :meth:`transformers_outputs`)
    runs_in_transformers: bool = False

    def __init__(self, layouts: Iterable[Layout], tower_layouts: dict[str, str] | None = None):
        self.layouts = tuple(layouts)
        for layout in self.layouts:
            # a layout belongs to exactly one family, set once here (the dataclass is frozen so
            # that nothing else changes it; bound copies made by ``bind`` keep the reference)
            if layout.family not in (None, self):
                raise ValueError(f"layout {layout.name} already belongs to {layout.family.name}")
            object.__setattr__(layout, "family", self)
        by_name = {layout.name: layout for layout in self.layouts}
        #: checkpoints holding several models: tower -> the layout that exports it
        self.towers = {tower: by_name[name] for tower, name in (tower_layouts or {}).items()}
        #: architecture -> its heads
        self.architecture_heads = {arch: heads for heads, arch in self.architectures.items()}

    def __repr__(self) -> str:
        return f"<Family {self.name}>"

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
                         and (rule.target in names or rule.target.removeprefix(self.model_type + ".") in names))

    def needs_pooler(self, architecture: str) -> bool:
        return bool(self.architecture_heads.get(architecture, frozenset()) & HEADS_NEEDING_POOLER)

    # -- hooks --------------------------------------------------------------------------------
    def load_model(self, tensors: dict, config: "BertConfig", architecture: str, *, path=None,
                   num_labels: int = 2):
        """bertconv's own PyTorch model of ``architecture`` holding exactly ``tensors``."""
        raise NotImplementedError

    def reference(self, weights, config: "BertConfig", inputs, *, heads=None, tower: str | None = None,
                  kind: str = "numpy") -> dict:
        """The original's outputs, computed by the family's independent float64 reference over the
        canonical layout's names. ``kind``: ``numpy`` or ``tf`` (TensorFlow itself, where the
        family has such an oracle)."""
        raise NotImplementedError

    def numpy_reference_only(self, kind: str) -> None:
        if kind != "numpy":
            raise InputError(f"--reference {kind} covers BERT only; {self.name} is checked by its NumPy reference",
                             hint="use --reference numpy")

    def reference_heads(self, weights, architecture: str) -> list[str] | None:
        """The heads the reference is to compute for a converted model of ``architecture`` (None:
        every head the original has)."""
        return None

    def tokenizer_source(self, source, vocab) -> Path | None:
        """A tokenizer model the family ships instead of vocab.txt (ALBERT's SentencePiece), when
        no vocabulary was found."""
        return None

    def write_tokenizer(self, directory: Path, plan, lower_case: bool | None) -> tuple[list[str], bool | None,
                                                                                     str | None]:
        """The tokenizer files of a Hugging Face directory: (files written, do_lower_case, a note
        on how casing was decided, or None)."""
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
            hints = [str(Path(plan.source_path).resolve()), str(plan.vocab.path.resolve().parent)]
            lower_case, why = infer_lower_case(plan.vocab, hints)
            note = f"do_lower_case={lower_case} ({why}; override with --cased/--uncased)"
        elif recorded is not None and recorded != lower_case:
            note = f"do_lower_case={lower_case} as asked, although {plan.recorded_lower_case_origin} records {recorded}"
        files = write_tokenizer_files(directory, plan.vocab, do_lower_case=lower_case,
                                      model_max_length=plan.config.max_position_embeddings)
        return files, lower_case, note

    def hf_config_extras(self, layout: Layout) -> dict[str, Any]:
        """What a Hugging Face config.json of this family states besides the source config."""
        return {"pad_token_id": 0, "position_embedding_type": "absolute", "tie_word_embeddings": True}

    def transformers_outputs(self, model, result) -> dict:
        """Named outputs (``bertconv.outputs``) of a transformers model's forward ``result``."""
        raise NotImplementedError

    def memory_structure(self, config: dict) -> dict[str, Any]:
        """What a memory estimate needs to know of this family's structure beyond BERT's, from a
        Hugging Face config: any of ``layers`` (run per forward), ``distinct_layers`` (with weights
        of their own), ``embedding_size``, ``embedding_projection``, ``ffn_dropout``,
        ``mlm_width``, ``mlm_activation``, ``projection_in_encoder`` (see
        :class:`bertconv.memory.shape.EncoderShape`). BERT's: none."""
        return {}

    def tower_of(self, architecture: str, recorded: str | None) -> str | None:
        """For checkpoints of several models: the tower a converted model of ``architecture`` was
        exported from (its head says, else ``recorded``, the conversion's record; None: unknown)."""
        return recorded

    def to_original_config(self, hf: dict, config_path: Path, *, allow_exact_gelu: bool,
                           notes: list[str]) -> dict:
        """A Hugging Face config.json -> the original code's config (``pt2tf``)."""
        raise InputError(f"pt2tf writes no {self.name} checkpoints", path=config_path,
                         hint="pt2tf converts Hugging Face BERT models")
