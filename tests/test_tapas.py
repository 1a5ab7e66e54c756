"""TAPAS: checkpoints written and run by google-research/tapas' own code
(fixtures/make_tapas_fixtures.py) convert to Hugging Face ``Tapas*`` directories that transformers
loads offline and that compute the original's outputs on every exported head; ``--set`` states
the settings the files do not record; inspect, validate and diff know the family."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bertconv.cli import main
from bertconv.comparison import diff
from bertconv.conversion import convert
from bertconv.errors import InputError, MappingError
from bertconv.families import detect_layout
from bertconv.formats import open_source
from bertconv.inspection import inspect_checkpoint
from bertconv.settings import parse_settings
from bertconv.validation import validate

from .conftest import fixture_dir

#: the target: float32, max abs over attended positions
TOLERANCE = 2e-5
#: WTQ's cell-selection temperature, in the run's hyper-parameters (the fixture's golden.json)
WTQ = {"temperature": 0.0352513}
#: fixture -> (--head, settings, the transformers class)
CASES = {"tapas_pretrain": ("auto", None, "TapasForMaskedLM"),
         "tapas_wtq": ("auto", WTQ, "TapasForQuestionAnswering"),
         "tapas_tabfact": ("auto", None, "TapasForSequenceClassification"),
         "tapas_base": ("base", None, "TapasModel")}


def golden(name: str, file: str = "golden.npz") -> tuple[dict, dict]:
    data = np.load(fixture_dir(name) / file)
    return ({k[len("input/"):]: data[k] for k in data.files if k.startswith("input/")},
            {k[len("output/"):]: data[k] for k in data.files if k.startswith("output/")})


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    memo = {}

    def make(case: str, settings=None):
        key = (case, json.dumps(settings, sort_keys=True))
        if key not in memo:
            head, default_settings, _ = CASES[case]
            fixture = "tapas_pretrain" if case == "tapas_base" else case
            out = tmp_path_factory.mktemp(case) / "hf"
            report = convert(fixture_dir(fixture), out, head=head,
                             settings=default_settings if settings is None else settings)
            memo[key] = (out, report)
        return memo[key]
    return make


def transformers_outputs(out, inputs):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    architecture = json.loads((out / "config.json").read_text())["architectures"][0]
    model = getattr(transformers, architecture).from_pretrained(out).eval()
    with torch.no_grad():
        result = model(**{k: torch.tensor(v) for k, v in inputs.items()}, output_hidden_states=True)
    named = {"embeddings": result.hidden_states[0], "sequence_output": result.hidden_states[-1]}
    named.update({f"layer_{i}": h for i, h in enumerate(result.hidden_states[1:])})
    if architecture == "TapasModel":
        named["pooled_output"] = result.pooler_output
    elif architecture == "TapasForMaskedLM":
        named["mlm_logits"] = result.logits
    elif architecture == "TapasForQuestionAnswering":
        named["selected_cell_logits"], named["aggregation_logits"] = result.logits, result.logits_aggregation
    else:
        named["classifier_logits"] = result.logits
    return architecture, {k: v.numpy() for k, v in named.items()}


def worst(ours: np.ndarray, theirs: np.ndarray, mask: np.ndarray) -> float:
    if ours.ndim >= 2 and ours.shape[:2] == mask.shape:
        return float(np.abs(ours - theirs)[mask.astype(bool)].max())
    return float(np.abs(ours - theirs).max())


@pytest.mark.parametrize("case", sorted(CASES))
def test_transformers_computes_the_originals_outputs(converted, case):
    out, report = converted(case)
    inputs, gold = golden("tapas_pretrain" if case == "tapas_base" else case)
    architecture, ours = transformers_outputs(out, inputs)
    assert architecture == CASES[case][2]
    assert report.validation is not None and report.validation.passed
    compared = set(ours) & set(gold)
    assert {"embeddings", "sequence_output", "layer_0", "layer_1"} <= compared
    for name in sorted(compared):
        if name == "selected_cell_logits":
            # the original's logits outside the column it selects are pushed to about -10000 (its
            # log-zero): there float32 keeps steps of 1e-3, so those positions are compared as masked
            masked = gold[name] < -5000
            assert np.array_equal(masked, ours[name] < -5000)
            assert worst(np.where(masked, 0, ours[name]), np.where(masked, 0, gold[name]), inputs["attention_mask"]) \
                < TOLERANCE
            assert (~masked & (inputs["attention_mask"] > 0)).any()
            continue
        assert worst(ours[name], gold[name], inputs["attention_mask"]) < TOLERANCE, name
    heads = {"TapasForMaskedLM": "mlm_logits", "TapasForQuestionAnswering": "aggregation_logits",
             "TapasForSequenceClassification": "classifier_logits", "TapasModel": "pooled_output"}
    assert heads[architecture] in compared


def test_reset_position_index_per_cell_is_the_originals_default_and_set_changes_it(converted):
    out, report = converted("tapas_pretrain")
    assert any("reset_position_index_per_cell=false, not in the files" in n for n in report.notes)
    assert json.loads((out / "config.json").read_text())["reset_position_index_per_cell"] is False
    out_reset, report_reset = converted("tapas_pretrain", {"reset_position_index_per_cell": True})
    assert any("reset_position_index_per_cell=true as --set states" in n for n in report_reset.notes)
    inputs, reset_gold = golden("tapas_pretrain", "golden_reset.npz")
    _, ours = transformers_outputs(out_reset, inputs)
    assert worst(ours["mlm_logits"], reset_gold["mlm_logits"], inputs["attention_mask"]) < TOLERANCE
    _, default = transformers_outputs(out, inputs)  # the other choice is far off: the setting matters
    assert worst(default["mlm_logits"], reset_gold["mlm_logits"], inputs["attention_mask"]) > 0.1


def test_validate_against_the_source_reads_what_the_conversion_set(converted):
    out, _ = converted("tapas_wtq")
    report = validate(out, against=fixture_dir("tapas_wtq"), device="cpu")
    assert report.passed
    assert any("temperature=0.0352513" in n and "converted model's config" in n for n in report.notes)
    names = {c.name for run in report.runs for c in run.outputs}
    assert {"cell_logits", "aggregation_logits", "pooled_output"} <= names


def test_validate_against_stored_original_outputs(converted, tmp_path):
    """The converted model run by bertconv itself on the original's inputs, against its outputs."""
    out, _ = converted("tapas_pretrain")
    inputs, gold = golden("tapas_pretrain")
    stored = tmp_path / "golden.npz"
    np.savez(stored, **inputs, **{k: v.astype(np.float64) for k, v in gold.items() if k != "nsp_logits"})
    report = validate(out, golden=stored, device="cpu", tolerance=TOLERANCE)
    assert report.passed, report.render()


