"""bertconv inspect on every format, and what it infers."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bertconv.inspection import inspect_checkpoint, tensor_stats

from .conftest import ROOT, fixture_dir


def test_pretrain_summary():
    report = inspect_checkpoint(fixture_dir("bert_pretrain"))
    assert report.format == "tf-bundle" and report.family == "bert" and report.naming == "tf"
    assert report.heads == {"mlm": True, "nsp": True, "classifier": False, "squad": False}
    cfg = json.loads((fixture_dir("bert_pretrain") / "bert_config.json").read_text())
    for key, value in report.inferred_config.items():
        assert cfg[key] == value, key
    assert report.config_problems == []
    assert report.totals["training"]["tensors"] == 0
    assert report.totals["model"]["params"] == report.totals["all"]["params"]


def test_classifier_training_state_and_global_step():
    pytest.importorskip("tensorflow", reason="TensorFlow reads the global_step value for comparison")
    import tensorflow as tf
    path = fixture_dir("bert_classifier")
    report = inspect_checkpoint(path)
    assert report.heads["classifier"] and report.heads["num_labels"] == 3
    reader = tf.train.load_checkpoint(str(path / "bert_model.ckpt"))
    assert report.global_step == int(reader.get_tensor("global_step"))
    slots = [r for r in report.tensors if r.role.startswith("slot:adam_")]
    model = [r for r in report.tensors if r.category == "model"]
    assert len(slots) == 2 * len(model)
    assert report.totals["training"]["params"] == 2 * report.totals["model"]["params"] + 1


def test_adam_slots_are_training_state():
    report = inspect_checkpoint(fixture_dir("bert_adam"))
    kinds = {r.name: r.role for r in report.tensors if r.category == "training"}
    assert kinds["bert/embeddings/word_embeddings/Adam"] == "slot:Adam"
    assert kinds["bert/embeddings/word_embeddings/Adam_1"] == "slot:Adam_1"
    assert kinds["beta1_power"] == "counter"
    assert not [r for r in report.tensors if r.category == "other"]


def test_stats_match_numpy():
    import tensorflow as tf
    path = fixture_dir("bert_pretrain")
    report = inspect_checkpoint(path, stats=True, filter="bert/embeddings/*")
    reader = tf.train.load_checkpoint(str(path / "bert_model.ckpt"))
    assert report.tensors and all(r.name.startswith("bert/embeddings/") for r in report.tensors)
    for row in report.tensors:
        value = reader.get_tensor(row.name).astype(np.float64)
        assert row.stats["min"] == pytest.approx(value.min())
        assert row.stats["max"] == pytest.approx(value.max())
        assert row.stats["mean"] == pytest.approx(value.mean(), abs=1e-12)
        assert row.stats["std"] == pytest.approx(value.std(), rel=1e-9)
        assert row.stats["nan"] == 0 and row.stats["inf"] == 0


def test_stats_count_nan_and_inf():
    arr = np.array([1.0, np.nan, np.inf, -np.inf, 3.0], np.float32)
    s = tensor_stats(arr)
    assert (s["nan"], s["inf"], s["min"], s["max"], s["mean"]) == (1, 2, 1.0, 3.0, 2.0)


def test_sort_by_size():
    report = inspect_checkpoint(fixture_dir("bert_pretrain"), sort="size")
    sizes = [r.bytes for r in report.tensors]
    assert sizes == sorted(sizes, reverse=True)


def test_converted_outputs_inspect_the_same(tmp_path):
    from bertconv.conversion import convert
    src = fixture_dir("bert_classifier")
    convert(src, tmp_path / "hf", validate=False)
    tf_report = inspect_checkpoint(src)
    pt_report = inspect_checkpoint(tmp_path / "hf")
    assert pt_report.format == "safetensors" and pt_report.naming == "pt"
    assert pt_report.inferred_config == tf_report.inferred_config
    assert pt_report.heads == tf_report.heads
    assert pt_report.totals["model"]["params"] == tf_report.totals["model"]["params"]
    assert pt_report.totals["other"]["tensors"] == 0


@pytest.mark.parametrize("target", ["tf", "safetensors"])
def test_inspect_imports_neither_torch_nor_tensorflow(target, tmp_path):
    path = fixture_dir("bert_pretrain")
    if target == "safetensors":
        from bertconv.conversion import convert
        convert(path, tmp_path / "m.safetensors", format="safetensors", validate=False)
        path = tmp_path / "m.safetensors"
    code = ("import sys; from bertconv.cli import main; rc = main(['inspect', '--stats', '--json', %r]);"
            "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules];"
            "sys.stderr.write(repr(bad)); sys.exit(rc or (3 if bad else 0))") % str(path)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["family"] == "bert"


@pytest.mark.parametrize("args", [["--version"], ["inspect", "--json", "TF"], ["inspect", "TF"], ["inspect", "HF"]])
def test_listing_a_checkpoint_starts_without_numpy(args, tmp_path):
    # Start-up is most of what `inspect` costs: the readers parse the TF index and the safetensors
    # header without NumPy, which is imported only for values (--stats, global_step) or conversion.
    if "HF" in args:
        from bertconv.conversion import convert
        convert(fixture_dir("bert_pretrain"), tmp_path / "hf", validate=False)
    paths = {"TF": str(fixture_dir("bert_pretrain")), "HF": str(tmp_path / "hf")}
    args = [paths.get(a, a) for a in args]
    code = ("import sys; from bertconv.cli import main\n"
            "try:\n    rc = main(%r)\nexcept SystemExit as e:\n    rc = e.code\n"
            "bad = [m for m in ('numpy', 'ml_dtypes', 'torch', 'tensorflow') if m in sys.modules]\n"
            "sys.stderr.write(repr(bad)); sys.exit(rc or (3 if bad else 0))") % args
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "bert" in proc.stdout
