"""Shared by the NEZHA and RoFormer-v2 tests: converted directories loaded by transformers with
``trust_remote_code=True`` in one fresh process (tests/remote_code_check.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECK = Path(__file__).with_name("remote_code_check.py")
#: the bound every output must meet against the original code's golden values
TOLERANCE = 2e-5


def run_remote(checks: list[tuple[Path, Path, str]], tmp_path: Path) -> list[dict]:
    """Each (directory, golden file, auto class) loaded by transformers in one fresh process,
    offline, from a folder where bertconv is not importable: the modeling code must stand on its
    own."""
    pytest.importorskip("transformers")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    arguments = [str(a) for check in checks for a in check]
    done = subprocess.run([sys.executable, str(CHECK), *arguments], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.strip().splitlines()[-len(checks):]]


def imported_modules(text: str) -> set[str]:
    """The top-level modules a Python source imports ("." for its own relative imports)."""
    import ast

    imported = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("." if node.level else node.module.split(".")[0])
    return imported