def test_inspect_names_family_layout_and_heads():
    report = inspect_checkpoint(fixture_dir("tapas_wtq"))
    assert (report.family, report.layout) == ("tapas", "google_tapas")
    assert report.heads and "cell selection and aggregation" in report.render()
    assert not report.config_problems  # the list-valued type_vocab_size is read as TAPAS' own
    pretrain = inspect_checkpoint(fixture_dir("tapas_pretrain"))
    assert pretrain.global_step == 1 and pretrain.totals["training"]["tensors"] == 105


def test_diff_finds_the_converted_weights_equal(converted):
    out, _ = converted("tapas_wtq")
    report = diff(fixture_dir("tapas_wtq"), out / "model.safetensors")
    assert report.passed and report.compared and not report.missing_in_b and not report.unexpected_in_b


def test_pretraining_checkpoint_state_and_heads(converted):
    _, report = converted("tapas_pretrain")
    summary = "\n".join(report.summary_lines())
    assert "found: mlm, nsp; exported: mlm" in summary
    assert "adam_m 52, adam_v 52, global_step 1" in summary


def test_tabfact_exports_its_classifier_by_default(tmp_path):
    """TAPAS' classifier model always creates the cell-selection weights: the classifier is the
    fine-tuned head, the others are left out with a note."""
    report = convert(fixture_dir("tapas_tabfact"), tmp_path / "out")
    assert report.architecture == "TapasForSequenceClassification"
    assert any("table_qa" in n and "left out" in n for n in report.notes)
    with pytest.raises(MappingError, match="no classifier head"):
        convert(fixture_dir("tapas_wtq"), tmp_path / "wtq", head="classifier")


