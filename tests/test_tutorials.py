"""What a user holds after TensorFlow's "Classify text with BERT" tutorial: a TF Hub BERT inside
their own Keras model, a Dense on its pooled output, saved by ``model.save`` (with and without the
optimizer) or ``model.save_weights`` (fixtures/make_tutorial_fixtures.py). Each converts to the
class its head implies, transformers loads it offline, and it reproduces the outputs of the user's
own saved model reloaded (golden.npz); inspect names the encoder inside and the head."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from bertconv.comparison import diff
from bertconv.conversion import convert
from bertconv.conversion.plan import plan_conversion
from bertconv.errors import DataUnavailableError
from bertconv.formats import detect_format, open_source
from bertconv.inspection import inspect_checkpoint
from bertconv.validation import validate

from .conftest import FIXTURES
from .keras_era_transformers import TOLERANCE, transformers_outputs, worst_differences

#: fixture -> (what to name, the class it becomes, the training state it holds)
TUTORIAL = {
    "tutorial_classifier": ("tutorial_classifier", "BertForSequenceClassification", {"metric": 4}),
    # AdamWeightDecay (the tutorial's create_optimizer): m and v beside each of the 25 trained
    # variables, and iter, beta_1, beta_2, decay
    "tutorial_classifier_optimizer": ("tutorial_classifier_optimizer", "BertForSequenceClassification",
                                      {"metric": 4, "m": 25, "v": 25, "optimizer": 4}),
    "tutorial_weights": ("tutorial_weights/checkpoints/my_checkpoint", "BertModel", {"m": 25, "v": 25, "optimizer": 4}),
}
ENCODER_NOTE = "the encoder is the user's layer 'BERT_encoder' (KerasLayer of "
HEAD_NOTE = ("the user's head, layer 'classifier' (Dense) on the encoder's pooled_output, is "
             "BertForSequenceClassification's classifier")


def tutorial_path(name: str):
    path = FIXTURES / TUTORIAL[name][0]
    if not (FIXTURES / name / "golden.npz").is_file():
        pytest.skip(f"fixture {name} is missing: run fixtures/make_tutorial_fixtures.py (its docstring says with what)")
    return path


def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name / "golden.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module", params=sorted(TUTORIAL))
def converted(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(name) / "hf"
    return name, out, convert(tutorial_path(name), out)


def test_each_save_converts_to_the_class_its_head_implies(converted):
    name, _, report = converted
    assert (report.layout, report.architecture) == ("tf2_hub_keras_layer", TUTORIAL[name][1])
    assert report.validation is not None and report.validation.passed, report.validation.render()
    assert report.training_state_dropped == TUTORIAL[name][2]
    assert report.unknown_dropped == []


def test_transformers_reproduces_the_users_saved_model(converted, monkeypatch):
    name, out, report = converted
    gold = golden(name)
    if report.architecture == "BertModel":
        gold.pop("classifier_logits")  # the head a save_weights checkpoint cannot place (see below)
    worst = worst_differences(transformers_outputs(out, gold, monkeypatch), gold)
    assert {"pooled_output", "sequence_output", "layer_0"} <= set(worst)
    assert ("classifier_logits" in worst) == (report.architecture == "BertForSequenceClassification")
    print(name, report.architecture, worst)
    assert max(worst.values()) <= TOLERANCE, worst


def test_the_vocabulary_and_casing_come_from_the_hub_module_inside(converted):
    name, out, report = converted
    if name == "tutorial_weights":
        assert not (out / "vocab.txt").exists()
        assert any("no vocab.txt beside the checkpoint" in n and "--vocab" in n for n in report.notes)
        return
    assert (out / "vocab.txt").read_text() == (FIXTURES / name / "assets" / "vocab.txt").read_text()
    assert report.do_lower_case is True
    assert any("recorded in the SavedModel's do_lower_case variable" in n for n in report.notes)


def test_inspect_names_the_encoder_inside_and_the_head():
    report = inspect_checkpoint(tutorial_path("tutorial_classifier"))
    assert (report.family, report.layout) == ("bert", "tf2_hub_keras_layer")
    assert any(n.startswith(ENCODER_NOTE) for n in report.notes), report.notes
    assert HEAD_NOTE in report.notes


def test_save_weights_converts_the_encoder_and_names_the_head_it_cannot_place():
    # the checkpoint records no model config: what the Dense reads is unknown, so it is kept out
    with open_source(tutorial_path("tutorial_weights")) as source:
        plan = plan_conversion(source)
    assert plan.architecture == "BertModel"
    assert plan.dropped_heads == sorted(["layer_with_weights-1/kernel/.ATTRIBUTES/VARIABLE_VALUE",
                                         "layer_with_weights-1/bias/.ATTRIBUTES/VARIABLE_VALUE",
                                         "layer_with_weights-0/Variable:0/.ATTRIBUTES/VARIABLE_VALUE"])
    said = " ".join(plan.notes)
    assert "the weighted layer layer_with_weights-1/ kept out (bias, kernel)" in said
    assert "num_attention_heads=4 from the attention kernels' shapes" in said


# -- Model Garden's "Fine-tune a BERT model" (fixtures/make_garden_tutorial_fixtures.py) ---------
GARDEN = {"garden_classifier_ckpt": {"optimizer": 52, "save_counter/.ATTRIBUTES/VARIABLE_VALUE": 1},
          "garden_classifier_export": {"metric": 4, "optimizer": 52}}


@pytest.fixture(scope="module", params=sorted(GARDEN))
def garden_converted(request, tmp_path_factory):
    name = request.param
    if not (FIXTURES / name / "golden.npz").is_file():
        pytest.skip(f"fixture {name} is missing: run fixtures/make_garden_tutorial_fixtures.py")
    out = tmp_path_factory.mktemp(name) / "hf"
    return name, out, convert(FIXTURES / name, out)


def test_garden_classifier_converts_and_matches_the_users_saved_model(garden_converted, monkeypatch):
    name, out, report = garden_converted
    assert (report.layout, report.architecture) == ("tf2_garden_classifier", "BertForSequenceClassification")
    assert report.validation is not None and report.validation.passed, report.validation.render()
    assert report.training_state_dropped == GARDEN[name] and report.unknown_dropped == []
    scope = "model/" if name.endswith("ckpt") else "classifier/"
    assert (f"the user's head, the ClassificationHead {scope}layer_with_weights-1/ (out_proj on the encoder's "
            "pooled output), is BertForSequenceClassification's classifier") in report.notes
    gold = golden(name)
    worst = worst_differences(transformers_outputs(out, gold, monkeypatch), gold)
    assert {"classifier_logits", "pooled_output", "sequence_output", "layer_0"} <= set(worst)
    print(name, worst)
    assert max(worst.values()) <= TOLERANCE, worst


# -- a Keras SavedModel that arrived in part ----------------------------------------------------
def test_a_keras_savedmodel_without_its_graph_is_listed_and_converts():
    # tutorial_classifier_optimizer has keras_metadata.pb and variables/ but no saved_model.pb
    path = tutorial_path("tutorial_classifier_optimizer")
    assert not (path / "saved_model.pb").exists()
    assert detect_format(path) == ("saved-model", path)
    report = inspect_checkpoint(path)
    assert (report.format, report.layout) == ("saved-model", "tf2_hub_keras_layer")
    assert "saved_model.pb is not here: the weights are listed from variables/variables.index, the layers " \
           "from keras_metadata.pb" in report.notes
    assert HEAD_NOTE in report.notes


def test_a_keras_savedmodel_whose_data_is_an_lfs_pointer_is_still_recognised(tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(tutorial_path("tutorial_classifier_optimizer"), partial)
    data = partial / "variables" / "variables.data-00000-of-00001"
    size = data.stat().st_size
    data.write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{'0' * 64}\nsize {size}\n")
    report = inspect_checkpoint(partial)
    assert (report.family, report.layout) == ("bert", "tf2_hub_keras_layer")
    assert any(n.startswith(ENCODER_NOTE) for n in report.notes) and HEAD_NOTE in report.notes
    assert any("Git LFS pointer" in n for n in report.notes)
    with pytest.raises(DataUnavailableError, match="Git LFS pointer"):
        convert(partial, tmp_path / "hf")


def test_a_head_that_is_not_on_the_pooled_output_is_named_and_kept_out(tmp_path, monkeypatch):
    # a Dense(3) on sequence_output (fixtures/make_tutorial_fixtures.py): never taken for a classifier
    path = FIXTURES / "tutorial_token_head"
    if not (path / "golden.npz").is_file():
        pytest.skip("fixture tutorial_token_head is missing: run fixtures/make_tutorial_fixtures.py")
    report = convert(path, tmp_path / "hf")
    assert report.architecture == "BertModel" and report.validation.passed
    assert sorted(report.heads_dropped) == sorted([
        "layer_with_weights-1/kernel/.ATTRIBUTES/VARIABLE_VALUE", "layer_with_weights-1/bias/.ATTRIBUTES/VARIABLE_VALUE",
        "layer_with_weights-0/Variable:0/.ATTRIBUTES/VARIABLE_VALUE"])
    assert any(n.startswith("layer 'token_scores' (Dense) kept out (bias, kernel): it scores each token of the "
                            "encoder's sequence_output") for n in report.notes), report.notes
    gold = golden("tutorial_token_head")
    gold.pop("token_scores")
    worst = worst_differences(transformers_outputs(tmp_path / "hf", gold, monkeypatch), gold)
    assert max(worst.values()) <= TOLERANCE, worst


def test_diff_and_validate_meet_the_tutorial_model_through_its_own_names(tmp_path):
    name, out = "tutorial_classifier", tmp_path / "hf"
    convert(tutorial_path(name), out)
    assert diff(tutorial_path(name), out).passed
    report = validate(out, against=tutorial_path(name), device="cpu", seq_len=12)
    assert report.passed and report.worst_max_abs() < TOLERANCE


def test_the_tutorial_model_whole_takes_text_and_its_tokenizer_is_the_preprocessing_layers(tmp_path, monkeypatch):
    # the preprocessing hub.KerasLayer inside the model (fixtures/make_tutorial_fixtures.py): a
    # weightless layer before the encoder; the tokenizer written must give the ids it gave
    transformers = pytest.importorskip("transformers")
    path = FIXTURES / "tutorial_classifier_text"
    if not (path / "golden.npz").is_file():
        pytest.skip("fixture tutorial_classifier_text is missing: run fixtures/make_tutorial_fixtures.py")
    report = convert(path, tmp_path / "hf")
    assert report.architecture == "BertForSequenceClassification" and report.do_lower_case is True
    assert HEAD_NOTE in report.notes
    gold = golden("tutorial_classifier_text")
    sentences = [str(s) for s in gold.pop("sentences")]
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf", local_files_only=True)
    encoded = tokenizer(sentences, padding="max_length", max_length=gold["input_ids"].shape[1], return_tensors="np")
    np.testing.assert_array_equal(encoded["input_ids"], gold["input_ids"])
    np.testing.assert_array_equal(encoded["attention_mask"], gold["attention_mask"])
    worst = worst_differences(transformers_outputs(tmp_path / "hf", gold, monkeypatch), gold)
    assert "classifier_logits" in worst and max(worst.values()) <= TOLERANCE, worst


def test_a_classification_head_with_a_pooler_of_its_own_is_kept_out(tmp_path, monkeypatch):
    # BertClassifier(use_encoder_pooler=False): its head's inner dense reads the first token; no
    # Bert* head computes that, so the encoder converts alone (fixtures/make_garden_tutorial_fixtures.py)
    path = FIXTURES / "garden_classifier_own_pooler"
    if not (path / "golden.npz").is_file():
        pytest.skip("fixture garden_classifier_own_pooler is missing: run fixtures/make_garden_tutorial_fixtures.py")
    report = convert(path, tmp_path / "hf")
    assert (report.layout, report.architecture) == ("tf2_garden_classifier", "BertModel")
    assert len(report.heads_dropped) == 4 and all("layer_with_weights-1/" in n for n in report.heads_dropped)
    assert any(n.startswith("the ClassificationHead model/layer_with_weights-1/ kept out: it has an inner dense")
               for n in report.notes), report.notes
    gold = golden("garden_classifier_own_pooler")
    worst = worst_differences(transformers_outputs(tmp_path / "hf", gold, monkeypatch), gold)
    assert max(worst.values()) <= TOLERANCE, worst
