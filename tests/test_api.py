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


def test_console_script_exits_with_the_commands_code():
    # what the installed `bertconv` runs: pyproject's entry point, in a process of its own
    import tomllib
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["bertconv"]
    module, function = entry.split(":")
    script = f"import sys; from {module} import {function}; sys.exit({function}())"
    ok = subprocess.run([sys.executable, "-c", script, "inspect", str(fixture_dir("bert_pretrain"))],
                        cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and "bert/pooler/dense/kernel" in ok.stdout
    missing = subprocess.run([sys.executable, "-c", script, "inspect", "no/such/checkpoint"],
                             cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("bertconv: error:")


def test_torch_is_imported_with_the_collector_paused_and_restored():
    code = ("import gc, sys\n"
            "from bertconv.torch_import import import_torch\n"
            "seen = []\n"
            "gc.callbacks.append(lambda phase, info: seen.append(phase))\n"
            "torch = import_torch()\n"
            "assert 'torch' in sys.modules and torch is sys.modules['torch']\n"
            "assert gc.isenabled() and not seen, seen[:3]\n")  # no collection ran during the import
    caller_paused = "import gc; gc.disable()\nfrom bertconv.torch_import import import_torch\n" \
                    "import_torch(); assert not gc.isenabled()\n"  # the caller's choice is kept
    for script in (code, caller_paused):
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