def test_bert_checkpoints_stay_bert():
    with open_source(fixture_dir("bert_pretrain")) as source:
        assert detect_layout(source.names()).family.name == "bert"
    with open_source(fixture_dir("tapas_pretrain")) as source:
        assert detect_layout(source.names()).family.name == "tapas"


def test_set_parses_json_values_and_refuses_unknown_keys(tmp_path, capsys):
    assert parse_settings(["a=true", "b=0.5", "c=[3, 16]", "d=hello", "e=False"]) == \
        {"a": True, "b": 0.5, "c": [3, 16], "d": "hello", "e": False}
    with pytest.raises(InputError, match="key=value"):
        parse_settings(["novalue"])
    with pytest.raises(InputError, match="no such key") as caught:
        convert(fixture_dir("tapas_wtq"), tmp_path / "out", settings={"reset_position_index": True})
    assert "reset_position_index_per_cell" in caught.value.hint
    with pytest.raises(InputError, match="boolean"):
        convert(fixture_dir("tapas_wtq"), tmp_path / "out", settings={"reset_position_index_per_cell": 3})
    assert main(["tf2pt", str(fixture_dir("tapas_wtq")), str(tmp_path / "out"), "--set", "nope=1"]) == 2
    assert "tapas knows" in capsys.readouterr().err
    assert main(["inspect", str(fixture_dir("tapas_wtq")), "--set", "temperature=0.0352513"]) == 0
    assert "temperature=0.0352513 as --set states" in capsys.readouterr().out


def test_set_on_the_cli_reaches_the_converted_config(tmp_path):
    out = tmp_path / "out"
    assert main(["tf2pt", str(fixture_dir("tapas_pretrain")), str(out), "-q",
                 "--set", "reset_position_index_per_cell=true"]) == 0
    assert json.loads((out / "config.json").read_text())["reset_position_index_per_cell"] is True
    assert main(["validate", str(out), "--against", str(fixture_dir("tapas_pretrain")), "--device", "cpu",
                 "--set", "reset_position_index_per_cell=false"]) == 1  # the other setting: a real miss


def test_set_applies_to_bert_too(tmp_path):
    report = convert(fixture_dir("bert_noheads"), tmp_path / "out", settings={"hidden_act": "relu"},
                     validate=True)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["hidden_act"] == "relu"
    assert any("hidden_act=\"relu\" as --set states" in n for n in report.notes)


def test_the_way_back_writes_tapas_own_config_and_names(converted, tmp_path):
    from bertconv import pt2tf

    out, _ = converted("tapas_wtq")
    back = tmp_path / "back"
    report = pt2tf(out, back)
    written = json.loads((back / "bert_config.json").read_text())
    assert written["type_vocab_size"] == [3, 8, 8, 2, 8, 8, 10] and "temperature" not in written
    assert any("temperature=0.0352513 is not written" in n for n in report.notes)
    again = diff(back, out / "model.safetensors")
    assert again.passed and len(again.compared) == 51 and not again.shape_mismatches  # scalars stay scalars
    with open_source(back) as source:
        assert source.info("output_bias").shape == () and detect_layout(source.names()).family.name == "tapas"
