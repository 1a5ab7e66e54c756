"""pt2tf writes checkpoints in google-research/bert's own format: TF -> tf2pt -> pt2tf gives back
the original weights bit for bit (read by TensorFlow itself), and google-research/bert's graph
restores the result and reproduces the original golden outputs."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from bertconv.cli import main
from bertconv.conversion import convert
from bertconv.errors import ConfigError, MappingError
from bertconv.conversion import pt2tf

from .conftest import BERT_FIXTURES, FIXTURES, fixture_dir

tf = pytest.importorskip("tensorflow", reason="TensorFlow reads the written checkpoint as the judge")
sys.path.insert(0, str(FIXTURES))
import tf_bert_graph  # noqa: E402


@pytest.fixture(scope="module", params=BERT_FIXTURES)
def round_trip(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    converted = convert(fixture_dir(request.param), root / "hf", validate=False)
    report = pt2tf(root / "hf", root / "tf")
    return request.param, root, converted, report


def test_round_trip_is_bit_exact(round_trip):
    name, root, converted, report = round_trip
    original = tf.train.load_checkpoint(str(fixture_dir(name) / "bert_model.ckpt"))
    written = tf.train.load_checkpoint(str(root / "tf" / "bert_model.ckpt"))
    written_names = set(written.get_variable_to_shape_map())
    exported = {t for t in original.get_variable_to_shape_map()
                if t in written_names}
    assert written_names == exported and len(written_names) == converted.tensors_written
    for tensor in sorted(written_names):
        a, b = original.get_tensor(tensor), written.get_tensor(tensor)
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape, tensor
        assert a.tobytes() == b.tobytes(), tensor
    assert report.tensors_written == converted.tensors_written
    config = json.loads((root / "tf" / "bert_config.json").read_text())
    assert config == json.loads((fixture_dir(name) / "bert_config.json").read_text())
    assert (root / "tf" / "vocab.txt").read_bytes() == (fixture_dir(name) / "vocab.txt").read_bytes()
    assert "bert_model.ckpt" in (root / "tf" / "checkpoint").read_text()


def test_google_graph_restores_it_and_reproduces_golden(round_trip):
    name, root, converted, report = round_trip
    # every trained weight is kept (a SQuAD fine-tune's pooler too), so Google's graph, which
    # builds a pooler whatever the head, restores every variable it builds
    golden = np.load(fixture_dir(name) / "golden.npz")
    inputs = {k: golden[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    outputs = tf_bert_graph.golden_outputs(root / "tf", inputs)
    # The same graph over the original checkpoint, on this machine: weights copied bit for bit
    # give TensorFlow's outputs bit for bit. The golden file was computed elsewhere, where float32
    # kernels may round differently (a few ulps), so it is held to float32 rounding only.
    original = tf_bert_graph.golden_outputs(fixture_dir(name), inputs)
    compared = 0
    for key, value in outputs.items():
        assert value.tobytes() == original[key].tobytes(), key
        if key in golden.files:
            np.testing.assert_allclose(value, golden[key], rtol=0, atol=1e-5, err_msg=key)
            compared += 1
    assert compared >= 4


def test_tied_decoder_alias_is_checked_and_untied_one_refused(tmp_path):
    from safetensors.numpy import load_file, save_file

    convert(fixture_dir("bert_pretrain"), tmp_path / "hf", validate=False)
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    weights["cls.predictions.decoder.weight"] = weights["bert.embeddings.word_embeddings.weight"].copy()
    weights["cls.predictions.decoder.bias"] = weights["cls.predictions.bias"].copy()
    save_file(weights, tmp_path / "hf" / "model.safetensors")
    report = pt2tf(tmp_path / "hf", tmp_path / "tied")
    assert report.aliases_checked == ["cls.predictions.decoder.bias", "cls.predictions.decoder.weight"]

    weights["cls.predictions.decoder.weight"] = weights["cls.predictions.decoder.weight"] + 1
    save_file(weights, tmp_path / "hf" / "model.safetensors")
    with pytest.raises(MappingError, match="untied decoder"):
        pt2tf(tmp_path / "hf", tmp_path / "untied")
    assert not (tmp_path / "untied").exists()


def test_unknown_tensor_is_an_error_and_nothing_is_written(tmp_path):
    from safetensors.numpy import load_file, save_file

    convert(fixture_dir("bert_noheads"), tmp_path / "hf", validate=False)
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    weights["adapter.weight"] = np.zeros((2, 2), np.float32)
    save_file(weights, tmp_path / "hf" / "model.safetensors")
    with pytest.raises(MappingError, match=r"1 tensor\(s\) are not BERT weights: adapter.weight"):
        pt2tf(tmp_path / "hf", tmp_path / "tf")
    assert not (tmp_path / "tf").exists()


def test_exact_gelu_needs_explicit_consent(tmp_path):
    convert(fixture_dir("bert_noheads"), tmp_path / "hf", validate=False, gelu="exact")
    with pytest.raises(ConfigError, match="exact erf GELU"):
        pt2tf(tmp_path / "hf", tmp_path / "tf")
    report = pt2tf(tmp_path / "hf", tmp_path / "tf", allow_exact_gelu=True)
    assert report.hidden_act == "gelu" and any("tanh" in n for n in report.notes)


def test_a_checkpoint_that_reads_back_wrong_is_not_published(tmp_path, monkeypatch):
    from bertconv.errors import CheckFailed
    from bertconv.formats import tf_bundle_writer

    convert(fixture_dir("bert_noheads"), tmp_path / "hf", validate=False)
    write = tf_bundle_writer.write_tf_bundle

    def one_bit_off(prefix, tensors, **kwargs):
        def changed():
            for name, array in tensors:
                if name == "bert/pooler/dense/bias":
                    array = array.copy()
                    array.view(np.uint32)[0] ^= 1
                yield name, array
        return write(prefix, changed(), **kwargs)

    monkeypatch.setattr(tf_bundle_writer, "write_tf_bundle", one_bit_off)
    with pytest.raises(CheckFailed, match="bert/pooler/dense/bias reads back with other values"):
        pt2tf(tmp_path / "hf", tmp_path / "tf")
    assert not (tmp_path / "tf").exists()
    report = pt2tf(tmp_path / "hf", tmp_path / "tf", validate=False)   # the check skipped, as asked
    assert report.tensors_checked == 0 and (tmp_path / "tf").is_dir()


def test_cli_pt2tf_json(tmp_path, capsys):
    convert(fixture_dir("bert_squad"), tmp_path / "hf", validate=False)
    assert main(["pt2tf", str(tmp_path / "hf"), str(tmp_path / "tf"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["heads"] == ["squad"] and data["hidden_act"] == "gelu"
    assert main(["pt2tf", str(tmp_path / "hf"), str(tmp_path / "tf")]) == 2   # exists, no --overwrite
