"""ALBERT end to end: google-research/albert checkpoints (plain and TF-Hub's ``module/`` prefix),
written by real TensorFlow, convert to Hugging Face directories that transformers loads offline and
that match TensorFlow's golden outputs; validate passes against the checkpoint with ALBERT's own
reference and fails on a broken conversion."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bertconv.conversion import convert
from bertconv.errors import CheckFailed, ConfigError
from bertconv.inspection import inspect_checkpoint
from bertconv.validation import validate

from .conftest import FIXTURES, missing_fixture

TOLERANCE = 2e-5
INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def albert_fixture(name: str):
    path = FIXTURES / name
    if not (path / "albert_config.json").is_file():
        missing_fixture(f"fixture {name} is missing: run `.venv/bin/python fixtures/make_albert_electra_fixtures.py`")
    return path


@pytest.fixture(scope="module", params=["albert_pretrain", "albert_hub"])
def converted(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "hf"
    report = convert(albert_fixture(request.param), out)
    return request.param, out, report


def test_conversion_report_and_files(converted):
    name, out, report = converted
    assert report.family == "albert" and report.architecture == "AlbertForPreTraining"
    assert report.heads == ["mlm", "nsp"] and report.validation.passed
    assert report.validation.worst_max_abs() < 1e-5
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "albert" and config["hidden_act"] == "gelu_new"  # ALBERT's tanh GELU
    assert config["embedding_size"] == 16 and config["num_hidden_layers"] == 3
    assert config["num_hidden_groups"] == 1 and config["inner_group_num"] == 1
    if name == "albert_pretrain":
        assert (out / "spiece.model").read_bytes() == (albert_fixture(name) / "30k-clean.model").read_bytes()
        assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "AlbertTokenizer"


def test_transformers_loads_offline_and_matches_tf(converted, monkeypatch):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    name, out, report = converted
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = transformers.AutoModelForPreTraining.from_pretrained(out, local_files_only=True).eval()
    assert type(model).__name__ == "AlbertForPreTraining"
    golden = np.load(albert_fixture(name) / "golden.npz")
    with torch.no_grad():
        result = model(**{k: torch.from_numpy(golden[k]) for k in INPUTS}, output_hidden_states=True)
    # hidden_states[0] is after embedding_hidden_mapping_in: the golden embeddings are before it
    got = {f"layer_{i}": h for i, h in enumerate(result.hidden_states[1:])}
    got["mlm_logits"], got["nsp_logits"] = result.prediction_logits, result.sop_logits
    mask = golden["attention_mask"].astype(bool)
    worst = {}
    for key, value in got.items():
        have, want = value.numpy(), golden[key]
        if have.ndim == 3:
            have, want = have[mask], want[mask]  # padded positions are defined in neither model
        worst[key] = float(np.max(np.abs(have - want)))
    assert len(got) == 5 and max(worst.values()) <= TOLERANCE, worst


def test_validate_against_checkpoint_and_golden(converted):
    name, out, _ = converted
    report = validate(out, against=albert_fixture(name), device="cpu")
    assert report.passed, report.render()
    compared = {o.name for o in report.runs[0].outputs}
    assert {"embeddings", "layer_2", "pooled_output", "mlm_logits", "nsp_logits"} <= compared
    report = validate(out, golden=albert_fixture(name) / "golden.npz", device="cpu")
    assert report.passed, report.render()


def test_swapped_layer_norms_fail_validation(converted, tmp_path):
    """A conversion that puts LayerNorm (after attention) where LayerNorm_1 (after the FFN) goes."""
    from safetensors.numpy import load_file, save_file

    name, out, _ = converted
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    tensors = load_file(broken / "model.safetensors")
    block = "albert.encoder.albert_layer_groups.0.albert_layers.0."
    for leaf in ("weight", "bias"):
        a, b = block + "attention.LayerNorm." + leaf, block + "full_layer_layer_norm." + leaf
        tensors[a], tensors[b] = tensors[b], tensors[a]
    save_file(tensors, broken / "model.safetensors")
    report = validate(broken, against=albert_fixture(name), device="cpu")
    assert not report.passed and report.first_diverging == "layer_0"
    with pytest.raises(CheckFailed):
        report.raise_for_failure()


def test_tf_gelu_meaning_matters(converted, tmp_path):
    """The erf GELU in place of ALBERT's tanh one is caught (the subtlest conversion bug)."""
    name, out, _ = converted
    changed = tmp_path / "erf"
    shutil.copytree(out, changed)
    config = json.loads((changed / "config.json").read_text())
    config["hidden_act"] = "gelu"
    (changed / "config.json").write_text(json.dumps(config))
    report = validate(changed, against=albert_fixture(name), device="cpu")
    assert not report.passed


