"""bertconv.diff (bertconv.comparison): weight-level comparison, mapping-aware between TF and PyTorch namings."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from bertconv.comparison import diff
from bertconv.errors import CheckFailed, InputError
from bertconv.formats import open_source

from .conftest import ROOT, fixture_dir


def write(path, tensors):
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    return path


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(7)
    tensors = {"layer.0.weight": rng.standard_normal((4, 6)).astype(np.float32),
               "layer.0.bias": rng.standard_normal(4).astype(np.float32),
               "head.weight": rng.standard_normal((2, 4)).astype(np.float32)}
    return tensors, write(tmp_path / "a.safetensors", tensors)


def test_identical(pair, tmp_path):
    tensors, a = pair
    b = write(tmp_path / "b.safetensors", tensors)
    report = diff(a, b)
    assert report.identical and report.passed
    assert len(report.compared) == 3 and report.worst is None
    report.raise_for_failure()
    data = report.to_dict()
    json.dumps(data)
    assert data["identical"] is True and data["summary"]["compared"] == 3
    assert report.render().splitlines()[-1] == "IDENTICAL"


def test_perturbed_tensor_is_named_with_its_max_abs(pair, tmp_path):
    tensors, a = pair
    changed = dict(tensors)
    changed["layer.0.weight"] = tensors["layer.0.weight"].copy()
    changed["layer.0.weight"][2, 3] += np.float32(0.5)
    b = write(tmp_path / "b.safetensors", changed)
    report = diff(a, b)
    assert not report.passed and not report.identical
    [bad] = report.beyond_tolerance
    assert bad.name == "layer.0.weight" and bad.num_different == 1
    expected = abs(float(changed["layer.0.weight"][2, 3]) - float(tensors["layer.0.weight"][2, 3]))
    assert bad.max_abs == pytest.approx(expected, rel=1e-12)
    assert report.summary()["worst"]["name"] == "layer.0.weight"
    with pytest.raises(CheckFailed, match=r"layer\.0\.weight \(max abs 0\.5"):
        report.raise_for_failure()
    assert "DIFFERS  layer.0.weight" in report.render()
    loose = diff(a, b, atol=0.6)
    assert loose.passed and not loose.identical
    assert diff(a, b, rtol=1e-9).passed is False


def test_missing_unexpected_and_shape_mismatch(pair, tmp_path):
    tensors, a = pair
    changed = {k: v for k, v in tensors.items() if k != "head.weight"}
    changed["extra"] = np.zeros(3, np.float32)
    changed["layer.0.bias"] = np.zeros(5, np.float32)
    b = write(tmp_path / "b.safetensors", changed)
    report = diff(a, b)
    assert report.missing_in_b == ["head.weight"]
    assert report.unexpected_in_b == ["extra"]
    assert report.shape_mismatches == [("layer.0.bias", "layer.0.bias", (4,), (5,))]
    assert not report.passed
    with pytest.raises(CheckFailed) as err:
        report.raise_for_failure()
    message = str(err.value)
    assert "1 missing in B (first head.weight)" in message and "unexpected in B (first extra)" in message
    assert "shape mismatch" in message and "\n" not in message


def test_dtype_mismatch_is_reported_and_values_judged(pair, tmp_path):
    tensors, a = pair
    b = write(tmp_path / "b.safetensors", {k: v.astype(np.float16) for k, v in tensors.items()})
    report = diff(a, b)
    assert len(report.dtype_mismatches) == 3 and not report.passed
    assert ("head.weight", "head.weight", "float32", "float16") in report.dtype_mismatches
    relaxed = diff(a, b, atol=1e-2)
    assert relaxed.passed and not relaxed.identical


def test_nan_and_inf_in_both_are_equal(tmp_path):
    values = np.array([np.nan, np.inf, -np.inf, 1.0], np.float32)
    a = write(tmp_path / "a.safetensors", {"x": values})
    assert diff(a, write(tmp_path / "b.safetensors", {"x": values})).identical
    other = values.copy()
    other[0] = 0.0
    report = diff(a, write(tmp_path / "c.safetensors", {"x": other}))
    assert report.compared[0].max_abs == np.inf and not report.passed


def test_large_tensor_is_compared_in_blocks(tmp_path, monkeypatch):
    diff_module = importlib.import_module("bertconv.comparison")
    monkeypatch.setattr(diff_module, "BLOCK_ELEMENTS", 100)
    rng = np.random.default_rng(3)
    big = rng.standard_normal((57, 31)).astype(np.float32)
    moved = big.copy()
    moved[-1, -1] += 2.0
    report = diff(write(tmp_path / "a.safetensors", {"t": big}), write(tmp_path / "b.safetensors", {"t": moved}))
    assert report.compared[0].max_abs == pytest.approx(2.0, abs=1e-6) and report.compared[0].num_different == 1


def test_bad_tolerance():
    with pytest.raises(InputError):
        diff("a", "b", atol=-1)


# --------------------------------------------------------------------- TF against its conversion
def _convert(src, out, **kw):
    from bertconv.conversion import convert
    convert(src, out, format="safetensors", validate=False, **kw)
    return out


def test_tf_against_its_conversion(tmp_path):
    src = fixture_dir("bert_pretrain")
    out = _convert(src, tmp_path / "pt.safetensors")
    for a, b in ((src, out), (out, src)):
        report = diff(a, b)
        assert report.identical, report.render()
        assert report.family == "bert" and {report.naming_a, report.naming_b} == {"tf", "pt"}
        transposed = [d for d in report.compared if d.transform == "transpose"]
        assert transposed and all(d.max_abs == 0 for d in transposed)
    with open_source(src) as tf:
        model_tensors = [n for n in tf.names() if n.startswith(("bert/", "cls/"))]
    assert len(report.compared) == len(model_tensors)


def test_tf_against_perturbed_kernel_names_the_tf_tensor(tmp_path):
    src = fixture_dir("bert_pretrain")
    out = _convert(src, tmp_path / "pt.safetensors")
    tensors = load_file(str(out))
    key = "bert.encoder.layer.1.intermediate.dense.weight"      # [I, H], the transposed kernel
    tensors[key] = tensors[key].copy()
    tensors[key][3, 1] += np.float32(0.25)
    bad = write(tmp_path / "bad.safetensors", tensors)
    report = diff(src, bad)
    [worst] = report.beyond_tolerance
    assert worst.name == "bert/encoder/layer_1/intermediate/dense/kernel" and worst.name_b == key
    assert worst.transform == "transpose" and worst.num_different == 1
    assert worst.max_abs == pytest.approx(0.25, rel=1e-5)
    with pytest.raises(CheckFailed, match="layer_1/intermediate/dense/kernel"):
        report.raise_for_failure()


def test_training_state_is_ignored_not_missing(tmp_path):
    src = fixture_dir("bert_adam")
    out = _convert(src, tmp_path / "pt.safetensors")
    report = diff(src, out)
    assert report.passed and report.identical
    kinds = {kind for side, _, kind in report.ignored_training_state if side == "a"}
    assert "counter" in kinds and any(k.startswith("slot:") for k in kinds)
    assert not report.missing_in_b
    assert "ignored in A (training state)" in report.render()


def test_heads_dropped_in_conversion_are_set_aside(tmp_path):
    """B's model class (BertModel, from its metadata) has no heads: the TF heads are listed as
    outside its architecture, not missing; the weights it does have are compared."""
    src = fixture_dir("bert_pretrain")
    out = _convert(src, tmp_path / "base.safetensors", head="base")
    report = diff(src, out)
    assert not report.missing_in_b and not report.unexpected_in_b and not report.shape_mismatches
    outside = report.outside_architecture
    assert outside and all(n.startswith("cls/") and arch == "BertModel" for _, n, _, arch in outside)
    assert report.passed and not report.identical
    # a bare BertModel file is saved without the "bert." prefix and still pairs up
    assert any(d.name_b.startswith("encoder.layer.") for d in report.compared)
    # without B's architecture known, the heads are plainly missing
    from safetensors.numpy import load_file, save_file
    save_file(load_file(str(out)), str(tmp_path / "bare.safetensors"))
    bare = diff(src, tmp_path / "bare.safetensors")
    assert bare.missing_in_b and all(n.startswith("cls/") for n in bare.missing_in_b) and not bare.passed


def test_hf_bin_with_tied_decoder_duplicates(tmp_path):
    torch = pytest.importorskip("torch")
    src = fixture_dir("bert_pretrain")
    out = _convert(src, tmp_path / "pt.safetensors")
    state = {k: torch.from_numpy(v.copy()) for k, v in load_file(str(out)).items()}
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
    state["bert.embeddings.position_ids"] = torch.arange(64).unsqueeze(0)   # older HF releases
    torch.save(state, tmp_path / "pytorch_model.bin")
    report = diff(src, tmp_path / "pytorch_model.bin")
    assert report.identical, report.render()
    aliases = {d.name_b: d.name for d in report.compared if d.alias}
    assert aliases == {"cls.predictions.decoder.weight": "bert/embeddings/word_embeddings",
                       "cls.predictions.decoder.bias": "cls/predictions/output_bias"}
    assert report.ignored_buffers == [("b", "bert.embeddings.position_ids")]
    # between the two PyTorch files the duplicates pair with the originals too
    assert diff(out, tmp_path / "pytorch_model.bin").identical

    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"] + 1.0
    torch.save(state, tmp_path / "untied.bin")
    report = diff(src, tmp_path / "untied.bin")
    assert [d.name_b for d in report.beyond_tolerance] == ["cls.predictions.decoder.weight"]


def test_tf_against_tf_checkpoint(tmp_path):
    """Two TF checkpoints written by TensorFlow itself: a changed variable is found by name."""
    tf = pytest.importorskip("tensorflow")
    v1 = tf.compat.v1
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((4, 3)).astype(np.float32)

    def save(prefix, value):
        graph = tf.Graph()
        with graph.as_default():
            v1.get_variable("bert/pooler/dense/kernel", initializer=value)
            v1.get_variable("global_step", initializer=np.int64(7))
            saver = v1.train.Saver()
            with v1.Session(graph=graph) as sess:
                sess.run(v1.global_variables_initializer())
                saver.save(sess, str(prefix))

    save(tmp_path / "a" / "model.ckpt", kernel)
    moved = kernel.copy()
    moved[0, 0] += 1.0
    save(tmp_path / "b" / "model.ckpt", moved)
    report = diff(tmp_path / "a" / "model.ckpt", tmp_path / "b" / "model.ckpt")
    assert [d.name for d in report.beyond_tolerance] == ["bert/pooler/dense/kernel"]
    assert report.beyond_tolerance[0].max_abs == pytest.approx(1.0)
    assert {n for _, n, _ in report.ignored_training_state} == {"global_step"}


def test_diff_imports_neither_torch_nor_tensorflow(tmp_path):
    src = fixture_dir("bert_noheads")
    out = _convert(src, tmp_path / "m.safetensors")
    code = f"""
        import sys
        from bertconv.comparison import diff
        report = diff({str(src)!r}, {str(out)!r})
        print(report.identical, "torch" in sys.modules, "tensorflow" in sys.modules)
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "False"]


@pytest.mark.parametrize("name", ["garden_v3", "garden_v2", "bert_squad"])
def test_other_layouts_against_their_conversion(name, tmp_path):
    """Each family's table brings its tensors to the PyTorch layout (head merges included), and
    the SQuAD pooler, which BertForQuestionAnswering ignores, is written and compared equal."""
    from bertconv.conversion import convert
    src = fixture_dir(name)
    convert(src, tmp_path / "hf", validate=False)
    for a, b in ((src, tmp_path / "hf"), (tmp_path / "hf", src)):
        report = diff(a, b)
        assert report.passed, report.render()
        assert report.compared and all(d.max_abs == 0 for d in report.compared)
        assert not report.missing_in_b and not report.unexpected_in_b
    if name == "bert_squad":
        assert not [n for _, n, part, _ in report.outside_architecture if part == "pooler"]
        assert sorted(d.name_b for d in report.compared if "pooler" in d.name_b) == [
            "bert/pooler/dense/bias", "bert/pooler/dense/kernel"]
