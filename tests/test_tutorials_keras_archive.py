"""A Keras 3 ``.keras`` archive of a KerasHub BertTextClassifier (``classifier.save("classifier.keras")``,
fixtures/make_keras_archive_fixtures.py): read with zipfile and h5py as the preset it would be, the
optimizer's state dropped, converted to BertForSequenceClassification, which transformers loads
offline and which reproduces the reloaded archive's outputs."""
from __future__ import annotations

import zipfile

import pytest

from bertconv.conversion import convert
from bertconv.errors import CheckpointFormatError
from bertconv.formats import detect_format, open_source
from bertconv.inspection import inspect_checkpoint

from .keras_era_transformers import TOLERANCE, golden, keras_era_dir, transformers_outputs, worst_differences

NAME = "keras_hub_classifier_archive"
QUERY_0 = "backbone/transformer_layer_0/self_attention_layer/query/vars/0"


def archive():
    return keras_era_dir(NAME) / "classifier.keras"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp(NAME) / "hf"
    return out, convert(archive(), out)


def test_the_archive_reads_as_a_preset_would():
    path = archive()
    assert detect_format(path) == ("keras-archive", path)
    with open_source(path) as src:
        assert (src.format_name, src.registered_name, src.task_class) == (
            "keras-archive", "keras_hub>BertBackbone", "BertTextClassifier")
        assert src.preset_config["num_heads"] == 4
        assert src.lower_case is False and "BertTokenizer's lowercase" in src.lower_case_origin
        names = set(src.names())
        assert {QUERY_0, "backbone/pooled_dense/vars/1", "task/logits/vars/0", "optimizer/vars/0"} <= names
        assert not any("/layers/" in n for n in names)
        with zipfile.ZipFile(path) as zf:
            stored = zf.read("assets/preprocessor/tokenizer/vocabulary.txt")
        vocab = src.sidecar("vocab.txt")
        assert vocab.read_bytes() == stored
        assert src.sidecar("config.json") is None  # the archive's config is Keras', not a model config
        # stored uncompressed: the weights are mapped from the archive itself
        assert src.read(QUERY_0).shape == (32, 4, 8)
    assert not vocab.exists()  # extracted for the source's life only


def test_converts_to_the_task_class_and_matches_the_reloaded_archive(converted, monkeypatch):
    out, report = converted
    assert (report.layout, report.architecture) == ("keras_hub", "BertForSequenceClassification")
    assert report.validation is not None and report.validation.passed, report.validation.render()
    assert report.training_state_dropped == {"optimizer": 84} and report.unknown_dropped == []
    assert report.do_lower_case is False
    gold = golden(NAME)
    worst = worst_differences(transformers_outputs(out, gold, monkeypatch), gold)
    assert {"classifier_logits", "pooled_output", "sequence_output"} <= set(worst)
    assert max(worst.values()) <= TOLERANCE, worst


def test_inspect_names_the_backbone_inside_the_task():
    report = inspect_checkpoint(archive())
    assert (report.format, report.layout) == ("keras-archive", "keras_hub")
    assert "the archive holds a BertTextClassifier around a keras_hub>BertBackbone (its config.json's " \
           "config.backbone)" in report.notes
    assert report.head_descriptions


def test_a_zip_without_weights_says_so(tmp_path):
    bad = tmp_path / "model.keras"
    with zipfile.ZipFile(archive()) as src, zipfile.ZipFile(bad, "w") as dst:
        dst.writestr("config.json", src.read("config.json"))
    with pytest.raises(CheckpointFormatError, match="a .keras archive without model.weights.h5"):
        open_source(bad)
