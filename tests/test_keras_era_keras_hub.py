"""KerasHub 0.32 presets (BertBackbone alone, BertTextClassifier, BertMaskedLM; cased), written by
save_to_preset (fixtures/make_keras_hub_fixtures.py): the preset read as one source with stable
names, converted through the keras_hub layout to directories transformers 5 loads offline that
reproduce KerasHub's own outputs. The masked-LM head is refused: see its test."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from bertconv.cli import main
from bertconv.comparison import diff
from bertconv.conversion import convert
from bertconv.errors import MappingError
from bertconv.formats import detect_format, open_source
from bertconv.formats.base import TensorSource
from bertconv.inspection import inspect_checkpoint
from bertconv.validation import validate

from .keras_era_transformers import TOLERANCE, golden, keras_era_dir, transformers_outputs, worst_differences

#: preset -> (the --head it converts with, the class it becomes)
PRESETS = {"keras_hub_backbone": ("auto", "BertModel"),
           "keras_hub_classifier": ("auto", "BertForSequenceClassification"),
           "keras_hub_masked_lm": ("base", "BertModel")}
QUERY_0 = "backbone/transformer_layer_0/self_attention_layer/query/vars/0"


@pytest.fixture(scope="module", params=sorted(PRESETS))
def converted(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(name) / "hf"
    report = convert(keras_era_dir(name), out, head=PRESETS[name][0])
    return name, out, report


def test_the_preset_reads_as_one_source_with_stable_names():
    preset = keras_era_dir("keras_hub_classifier")
    assert detect_format(preset) == ("keras-hub", preset)
    assert detect_format(preset / "model.weights.h5") == ("keras-hub", preset)  # a file stands for its preset
    with open_source(preset) as src:
        assert src.format_name == "keras-hub" and src.registered_name == "keras_hub>BertBackbone"
        assert src.preset_config["num_heads"] == 4 and src.task_class == "BertTextClassifier"
        assert (src.lower_case, src.lower_case_origin.endswith("tokenizer.json (config.lowercase)")) == (False, True)
        names = set(src.names())
        # the Keras layer names, not the class counters of the paths (transformer_encoder_1)
        assert {QUERY_0, "backbone/transformer_layer_1/feedforward_layer_norm/vars/1",
                "backbone/pooled_dense/vars/0", "task/logits/vars/0", "optimizer/vars/0"} <= names
        assert not any("transformer_encoder" in n for n in names)
        assert src.info(QUERY_0).shape == (32, 4, 8)
        with h5py.File(preset / "model.weights.h5") as h5:
            raw = h5["layers/transformer_encoder_1/_self_attention_layer/query_dense/vars/0"][()]
        np.testing.assert_array_equal(src.read(QUERY_0.replace("layer_0", "layer_1")), raw)
        assert src.sidecar("vocab.txt") == preset / "assets" / "tokenizer" / "vocabulary.txt"
        assert src.sidecar("config.json") is None  # a Keras config, not a model config


def test_inspect_names_the_layout(converted):
    name, _, _ = converted
    report = inspect_checkpoint(keras_era_dir(name))
    assert (report.family, report.layout) == ("bert", "keras_hub")
    assert report.inferred_config["num_attention_heads"] == 4  # stated by the einsum kernels' shapes


def test_conversion_check_passes(converted):
    name, _, report = converted
    assert report.architecture == PRESETS[name][1] and report.layout == "keras_hub"
    assert report.validation is not None and report.validation.passed
    assert not report.unknown_dropped
    if name != "keras_hub_backbone":
        assert report.training_state_dropped == {"optimizer": 2}
    if name == "keras_hub_masked_lm":
        assert len(report.heads_dropped) == 5 and all(n.startswith("task/mlm_head/") for n in report.heads_dropped)


def test_transformers_matches_keras_hub_golden(converted, monkeypatch):
    name, out, _ = converted
    gold = golden(name)
    if name == "keras_hub_masked_lm":
        del gold["mlm_logits"]  # the head is refused (below); the encoder and pooler are compared
    worst = worst_differences(transformers_outputs(out, gold, monkeypatch), gold)
    assert {"embeddings", "layer_0", "layer_1", "sequence_output", "pooled_output"} <= set(worst)
    assert name != "keras_hub_classifier" or "classifier_logits" in worst
    assert max(worst.values()) < TOLERANCE, worst


def test_tokenizer_and_config(converted):
    _, out, report = converted
    tokenizer = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer["do_lower_case"] is False and report.do_lower_case is False
    vocab = keras_era_dir("keras_hub_backbone") / "assets" / "tokenizer" / "vocabulary.txt"
    assert (out / "vocab.txt").read_text(encoding="utf-8") == vocab.read_text(encoding="utf-8")
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_act"] == "gelu_new" and config["layer_norm_eps"] == 1e-12  # the encoder's tanh GELU


def test_casing_comes_from_tokenizer_json(tmp_path):
    if not hasattr(TensorSource, "lower_case"):
        pytest.skip("this tree's conversion does not read casing a reader records (TensorSource.lower_case)")
    preset = tmp_path / "preset"
    shutil.copytree(keras_era_dir("keras_hub_backbone"), preset)
    tokenizer = json.loads((preset / "tokenizer.json").read_text())
    tokenizer["config"]["lowercase"] = True
    (preset / "tokenizer.json").write_text(json.dumps(tokenizer))
    report = convert(preset, tmp_path / "out", validate=False)
    assert report.do_lower_case is True
    assert json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())["do_lower_case"] is True


def test_validate_and_diff_work(converted):
    name, out, _ = converted
    assert validate(out, against=keras_era_dir(name), device="cpu").passed
    report = diff(keras_era_dir(name), out / "model.safetensors")
    assert report.passed and report.compared and not report.missing_in_b and not report.unexpected_in_b


def test_masked_lm_head_is_refused_and_why(tmp_path, monkeypatch):
    """No Hugging Face BertForMaskedLM config computes KerasHub's head (exact GELU, epsilon 1e-5,
    on a tanh/1e-12 encoder). Measured here: the head's weights are mapped right (an exact head
    matches KerasHub within the tolerance), and the closest config transformers can load misses
    by far more than the tolerance; so the conversion refuses that head."""
    preset = keras_era_dir("keras_hub_masked_lm")
    with pytest.raises(MappingError, match="1e-5") as info:
        convert(preset, tmp_path / "refused")
    assert "--head base" in str(info.value) and not (tmp_path / "refused").exists()
    assert main(["tf2pt", str(preset), str(tmp_path / "refused2")]) == 2

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    base = tmp_path / "base"
    convert(preset, base, head="base", validate=False)
    config = transformers.BertConfig.from_pretrained(base)
    model = transformers.BertForMaskedLM(config).eval()
    from safetensors.torch import load_file
    state = load_file(str(base / "model.safetensors"))
    with open_source(preset) as src:
        head = {target: torch.from_numpy(np.array(src.read(f"task/mlm_head/{source}")))
                for source, target in (("intermediate_dense/vars/0", "cls.predictions.transform.dense.weight"),
                                       ("intermediate_dense/vars/1", "cls.predictions.transform.dense.bias"),
                                       ("intermediate_layer_norm/vars/0", "cls.predictions.transform.LayerNorm.weight"),
                                       ("intermediate_layer_norm/vars/1", "cls.predictions.transform.LayerNorm.bias"),
                                       ("vars/0", "cls.predictions.bias"))}
    head["cls.predictions.transform.dense.weight"] = head["cls.predictions.transform.dense.weight"].T.contiguous()
    # a BertModel is saved without the "bert." prefix; BertForMaskedLM has no pooler
    state = {f"bert.{k}": v for k, v in state.items() if not k.startswith("pooler.")}
    missing, unexpected = model.load_state_dict({**state, **head}, strict=False)
    assert not unexpected and set(missing) <= {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    model.tie_weights()
    gold = golden("keras_hub_masked_lm")
    inputs = {k: torch.tensor(gold[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}

    def logits():
        with torch.no_grad():
            return model(**inputs).logits.numpy()

    as_configured = float(np.max(np.abs(logits() - gold["mlm_logits"])))
    transform = model.cls.predictions.transform
    transform.transform_act_fn = torch.nn.GELU()  # exact erf, as KerasHub's head
    transform.LayerNorm.eps = 1e-5
    exact_head = float(np.max(np.abs(logits() - gold["mlm_logits"])))
    assert exact_head < TOLERANCE < as_configured / 10, (exact_head, as_configured)
