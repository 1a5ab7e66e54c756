"""The Python API as the README shows it."""
from __future__ import annotations

import subprocess
import sys

import bertconv

from .conftest import ROOT, fixture_dir


def test_readme_api_round(tmp_path):
    src = fixture_dir("bert_pretrain")
    report = bertconv.convert(src, tmp_path / "out")
    assert report.architecture == "BertForPreTraining" and report.validation.passed
    info = bertconv.inspect_checkpoint(tmp_path / "out", stats=True)
    assert info.family == "bert" and all(r.stats for r in info.tensors)
    assert bertconv.validate(tmp_path / "out", against=src).passed
    assert bertconv.diff(src, tmp_path / "out").passed
    with bertconv.open_source(src / "bert_model.ckpt") as source:
        assert source.read("bert/pooler/dense/kernel").shape == (32, 32)
    # the functions stay functions after their modules have been imported by name
    import importlib
    importlib.import_module("bertconv.conversion")
    assert callable(bertconv.convert) and callable(bertconv.validate) and callable(bertconv.diff)


def test_import_loads_neither_torch_nor_tensorflow():
    code = "import sys, bertconv; sys.exit(3 if {'torch', 'tensorflow'} & set(sys.modules) else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_api_functions_survive_their_modules_being_imported_first():
    code = ("import bertconv.conversion, bertconv.validation, bertconv.comparison, bertconv.inspection, bertconv;"
            "assert all(callable(getattr(bertconv, n)) for n in bertconv.__all__ if n != '__version__');"
            "assert 'convert' in dir(bertconv)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_import_bertconv_loads_no_numpy():
    code = "import sys, bertconv; sys.exit(3 if 'numpy' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
