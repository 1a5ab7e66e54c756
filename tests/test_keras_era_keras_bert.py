"""keras-bert 0.89 files, written by keras-bert itself (fixtures/make_keras_bert_fixtures.py),
convert to Hugging Face directories that transformers loads offline and that reproduce the
library's own outputs (golden.npz): a pretraining model (MLM + NSP) saved with save_weights, and a
base model saved with save() whose position table was cut to seq_len=12 while bert_config.json
says 16."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bertconv.cli import main
from bertconv.conversion import convert
from bertconv.errors import ConfigError
from bertconv.inspection import inspect_checkpoint

from .keras_era_transformers import (
    TOLERANCE,
    converted_once,
    golden,
    keras_era_dir,
    transformers_outputs,
    worst_differences,
)

h5py = pytest.importorskip("h5py")

#: fixture -> (the file tf2pt reads, architecture)
SOURCES = {
    "keras_bert_pretrain_h5": ("bert_weights.h5", "BertForPreTraining"),
    "keras_bert_base_saved": ("bert_model.h5", "BertModel"),
}


def source_of(name: str):
    return keras_era_dir(name) / SOURCES[name][0]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return converted_once(tmp_path_factory, lambda name, out: convert(source_of(name), out))


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_inspect_names_the_family_and_layout(name, capsys):
    report = inspect_checkpoint(source_of(name))
    assert (report.family, report.naming, report.layout) == ("bert", "tf", "keras_bert")
    assert main(["inspect", str(source_of(name))]) == 0
    assert "family bert, layout keras_bert" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_converted_model_matches_the_librarys_own_outputs(name, converted, monkeypatch):
    out, report = converted(name)
    assert report.layout == "keras_bert" and report.architecture == SOURCES[name][1]
    assert report.validation is not None and report.validation.passed
    config = json.loads((out / "config.json").read_text())
    # keras-bert: tanh GELU, LayerNorm epsilon K.epsilon() ** 2
    assert config["hidden_act"] == "gelu_new"
    assert config["layer_norm_eps"] == pytest.approx(1e-14, rel=1e-9)
    gold = golden(name)
    worst = worst_differences(transformers_outputs(out, gold, monkeypatch), gold)
    assert worst and max(worst.values()) <= TOLERANCE, worst


def test_position_table_cut_to_seq_len_is_converted_as_stored(converted):
    out, report = converted("keras_bert_base_saved")
    assert json.loads((keras_era_dir("keras_bert_base_saved") / "bert_config.json").read_text())[
        "max_position_embeddings"] == 16
    config = json.loads((out / "config.json").read_text())
    assert config["max_position_embeddings"] == 12
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 12
    assert any(note.startswith("max_position_embeddings=12 as the weights store it, not the config's 16")
               for note in report.notes), report.notes


def test_gamma_then_beta_and_the_heads_land_where_they_belong(converted):
    from safetensors.numpy import load_file

    out, _ = converted("keras_bert_pretrain_h5")
    written = load_file(out / "model.safetensors")
    with h5py.File(source_of("keras_bert_pretrain_h5"), "r") as f:
        norm = f["Embedding-Norm"]
        assert [n if isinstance(n, str) else n.decode() for n in norm.attrs["weight_names"]] == \
            ["Embedding-Norm/gamma:0", "Embedding-Norm/beta:0"]
        np.testing.assert_array_equal(written["bert.embeddings.LayerNorm.weight"], norm["Embedding-Norm/gamma:0"][()])
        np.testing.assert_array_equal(written["bert.embeddings.LayerNorm.bias"], norm["Embedding-Norm/beta:0"][()])
        attention = f["Encoder-2-MultiHeadSelfAttention"]
        wk = attention["Encoder-2-MultiHeadSelfAttention/Encoder-2-MultiHeadSelfAttention_Wk:0"][()]
        np.testing.assert_array_equal(written["bert.encoder.layer.1.attention.self.key.weight"], wk.T)
        np.testing.assert_array_equal(written["cls.predictions.bias"], f["MLM-Sim"]["MLM-Sim/bias:0"][()])
        np.testing.assert_array_equal(written["bert.pooler.dense.weight"], f["NSP-Dense"]["NSP-Dense/kernel:0"][()].T)
        np.testing.assert_array_equal(written["cls.seq_relationship.weight"], f["NSP"]["NSP/kernel:0"][()].T)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_validate_and_diff_work_on_the_converted_directory(name, converted, capsys):
    out, _ = converted(name)
    assert main(["validate", str(out), "--against", str(source_of(name)), "--seq-len", "12"]) == 0
    assert main(["validate", str(out), "--golden", str(keras_era_dir(name) / "golden.npz")]) == 0
    assert main(["diff", str(source_of(name)), str(out)]) == 0
    assert "IDENTICAL" in capsys.readouterr().out


def test_tokenizer_is_uncased_by_inference_with_a_note(converted):
    out, report = converted("keras_bert_pretrain_h5")
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is True
    assert any(note.startswith("do_lower_case=True (vocab.txt has no capitalised") for note in report.notes)


def test_saved_model_config_gives_the_head_count_activation_and_epsilon(tmp_path, monkeypatch):
    """Without bert_config.json, a save() file's model_config records what the shapes do not."""
    source = keras_era_dir("keras_bert_base_saved")
    shutil.copyfile(source / "bert_model.h5", tmp_path / "bert_model.h5")
    shutil.copyfile(source / "vocab.txt", tmp_path / "vocab.txt")
    report = convert(tmp_path / "bert_model.h5", tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["num_attention_heads"] == 4 and config["hidden_act"] == "gelu_new"
    assert config["layer_norm_eps"] == pytest.approx(1e-14, rel=1e-9) and config["max_position_embeddings"] == 12
    assert any("from the model_config of bert_model.h5" in note for note in report.notes), report.notes
    gold = golden("keras_bert_base_saved")
    worst = worst_differences(transformers_outputs(tmp_path / "hf", gold, monkeypatch), gold)
    assert max(worst.values()) <= TOLERANCE, worst


def test_weights_only_file_without_config_asks_for_the_head_count(tmp_path):
    shutil.copyfile(source_of("keras_bert_pretrain_h5"), tmp_path / "bert_weights.h5")
    with pytest.raises(ConfigError, match="num_attention_heads"):
        convert(tmp_path / "bert_weights.h5", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_inspect_reports_the_cut_position_table_as_a_fact_not_a_problem():
    report = inspect_checkpoint(source_of("keras_bert_base_saved"))
    assert report.config_problems == [] and report.inferred_config["max_position_embeddings"] == 12
    assert any(note.startswith("max_position_embeddings=12 as the weights store it, not the config's 16")
               for note in report.notes), report.notes
