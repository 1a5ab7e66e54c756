"""What every registered family must do, checked over every fixture of it: convert (the check
before publishing runs the family's reference), validate against the source, diff against the
source, a memory structure that holds exactly the tensors' parameters, and the way back where the
family offers one. A family is covered by being registered: one without an entry in
:data:`FIXTURES` fails :func:`test_every_registered_family_has_fixtures`.

The contract itself (required members stated, services not overridden) is checked here too."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bertconv import convert, diff, validate
from bertconv.errors import ConfigError
from bertconv.families import REGISTRY, get_family
from bertconv.families.base import CAPABILITIES, OPTIONAL, REQUIRED, SERVICES, Family
from bertconv.memory import encoder_shape

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
#: what bert_for_tf2's files never record (the head count), as the fixture's model was built
BERT_FOR_TF2_CONFIG = {"vocab_size": 124, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "intermediate_size": 48, "max_position_embeddings": 16, "type_vocab_size": 2,
                       "hidden_act": "gelu"}


@dataclass(frozen=True)
class Case:
    #: the fixture, relative to fixtures/
    path: str
    #: tf2pt's options beyond the defaults
    options: dict = field(default_factory=dict)
    #: why pt2tf refuses this model (None: the way back is expected to work, where offered)
    way_back_refused: str | None = None
    #: why the memory structure holds more parameters than the tensors (None: exactly as many)
    structure_beyond_tensors: str | None = None

    @property
    def id(self) -> str:
        return self.path.replace("/", "-") + "".join(f"-{k}" for k in self.options)


_KERAS_BERT_EPS = "layer_norm_eps"  # keras-bert's 1e-14: google-research/bert's is always 1e-12
_NO_BIASES = "RoFormer-v2 has no biases and no norm weights; the estimate's layers are BERT's"

#: family name -> its fixtures
FIXTURES: dict[str, tuple[Case, ...]] = {
    "bert": (
        Case("bert_pretrain"), Case("bert_classifier"), Case("bert_squad"), Case("bert_noheads"),
        Case("bert_adam"), Case("bert_bertadam"), Case("bert_nvidia_fp16"), Case("bert_nvidia_state"),
        Case("garden_v2"), Case("garden_v3"), Case("garden_pretrainer"), Case("hub_tf1"), Case("h5/tf_model.h5"),
        Case("savedmodel_tf2"), Case("savedmodel_tf2_mlm"),
        Case("keras_era/bert4keras_bert_ckpt"), Case("keras_era/bert4keras_bert_h5"),
        Case("keras_era/bert4keras_bert_saved"), Case("keras_era/bert4keras_classifier_ckpt"),
        Case("keras_era/bert4keras_classifier_h5"),
        Case("keras_era/bert4keras_keep_tokens_h5",
             {"keep_tokens": "keras_era/bert4keras_keep_tokens_h5/keep_tokens.json"}),
        Case("keras_era/bert_for_tf2_ckpt", {"config": BERT_FOR_TF2_CONFIG}),
        Case("keras_era/bert_for_tf2_h5", {"config": BERT_FOR_TF2_CONFIG}),
        Case("keras_era/hf_tf_classifier_ckpt"), Case("keras_era/hf_tf_pretraining_ckpt"),
        Case("keras_era/keras_bert_base_saved", way_back_refused=_KERAS_BERT_EPS,
             structure_beyond_tensors="keras-bert's base model has no pooler; transformers' BertModel builds one"),
        Case("keras_era/keras_bert_pretrain_h5", way_back_refused=_KERAS_BERT_EPS),
        Case("keras_era/keras_hub_backbone"), Case("keras_era/keras_hub_classifier"),
        Case("keras_era/keras_hub_masked_lm", {"head": "base"}),
    ),
    "albert": (Case("albert_pretrain"), Case("albert_hub")),
    "electra": (Case("electra_small"), Case("electra_small", {"tower": "generator"})),
    "convbert": (Case("convbert_pretrain"), Case("convbert_pretrain", {"tower": "generator"}),
                 Case("convbert_small_gen")),
    "roformer": (Case("roformer_google"), Case("roformer_bert4keras_ckpt"),
                 Case("keras_era/bert4keras_roformer_h5")),
    "nezha": (Case("nezha_pretrain"), Case("nezha_classifier"),
              Case("nezha_bert4keras_h5/nezha_weights.h5", way_back_refused="mlm_layer_norm_eps")),
    "roformer_v2": (Case("roformer_v2_google", structure_beyond_tensors=_NO_BIASES),
                    Case("roformer_v2_h5/tnews.weights", structure_beyond_tensors=_NO_BIASES)),
    "bigbird": (Case("bigbird_pretrain"), Case("bigbird_pretrain", {"head": "mlm"}),
                Case("bigbird_classifier", {"head": "base"}), Case("bigbird_sparse"),
                Case("bigbird_sparse", {"head": "base"})),
    "tapas": (Case("tapas_pretrain"), Case("tapas_wtq", {"settings": {"temperature": 0.0352513}}),
              Case("tapas_tabfact")),
    "mobilebert": (Case("mobilebert_opt"), Case("mobilebert_classifier"), Case("mobilebert_layer_norm")),
    "funnel": (Case("funnel_pretrain"),
               Case("funnel_pretrain", {"tower": "generator"}, way_back_refused="a generator has no checkpoint of its own"),
               Case("funnel_classifier")),
    "canine": (Case("canine_model"), Case("canine_tydi"), Case("canine_tydi", {"head": "base"})),
}

CASES = [pytest.param(name, case, id=f"{name}-{case.id}") for name, cases in FIXTURES.items() for case in cases]


def test_every_registered_family_has_fixtures():
    assert set(FIXTURES) == set(REGISTRY), "each registered family names its fixtures in FIXTURES"


def _options(case: Case, tmp_path: Path) -> dict:
    options = dict(case.options)
    if "config" in options:
        path = tmp_path / "bert_config.json"
        path.write_text(json.dumps(options["config"]))
        options["config"] = path
    if "keep_tokens" in options:
        options["keep_tokens"] = FIXTURES_DIR / options["keep_tokens"]
    return options


@pytest.mark.parametrize("name, case", CASES)
def test_family_conformance(name, case, tmp_path):
    family = get_family(name)
    source = FIXTURES_DIR / case.path
    assert source.exists(), f"{source} is committed with the repository"
    options = _options(case, tmp_path)
    out = tmp_path / "out"

    report = convert(source, out, **options)  # the check before publishing runs the reference
    assert report.family == name and report.validation is not None and report.validation.passed

    against = dict(source_config=options["config"]) if "config" in options else {}
    checked = validate(out, against=source, device="cpu", seq_len=8, tower=options.get("tower"), **against)
    assert checked.passed, checked.summary_lines()

    weights = diff(source, out, tower=options.get("tower"))
    assert weights.passed and weights.compared, weights.summary_lines()

    # the memory structure holds what the tensors hold, on both sides (the source's where the
    # estimate needs no option tf2pt was given: a config, kept tokens, a head)
    converted_shape = encoder_shape(out)
    if set(options) <= {"tower"}:
        shape = encoder_shape(source, tower=options.get("tower"))
        assert shape.parameters == converted_shape.parameters
    if case.structure_beyond_tensors is None:
        assert converted_shape.structural_parameters() == converted_shape.parameters, converted_shape.notes
    else:
        assert converted_shape.structural_parameters() > converted_shape.parameters

    if family.original_format is None:
        return
    from bertconv import pt2tf

    back = tmp_path / "back"
    if case.way_back_refused is not None:
        with pytest.raises(ConfigError, match=case.way_back_refused):
            pt2tf(out, back, allow_exact_gelu=True)
        return
    pt2tf(out, back, allow_exact_gelu=True)
    again = diff(back, out)
    assert again.passed and again.compared, again.summary_lines()


# -- the contract --------------------------------------------------------------------------------
def test_every_member_of_the_contract_is_classified():
    members = {n for n in dir(Family) if not n.startswith("_")}
    kinds = (REQUIRED, OPTIONAL, CAPABILITIES, SERVICES)
    assert members == set().union(*kinds), "a member of Family is in exactly one of base.py's contract lists"
    assert sum(len(k) for k in kinds) == len(members)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_family_states_what_the_contract_requires(name):
    family = get_family(name)
    for member in REQUIRED:
        assert member in vars(type(family)), f"{name} states {member}"
    overridden = [s for s in SERVICES if s in vars(type(family))]
    assert not overridden, f"{name} overrides the base's services {overridden}"
    assert family.layouts and family.layouts[0].canonical
    if family.two_towers is not None:
        assert set(family.towers) == set(family.two_towers.layouts)


# -- the families' place -------------------------------------------------------------------------
FAMILIES_DIR = Path(__file__).resolve().parent.parent / "bertconv" / "families"
#: the modules above the families: they call families, never the other way round
COMMANDS = {"runtime", "converted", "conversion", "validation", "memory", "inspection", "comparison", "cli"}


def _imports(path: Path) -> set[str]:
    """The bertconv modules a file under families/ imports, as top-level names below bertconv."""
    import ast

    package = path.relative_to(FAMILIES_DIR.parent.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1]
            module = (*base, *(node.module.split(".") if node.module else ()))
            names = [module] if node.module else [(*module, alias.name) for alias in node.names]
            found |= {name[1] for name in names if len(name) > 1 and name[0] == "bertconv"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bertconv."):
            found.add(node.module.split(".")[1])
    return found


def test_families_sit_below_the_commands():
    upward = {str(p.relative_to(FAMILIES_DIR)): sorted(_imports(p) & COMMANDS) for p in FAMILIES_DIR.rglob("*.py")}
    assert not {p: m for p, m in upward.items() if m}


def test_layouts_read_records_never_probe_a_reader():
    import re

    probe = re.compile(r"\b(hasattr|getattr)\(\s*(source|src|reader)\s*,")
    probes = [f"{p.relative_to(FAMILIES_DIR)}:{n}" for p in FAMILIES_DIR.rglob("*.py")
              for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if probe.search(line)]
    assert not probes
