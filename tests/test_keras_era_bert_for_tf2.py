"""bert-for-tf2 0.14.9 models (BertModelLayer, then the user's tanh Dense pooler and Dense
classifier) saved with save_weights as h5 and as a TF object checkpoint
(fixtures/make_bert_for_tf2_fixtures.py): read through the bert_for_tf2 layout and converted to
a BertForSequenceClassification that transformers 5 loads offline and that reproduces the
library's own outputs.

The library attends to padding unless built with mask_zero=True; the converted model masks by
attention_mask as BERT does. golden_masked.npz (a mask_zero=True twin) is matched with the real
mask, golden.npz (the saved model, mask_zero=False) with all-ones masks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bertconv.cli import main
from bertconv.comparison import diff
from bertconv.conversion import convert
from bertconv.errors import ConfigError
from bertconv.formats import open_source
from bertconv.inspection import inspect_checkpoint
from bertconv.validation import validate

from .keras_era_transformers import TOLERANCE, golden, keras_era_dir, transformers_outputs, worst_differences

#: fixture -> what the user names as the source
SOURCES = {"bert_for_tf2_h5": "classifier.h5", "bert_for_tf2_ckpt": "classifier_weights"}
#: what the fixture's model was built with (golden.json "build"); no file of the library records
#: num_attention_heads, so a config states it
CONFIG = {"vocab_size": 124, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
          "intermediate_size": 48, "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_act": "gelu"}


def source_of(name: str):
    return keras_era_dir(name) / SOURCES[name]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "bert_config.json"
    path.write_text(json.dumps(CONFIG))
    return path


@pytest.fixture(scope="module", params=sorted(SOURCES))
def converted(request, tmp_path_factory, config_file):
    name = request.param
    out = tmp_path_factory.mktemp(name) / "hf"
    report = convert(source_of(name), out, config=config_file)
    return name, out, report


def test_inspect_names_the_layout(converted):
    name, _, _ = converted
    report = inspect_checkpoint(source_of(name))
    assert (report.family, report.layout) == ("bert", "bert_for_tf2")
    assert report.inferred_config["hidden_size"] == 32 and "num_attention_heads" not in report.inferred_config


def test_the_head_count_is_never_assumed(tmp_path):
    """hidden 32 with 4 heads: Google's head size 64 would give 1 head; without a config the
    conversion stops and says what to pass."""
    with pytest.raises(ConfigError, match="num_attention_heads") as info:
        convert(source_of("bert_for_tf2_ckpt"), tmp_path / "out")
    assert "--config" in str(info.value)
    assert not (tmp_path / "out").exists()
    assert main(["tf2pt", str(source_of("bert_for_tf2_h5")), str(tmp_path / "out2")]) == 2


def test_conversion_says_what_was_assumed(converted, config_file):
    name, out, report = converted
    assert report.architecture == "BertForSequenceClassification" and report.heads == ["classifier"]
    assert report.config_origin == str(config_file)
    assert report.validation is not None and report.validation.passed
    assert not report.unknown_dropped and not report.heads_dropped and not report.training_state_dropped
    notes = " ".join(report.notes)
    assert "mask_zero" in notes and "tanh pooler" in notes
    pooler, classifier = ("dense_2", "dense_3") if name.endswith("h5") else ("layer_with_weights-1", "layer_with_weights-2")
    assert f"{pooler} (a Dense [32, 32]" in notes and f"{classifier} taken as the classifier" in notes


@pytest.mark.parametrize("golden_file", ["golden_masked.npz", "golden.npz"])
def test_transformers_matches_the_library(converted, monkeypatch, golden_file):
    name, out, _ = converted
    gold = golden(name, golden_file)
    mask = gold["attention_mask"]
    if golden_file == "golden.npz":  # computed by the saved model itself, which attended to padding
        assert (mask == 1).all()
    else:
        assert (mask == 0).any()
    worst = worst_differences(transformers_outputs(out, gold, monkeypatch, attention_mask=mask), gold)
    assert set(worst) >= {"embeddings", "layer_0", "layer_1", "sequence_output", "pooled_output", "classifier_logits"}
    assert max(worst.values()) < TOLERANCE, worst


def test_masking_matters_on_these_inputs(converted, monkeypatch):
    """The two golden files differ on the padded rows, so the test above tells them apart."""
    name, out, _ = converted
    unmasked, masked = golden(name, "golden.npz"), golden(name, "golden_masked.npz")
    assert np.max(np.abs(unmasked["sequence_output"] - masked["sequence_output"])) > 1e-2


def test_weights_equal_the_source(converted):
    name, out, _ = converted
    from safetensors.numpy import load_file

    written = load_file(str(out / "model.safetensors"))
    with open_source(source_of(name)) as src:
        by_name = {n: np.asarray(src.read(n)) for n in src.names() if not n.startswith("_")}
    leaf = (lambda layer, w: f"{layer}/{w}:0") if name.endswith("h5") else \
        (lambda layer, w: f"{layer}/{w}/.ATTRIBUTES/VARIABLE_VALUE")
    pooler, classifier = ("dense_2", "dense_3") if name.endswith("h5") else ("layer_with_weights-1", "layer_with_weights-2")
    np.testing.assert_array_equal(written["bert.pooler.dense.weight"], by_name[leaf(pooler, "kernel")].T)
    np.testing.assert_array_equal(written["classifier.weight"], by_name[leaf(classifier, "kernel")].T)
    np.testing.assert_array_equal(written["classifier.bias"], by_name[leaf(classifier, "bias")])


def test_tokenizer_files(converted):
    _, out, report = converted
    tokenizer = json.loads((out / "tokenizer_config.json").read_text())
    # nothing the library saves records casing; the vocabulary has no capitals
    assert tokenizer["do_lower_case"] is True and report.do_lower_case is True
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_act"] == "gelu_new" and config["num_attention_heads"] == 4  # params_flow's tanh GELU


def test_validate_and_diff_work(converted, config_file):
    name, out, _ = converted
    from bertconv.config import load_config_file

    result = validate(out, against=source_of(name), source_config=load_config_file(config_file), device="cpu")
    assert result.passed
    report = diff(source_of(name), out / "model.safetensors")
    assert report.passed and report.compared and not report.missing_in_b and not report.unexpected_in_b


#: each Keras-era fixture -> the layout that must claim it (the ones this test is about)
OWN = {"bert_for_tf2_h5/classifier.h5": "bert_for_tf2", "bert_for_tf2_ckpt": "bert_for_tf2",
       "hf_tf_classifier_ckpt": "hf_tf_checkpoint", "hf_tf_pretraining_ckpt": "hf_tf_checkpoint",
       "keras_hub_backbone": "keras_hub", "keras_hub_classifier": "keras_hub", "keras_hub_masked_lm": "keras_hub"}


def _sources():
    from .conftest import FIXTURES

    yield from (FIXTURES / "keras_era" / name for name in OWN)
    for directory in sorted((FIXTURES / "keras_era").iterdir()):
        if directory.is_dir() and not any(name.split("/")[0] == directory.name for name in OWN):
            yield from sorted(directory.glob("*.h5")) or [directory]
    for name in ("bert_pretrain", "bert_classifier", "bert_squad", "bert_adam", "garden_v2", "garden_v3",
                 "garden_pretrainer", "albert_pretrain", "electra_small"):
        if (FIXTURES / name).is_dir():
            yield FIXTURES / name


def test_each_marker_claims_only_its_own_files():
    """The three layouts here recognise their libraries' fixtures, and no other fixture: not
    bert4keras', keras-bert's, Google's, the Garden's, ALBERT's or ELECTRA's (Google's marker,
    tried first, leaves Keras ':0' names and object keys to the layouts that own them)."""
    from bertconv.families import detect_layout, get_family

    mine = {layout.name: layout for layout in get_family("bert").layouts
            if layout.name in set(OWN.values())}
    seen = 0
    for path in _sources():
        try:
            src = open_source(path)
        except Exception:  # noqa: BLE001 - a fixture of a format this tree does not read is no claim
            continue
        with src:
            names = src.names()
        relative = "/".join(path.parts[-2:]) if path.parent.name != "keras_era" else path.name
        expected = OWN.get(relative) or OWN.get(path.name)
        claimed = {name for name, layout in mine.items() if any(layout.marker.search(n) for n in names)}
        assert claimed == ({expected} if expected else set()), (path, claimed)
        if expected:
            assert detect_layout(names).name == expected, path
        seen += 1
    assert seen >= len(OWN) + 9
