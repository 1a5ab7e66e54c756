from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
BERT_FIXTURES = ("bert_pretrain", "bert_classifier", "bert_squad", "bert_adam", "bert_noheads")


def missing_fixture(message: str):
    """A fixture that is not here: the test is skipped with ``message`` on a machine that has not
    generated every fixture, and fails under ``CI=true``, where a missing fixture is a fault."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{message} (CI=true: every fixture must be present)", pytrace=False)
    pytest.skip(message)


def fixture_dir(name: str) -> Path:
    path = FIXTURES / name
    if not (path / "bert_model.ckpt.index").is_file():
        missing_fixture(f"fixture {name} is missing: run `.venv/bin/python fixtures/make_bert_fixtures.py`")
    return path


@pytest.fixture
def copy_fixture(tmp_path):
    """A writable copy of a fixture directory, for tests that damage or edit it."""
    def make(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(fixture_dir(name), dst)
        return dst
    return make


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After a failure in random order (pytest-randomly), the seed that gives the same order again;
    nothing when the run passes."""
    seed = getattr(config.option, "randomly_seed", None)
    if exitstatus not in (0, 5) and isinstance(seed, int) and config.pluginmanager.hasplugin("randomly"):
        terminalreporter.write_line(f"the tests ran in random order: -p randomly --randomly-seed={seed} "
                                    "runs them in the same order again")
