"""Hugging Face Keras HDF5 weights (tf_model.h5) convert through the keras_hf table: a BERT whose
weights came from a checkpoint written by TensorFlow, laid out as TFBertForPreTraining saves them,
converts to a directory that transformers loads and that reproduces TensorFlow's golden outputs."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from bertconv.cli import main
from bertconv.conversion import convert
from bertconv.errors import MappingError
from bertconv.formats import open_source
from bertconv.inspection import inspect_checkpoint

from .conftest import FIXTURES, fixture_dir, missing_fixture

h5py = pytest.importorskip("h5py")
TOLERANCE = 2e-5


def keras_name(google: str, scope: str) -> tuple[str, str, bool]:
    """google-research/bert name -> (Keras layer, full weight name, transpose?) as TFBert* saves it."""
    name, transpose = google, False
    if name == "cls/predictions/output_bias":
        return "mlm___cls", f"{scope}/mlm___cls/predictions/bias:0", False
    if name.startswith("cls/seq_relationship/"):
        leaf = "kernel" if name.endswith("output_weights") else "bias"
        return "nsp___cls", f"{scope}/nsp___cls/seq_relationship/{leaf}:0", leaf == "kernel"
    if name.startswith("cls/predictions/"):
        return "mlm___cls", f"{scope}/mlm___cls/{name[len('cls/'):]}:0", False
    name = re.sub(r"layer_(\d+)/", r"layer_._\1/", name)
    if name == "bert/embeddings/word_embeddings":
        name += "/weight"
    elif name.endswith("_embeddings"):
        name += "/embeddings"
    return "bert", f"{scope}/{name}:0", transpose


def write_keras_h5(path, checkpoint_dir, scope="tf_bert_for_pre_training", extra=None):
    layers: dict[str, list[tuple[str, np.ndarray]]] = {"bert": [], "nsp___cls": [], "mlm___cls": []}
    layers.update(extra or {})
    with open_source(checkpoint_dir) as src:
        for google in src.names():
            if not (google.startswith("bert/") or google.startswith("cls/")):
                continue
            layer, full, transpose = keras_name(google, scope)
            value = np.array(src.read(google))
            layers[layer].append((full, value.T.copy() if transpose else value))
    with h5py.File(path, "w") as f:
        layers = {k: v for k, v in layers.items() if v}
        f.attrs["layer_names"] = [k.encode() for k in layers]
        for layer, weights in layers.items():
            group = f.create_group(layer)
            group.attrs["weight_names"] = [full.encode() for full, _ in weights]
            for full, value in weights:
                group.create_dataset(full, data=value)


@pytest.fixture(scope="module")
def hf_tf_dir(tmp_path_factory):
    """A Hugging Face TF model directory: tf_model.h5 + config.json + vocab.txt."""
    source = fixture_dir("bert_pretrain")
    out = tmp_path_factory.mktemp("keras") / "model"
    out.mkdir()
    write_keras_h5(out / "tf_model.h5", source)
    google = json.loads((source / "bert_config.json").read_text())
    config = {**google, "hidden_act": "gelu_new", "model_type": "bert", "architectures": ["TFBertForPreTraining"],
              "layer_norm_eps": 1e-12}
    (out / "config.json").write_text(json.dumps(config))
    shutil.copyfile(source / "vocab.txt", out / "vocab.txt")
    return out


def test_converts_and_transformers_matches_tf_golden(hf_tf_dir, tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    report = convert(hf_tf_dir / "tf_model.h5", tmp_path / "hf", validate=False)
    assert report.family == "bert" and report.layout == "keras_hf" and report.architecture == "BertForPreTraining"
    assert report.config_origin.endswith("config.json") and report.unknown_dropped == []
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["hidden_act"] == "gelu_new"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = transformers.AutoModelForPreTraining.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    golden = np.load(fixture_dir("bert_pretrain") / "golden.npz")
    inputs = {k: torch.from_numpy(golden[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}
    with torch.no_grad():
        result = model(**inputs, output_hidden_states=True)
    got = {"embeddings": result.hidden_states[0], "mlm_logits": result.prediction_logits,
           "nsp_logits": result.seq_relationship_logits}
    got.update({f"layer_{i}": h for i, h in enumerate(result.hidden_states[1:])})
    mask = golden["attention_mask"].astype(bool)
    worst = {}
    for key, value in got.items():
        have, want = value.numpy(), golden[key]
        if have.ndim == 3:
            have, want = have[mask], want[mask]
        worst[key] = float(np.max(np.abs(have - want)))
    assert max(worst.values()) <= TOLERANCE, worst


def test_weights_are_copied_bit_exactly_from_the_shared_fixture(tmp_path):
    from safetensors.numpy import load_file

    path = FIXTURES / "h5" / "tf_model.h5"
    if not path.is_file():
        missing_fixture("fixture h5/tf_model.h5 is missing: run `.venv/bin/python fixtures/make_h5_fixtures.py`")
    report = convert(path, tmp_path / "out.safetensors", format="safetensors", validate=False)
    assert report.tensors_written == 46 and report.heads == ["mlm", "nsp"]
    written = load_file(tmp_path / "out.safetensors")
    with h5py.File(path, "r") as f:
        def weight(name):
            layer = name.split("/")[1] if name.split("/")[1] != "bert" else "bert"
            return f[layer][name][()]
        scope = "tf_bert_for_pre_training/"
        q = weight(scope + "bert/encoder/layer_._1/attention/self/query/kernel:0")
        assert written["bert.encoder.layer.1.attention.self.query.weight"].tobytes() == q.T.copy().tobytes()
        nsp = weight(scope + "nsp___cls/seq_relationship/kernel:0")
        assert written["cls.seq_relationship.weight"].tobytes() == nsp.T.copy().tobytes()
        word = weight(scope + "bert/embeddings/word_embeddings/weight:0")
        assert written["bert.embeddings.word_embeddings.weight"].tobytes() == word.tobytes()


def test_classifier_only_under_a_sequence_classification_scope(tmp_path):
    def build(scope):
        directory = tmp_path / scope
        directory.mkdir()
        path = directory / "tf_model.h5"
        rng = np.random.default_rng(0)
        classifier = [(f"{scope}/classifier/kernel:0", rng.standard_normal((32, 3)).astype(np.float32)),
                      (f"{scope}/classifier/bias:0", np.zeros(3, np.float32))]
        write_keras_h5(path, fixture_dir("bert_noheads"), scope=scope, extra={"classifier": classifier})
        shutil.copyfile(fixture_dir("bert_noheads") / "bert_config.json", directory / "bert_config.json")
        return path

    report = convert(build("tf_bert_for_sequence_classification"), tmp_path / "seq", validate=False)
    assert report.architecture == "BertForSequenceClassification"
    assert json.loads((tmp_path / "seq" / "config.json").read_text())["id2label"]["2"] == "LABEL_2"
    with pytest.raises(MappingError, match="classifier/kernel:0"):
        convert(build("tf_bert_for_token_classification"), tmp_path / "tok", validate=False)


def test_inspect_and_cli(hf_tf_dir, tmp_path, capsys):
    report = inspect_checkpoint(hf_tf_dir / "tf_model.h5")
    assert report.family == "bert" and report.layout == "keras_hf" and report.naming == "tf"
    assert report.heads["mlm"] and report.heads["nsp"]
    assert report.totals["model"]["tensors"] == report.totals["all"]["tensors"] == 46
    assert main(["tf2pt", str(hf_tf_dir / "tf_model.h5"), str(tmp_path / "out"), "--no-validate", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["family"] == "bert" and data["layout"] == "keras_hf" and data["architecture"] == "BertForPreTraining"


def test_default_validation_reads_huggingface_gelu_as_erf(hf_tf_dir, tmp_path):
    """A tf_model.h5 config's "gelu" is Hugging Face's exact erf GELU: the check before publishing
    and `validate` use that meaning, and a model computing the tanh form instead is caught."""
    import json
    import shutil

    from bertconv.validation import validate
    source = tmp_path / "src"
    shutil.copytree(hf_tf_dir, source)
    config = json.loads((source / "config.json").read_text())
    config["hidden_act"] = "gelu"
    (source / "config.json").write_text(json.dumps(config))
    report = convert(source / "tf_model.h5", tmp_path / "hf")
    assert report.validation.passed
    assert validate(tmp_path / "hf", against=source / "tf_model.h5").passed
    converted = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert converted["hidden_act"] == "gelu" and converted["bertconv"]["source_hidden_act"] == "gelu_exact"
    converted["hidden_act"] = "gelu_new"  # the model now computes the tanh form
    (tmp_path / "hf" / "config.json").write_text(json.dumps(converted))
    assert not validate(tmp_path / "hf", against=source / "tf_model.h5").passed
