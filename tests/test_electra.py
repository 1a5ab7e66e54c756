"""ELECTRA end to end: a google-research/electra pretraining checkpoint (discriminator and a smaller
generator with shared embeddings), written by real TensorFlow, converts tower by tower to Hugging
Face directories that transformers loads offline and that match TensorFlow's golden outputs;
validate passes with ELECTRA's own reference (exact erf GELU) and fails on a broken conversion."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bertconv.conversion import convert
from bertconv.errors import InputError, MappingError
from bertconv.inspection import inspect_checkpoint
from bertconv.validation import validate

from .conftest import FIXTURES, missing_fixture

TOLERANCE = 2e-5
INPUTS = ("input_ids", "token_type_ids", "attention_mask")
TOWERS = {
    # tower: (architecture, Auto class, golden file, head output, transformers attribute)
    "discriminator": ("ElectraForPreTraining", "AutoModelForPreTraining", "golden.npz", "discriminator_logits"),
    "generator": ("ElectraForMaskedLM", "AutoModelForMaskedLM", "golden_generator.npz", "mlm_logits"),
}


def electra_fixture():
    path = FIXTURES / "electra_small"
    if not (path / "golden.npz").is_file():
        missing_fixture("fixture electra_small is missing: run `.venv/bin/python fixtures/make_albert_electra_fixtures.py`")
    return path


@pytest.fixture(scope="module", params=list(TOWERS))
def converted(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "hf"
    report = convert(electra_fixture(), out, tower=None if request.param == "discriminator" else request.param)
    return request.param, out, report


def test_conversion_report_and_config(converted):
    tower, out, report = converted
    assert report.family == "electra" and report.architecture == TOWERS[tower][0]
    assert report.validation.passed and report.validation.worst_max_abs() < 1e-5
    assert any("num_attention_heads=1 assumed" in n for n in report.notes)
    assert report.heads_dropped  # the other tower is recognised and left out, not unknown
    assert not report.unknown_dropped
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "electra" and config["hidden_act"] == "gelu"  # ELECTRA's erf GELU
    assert config["embedding_size"] == 16
    assert config["hidden_size"] == (64 if tower == "discriminator" else 32)
    assert config["bertconv"]["tower"] == tower
    assert (out / "vocab.txt").is_file()


def test_transformers_loads_offline_and_matches_tf(converted, monkeypatch):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    tower, out, _ = converted
    architecture, auto, golden_name, head_output = TOWERS[tower]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = getattr(transformers, auto).from_pretrained(out, local_files_only=True).eval()
    assert type(model).__name__ == architecture
    assert hasattr(model.electra, "embeddings_project")
    golden = np.load(electra_fixture() / golden_name)
    with torch.no_grad():
        result = model(**{k: torch.from_numpy(golden[k]) for k in INPUTS}, output_hidden_states=True)
    # hidden_states[0] is after embeddings_project: the golden embeddings are before it
    got = {f"layer_{i}": h for i, h in enumerate(result.hidden_states[1:])}
    got[head_output] = result.logits
    mask = golden["attention_mask"].astype(bool)
    worst = {}
    for key, value in got.items():
        have, want = value.numpy(), golden[key]
        have, want = have[mask], want[mask]  # padded positions are defined in neither model
        worst[key] = float(np.max(np.abs(have - want)))
    assert len(got) == 3 and max(worst.values()) <= TOLERANCE, worst


def test_validate_against_checkpoint_and_golden(converted):
    tower, out, _ = converted
    report = validate(out, against=electra_fixture(), device="cpu", tower=tower)
    assert report.passed, report.render()
    assert TOWERS[tower][3] in {o.name for o in report.runs[0].outputs}
    report = validate(out, golden=electra_fixture() / TOWERS[tower][2], device="cpu")
    assert report.passed, report.render()
    other = "generator" if tower == "discriminator" else "discriminator"
    with pytest.raises(InputError, match=f"--tower {other}"):
        validate(out, against=electra_fixture(), device="cpu", tower=other)


def test_tanh_gelu_in_place_of_electras_erf_fails(converted, tmp_path):
    """ELECTRA computes the exact GELU: a conversion that writes BERT's tanh form is caught."""
    tower, out, _ = converted
    changed = tmp_path / "tanh"
    shutil.copytree(out, changed)
    config = json.loads((changed / "config.json").read_text())
    config["hidden_act"] = "gelu_new"
    (changed / "config.json").write_text(json.dumps(config))
    report = validate(changed, against=electra_fixture(), device="cpu")
    assert not report.passed and report.first_diverging == "layer_0"


def test_inspect_shows_both_towers():
    report = inspect_checkpoint(electra_fixture())
    assert report.family == "electra"
    assert report.heads["discriminator"] and report.heads["generator_tower"] and not report.heads["mlm"]
    assert report.totals["other"]["tensors"] == 0
    assert report.inferred_config["hidden_size"] == 64 and report.inferred_config["embedding_size"] == 16


def test_generator_tower_missing_is_named(tmp_path):
    """A checkpoint with the discriminator alone cannot give a generator: the error names what is missing."""
    from bertconv.formats import open_source
    from bertconv.formats.tf_bundle_writer import write_tf_bundle

    with open_source(electra_fixture()) as src:
        kept = [(n, src.read(n)) for n in src.names() if not n.startswith("generator")]
    directory = tmp_path / "disc_only"
    directory.mkdir()
    write_tf_bundle(directory / "model.ckpt", kept)
    shutil.copy(electra_fixture() / "vocab.txt", directory / "vocab.txt")
    assert convert(directory, tmp_path / "disc").architecture == "ElectraForPreTraining"
    with pytest.raises(MappingError, match="holds no generator"):
        convert(directory, tmp_path / "gen", tower="generator")


def test_tower_on_a_bert_checkpoint_is_refused(tmp_path):
    with pytest.raises(InputError, match="single model"):
        convert(FIXTURES / "bert_pretrain", tmp_path / "out", tower="generator")


def test_diff_compares_the_converted_tower(tmp_path):
    """The converted side records its tower; diff compares the checkpoint's model of that tower."""
    from bertconv.comparison import diff
    src = electra_fixture()
    for tower in ("generator", "discriminator"):
        out = tmp_path / tower
        convert(src, out, tower=tower, validate=False)
        for a, b in ((src, out), (out, src)):
            report = diff(a, b)
            assert report.passed, report.render()
            assert report.compared and all(d.max_abs == 0 for d in report.compared)
