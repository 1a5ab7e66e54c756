"""NEZHA: checkpoints written by huawei-noah's NEZHA-TensorFlow itself (fixtures/make_nezha_fixtures.py:
pretraining heads after a LAMB step, and a run_classifier fine-tune) and bert4keras' NEZHA h5
(fixtures/make_nezha_bert4keras_fixtures.py) convert to directories that carry NEZHA's own modeling
code; transformers loads them offline with trust_remote_code in a fresh process and meets the
original code's outputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bertconv import outputs as out
from bertconv.comparison import diff
from bertconv.conversion import convert
from bertconv.families import get_family
from bertconv.inspection import inspect_checkpoint
from bertconv.validation import validate

from .conftest import FIXTURES, missing_fixture
from .remote_code_run import TOLERANCE, imported_modules, run_remote

#: fixture -> (architecture, the auto class that loads it)
FIXTURE_CLASSES = {"nezha_pretrain": ("NezhaForPreTraining", "AutoModelForPreTraining"),
                   "nezha_classifier": ("NezhaForSequenceClassification", "AutoModelForSequenceClassification"),
                   "nezha_bert4keras_h5": ("NezhaForPreTraining", "AutoModelForPreTraining")}
LAYOUTS = {"nezha_bert4keras_h5": "bert4keras_nezha"}
#: the file a fixture's source is, where it is not the directory
FILES = {"nezha_bert4keras_h5": "nezha_weights.h5"}


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not (path / "golden.npz").is_file():
        missing_fixture(f"fixture {name} is missing: run fixtures/make_nezha_fixtures.py or "
                    "fixtures/make_nezha_bert4keras_fixtures.py")
    return path / FILES[name] if name in FILES else path


def golden(name: str) -> Path:
    return (FIXTURES / name) / "golden.npz"


@pytest.fixture(scope="module")
def conversions(tmp_path_factory):
    """Each fixture converted once (and the pretraining one also as a bare encoder)."""
    made = {}
    for name in sorted(FIXTURE_CLASSES):
        output = tmp_path_factory.mktemp(name) / "hf"
        made[name] = (name, fixture(name), output, convert(fixture(name), output))
    output = tmp_path_factory.mktemp("nezha_base") / "hf"
    made["base"] = ("base", fixture("nezha_pretrain"), output, convert(fixture("nezha_pretrain"), output, head="base"))
    return made


@pytest.fixture(params=sorted(FIXTURE_CLASSES))
def converted(request, conversions):
    return conversions[request.param]


@pytest.fixture(scope="module")
def remote_results(conversions, tmp_path_factory):
    """What transformers computes from each converted directory, by name."""
    names = [*sorted(FIXTURE_CLASSES), "base"]
    checks = [(conversions[n][2], golden(conversions[n][0] if n in FIXTURE_CLASSES else "nezha_pretrain"),
               FIXTURE_CLASSES[n][1] if n in FIXTURE_CLASSES else "AutoModel") for n in names]
    return dict(zip(names, run_remote(checks, tmp_path_factory.mktemp("remote"))))


def test_converts_with_its_own_modeling_code(converted):
    name, _, output, report = converted
    architecture, auto = FIXTURE_CLASSES[name]
    layout = LAYOUTS.get(name, "google_nezha")
    assert (report.family, report.layout, report.architecture) == ("nezha", layout, architecture)
    assert report.validation is not None and report.validation.passed
    config = json.loads((output / "config.json").read_text())
    assert config["model_type"] == "nezha" and config["architectures"] == [architecture]
    # NEZHA's "gelu" is the tanh form, its LayerNorm epsilon 1e-12; bert4keras' are the erf form,
    # 1e-7 and 1e-12 in the MLM head; the clipping is 64
    if layout == "google_nezha":
        assert config["hidden_act"] == "gelu_new" and config["layer_norm_eps"] == 1e-12
        assert config["mlm_layer_norm_eps"] is None
    else:
        assert config["hidden_act"] == "gelu" and config["layer_norm_eps"] == 1e-7
        assert config["mlm_layer_norm_eps"] == 1e-12
    assert config["max_relative_position"] == 64 and config["with_pooler"] is True
    assert config["auto_map"][auto] == f"modeling_nezha.{architecture}"
    assert config["auto_map"]["AutoConfig"] == "configuration_nezha.NezhaConfig"
    assert {"modeling_nezha.py", "configuration_nezha.py"} <= set(report.files)


def test_lamb_slots_are_training_state(converted):
    name, _, _, report = converted
    expected = {"global_step": 1, "lamb_m": 45, "lamb_v": 45} if name == "nezha_pretrain" else {}
    assert report.training_state_dropped == expected and not report.unknown_dropped


def test_bert4keras_relative_table_is_checked_and_not_written(conversions, tmp_path):
    """bert4keras stores the sinusoid table the model computes: noted, not written; the reference
    computes with the stored one, so a table that is not that sinusoid fails the check before
    publishing."""
    import h5py
    import shutil

    from bertconv.errors import CheckFailed

    _, source, output, report = conversions["nezha_bert4keras_h5"]
    assert any("the sinusoid table the model computes" in n for n in report.notes)
    from safetensors.numpy import load_file
    assert not any("relative" in k for k in load_file(output / "model.safetensors"))
    altered = tmp_path / "nezha.h5"
    shutil.copy(source, altered)
    shutil.copy(source.parent / "bert_config.json", tmp_path / "bert_config.json")
    with h5py.File(altered, "r+") as f:
        table = f["Embedding-Relative-Position/Embedding-Relative-Position/embeddings:0"]
        table[...] = table[...] * 1.5
    with pytest.raises(CheckFailed, match="does not match the original"):
        convert(altered, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_transformers_runs_it_through_trust_remote_code(converted, remote_results):
    name, _, _, _ = converted
    architecture, _ = FIXTURE_CLASSES[name]
    result = remote_results[name]
    assert result["class"] == architecture and result["module"].startswith("transformers_modules")
    gold = np.load(golden(name))
    expected = {k for k in gold.files if k not in ("input_ids", "token_type_ids", "attention_mask", "pooled_output")}
    assert set(result["worst"]) == expected, result
    assert max(result["worst"].values()) < TOLERANCE, result


def test_the_bare_encoder_loads_through_automodel(remote_results):
    result = remote_results["base"]
    assert result["class"] == "NezhaModel"
    assert set(result["worst"]) == {"embeddings", "layer_0", "layer_1", "sequence_output", "pooled_output"}
    assert max(result["worst"].values()) < TOLERANCE, result


def test_the_reference_meets_the_original(converted):
    from bertconv.config import load_config_file
    from bertconv.families import detect_layout
    from bertconv.families.views import canonical_view
    from bertconv.formats import open_source

    name, source, _, _ = converted
    gold = dict(np.load(golden(name)))
    config = load_config_file(golden(name).parent / "bert_config.json")
    meaning = {"hidden_act": "gelu_new"} if name not in LAYOUTS else \
        {"hidden_act": "gelu_exact", "layer_norm_eps": 1e-7, "mlm_layer_norm_eps": 1e-12}
    config = type(config).from_dict({**config.to_dict(), **meaning})
    with open_source(source) as weights:
        names = weights.names()
        layout = detect_layout(names, source=weights).for_checkpoint(names, weights)
        ours = get_family("nezha").reference(canonical_view(weights, layout), config, gold)
    attended = gold["attention_mask"].astype(bool)
    for name in gold:
        if name in ours:
            gap = np.abs(ours[name] - gold[name])
            assert (gap[attended] if gap.shape[:2] == attended.shape else gap).max() < TOLERANCE, name


def test_inspect_validate_and_diff(converted):
    name, source, output, _ = converted
    report = inspect_checkpoint(source)
    assert (report.family, report.layout) == ("nezha", LAYOUTS.get(name, "google_nezha"))
    assert validate(output, against=source, device="cpu").passed
    compared = diff(source, output / "model.safetensors")
    assert compared.passed and compared.compared and not compared.missing_in_b and not compared.unexpected_in_b


def test_memory_structure_has_no_position_table(converted):
    from bertconv.memory import encoder_shape

    _, source, output, _ = converted
    shape = encoder_shape(source)
    assert shape == encoder_shape(output).with_(notes=shape.notes)


def test_modeling_file_is_the_model_module_and_imports_only_torch_and_transformers(converted):
    import bertconv.families.nezha.model as model

    _, _, output, _ = converted
    text = (output / "modeling_nezha.py").read_text()
    assert Path(model.__file__).read_text() in text  # one source of truth, word for word
    assert "REMOTE_CODE_VERSION = 1" in text
    imported = imported_modules(text)
    assert imported <= {"torch", "transformers", "math", "dataclasses", "typing", "."}, imported


def test_model_module_matches_bertconvs_names():
    from bertconv.families.nezha import layouts, model

    assert model.MAX_RELATIVE_POSITION == layouts.MAX_RELATIVE_POSITION
    source = Path(model.__file__).read_text()
    for name in (out.EMBEDDINGS, out.SEQUENCE, out.POOLED, out.MLM_LOGITS, out.NSP_LOGITS, out.CLASSIFIER_LOGITS):
        assert f'"{name}"' in source
    assert 'f"layer_{i}"' in source and out.layer(3) == "layer_3"


def test_the_clipping_is_reached_and_matters():
    """The fixtures' 70 positions reach the clipping at 64: a table gathered at j - i unclipped
    would be another function (it would need rows the original never builds)."""
    import torch
    from bertconv.families.nezha.model import relative_positions
    from bertconv.families.nezha.reference import relative_matrix

    ours = relative_positions(70, 8, torch.float64).numpy()
    assert np.allclose(ours, relative_matrix(70, 8), atol=1e-7)
    assert np.array_equal(ours[0, 69], ours[0, 64]) and not np.array_equal(ours[0, 64], ours[0, 63])


def test_roformer_is_still_refused_as_roformer(tmp_path):
    """Asked to read NEZHA as RoFormer, the RoFormer layout still refuses it in one line."""
    from bertconv.errors import InputError

    with pytest.raises(InputError, match="NEZHA"):
        convert(fixture("nezha_pretrain"), tmp_path / "out", family="roformer")
    assert not (tmp_path / "out").exists()


def test_a_bare_encoder_directory_diffs_against_the_source(conversions):
    """A NezhaModel is saved without its prefix; its directory's config says NEZHA."""
    _, source, output, _ = conversions["base"]
    compared = diff(source, output / "model.safetensors")
    assert compared.passed and len(compared.compared) == 38


def test_the_way_back_writes_nezha_tensorflow_files(conversions, tmp_path):
    from bertconv.cli import main

    _, source, output, _ = conversions["nezha_pretrain"]
    back = tmp_path / "back"
    assert main(["pt2tf", str(output), str(back)]) == 0
    config = json.loads((back / "bert_config.json").read_text())
    assert config["use_relative_position"] is True and config["max_relative_position"] == 64
    assert config["hidden_act"] == "gelu"  # NEZHA's own word for the tanh form
    compared = diff(source, back)
    assert compared.passed and not compared.missing_in_b and not compared.unexpected_in_b
    # bert4keras' epsilons have no NEZHA-TensorFlow counterpart: refused, not written off
    assert main(["pt2tf", str(conversions["nezha_bert4keras_h5"][2]), str(tmp_path / "b4k")]) == 2
