"""Shared by the Keras-era tests: a converted directory run by transformers itself, offline, and
compared with the golden outputs the writing library computed (fixtures/keras_era/*/golden.npz)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import FIXTURES, missing_fixture

KERAS_ERA = FIXTURES / "keras_era"
#: the bound every output must meet against the library's own golden values
TOLERANCE = 2e-5


def keras_era_dir(name: str) -> Path:
    path = KERAS_ERA / name
    if not (path / "golden.npz").is_file():
        missing_fixture(f"fixture {name} is missing: run the fixtures/make_*_fixtures.py script that writes it")
    return path


def golden(name: str, file: str = "golden.npz") -> dict[str, np.ndarray]:
    with np.load(keras_era_dir(name) / file) as data:
        return {k: data[k] for k in data.files}


def converted_once(tmp_path_factory, convert_fixture):
    """fixture name -> (its converted directory, the conversion's report), each fixture converted
    by ``convert_fixture(name, out)`` the first time a test asks for it (a module-scoped fixture
    returns this, so the tests of one file share the conversions)."""
    made = {}

    def get(name: str):
        if name not in made:
            out = tmp_path_factory.mktemp(name) / "hf"
            made[name] = (out, convert_fixture(name, out))
        return made[name]
    return get


def transformers_outputs(directory: Path, gold: dict[str, np.ndarray], monkeypatch,
                         attention_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every named output of the model transformers builds from ``directory`` (the class its
    config.json names), loaded with the hub offline, on the golden file's inputs."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from bertconv.families import get_family

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    architecture = json.loads((directory / "config.json").read_text())["architectures"][0]
    model = getattr(transformers, architecture).from_pretrained(directory).eval()
    mask = gold["attention_mask"] if attention_mask is None else attention_mask
    with torch.no_grad():
        result = model(input_ids=torch.tensor(gold["input_ids"]), token_type_ids=torch.tensor(gold["token_type_ids"]),
                       attention_mask=torch.tensor(mask), output_hidden_states=True)
        named = get_family("bert").transformers_outputs(model, result)
    return {k: v.numpy() for k, v in named.items()}


def worst_differences(got: dict[str, np.ndarray], gold: dict[str, np.ndarray]) -> dict[str, float]:
    """Max abs difference on every golden output (inputs and softmax probabilities aside); an
    output the golden file holds that the model did not produce fails the comparison."""
    skip = {"input_ids", "token_type_ids", "attention_mask"}
    out = {}
    for key, want in gold.items():
        if key in skip or key.endswith("_probabilities"):
            continue
        assert key in got, f"the converted model gives no {key}, which the library computed"
        out[key] = float(np.max(np.abs(got[key].astype(np.float64) - want.astype(np.float64))))
    return out
