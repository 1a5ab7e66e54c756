"""Planning a conversion: every source tensor is put in exactly one place (a parameter of the
model, training state that is dropped, a head that is not exported, or unknown) and every
problem is collected before a single byte of tensor data is read."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import DEFAULT_HEAD_SIZE, BertConfig, compare_configs, read_config_json
from ..errors import ConfigError, InputError, MappingError, VocabError
from ..families import Family, Layout, candidate_layouts, detect_layout, select_tower
from ..formats.base import TensorSource
from ..mapping import METADATA_NAMES, Match, training_state_kind, transformed_shape
from ..mapping.transforms import Transform, transform_named
from ..settings import apply_to, preparer
from ..vocab import Vocab, check_vocab_size, load_vocab, prune_vocab


@dataclass
class TensorPlan:
    source: str
    target: str
    transform: Transform | None
    target_shape: tuple[int, ...]
    head: str | None


@dataclass
class Plan:
    #: the source naming, bound to this checkpoint (its ``family`` is the model family)
    layout: Layout
    config: BertConfig
    config_origin: str                     # a path, or "inferred from the weights"
    heads_present: frozenset
    heads: frozenset                       # the heads exported
    architecture: str
    tensors: list[TensorPlan]
    training_state: dict[str, str]         # name -> kind ("counter", "slot:adam_m", ...)
    dropped_heads: list[str]               # source names of heads present but not exported
    unknown: list[str]
    num_labels: int | None
    vocab: Vocab | None
    #: what the user named as the source
    source_path: Path
    notes: list[str] = field(default_factory=list)
    #: a tokenizer model the family ships instead of vocab.txt (ALBERT's SentencePiece model)
    tokenizer_model: Path | None = None
    #: target names written although the architecture's class does not use them (a pooler under
    #: BertForMaskedLM): kept so that every trained weight is in the output
    ignored_by_class: list[str] = field(default_factory=list)
    #: the tokenizer's casing as the source itself records it (a TF Hub export's do_lower_case),
    #: and where it is recorded; None where it records none
    recorded_lower_case: bool | None = None
    recorded_lower_case_origin: str | None = None

    @property
    def family(self) -> Family:
        return self.layout.family

    @property
    def parameters(self) -> int:
        total = 0
        for t in self.tensors:
            n = 1
            for d in t.target_shape:
                n *= d
            total += n
        return total


def select_heads(layout: Layout, present: frozenset, requested: str) -> tuple[frozenset, list[str]]:
    notes = []
    if requested == "base":
        return frozenset(), notes
    if requested == "auto":
        task = present & layout.family.task_heads
        # a head whose fine-tuning script always builds another task head's weights too (TAPAS'
        # classifier model creates the cell-selection weights): that one is the fine-tuned head
        task -= {other for head in task for other in layout.family.heads_built_beside.get(head, ())}
        if len(task) > 1:
            raise MappingError(f"the checkpoint has several task heads ({', '.join(sorted(task))})",
                               hint="choose one with --head")
        if task:
            others = present - task
            if others:
                notes.append(f"exporting the fine-tuned {next(iter(task))} head; "
                             f"the {', '.join(sorted(others))} head(s) are left out (choose with --head)")
            return frozenset(task), notes
        return frozenset(present & layout.pretraining_heads), notes
    wanted = layout.pretraining_heads if requested == "pretraining" else frozenset({requested})
    lacking = wanted - present
    if lacking:
        found = ", ".join(sorted(present)) or "none"
        raise MappingError(f"--head {requested}: the checkpoint has no {', '.join(sorted(lacking))} head "
                           f"(heads found: {found})",
                           hint="a head missing from the checkpoint is never made up; choose one it has")
    return wanted, notes


def resolve_config(layout: Layout, source: TensorSource, *, config_path: str | Path | None,
                   notes: list[str], settings: dict | None = None) -> tuple[BertConfig, str, dict]:
    """The original's config (its file's, else inferred from the weights and the source's records),
    ``settings`` (``--set``) applied to the original code's config before it is translated."""
    config, origin, facts = _resolve_config(layout, source, config_path=config_path, notes=notes, settings=settings)
    if not facts.pop("from_file", False):
        config = apply_to(config, layout.family, settings, notes)
    return config, origin, facts


