"""Plausible inputs that are easy to get wrong: each ends in a correct output or one clear line."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bertconv.cli import main
from bertconv.conversion import convert
from bertconv.errors import CheckpointFormatError, InputError, OutputError
from bertconv.formats import open_source
from bertconv.inspection import inspect_checkpoint

from .conftest import FIXTURES, fixture_dir, missing_fixture


def cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err.strip()


def rewrite(src_dir, dst_dir, change):
    """A copy of a fixture whose tensors went through ``change(dict)``, written by our writer."""
    from bertconv.formats.tf_bundle_writer import write_tf_bundle
    with open_source(src_dir) as src:
        tensors = {n: np.array(src.read(n)) for n in src.names()}
    change(tensors)
    dst_dir.mkdir()
    write_tf_bundle(dst_dir / "bert_model.ckpt", sorted(tensors.items()))
    for extra in ("bert_config.json", "vocab.txt"):
        shutil.copy(src_dir / extra, dst_dir / extra)
    return dst_dir


def test_gelu_exact_is_checked_with_the_erf_reference(tmp_path):
    report = convert(fixture_dir("bert_pretrain"), tmp_path / "exact", gelu="exact")
    assert report.validation.passed
    assert any("--gelu exact" in note for note in report.notes)
    assert json.loads((tmp_path / "exact" / "config.json").read_text())["hidden_act"] == "gelu"


@pytest.mark.parametrize("where", ["same", "index", "inside"])
def test_output_never_replaces_the_source(where, copy_fixture, tmp_path):
    src = copy_fixture("bert_pretrain")
    target = {"same": src, "index": src / "bert_model.ckpt.index", "inside": src / "out"}[where]
    fmt = "safetensors" if where == "index" else "hf"
    if where == "inside":  # the vocabulary read lives inside the output directory
        target.mkdir()
        shutil.copy(src / "vocab.txt", target / "vocab.txt")
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    if where == "inside":
        with pytest.raises(OutputError, match="reads"):
            convert(src, target, overwrite=True, vocab=target / "vocab.txt")
    else:
        with pytest.raises(OutputError, match="which this run reads"):
            convert(src, target, format=fmt, overwrite=True)
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before
    assert open_source(src).names()


def test_float16_overflow_is_refused(tmp_path):
    def big(tensors):
        tensors["bert/embeddings/position_embeddings"][39, 0] = 1e5
    src = rewrite(fixture_dir("bert_pretrain"), tmp_path / "big", big)
    with pytest.raises(InputError, match="beyond float16's range") as err:
        convert(src, tmp_path / "out", dtype="float16")
    assert "position_embeddings" in str(err.value) and "bfloat16" in str(err.value)
    assert not (tmp_path / "out").exists()
    assert convert(src, tmp_path / "bf", dtype="bfloat16").validation.passed


def test_mlm_export_from_a_checkpoint_whose_nsp_has_no_pooler(tmp_path):
    def drop_pooler(tensors):
        del tensors["bert/pooler/dense/kernel"], tensors["bert/pooler/dense/bias"]
    src = rewrite(fixture_dir("bert_pretrain"), tmp_path / "nopool", drop_pooler)
    report = convert(src, tmp_path / "out", head="mlm")
    assert report.architecture == "BertForMaskedLM" and report.validation.passed


def test_tf2pt_prefers_the_tensorflow_checkpoint_in_a_mixed_directory(copy_fixture, tmp_path, capsys):
    src = copy_fixture("bert_pretrain")
    convert(src, tmp_path / "m.safetensors", format="safetensors", validate=False)
    shutil.copy(tmp_path / "m.safetensors", src / "model.safetensors")
    assert convert(src, tmp_path / "out").validation.passed
    rc, _, err = cli(capsys, "inspect", src)
    assert rc == 2 and "both a TensorFlow checkpoint and model.safetensors" in err
    assert inspect_checkpoint(src / "bert_model.ckpt").format == "tf-bundle"
    assert inspect_checkpoint(src / "model.safetensors").format == "safetensors"


def test_tf2pt_refuses_pytorch_input(tmp_path, capsys):
    convert(fixture_dir("bert_pretrain"), tmp_path / "hf", validate=False)
    rc, _, err = cli(capsys, "tf2pt", tmp_path / "hf", tmp_path / "again")
    assert rc == 2 and "tf2pt converts TensorFlow checkpoints" in err


def test_safetensors_without_suffix_and_trailing_slash(tmp_path, capsys):
    convert(fixture_dir("bert_pretrain"), tmp_path / "weights", format="safetensors", validate=False)
    assert inspect_checkpoint(tmp_path / "weights").format == "safetensors"
    rc, _, err = cli(capsys, "tf2pt", fixture_dir("bert_pretrain"), f"{tmp_path}/dir/", "--format", "safetensors")
    assert rc == 2 and "drop the trailing slash" in err and not (tmp_path / "dir").exists()


@pytest.mark.parametrize("name", ["v1", "v1/model.ckpt", "v1/model.ckpt.meta"])
def test_v1_checkpoints_are_named_as_such(name):
    with pytest.raises(CheckpointFormatError, match="V1"):
        inspect_checkpoint(FIXTURES / "reader" / name)


def test_vocab_token_with_a_unicode_line_separator(copy_fixture, tmp_path):
    src = copy_fixture("bert_pretrain")
    lines = (src / "vocab.txt").read_text(encoding="utf-8").split("\n")
    lines[-2] = "x\u2028y"  # the last token; Google's reader keeps it whole
    (src / "vocab.txt").write_text("\n".join(lines), encoding="utf-8")
    convert(src, tmp_path / "out", validate=False)
    assert "x\u2028y" in (tmp_path / "out" / "vocab.txt").read_text(encoding="utf-8").split("\n")


@pytest.mark.parametrize("target", [".", ".."])
def test_output_must_name_something(target, capsys):
    rc, _, err = cli(capsys, "tf2pt", fixture_dir("bert_noheads"), target, "--overwrite")
    assert rc == 2 and "must name a new file or directory" in err


@pytest.mark.parametrize("fixture,labels,message", [
    ("bert_pretrain", "a,b", "exports none"),
    ("bert_classifier", "a,a,b", "each class once"),
    ("bert_classifier", "a,,b", "each class once"),
])
def test_labels_are_checked(fixture, labels, message, tmp_path, capsys):
    rc, _, err = cli(capsys, "tf2pt", fixture_dir(fixture), tmp_path / "o", "--labels", labels)
    assert rc == 2 and message in err and not (tmp_path / "o").exists()


def test_with_transformers_is_for_bert_models(tmp_path, capsys):
    albert = FIXTURES / "albert_pretrain"
    if not albert.is_dir():
        missing_fixture("the ALBERT fixture is missing")
    convert(albert, tmp_path / "al", validate=False)
    rc, _, err = cli(capsys, "validate", tmp_path / "al", "--against", albert, "--with-transformers")
    assert rc == 2 and "--with-transformers runs BERT models" in err


def test_pt2tf_never_replaces_its_source(tmp_path):
    from bertconv.conversion import pt2tf
    convert(fixture_dir("bert_pretrain"), tmp_path / "hf", validate=False)
    before = sorted(p.name for p in (tmp_path / "hf").iterdir())
    with pytest.raises(OutputError, match="which this run reads"):
        pt2tf(tmp_path / "hf", tmp_path / "hf", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == before
