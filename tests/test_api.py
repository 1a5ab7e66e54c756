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
    back = bertconv.pt2tf(tmp_path / "out", tmp_path / "tf-again")
    assert back.tensors_checked == back.tensors_written == report.tensors_written
    options = bertconv.ConvertOptions(dtype="float16", overwrite=True)
    half = bertconv.convert(src, tmp_path / "out-fp16", options)
    assert half.dtype == "float16" and half.validation.passed
    assert bertconv.tf2pt is bertconv.convert
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


def test_converting_float32_without_validation_imports_neither_torch_nor_tensorflow(tmp_path):
    # what else a conversion does without (NumPy, logging...) is a start-up measure: bench/properties.py
    code = ("import sys; from bertconv.cli import main\n"
            f"rc = main(['tf2pt', {str(fixture_dir('bert_pretrain'))!r}, {str(tmp_path / 'out')!r}, "
            "'--no-validate', '-q'])\n"
            "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]\n"
            "sys.stderr.write(repr(bad)); sys.exit(rc or (3 if bad else 0))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_console_script_exits_with_the_commands_code():
    # what the installed `bertconv` runs: pyproject's entry point, in a process of its own
    import tomllib
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["bertconv"]
    module, function = entry.split(":")
    script = f"import sys; from {module} import {function}; sys.exit({function}())"
    ok = subprocess.run([sys.executable, "-c", script, "inspect", str(fixture_dir("bert_pretrain")),
                         "--tensors"],
                        cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and "bert/pooler/dense/kernel" in ok.stdout
    missing = subprocess.run([sys.executable, "-c", script, "inspect", "no/such/checkpoint"],
                             cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("bertconv: error:")


def test_importing_torch_leaves_the_collector_as_the_caller_had_it():
    # (that no collection runs during the import is a speed measure: bench/properties.py)
    enabled = ("import gc, sys\n"
               "from bertconv.torch_import import import_torch\n"
               "torch = import_torch()\n"
               "assert 'torch' in sys.modules and torch is sys.modules['torch']\n"
               "assert gc.isenabled()\n")
    caller_paused = "import gc; gc.disable()\nfrom bertconv.torch_import import import_torch\n" \
                    "import_torch(); assert not gc.isenabled()\n"
    for script in (enabled, caller_paused):
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_the_api_keeps_every_object_collectable():
    # A program calling the API goes on after it: nothing it made is frozen out of the collector
    # (the console script, whose process ends with its command, does freeze: bench/properties.py).
    code = ("import gc\n"
            "from bertconv import torch_import\n"
            "torch_import.import_torch()\n"
            "print(gc.get_freeze_count())\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 0
    from bertconv import torch_import
    assert torch_import.freeze_after_import is False  # as tests and scripts see it


def test_options_object_and_keywords_are_the_same_call(tmp_path):
    from dataclasses import FrozenInstanceError

    import pytest

    src = fixture_dir("bert_squad")
    assert bertconv.ConvertOptions(labels=["a", "b"]).labels == ("a", "b")
    options = bertconv.ConvertOptions(format="safetensors", validate=False)
    with pytest.raises(FrozenInstanceError):
        options.dtype = "float16"
    by_object = bertconv.convert(src, tmp_path / "a.safetensors", options)
    by_keywords = bertconv.convert(src, tmp_path / "b.safetensors", format="safetensors", validate=False)
    on_top = bertconv.convert(src, tmp_path / "c.safetensors", options, dtype="bfloat16")
    assert by_object.tensors_written == by_keywords.tensors_written and on_top.dtype == "bfloat16"
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    with pytest.raises(bertconv.InputError, match="unknown dtype 'float8'"):
        bertconv.ConvertOptions(dtype="float8")
    with pytest.raises(TypeError, match="unexpected keyword argument 'formt'"):
        bertconv.convert(src, tmp_path / "d", formt="hf")
    with pytest.raises(TypeError, match="unexpected keyword argument 'dtype'"):
        bertconv.pt2tf(tmp_path / "a.safetensors", tmp_path / "tf", dtype="float16")


def test_a_missing_fixture_fails_under_ci_and_is_skipped_elsewhere(monkeypatch):
    import pytest

    from .conftest import missing_fixture

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="fixture x is missing: run it.*CI=true"):
        missing_fixture("fixture x is missing: run it")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="^fixture x is missing: run it$"):
        missing_fixture("fixture x is missing: run it")
