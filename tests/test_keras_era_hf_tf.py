"""Hugging Face TFBert* models saved as TF object checkpoints (``save_weights('dir/weights')``, no
``.h5``) by transformers 4.46.3 after one training step, with config.json beside them
(fixtures/make_hf_tf_checkpoint_fixtures.py): read through the hf_tf_checkpoint layout, Adam's
state counted as training state, converted to a directory transformers 5 loads offline that
reproduces TFBert's own outputs."""
from __future__ import annotations

import json

import pytest

from bertconv.comparison import diff
from bertconv.conversion import convert
from bertconv.conversion.plan import plan_conversion
from bertconv.formats import open_source
from bertconv.inspection import inspect_checkpoint
from bertconv.validation import validate

from .keras_era_transformers import TOLERANCE, golden, keras_era_dir, transformers_outputs, worst_differences

FIXTURES = {"hf_tf_classifier_ckpt": "BertForSequenceClassification",
            "hf_tf_pretraining_ckpt": "BertForPreTraining"}


@pytest.fixture(scope="module", params=sorted(FIXTURES))
def converted(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(name) / "hf"
    report = convert(keras_era_dir(name), out)
    return name, out, report


def test_inspect_names_the_layout(converted):
    name, _, _ = converted
    report = inspect_checkpoint(keras_era_dir(name))
    assert (report.family, report.layout) == ("bert", "hf_tf_checkpoint")
    assert report.config_file and report.config_file.endswith("config.json")


def test_conversion_check_passes_and_every_weight_placed(converted):
    name, out, report = converted
    assert report.architecture == FIXTURES[name] and report.layout == "hf_tf_checkpoint"
    assert report.validation is not None and report.validation.passed
    assert not report.unknown_dropped and not report.heads_dropped
    with open_source(keras_era_dir(name)) as src:
        plan = plan_conversion(src)
        optimizer = [n for n in src.names() if n.startswith("optimizer/") or "/.OPTIMIZER_SLOT/" in n]
    # Adam's slots and the optimizer's own variables are training state, never weights
    assert optimizer and set(optimizer) <= set(plan.training_state)
    assert not {t.source for t in plan.tensors} & set(optimizer)
    if name == "hf_tf_classifier_ckpt":
        assert report.training_state_dropped == {"m": 41, "v": 41, "optimizer": 5}
        assert report.heads == ["classifier"] and plan.num_labels == 3
    else:
        assert report.training_state_dropped == {"optimizer": 94}
        assert report.heads == ["mlm", "nsp"]


def test_transformers_matches_tfbert_golden(converted, monkeypatch):
    name, out, _ = converted
    gold = golden(name)
    worst = worst_differences(transformers_outputs(out, gold, monkeypatch), gold)
    assert worst and max(worst.values()) < TOLERANCE, worst


def test_config_keeps_hugging_face_meaning_of_gelu(converted):
    _, out, _ = converted
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_act"] == "gelu" and config["layer_norm_eps"] == 1e-12  # TFBert's exact erf GELU
    tokenizer = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer["do_lower_case"] is True  # vocab.txt has no capitals (config.json records no casing)


def test_validate_and_diff_work(converted):
    name, out, _ = converted
    result = validate(out, against=keras_era_dir(name), device="cpu")
    assert result.passed
    report = diff(keras_era_dir(name), out / "model.safetensors")
    assert report.passed and not report.missing_in_b and not report.unexpected_in_b
    assert report.compared and report.ignored_training_state


def test_classifier_without_pooler_is_not_taken_as_sequence_classifier(tmp_path):
    """classifier/* without a pooler is what TFBertForTokenClassification saves: left unknown."""
    from bertconv.families import source_view

    with open_source(keras_era_dir("hf_tf_classifier_ckpt")) as src:
        names = [n for n in src.names() if not n.startswith("bert/pooler/")]
    layout, side, recognised = source_view(names)
    assert layout.name == "hf_tf_checkpoint" and side == "tf"
    assert not any(n.startswith("classifier/") for n in recognised)


def test_pooler_is_kept_under_a_class_without_one(tmp_path, monkeypatch):
    """--head mlm: BertForMaskedLM has no pooler, but the trained one is written (equal to the
    source) and reported as ignored by the class, so AutoModel on the directory is complete."""
    transformers = pytest.importorskip("transformers")
    import numpy as np
    from safetensors.numpy import load_file

    source = keras_era_dir("hf_tf_pretraining_ckpt")
    out = tmp_path / "mlm"
    report = convert(source, out, head="mlm")
    assert report.architecture == "BertForMaskedLM" and report.validation.passed
    assert report.ignored_by_class == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    assert any(line.startswith("kept ") for line in report.summary_lines())
    assert all(n.startswith("nsp/") for n in report.heads_dropped)
    written = load_file(str(out / "model.safetensors"))
    with open_source(source) as src:
        kernel = np.asarray(src.read("bert/pooler/dense/kernel/.ATTRIBUTES/VARIABLE_VALUE"))
    np.testing.assert_array_equal(written["bert.pooler.dense.weight"], kernel.T)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, info = transformers.AutoModel.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"], info  # nothing of the BertModel left at random
    gold = golden("hf_tf_pretraining_ckpt")
    import torch
    with torch.no_grad():
        pooled = model.eval()(**{k: torch.tensor(gold[k]) for k in ("input_ids", "token_type_ids",
                                                                    "attention_mask")}).pooler_output.numpy()
    assert np.max(np.abs(pooled - gold["pooled_output"])) < TOLERANCE  # the trained pooler, not a random one
    gold.pop("nsp_logits")  # the NSP head is not exported
    gold.pop("pooled_output")  # BertForMaskedLM builds no pooler
    worst = worst_differences(transformers_outputs(out, gold, monkeypatch), gold)
    assert "mlm_logits" in worst and max(worst.values()) < TOLERANCE, worst
