"""bert4keras 0.11.5 BERT files, written by bert4keras itself (fixtures/make_bert4keras_fixtures.py),
convert to Hugging Face directories that transformers loads offline and that reproduce the
library's own outputs (golden.npz): save_weights h5, save() h5 (model_config), a graph-mode
fine-tune with process-wide generated names, TF object checkpoints with positional keys only, and
a vocabulary pruned with keep_tokens."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bertconv.cli import main
from bertconv.conversion import convert
from bertconv.conversion.plan import plan_conversion
from bertconv.errors import ConfigError, MappingError, VocabError
from bertconv.formats import open_source
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

#: fixture -> (the file or prefix tf2pt reads, layout, architecture)
SOURCES = {
    "bert4keras_bert_h5": ("bert_weights.h5", "bert4keras", "BertForPreTraining"),
    "bert4keras_bert_saved": ("bert_model.h5", "bert4keras", "BertForPreTraining"),
    "bert4keras_classifier_h5": ("best_model.h5", "bert4keras", "BertForSequenceClassification"),
    "bert4keras_bert_ckpt": ("best_model.weights", "bert4keras_checkpoint", "BertForPreTraining"),
    "bert4keras_classifier_ckpt": ("best_model.weights", "bert4keras_checkpoint", "BertForSequenceClassification"),
    "bert4keras_keep_tokens_h5": ("bert_weights.h5", "bert4keras", "BertForMaskedLM"),
}


def source_of(name: str):
    return keras_era_dir(name) / SOURCES[name][0]


def extra_options(name: str) -> dict:
    if name == "bert4keras_keep_tokens_h5":
        return {"keep_tokens": keras_era_dir(name) / "keep_tokens.json"}
    return {}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """fixture name -> (its converted directory, the conversion's report), made once."""
    return converted_once(tmp_path_factory, lambda name, out: convert(source_of(name), out, **extra_options(name)))


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_inspect_names_the_family_and_layout(name):
    report = inspect_checkpoint(source_of(name))
    assert (report.family, report.naming, report.layout) == ("bert", "tf", SOURCES[name][1])


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_inspect_on_the_command_line_says_bert4keras(name, capsys):
    assert main(["inspect", str(source_of(name))]) == 0
    assert f"family bert, layout {SOURCES[name][1]}" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_converted_model_matches_the_librarys_own_outputs(name, converted, monkeypatch):
    out, report = converted(name)
    assert report.layout == SOURCES[name][1] and report.architecture == SOURCES[name][2]
    assert report.validation is not None and report.validation.passed  # the conversion's own check
    config = json.loads((out / "config.json").read_text())
    # bert4keras' "gelu" is the exact erf form: Hugging Face's "gelu"; LayerNorm 1e-12 for BERT
    assert config["hidden_act"] == "gelu" and config["layer_norm_eps"] == 1e-12
    gold = golden(name)
    worst = worst_differences(transformers_outputs(out, gold, monkeypatch), gold)
    assert worst and max(worst.values()) <= TOLERANCE, worst


@pytest.mark.parametrize("name", ["bert4keras_classifier_h5", "bert4keras_classifier_ckpt"])
def test_the_users_final_dense_becomes_a_sequence_classifier(name, converted):
    out, report = converted(name)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    assert report.unknown_dropped == []
    assert any("classifier with 3 labels" in note for note in report.notes), report.notes


def test_graph_mode_names_map_by_weight_names_order_not_sorted():
    """Transformer-0's attention dense layers are dense_7..dense_10: sorted, dense_10 would come
    first and be read as the query."""
    with open_source(source_of("bert4keras_classifier_h5")) as src:
        plan = plan_conversion(src)
        targets = {t.source: t.target for t in plan.tensors}
    prefix = "Transformer-0-MultiHeadSelfAttention_1/"
    assert targets[prefix + "dense_7/kernel:0"] == "bert.encoder.layer.0.attention.self.query.weight"
    assert targets[prefix + "dense_9/kernel:0"] == "bert.encoder.layer.0.attention.self.value.weight"
    assert targets[prefix + "dense_10/kernel:0"] == "bert.encoder.layer.0.attention.output.dense.weight"
    assert targets["Transformer-0-FeedForward_1/dense_12/kernel:0"] == "bert.encoder.layer.0.output.dense.weight"
    assert targets["Embedding-Token_1/embeddings:0"] == "bert.embeddings.word_embeddings.weight"
    assert targets["dense_19/kernel:0"] == "classifier.weight"


def test_beta_is_bias_and_gamma_is_weight(converted):
    from safetensors.numpy import load_file

    out, _ = converted("bert4keras_bert_h5")
    written = load_file(out / "model.safetensors")
    with h5py.File(source_of("bert4keras_bert_h5"), "r") as f:
        group = f["Embedding-Norm"]
        assert [n if isinstance(n, str) else n.decode() for n in group.attrs["weight_names"]] == \
            ["Embedding-Norm/beta:0", "Embedding-Norm/gamma:0"]
        np.testing.assert_array_equal(written["bert.embeddings.LayerNorm.bias"], group["Embedding-Norm/beta:0"][()])
        np.testing.assert_array_equal(written["bert.embeddings.LayerNorm.weight"], group["Embedding-Norm/gamma:0"][()])
        nsp = f["NSP-Proba"]["NSP-Proba/kernel:0"][()]
    assert nsp.shape == (32, 2)
    np.testing.assert_array_equal(written["cls.seq_relationship.weight"], nsp.T)


def test_saved_model_config_gives_what_a_missing_config_file_would(tmp_path, monkeypatch):
    """model.save() records the head count, epsilon and activation: without bert_config.json
    the conversion still matches the golden outputs, and says where the facts came from."""
    source = keras_era_dir("bert4keras_bert_saved")
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copyfile(source / "bert_model.h5", alone / "bert_model.h5")
    shutil.copyfile(source / "vocab.txt", alone / "vocab.txt")
    report = convert(alone / "bert_model.h5", tmp_path / "hf")
    assert report.config_origin == "inferred from the weights and the source's own records"
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["num_attention_heads"] == 4 and config["hidden_act"] == "gelu"
    assert config["layer_norm_eps"] == 1e-12 and config["intermediate_size"] == 48
    assert any("num_attention_heads=4, hidden_act='gelu_erf', layer_norm_eps=1e-12 from the model_config of "
               "bert_model.h5" in note for note in report.notes), report.notes
    gold = golden("bert4keras_bert_saved")
    worst = worst_differences(transformers_outputs(tmp_path / "hf", gold, monkeypatch), gold)
    assert max(worst.values()) <= TOLERANCE, worst


def test_weights_only_file_without_config_asks_for_the_head_count(tmp_path):
    source = keras_era_dir("bert4keras_bert_h5")
    shutil.copyfile(source / "bert_weights.h5", tmp_path / "bert_weights.h5")
    with pytest.raises(ConfigError, match="num_attention_heads"):
        convert(tmp_path / "bert_weights.h5", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_checkpoint_notes_say_how_positional_keys_were_read(converted):
    _, pretraining = converted("bert4keras_bert_ckpt")
    text = " ".join(pretraining.notes)
    assert "12 MLM-Dense and 13 MLM-Norm (a square dense followed by a LayerNorm)" in text
    assert "14 Pooler-Dense" in text and "15 MLM-Bias" in text and "16 NSP-Proba" in text
    assert "2-label classifier would have the same shape" in text
    _, classifier = converted("bert4keras_classifier_ckpt")
    text = " ".join(classifier.notes)
    assert "12 Pooler-Dense" in text and "13 the user's classifier with 3 labels on the pooled output" in text


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_validate_and_diff_work_on_the_converted_directory(name, converted, capsys):
    out, _ = converted(name)
    assert main(["validate", str(out), "--against", str(source_of(name)), "--seq-len", "12"]) == 0
    assert main(["validate", str(out), "--golden", str(keras_era_dir(name) / "golden.npz")]) == 0
    assert main(["diff", str(source_of(name)), str(out)]) == 0
    assert "IDENTICAL" in capsys.readouterr().out


def test_tokenizer_is_uncased_by_inference_with_a_note(converted):
    out, report = converted("bert4keras_bert_h5")
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer_config["do_lower_case"] is True and report.do_lower_case is True
    assert any(note.startswith("do_lower_case=True (vocab.txt has no capitalised") for note in report.notes)
    assert (out / "vocab.txt").read_text() == (keras_era_dir("bert4keras_bert_h5") / "vocab.txt").read_text()


# -- keep_tokens ---------------------------------------------------------------------------------

def test_pruned_vocabulary_without_the_kept_list_is_an_error_naming_the_option(tmp_path, capsys):
    name = "bert4keras_keep_tokens_h5"
    with pytest.raises(VocabError, match=r"124 tokens but the word embeddings have 113 rows.*keep_tokens"):
        convert(source_of(name), tmp_path / "hf")
    assert main(["tf2pt", str(source_of(name)), str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err
    assert "--keep-tokens" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "hf").exists() and not (tmp_path / "cli").exists()


def test_kept_token_list_writes_the_pruned_vocabulary(converted, monkeypatch):
    name = "bert4keras_keep_tokens_h5"
    out, report = converted(name)
    keep = json.loads((keras_era_dir(name) / "keep_tokens.json").read_text())
    full = (keras_era_dir(name) / "vocab.txt").read_text().split("\n")
    written = (out / "vocab.txt").read_text().rstrip("\n").split("\n")
    assert written == [full[i] for i in keep] and len(written) == 113
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 113
    assert any(note.startswith("vocab_size=113 as the weights store it, not the config's 124") for note in report.notes)
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert len(tokenizer) == 113 and tokenizer.mask_token is None  # bert4keras dropped [MASK]
    # the golden ids are pruned ids: the tokenizer reads them back as the kept tokens
    ids = golden(name)["input_ids"][0].tolist()
    assert tokenizer.convert_ids_to_tokens(ids) == [full[keep[i]] for i in ids]


def test_kept_token_list_of_the_wrong_length_is_refused(tmp_path):
    name = "bert4keras_keep_tokens_h5"
    keep = json.loads((keras_era_dir(name) / "keep_tokens.json").read_text())
    (tmp_path / "keep.json").write_text(json.dumps(keep[:-1]))
    with pytest.raises(VocabError, match="keeps 112 tokens but the word embeddings have 113 rows"):
        convert(source_of(name), tmp_path / "hf", keep_tokens=tmp_path / "keep.json")


# -- layers the user added -------------------------------------------------------------------------

def test_a_layer_that_is_not_a_final_dense_is_listed_as_unknown(tmp_path):
    """The graph-mode fine-tune with one more layer (a CRF's transition matrix, added to the file
    written by bert4keras): dense_19 is no longer the last layer, so neither is guessed into a head."""
    source = keras_era_dir("bert4keras_classifier_h5")
    path = tmp_path / "best_model.h5"
    shutil.copyfile(source / "best_model.h5", path)
    shutil.copyfile(source / "bert_config.json", tmp_path / "bert_config.json")
    shutil.copyfile(source / "vocab.txt", tmp_path / "vocab.txt")
    with h5py.File(path, "r+") as f:
        names = [n if isinstance(n, str) else n.decode() for n in f.attrs["layer_names"]]
        f.attrs["layer_names"] = names + ["crf"]
        group = f.create_group("crf")
        group.attrs["weight_names"] = ["crf/trans:0"]
        group.create_dataset("crf/trans:0", data=np.zeros((3, 3), np.float32))
    with pytest.raises(MappingError, match=r"dense_19/bias:0.*crf/trans:0|crf/trans:0.*dense_19"):
        convert(path, tmp_path / "hf")
    report = convert(path, tmp_path / "hf", allow_unknown=True)
    assert report.architecture == "BertModel"
    assert set(report.unknown_dropped) == {"dense_19/kernel:0", "dense_19/bias:0", "crf/trans:0"}
    assert any("left unmapped: dense_19, crf" in note for note in report.notes), report.notes


def test_a_two_label_head_in_a_checkpoint_is_read_as_a_classifier_and_the_note_says_why(tmp_path, monkeypatch):
    """A 2-label user head and NSP-Proba have the same shape and position; without a masked-LM
    head it is read as the user's classifier, and the note says that NSP-Proba would compute the
    same logits. (The classifier checkpoint written by bert4keras, its head cut to 2 labels.)"""
    from bertconv.formats.tf_bundle_writer import write_tf_bundle

    source = keras_era_dir("bert4keras_classifier_ckpt")
    head = "layer_with_weights-13/{}/.ATTRIBUTES/VARIABLE_VALUE"
    with open_source(source) as src:
        tensors = {n: np.array(src.read(n)) for n in src.names() if n != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    tensors[head.format("kernel")] = tensors[head.format("kernel")][:, :2].copy()
    tensors[head.format("bias")] = tensors[head.format("bias")][:2].copy()
    (tmp_path / "ck").mkdir()
    write_tf_bundle(tmp_path / "ck" / "best_model.weights", tensors.items())
    for name in ("bert_config.json", "vocab.txt"):
        shutil.copyfile(source / name, tmp_path / "ck" / name)
    report = convert(tmp_path / "ck", tmp_path / "hf")
    assert report.architecture == "BertForSequenceClassification" and report.validation.passed
    assert any("13 the user's classifier with 2 labels on the pooled output" in note
               and "NSP-Proba has the same shape and would compute the same logits" in note for note in report.notes)
    gold = golden("bert4keras_classifier_ckpt")
    got = transformers_outputs(tmp_path / "hf", gold, monkeypatch)
    np.testing.assert_allclose(got["classifier_logits"], gold["classifier_logits"][:, :2], atol=TOLERANCE, rtol=0)


def test_inspect_reports_a_pruned_vocabulary_in_one_line_and_how_a_checkpoint_was_read():
    report = inspect_checkpoint(source_of("bert4keras_keep_tokens_h5"))
    assert report.config_problems == []
    assert "vocab.txt has 124 tokens but the word embeddings have 113 rows: tf2pt needs --keep-tokens FILE, " \
           "the kept token ids" in report.notes
    report = inspect_checkpoint(source_of("bert4keras_classifier_ckpt"))
    assert any(note.startswith("positional checkpoint: 2 encoder layer(s)") for note in report.notes)
    report = inspect_checkpoint(source_of("bert4keras_bert_saved"))
    assert "num_attention_heads=4, recorded in the model_config of bert_model.h5" in report.notes


def test_the_h5_reader_offers_layer_order_weight_order_and_model_config():
    with open_source(source_of("bert4keras_classifier_h5")) as src:
        assert src.layer_names[:3] == ["Input-Token", "Input-Segment", "Embedding-Token"]
        assert src.layer_names[-2:] == ["dropout_4", "dense_19"]
        assert src.layer_weights["Transformer-0-MultiHeadSelfAttention"][::2] == [
            f"Transformer-0-MultiHeadSelfAttention_1/dense_{i}/kernel:0" for i in (7, 8, 9, 10)]
        assert "dropout_4" not in src.layer_weights and src.model_config() is None
    with open_source(source_of("bert4keras_bert_saved")) as src:  # save(): the tree under model_weights/
        assert src.layer_weights["Embedding-Norm"] == ["Embedding-Norm/beta:0", "Embedding-Norm/gamma:0"]
        layers = {layer["config"]["name"]: layer for layer in src.model_config()["config"]["layers"]}
        assert layers["Transformer-0-MultiHeadSelfAttention"]["config"]["heads"] == 4
        assert "top_level_model_weights" not in src.layer_weights


def test_kept_token_list_without_a_vocabulary_is_refused(tmp_path):
    name = "bert4keras_keep_tokens_h5"
    shutil.copyfile(source_of(name), tmp_path / "bert_weights.h5")
    shutil.copyfile(keras_era_dir(name) / "bert_config.json", tmp_path / "bert_config.json")
    with pytest.raises(VocabError, match="none is beside the checkpoint"):
        convert(tmp_path / "bert_weights.h5", tmp_path / "hf", keep_tokens=keras_era_dir(name) / "keep_tokens.json")


def test_a_directory_holding_one_h5_file_is_read_as_that_file(capsys):
    """Keras libraries save under names the user chose; the fixture directories each hold one."""
    for name in ("bert4keras_bert_h5", "bert4keras_classifier_h5"):
        assert main(["inspect", str(keras_era_dir(name))]) == 0
        assert "keras-h5, family bert, layout bert4keras" in capsys.readouterr().out
