"""RoFormer-v2: the release format (Google names, kernels only) and a bert4keras h5 fine-tune as the
repository's scripts write it, both made by bert4keras itself (fixtures/make_roformer_v2_fixtures.py),
convert to directories that carry RoFormer-v2's own modeling code; transformers loads them offline
with trust_remote_code in a fresh process and meets bert4keras' outputs, the weightless MLM head
included."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bertconv.comparison import diff
from bertconv.conversion import convert
from bertconv.families import detect_layout, get_family
from bertconv.formats import open_source
from bertconv.inspection import inspect_checkpoint
from bertconv.validation import validate

from .conftest import FIXTURES, missing_fixture
from .remote_code_run import TOLERANCE, imported_modules, run_remote

GOOGLE = FIXTURES / "roformer_v2_google"
H5 = FIXTURES / "roformer_v2_h5" / "tnews.weights"
#: fixture -> (source, layout, architecture)
SOURCES = {"google": (GOOGLE, "google_roformer_v2", "RoFormerV2Model"),
           "h5": (H5, "bert4keras_roformer_v2", "RoFormerV2ForSequenceClassification")}


def golden_of(source: Path) -> Path:
    golden = (source if source.is_dir() else source.parent) / "golden.npz"
    if not golden.is_file():
        missing_fixture(f"fixture {golden.parent.name} is missing: run fixtures/make_roformer_v2_fixtures.py")
    return golden


@pytest.fixture(scope="module")
def conversions(tmp_path_factory):
    made = {}
    for key, (source, layout, architecture) in SOURCES.items():
        golden_of(source)
        output = tmp_path_factory.mktemp(key) / "hf"
        made[key] = (source, layout, architecture, output, convert(source, output))
    return made


@pytest.fixture(params=sorted(SOURCES))
def converted(request, conversions):
    return conversions[request.param]


@pytest.fixture(scope="module")
def remote_results(conversions, tmp_path_factory):
    checks = {"google_mlm": ("google", "AutoModelForMaskedLM"), "google": ("google", "AutoModel"),
              "h5": ("h5", "AutoModelForSequenceClassification")}
    runs = [(conversions[key][3], golden_of(conversions[key][0]), auto) for key, auto in checks.values()]
    return dict(zip(checks, run_remote(runs, tmp_path_factory.mktemp("remote"))))


def test_converts_with_its_own_modeling_code(converted):
    _, layout, architecture, output, report = converted
    assert (report.family, report.layout, report.architecture) == ("roformer_v2", layout, architecture)
    assert report.validation is not None and report.validation.passed
    config = json.loads((output / "config.json").read_text())
    assert config["model_type"] == "roformer_v2" and config["hidden_act"] == "relu"
    assert config["layer_norm_eps"] == 1e-7 and config["with_pooler"] is False
    assert config["auto_map"]["AutoModelForMaskedLM"] == "modeling_roformer_v2.RoFormerV2ForMaskedLM"
    notes = " ".join(report.notes)
    assert "norm epsilon 1e-07" in notes and "token id is 0" in notes
    assert not report.unknown_dropped and not report.training_state_dropped


def test_transformers_meets_bert4keras(remote_results):
    expected = {"google_mlm": ("RoFormerV2ForMaskedLM", {"mlm_logits"}),
                "google": ("RoFormerV2Model", set()),
                "h5": ("RoFormerV2ForSequenceClassification", {"classifier_logits"})}
    for key, (cls, heads) in expected.items():
        result = remote_results[key]
        assert result["class"] == cls and result["module"].startswith("transformers_modules")
        assert set(result["worst"]) == {"embeddings", "layer_0", "layer_1", "sequence_output"} | heads, result
        assert max(result["worst"].values()) < TOLERANCE, result


def test_the_classifier_logits_give_the_fine_tunes_probabilities(conversions):
    """The h5's golden logits are its Dense with the softmax switched off: their softmax is what
    the fine-tune itself outputs."""
    gold = np.load(golden_of(H5))
    logits = gold["classifier_logits"].astype(np.float64)
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert np.abs(probabilities - gold["classifier_probabilities"]).max() < 1e-6


def test_the_reference_meets_bert4keras(converted):
    """The float64 reference over the canonical names (the h5 read through them) against bert4keras."""
    from bertconv.config import load_config_file
    from bertconv.families.views import canonical_view

    source, _, _, _, _ = converted
    gold = dict(np.load(golden_of(source)))
    config = load_config_file(GOOGLE / "bert_config.json", defaults={"layer_norm_eps": 1e-7})
    with open_source(source) as weights:
        names = weights.names()
        layout = detect_layout(names, source=weights).for_checkpoint(names, weights)
        ours = get_family("roformer_v2").reference(canonical_view(weights, layout), config, gold)
    attended = gold["attention_mask"].astype(bool)
    for name in set(gold) & set(ours):
        gap = np.abs(ours[name] - gold[name])
        assert (gap[attended] if gap.shape[:2] == attended.shape else gap).max() < TOLERANCE, name
    assert {"mlm_logits", "sequence_output"} <= set(ours)


def test_inspect_validate_and_diff(converted):
    source, layout, _, output, _ = converted
    report = inspect_checkpoint(source)
    assert (report.family, report.layout) == ("roformer_v2", layout)
    assert validate(output, against=source, device="cpu").passed
    compared = diff(source, output / "model.safetensors")
    assert compared.passed and compared.compared and not compared.missing_in_b and not compared.unexpected_in_b


def test_memory_structure_has_no_position_table(converted):
    from bertconv.memory import encoder_shape

    source, _, _, output, _ = converted
    shape = encoder_shape(source)
    assert shape == encoder_shape(output).with_(notes=shape.notes)


def test_modeling_file_is_the_model_module_and_imports_only_torch_and_transformers(conversions):
    import bertconv.families.roformer_v2.model as model

    text = (conversions["google"][3] / "modeling_roformer_v2.py").read_text()
    assert Path(model.__file__).read_text() in text
    assert imported_modules(text) <= {"torch", "transformers", "math", "dataclasses", "typing", "."}


def test_v1_and_bert_are_not_read_as_v2():
    for name in ("roformer_google", "bert_pretrain"):
        path = FIXTURES / name
        if not path.is_dir():
            continue
        with open_source(path) as source:
            assert detect_layout(source.names(), source=source).family.name != "roformer_v2"
    h5 = FIXTURES / "keras_era" / "bert4keras_roformer_h5" / "roformer_weights.h5"
    if h5.is_file():
        with open_source(h5) as source:
            assert detect_layout(source.names(), source=source).family.name == "roformer"


def test_the_way_back_writes_the_releases_format(conversions, tmp_path):
    """pt2tf writes what the release is: Google's names for the kernels and tables, and a
    bert_config.json equal to the release's own."""
    from bertconv import pt2tf

    source, _, _, output, _ = conversions["google"]
    back = tmp_path / "back"
    report = pt2tf(output, back)
    assert json.loads((back / "bert_config.json").read_text()) == json.loads((source / "bert_config.json").read_text())
    assert not any("pooler" in n for n in report.notes)
    compared = diff(source, back)
    assert compared.passed and len(compared.compared) == 14 and not compared.missing_in_b and not compared.unexpected_in_b
    with open_source(back) as written:
        assert detect_layout(written.names(), source=written).name == "google_roformer_v2"