def _resolve_config(layout: Layout, source: TensorSource, *, config_path: str | Path | None,
                    notes: list[str], settings: dict | None) -> tuple[BertConfig, str, dict]:
    shapes = {i.name: i.shape for i in source}
    inferred = layout.infer_sizes(shapes) if layout.infer_sizes else {}
    if config_path is None:
        config_path = layout.family.find_config(source)
    num_labels = inferred.pop("num_labels", None)
    # Some layouts state the head count in a shape (TF2 Model Garden: [H, heads, head_size]).
    stated_heads = inferred.pop("num_attention_heads", None)
    # What the source records beside its weights (a SavedModel's Keras config, a Hub module's graph)
    recorded = layout.recorded_config(layout, source) if layout.recorded_config else {}
    if config_path is not None:
        if stated_heads is not None:
            inferred["num_attention_heads"] = stated_heads
        config = layout.read_config(config_path, inferred, notes, prepare=preparer(layout.family, settings, notes))
        problems = compare_configs(config, inferred)
        if problems:
            raise ConfigError("contradicts the weights: " + "; ".join(problems), path=config_path,
                              hint="use the config released with this checkpoint, or --config")
        disagreeing = [f"{name} is {getattr(config, name)} in the config but {value} in {where}"
                       for name, (value, where) in recorded.items()
                       if _is_size(value) and getattr(config, name, value) != value]
        if disagreeing:
            raise ConfigError("contradicts what the source records: " + "; ".join(disagreeing), path=config_path,
                              hint="use the config released with this checkpoint, or --config")
        return config, str(config_path), {"num_labels": num_labels, "from_file": True}
    if recorded:
        config, origin = _config_from_records(layout, source, inferred, stated_heads, recorded, notes)
        return config, origin, {"num_labels": num_labels}
    required = ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
                "max_position_embeddings", "type_vocab_size")
    lacking = [r for r in required if r not in inferred]
    if lacking:
        raise ConfigError(f"no config file and the weights do not determine {', '.join(lacking)}",
                          path=source.path, hint=f"pass --config {layout.family.config_file}")
    if stated_heads is not None:
        config = BertConfig(num_attention_heads=stated_heads, hidden_act="gelu",
                            layer_norm_eps=layout.layer_norm_eps, **inferred)
        notes.append(f"no config file: sizes inferred from the weights, num_attention_heads={stated_heads} "
                     f"from the attention kernels' shapes; hidden_act 'gelu' ({layout.gelu_meaning()})")
        return config, "inferred from the weights", {"num_labels": num_labels}
    if not layout.head_count_from_head_size:
        raise ConfigError(f"the weights do not record num_attention_heads ({layout.name} files never do, and "
                          f"their models are not all {DEFAULT_HEAD_SIZE}-wide per head)", path=source.path,
                          hint=f"pass --config {layout.family.config_file} stating num_attention_heads "
                               "(or put it beside the checkpoint)")
    heads = max(1, inferred["hidden_size"] // DEFAULT_HEAD_SIZE)
    config = BertConfig(num_attention_heads=heads, hidden_act="gelu", layer_norm_eps=layout.layer_norm_eps,
                        **inferred)
    notes.append(f"no config file: sizes inferred from the weights; num_attention_heads={heads} assumed "
                 f"(head size {DEFAULT_HEAD_SIZE}, as in Google's releases) and hidden_act 'gelu' "
                 f"({layout.gelu_meaning()})")
    return config, "inferred from the weights", {"num_labels": num_labels}


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _config_from_records(layout: Layout, source: TensorSource, inferred: dict, stated_heads: int | None,
                         recorded: dict, notes: list[str]) -> tuple[BertConfig, str]:
    """With no config file: the sizes the weights determine, completed by what the source records
    (the head count, the activation, the LayerNorm epsilon...). A record that contradicts the
    weights is an error, not a choice; what neither says is assumed, and the note says which is which."""
    fields = dict(inferred)
    if stated_heads is not None:
        fields["num_attention_heads"] = stated_heads
    from_records: dict[str, list[str]] = {}
    for name, (value, where) in recorded.items():
        if name in fields and fields[name] != value:
            raise ConfigError(f"{name} is {value} in {where} but {fields[name]} in the weights", path=source.path,
                              hint=f"pass --config {layout.family.config_file} with the model's real config")
        if name not in fields:
            fields[name] = value
            from_records.setdefault(where, []).append(f"{name}={value!r}" if isinstance(value, str)
                                                      else f"{name}={value}")
    required = ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
                "max_position_embeddings", "type_vocab_size")
    lacking = [r for r in required if r not in fields]
    if lacking:
        raise ConfigError(f"no config file, and neither the weights nor the source's records determine "
                          f"{', '.join(lacking)}", path=source.path, hint=f"pass --config {layout.family.config_file}")
    said = [f"{', '.join(facts)} from {where}" for where, facts in from_records.items()]
    if stated_heads is not None:
        said.insert(0, f"num_attention_heads={stated_heads} from the attention kernels' shapes")
    assumed = []
    if "num_attention_heads" not in fields:
        fields["num_attention_heads"] = max(1, fields["hidden_size"] // DEFAULT_HEAD_SIZE)
        assumed.append(f"num_attention_heads={fields['num_attention_heads']} (head size {DEFAULT_HEAD_SIZE}, "
                       "as in Google's releases)")
    if "hidden_act" not in fields:
        fields["hidden_act"] = "gelu"
        assumed.append(f"hidden_act 'gelu' ({layout.gelu_meaning()})")
    if "layer_norm_eps" not in fields:
        fields["layer_norm_eps"] = layout.layer_norm_eps
    config = BertConfig.from_dict(fields, path=source.path)
    notes.append("no config file: sizes inferred from the weights; " + "; ".join(said)
                 + (f"; assumed {' and '.join(assumed)}" if assumed else ""))
    return config, "inferred from the weights and the source's own records" if from_records \
        else "inferred from the weights"


def expected_shape(symbolic: tuple, config: BertConfig, num_labels: int | None) -> tuple[int, ...] | None:
    out = []
    for d in symbolic:
        if isinstance(d, int):
            out.append(d)
        elif d == "num_labels":
            if num_labels is None:
                return None
            out.append(num_labels)
        else:
            out.append(getattr(config, d))
    return tuple(out)


def plan_conversion(source: TensorSource, *, family: str | None = None, head: str = "auto", tower: str | None = None,
                    config_path: str | Path | None = None, vocab_path: str | Path | None = None,
                    allow_unknown: bool = False, keep_tokens: str | Path | None = None,
                    settings: dict | None = None) -> Plan:
    names = source.names()
    # --family forces its layout even where the names do not look like it: the plan then says
    # exactly which tensors are missing or unknown
    layout = detect_layout(names, family, source) or (next(candidate_layouts(family)) if family else None)
    if layout is None:
        raise InputError("no BERT-family tensors found (this is not a checkpoint of a model bertconv converts)",
                         path=source.path, hint="see `bertconv inspect` for what it holds")
    layout = select_tower(layout, tower).for_checkpoint(names, source)
    notes: list[str] = list(layout.assumptions)
    matches: dict[str, Match] = {}
    for name in names:
        m = layout.mapping.to_target(name)
        if m is not None:
            matches[name] = m
    training, unknown = {}, []
    for name in names:
        if name in matches or name in METADATA_NAMES:
            continue
        kind = training_state_kind(name, source.info(name).shape,
                                   lambda var: source.info(var).shape if var in matches else None)
        if kind:
            training[name] = kind
        else:
            unknown.append(name)

    config, origin, facts = resolve_config(layout, source, config_path=config_path, notes=notes, settings=settings)
    num_labels = facts["num_labels"]
    present = frozenset(layout.heads_present(matches))
    heads, head_notes = select_heads(layout, present, head)
    refused = sorted(heads & set(layout.refused_heads))
    if refused:
        raise MappingError(layout.refused_heads[refused[0]], path=source.path,
                           hint="choose --head base, or another head the checkpoint has; that head's weights are then "
                                "left out")
    notes += head_notes
    architecture = layout.architecture(heads)
    parts = layout.exported_parts(heads, architecture)
    # Every trained weight is kept: a pooler the class is built without (BertForMaskedLM) is
    # still written, so that AutoModel on the same directory is never partly random; the report
    # names it as ignored by the class.
    ignored_parts = (frozenset({"pooler"}) & layout.structural_parts & layout.parts_present(matches)) - parts
    parts = parts | ignored_parts

    problems = []
    expected = layout.mapping.expected(config.num_hidden_layers, parts)
    missing = [e.source for e in expected if e.source not in matches]
    if missing:
        problems.append(f"missing {len(missing)} expected tensor(s): " + ", ".join(missing[:8])
                        + (" ..." if len(missing) > 8 else ""))
    expected_sources = {e.source for e in expected}
    tensors, dropped = [], []
    for name, m in matches.items():
        if name not in expected_sources:
            if m.rule.head and m.rule.head not in parts:
                dropped.append(name)
            else:  # e.g. layer_12 in a 12-layer config
                unknown.append(name)
            continue
        info = source.info(name)
        want = expected_shape(m.rule.shape, config, num_labels) if m.rule.shape else None
        if want is not None and tuple(info.shape) != want:
            problems.append(f"{name} has shape {list(info.shape)} but the config implies {list(want)}")
        if not info.is_float:
            problems.append(f"{name} has dtype {info.dtype}, not a floating-point weight")
        tensors.append(TensorPlan(name, m.target, m.rule.transform,
                                  transformed_shape(m.rule.transform, tuple(info.shape)), m.rule.head))
    if unknown and not allow_unknown:
        shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        problems.append(f"{len(unknown)} tensor(s) are neither {layout.family.name} weights nor known training "
                        f"state: {shown} (pass --allow-unknown to drop them with a warning)")
    elif unknown:
        notes.append(f"dropped {len(unknown)} unknown tensor(s): {', '.join(unknown[:5])}"
                     + (" ..." if len(unknown) > 5 else ""))
    if problems:
        raise MappingError("; ".join(problems), path=source.path)

    vocab = None
    if vocab_path is None:
        vocab_path = source.sidecar(*layout.family.wordpiece.file_names)
    if vocab_path is not None:
        vocab = load_vocab(vocab_path)
        if keep_tokens is not None:
            vocab = prune_vocab(vocab, keep_tokens, config.vocab_size)
            notes.append(f"vocab.txt pruned to the {len(vocab)} kept tokens of {keep_tokens}, in row order")
        elif len(vocab) > config.vocab_size and "vocab_size" in layout.sizes_from_weights:
            raise VocabError(f"has {len(vocab)} tokens but the word embeddings have {config.vocab_size} rows "
                             f"({layout.sizes_from_weights['vocab_size']})", path=vocab.path,
                             hint="pass --keep-tokens FILE: the kept token ids in row order, a JSON list")
        check_vocab_size(vocab, config.vocab_size)
    elif keep_tokens is not None:
        raise VocabError("--keep-tokens names lines of a vocab.txt, and none is beside the checkpoint",
                         path=keep_tokens, hint="pass --vocab with the vocab.txt the list was made from")
    tokenizer_model = layout.family.tokenizer_source(source, vocab) if vocab is None else None
    if vocab is None and tokenizer_model is None:
        notes.append(f"no {layout.family.wordpiece.file_names[0]} beside the checkpoint: weights converted, "
                     "no tokenizer written (pass --vocab)")

    tensors.sort(key=lambda t: _target_order(t.target))
    ignored = [t.target for t in tensors if t.head in ignored_parts]
    return Plan(layout, config, origin, present, heads, architecture, tensors, training, sorted(dropped),
                sorted(unknown), num_labels, vocab, Path(source.path), notes, tokenizer_model, ignored,
                recorded_lower_case=source.lower_case, recorded_lower_case_origin=source.lower_case_origin)


def _target_order(target: str):
    # layer.10 after layer.9: sort numerically on digit runs, like a human reading the list
    import re
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", target)]


# ------------------------------------------------------------------------ the way back (pt2tf)

@dataclass
class BackPlan:
    """A conversion back to the original code's format (``pt2tf``): the family's canonical table
    read backwards. Its tensors go from a PyTorch name (``source``) to the original's
    (``target``, of ``target_shape``), through the inverse of the table's ``transform``."""
    layout: Layout
    config: BertConfig
    #: the original code's config file, as it is written
    original_config: dict
    config_path: Path
    architecture: str | None
    parts: frozenset
    #: in the order they are written (the original names, sorted)
    tensors: list[TensorPlan]
    #: tied duplicates Hugging Face saves, checked equal to what they duplicate and not written
    aliases: list[str]
    #: index buffers older state dicts carry (not weights)
    buffers: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def family(self) -> Family:
        return self.layout.family


def read_hf_config(source: TensorSource, path: Path) -> tuple[dict, Path]:
    """A PyTorch checkpoint's config.json, or the config a single ``.safetensors`` file written by
    ``tf2pt`` carries in its metadata."""
    import json

    found = source.sidecar("config.json")
    embedded = getattr(source, "metadata", {}).get("bertconv.config")
    if found is None and embedded:
        try:
            data = json.loads(embedded)
        except json.JSONDecodeError:
            raise ConfigError("the file's bertconv.config metadata is not JSON", path=path) from None
        if isinstance(data, dict):
            return data, path
    if found is None:
        raise ConfigError("no config.json beside the weights: the head count and activation are in no "
                          "tensor", path=path, hint="point at the Hugging Face model directory")
    return read_config_json(found), found


def plan_back_conversion(source: TensorSource, source_path: str | Path, *,
                         allow_exact_gelu: bool = False) -> BackPlan:
    """Every tensor of a Hugging Face checkpoint put in one place of the original format, strictly:
    each must be a weight of the family's canonical table, and every problem is reported at once
    before any data is read."""
    from ..families import default_family, family_for_model_type

    hf, config_path = read_hf_config(source, Path(source_path))
    archs = hf.get("architectures")
    architecture = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None
    family = family_for_model_type(hf.get("model_type")) if "model_type" in hf else default_family()
    if family is None:
        raise ConfigError(f"model_type is {hf.get('model_type')!r}, which bertconv does not know",
                          path=config_path, hint="pt2tf converts Hugging Face BERT models")
    notes: list[str] = []
    original = family.to_original_config(hf, config_path, allow_exact_gelu=allow_exact_gelu, notes=notes)
    layout = family.original_format.table(family, source.names(), original)
    mapping = layout.mapping

    matches: dict[str, tuple[str, Match]] = {}      # original name -> (PyTorch name, match)
    aliases, buffers, unknown, problems = [], [], [], []
    for name in source.names():
        if family.index_buffers.match(name):
            buffers.append(name)
            continue
        if name in family.tied:
            aliases.append(name)
            continue
        match = mapping.to_source(name) or mapping.to_source(family.encoder_prefix + "." + name)
        if match is None:
            unknown.append(name)
            continue
        if match.source in matches:
            problems.append(f"{name} and {matches[match.source][0]} are the same weight ({match.source})")
            continue
        matches[match.source] = (name, match)
    if unknown:
        problems.append(f"{len(unknown)} tensor(s) are not {family.name.upper()} weights: " + ", ".join(unknown[:8])
                        + (" ..." if len(unknown) > 8 else ""))

    shapes = {}
    for original_name, (name, match) in matches.items():
        info = source.info(name)
        if not info.is_float:
            problems.append(f"{name} has dtype {info.dtype}, not a floating-point weight")
        shapes[original_name] = _shape_before(match.rule.transform, tuple(info.shape), hf.get("num_attention_heads"))
    config = BertConfig.from_dict(family.translate_config(original), path=config_path)
    disagreements = compare_configs(config, {k: v for k, v in layout.infer_sizes(shapes).items()
                                             if k != "num_labels"})
    if disagreements:
        problems.append("config.json contradicts the weights: " + "; ".join(disagreements))
    parts = frozenset(layout.parts_present(matches))
    expected = {m.source for m in mapping.expected(config.num_hidden_layers, parts)}
    missing = sorted(expected - set(matches))
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): " + ", ".join(missing[:8])
                        + (" ..." if len(missing) > 8 else ""))
    extra = sorted(set(matches) - expected)
    if extra:
        problems.append(f"{len(extra)} tensor(s) beyond the config's {config.num_hidden_layers} layers: "
                        + ", ".join(extra[:8]))
    if problems:
        raise MappingError("; ".join(problems), path=source.path)

    tensors = [TensorPlan(name, original_name, match.rule.transform, shapes[original_name], match.rule.head)
               for original_name, (name, match) in sorted(matches.items())]
    return BackPlan(layout, config, original, config_path, architecture, parts, tensors,
                    sorted(aliases), sorted(buffers), notes)


def _shape_before(transform, shape: tuple[int, ...], heads=None) -> tuple[int, ...]:
    """The source-side shape of a target tensor of ``shape``: what the table's transform maps to it
    (a head-merging one: split by the config's head count ``heads``)."""
    transform = transform_named(transform)
    if transform is None:
        return shape
    before = transform.source_shape(shape, heads=heads) if transform.needs_source_shape else transform.source_shape(shape)
    if before is None:
        # a head count is in no PyTorch shape: the config's splits it
        raise MappingError(f"the way back through {transform} needs the head count, which no shape states and "
                           "config.json does not give")
    return before