def test_inspect_shows_family_and_heads():
    for name in ("albert_pretrain", "albert_hub"):
        report = inspect_checkpoint(albert_fixture(name))
        assert report.family == "albert" and report.naming == "tf"
        assert report.heads["mlm"] and report.heads["nsp"] and not report.heads["classifier"]
        assert report.totals["model"]["tensors"] == 32 and report.config_problems == []
        assert report.inferred_config["embedding_size"] == 16 and "num_hidden_layers" not in report.inferred_config


def test_without_config_refuses_naming_what_is_needed(tmp_path):
    src = tmp_path / "albert"
    shutil.copytree(albert_fixture("albert_pretrain"), src)
    (src / "albert_config.json").unlink()
    with pytest.raises(ConfigError, match="num_hidden_layers") as e:
        convert(src, tmp_path / "out")
    assert "--config albert_config.json" in str(e.value) + str(getattr(e.value, "hint", ""))
    assert not (tmp_path / "out").exists()


def test_mlm_only_and_base_exports(tmp_path):
    mlm = convert(albert_fixture("albert_pretrain"), tmp_path / "mlm", head="mlm")
    assert mlm.architecture == "AlbertForMaskedLM" and mlm.validation.passed
    base = convert(albert_fixture("albert_pretrain"), tmp_path / "base", head="base")
    assert base.architecture == "AlbertModel" and base.validation.passed


ALBERT_TEXT = ["Hello world, the model plays!", "``Quoted'' text   with  spaces", "Café 1,000 naïve",
               "unknown ✓ symbols"]


# the TF-Hub module directory (albert_hub) ships no SentencePiece model: this is the pretraining one's
@pytest.mark.parametrize("converted", ["albert_pretrain"], indirect=True)
def test_tokenizer_json_loads_offline_and_matches_huggingface_conversion(converted, monkeypatch):
    """tokenizer.json is written from the SentencePiece model without the sentencepiece package;
    transformers loads it offline, and it tokenizes as transformers' own AlbertConverter (reading
    the same model with protobuf) does."""
    transformers = pytest.importorskip("transformers", reason="transformers is the client that loads it")
    pytest.importorskip("google.protobuf", reason="the oracle parses the model with protobuf")
    from transformers.convert_slow_tokenizer import AlbertConverter

    _, out, _ = converted
    assert (out / "spiece.model").is_file()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert (out / "tokenizer.json").is_file()
    loaded = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)

    class Original:  # what AlbertConverter reads from a slow tokenizer
        vocab_file = str(out / "spiece.model")
        keep_accents = False
        do_lower_case = True
        add_prefix_space = True

        def convert_tokens_to_ids(self, token):
            return loaded.convert_tokens_to_ids(token)

    oracle = AlbertConverter(Original()).converted()
    for text in ALBERT_TEXT:
        want = oracle.encode(text).ids
        assert loaded(text)["input_ids"] == want, text
        assert loaded(text, "a pair")["input_ids"] == oracle.encode(text, "a pair").ids
    assert loaded("hello")["input_ids"][0] == loaded.convert_tokens_to_ids("[CLS]")
