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


def test_converting_float32_without_validation_imports_only_its_data_path(tmp_path):
    # Start-up is most of a conversion's fixed cost: with the compiled kernels a float32 conversion
    # needs neither NumPy nor google-crc32c, and nothing imports what only an error path prints.
    from bertconv.conversion import compiled_data_path_available

    unwanted = ["torch", "tensorflow", "traceback", "concurrent.futures", "logging"]
    if compiled_data_path_available():
        unwanted += ["numpy", "google_crc32c"]
    code = ("import sys; from bertconv.cli import main\n"
            f"rc = main(['tf2pt', {str(fixture_dir('bert_pretrain'))!r}, {str(tmp_path / 'out')!r}, "
            "'--no-validate', '-q'])\n"
            f"bad = [m for m in {unwanted!r} if m in sys.modules]\n"
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


def test_only_the_console_script_freezes_torchs_objects():
    # The console script's process ends with its command, so torch's objects leave the collector
    # once imported; a program calling the API keeps every object collectable.
    code = ("import gc\n"
            "from bertconv import torch_import\n"
            "torch_import.freeze_after_import = {flag}\n"
            "torch_import.import_torch()\n"
            "print(gc.get_freeze_count())\n")
    counts = []
    for flag in (False, True):
        done = subprocess.run([sys.executable, "-c", code.format(flag=flag)], cwd=ROOT, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        counts.append(int(done.stdout))
    assert counts[0] == 0 and counts[1] > 50_000
    script = ("import sys\nfrom bertconv import cli, torch_import\n"
              "cli.main = lambda: print(torch_import.freeze_after_import) or 0\n"
              "sys.exit(cli.run())")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
    from bertconv import torch_import
    assert torch_import.freeze_after_import is False  # as tests and scripts see it
