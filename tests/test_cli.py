"""The command line: exit codes, one-line errors, JSON that parses."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bertconv.cli import main

from .conftest import FIXTURES, fixture_dir


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
    rc, stdout, err = run(capsys, "inspect", fixture_dir("bert_classifier"), "--tensors")
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


def test_debug_applies_to_its_own_call_only(capsys):
    rc, _, err = run(capsys, "inspect", "/nonexistent/x.safetensors", "--debug")
    assert rc == 2 and "Traceback" in err
    rc, _, err = run(capsys, "inspect", "/nonexistent/x.safetensors")
    assert rc == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("bertconv: error: "), err


def test_an_option_reads_the_same_on_every_command():
    # --dtype and --atol mean one dtype / a comma list, and a per-dtype / zero default: the help
    # says which; every other option shared by two commands has one help text
    from bertconv.cli import cli

    helps: dict[str, dict[str, str]] = {}
    for name, command in cli.commands.items():
        for param in command.params:
            if getattr(param, "help", None) is not None:
                helps.setdefault("/".join(param.opts), {})[name] = param.help
    for option in ("--family", "--tower", "--no-verify-crc", "--overwrite", "-q/--quiet", "--json"):
        assert len(set(helps[option].values())) == 1, (option, helps[option])
    assert set(helps["--no-verify-crc"]) == {"inspect", "tf2pt", "validate", "diff"}
    assert set(helps["--overwrite"]) == {"tf2pt", "pt2tf", "validate"}
    assert set(helps["--tower"]) == {"tf2pt", "validate", "diff"}
    # --dtype: the dtype written (tf2pt), the dtypes run (validate), the dtype a memory estimate runs in
    assert set(helps["--dtype"]) == {"tf2pt", "validate", "inspect"} and set(helps["--atol"]) == {"validate", "diff"}


def test_validate_dtypes_are_checked_as_tf2pts_are(capsys, tmp_path):
    rc, _, err = run(capsys, "validate", tmp_path, "--against", tmp_path, "--dtype", "float32,int8")
    assert rc == 2 and "'int8' is not one of float32, float16, bfloat16" in err, err


def test_save_golden_replaces_a_file_only_with_overwrite(capsys, tmp_path):
    src = fixture_dir("bert_noheads")
    out = tmp_path / "hf"
    assert run(capsys, "tf2pt", src, out, "--no-validate", "-q")[0] == 0
    golden = tmp_path / "golden.npz"
    golden.write_bytes(b"not to be lost")
    rc, _, err = run(capsys, "validate", out, "--against", src, "--save-golden", golden)
    assert rc == 2 and "already exists" in err and "--overwrite" in err, err
    assert golden.read_bytes() == b"not to be lost"
    rc, _, err = run(capsys, "validate", out, "--against", src, "--save-golden", golden, "--overwrite")
    assert rc == 0, err
    rc, _, err = run(capsys, "validate", out, "--golden", golden)
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["golden.npz", "hf"]


def test_validate_and_diff_read_damaged_data_only_with_no_verify_crc(capsys, copy_fixture, tmp_path):
    from bertconv import open_source

    src = copy_fixture("bert_pretrain")
    out = tmp_path / "hf"
    assert run(capsys, "tf2pt", src, out, "--no-validate", "-q")[0] == 0
    tensor = "bert/pooler/dense/kernel"
    with open_source(src) as source:
        stored = source.read(tensor).tobytes()
    data = src / "bert_model.ckpt.data-00000-of-00001"
    whole = data.read_bytes()
    at = whole.find(stored)
    assert at >= 0 and whole.find(stored, at + 1) < 0
    data.write_bytes(whole[:at] + np.float32(100.0).tobytes() + whole[at + 4:])  # one weight made wrong
    for command in (["diff", src, out], ["validate", out, "--against", src]):
        rc, _, err = run(capsys, *command)
        assert rc == 2 and "crc32c" in err and tensor in err, err
        rc, stdout, err = run(capsys, *command, "--no-verify-crc")
        assert rc == 1, err  # read, and found to differ
    rc, stdout, _ = run(capsys, "diff", src, out, "--no-verify-crc")
    assert tensor in stdout


def test_step_picks_a_training_directorys_checkpoint(capsys):
    # --step means the same on every command that reads a TF training directory
    assert main(["inspect", str(FIXTURES / "reader" / "steps"), "--step", "100", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["global_step"] == 100
    assert main(["inspect", str(FIXTURES / "reader" / "steps"), "--step", "7"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "steps here: 100, 300" in err
