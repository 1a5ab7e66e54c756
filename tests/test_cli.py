"""The command line: exit codes, one-line errors, JSON that parses."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bertconv.cli import main

from .conftest import fixture_dir


def run(capsys, *args):
    rc = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return rc, out, err


def test_tf2pt_then_validate_then_diff(capsys, tmp_path):
    src = fixture_dir("bert_pretrain")
    out = tmp_path / "hf"
    rc, stdout, err = run(capsys, "tf2pt", src, out)
    assert rc == 0, err
    assert "BertForPreTraining" in stdout and "validation" in stdout
    rc, stdout, err = run(capsys, "validate", out, "--against", src, "--json")
    assert rc == 0, err
    assert json.loads(stdout)["passed"] is True
    rc, stdout, err = run(capsys, "diff", src, out, "--json")
    assert rc == 0, err
    assert json.loads(stdout)["passed"] is True


def test_tf2pt_json(capsys, tmp_path):
    rc, stdout, err = run(capsys, "tf2pt", fixture_dir("bert_classifier"), tmp_path / "hf", "--json",
                          "--labels", "a,b,c", "--no-validate")
    assert rc == 0, err
    data = json.loads(stdout)
    assert data["architecture"] == "BertForSequenceClassification"
    assert data["training_state_dropped"]["adam_m"] > 0
    assert data["validation"] is None


def test_inspect_table_and_json(capsys):
    rc, stdout, err = run(capsys, "inspect", fixture_dir("bert_classifier"))
    assert rc == 0, err
    assert "bert/encoder/layer_0/attention/self/query/kernel" in stdout
    assert "sequence classifier (3 labels)" in stdout and "global_step" in stdout
    rc, stdout, err = run(capsys, "inspect", fixture_dir("bert_classifier"), "--json", "--stats")
    data = json.loads(stdout)
    assert data["heads"]["num_labels"] == 3
    assert all(r["stats"] is not None for r in data["tensors"])


@pytest.mark.parametrize("args", [
    ["inspect", "/nonexistent/bert_model.ckpt"],
    ["tf2pt", "/nonexistent", "/tmp/never-written"],
    ["tf2pt", "FIXTURE", "OUT", "--head", "squad"],
])
def test_bad_input_exit_2_one_line(capsys, tmp_path, args):
    args = [str(fixture_dir("bert_pretrain")) if a == "FIXTURE" else str(tmp_path / "o") if a == "OUT" else a
            for a in args]
    rc, stdout, err = run(capsys, *args)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bertconv: error: "), err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_debug_shows_traceback(capsys):
    rc, stdout, err = run(capsys, "inspect", "/nonexistent/x.safetensors", "--debug")
    assert rc == 2 and "Traceback" in err


def test_usage_error_is_exit_2(capsys):
    rc, stdout, err = run(capsys, "tf2pt", "--dtype", "int8", "a", "b")
    assert rc == 2


def test_diff_finds_a_change(capsys, tmp_path):
    from safetensors.numpy import load_file, save_file
    src = fixture_dir("bert_noheads")
    rc, _, err = run(capsys, "tf2pt", src, tmp_path / "a.safetensors", "--format", "safetensors", "--no-validate")
    assert rc == 0, err
    tensors = load_file(str(tmp_path / "a.safetensors"))
    key = "encoder.layer.1.output.dense.bias"
    tensors[key] = tensors[key] + np.float32(1e-3)
    save_file(tensors, str(tmp_path / "b.safetensors"))
    rc, stdout, err = run(capsys, "diff", tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert rc == 1
    assert key in stdout
