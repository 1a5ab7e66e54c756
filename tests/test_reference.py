"""The float64 reference forward pass against golden outputs of real TensorFlow.

The fixtures (fixtures/bert_*) were written and run by TensorFlow following google-research/bert
(fixtures/make_bert_fixtures.py). The weights are read here with TensorFlow's own checkpoint
reader, so that this test depends on no reader of ours.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bertconv import outputs as out
from bertconv.families.bert import reference
from bertconv.config import load_config_file
from bertconv.errors import InputError
from bertconv.families.bert.reference import reference_forward
from bertconv.validation.inputs import make_inputs

from .conftest import missing_fixture

tf = pytest.importorskip("tensorflow", reason="the golden outputs are compared with TensorFlow's own reader")

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NAMES = ["bert_pretrain", "bert_classifier", "bert_squad", "bert_adam", "bert_noheads"]
INPUT_KEYS = ("input_ids", "token_type_ids", "attention_mask")
TOLERANCE = 2e-5

EXPECTED_HEADS = {
    "bert_pretrain": {out.MLM_LOGITS, out.NSP_LOGITS},
    "bert_classifier": {out.CLASSIFIER_LOGITS},
    "bert_squad": {out.SPAN_LOGITS},
    "bert_adam": {out.MLM_LOGITS, out.NSP_LOGITS},
    "bert_noheads": set(),
}


def _load(name: str):
    directory = FIXTURES / name
    if not (directory / "golden.npz").is_file():
        missing_fixture(f"fixture {name} is missing: run `.venv/bin/python fixtures/make_bert_fixtures.py`")
    reader = tf.train.load_checkpoint(str(directory / "bert_model.ckpt"))
    weights = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    config = load_config_file(directory / "bert_config.json")
    with np.load(directory / "golden.npz") as data:
        golden = {k: data[k] for k in data.files}
    inputs = {k: golden.pop(k) for k in INPUT_KEYS}
    return weights, config, inputs, golden


def _worst(result: dict, golden: dict) -> tuple[float, str]:
    diffs = {k: float(np.max(np.abs(result[k] - golden[k]))) for k in golden}
    name = max(diffs, key=diffs.get)
    return diffs[name], name


@pytest.mark.parametrize("name", NAMES)
def test_reference_matches_tensorflow(name, record_property):
    weights, config, inputs, golden = _load(name)
    result = reference_forward(weights, config, inputs)

    base = {out.EMBEDDINGS, out.SEQUENCE, out.POOLED} | {out.layer(i) for i in range(config.num_hidden_layers)}
    assert set(golden) == base | EXPECTED_HEADS[name]
    assert set(result) == set(golden)
    for key, want in golden.items():
        assert result[key].dtype == np.float64
        assert result[key].shape == want.shape, key
    worst, where = _worst(result, golden)
    record_property("worst_max_abs_diff", worst)
    print(f"{name}: worst max abs diff {worst:.2e} ({where})")
    assert worst < TOLERANCE, f"{where} differs by {worst:.2e}"


def test_golden_inputs_have_padding_and_two_segments():
    _, config, inputs, golden = _load("bert_pretrain")
    mask = inputs["attention_mask"]
    assert mask.shape == (3, 12) and mask[0].all() and not mask[1:].all()
    assert set(np.unique(inputs["token_type_ids"])) == {0, 1}
    # padded positions are computed too (they attend to the real tokens) and compared like the rest
    assert np.all(np.isfinite(golden[out.SEQUENCE]))


def test_lazy_callable_weights_give_the_same_outputs():
    weights, config, inputs, _ = _load("bert_classifier")
    reader = tf.train.load_checkpoint(str(FIXTURES / "bert_classifier" / "bert_model.ckpt"))
    from_callable = reference_forward(reader.get_tensor, config, inputs)
    from_mapping = reference_forward(weights, config, inputs)
    assert set(from_callable) == set(from_mapping)
    for key in from_mapping:
        np.testing.assert_array_equal(from_callable[key], from_mapping[key])


def test_reading_through_bertconvs_own_reader_gives_the_same_outputs():
    try:
        from bertconv.formats import open_source
        from bertconv.formats import tf_bundle  # noqa: F401
    except ImportError:
        pytest.skip("bertconv.formats.tf_bundle is not available")
    weights, config, inputs, _ = _load("bert_squad")
    from_tf = reference_forward(weights, config, inputs)
    with open_source(FIXTURES / "bert_squad") as source:
        from_source = reference_forward(source, config, inputs)
    assert set(from_source) == set(from_tf)
    for key in from_tf:
        np.testing.assert_array_equal(from_source[key], from_tf[key])


def test_exact_erf_gelu_would_not_match():
    weights, config, inputs, golden = _load("bert_pretrain")
    exact = dataclasses.replace(config, hidden_act="gelu_exact")
    worst, _ = _worst(reference_forward(weights, exact, inputs), golden)
    assert worst > 20 * TOLERANCE


def test_tanh_gelu_is_modeling_pys_formula_to_float64_rounding():
    # modeling.py's own expression, evaluated as written, against the reference's exp form
    x = np.concatenate([np.linspace(-12, 12, 100_001), [-1e3, -40.0, -0.0, 0.0, 1e-300, 40.0, 1e3]])
    z = np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)
    as_written = x * 0.5 * (1.0 + np.tanh(z))
    ours = reference._gelu_tanh(x.copy())
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours, as_written, rtol=1e-14, atol=1e-15)
    assert ours[-1] == 1e3 and ours[-7] == 0.0  # large inputs: the identity and zero


def test_mlm_decoder_block_by_block_equals_one_product(monkeypatch):
    weights, config, inputs, golden = _load("bert_pretrain")
    assert config.vocab_size % 7
    monkeypatch.setattr(reference, "_DECODER_ROWS", 7)  # many blocks and a short last one
    blocks = reference_forward(weights, config, inputs)[out.MLM_LOGITS]
    np.testing.assert_allclose(blocks, golden[out.MLM_LOGITS], rtol=0, atol=TOLERANCE)
    # against the whole product written out, in float64, with a float16-stored table as well
    rng = np.random.default_rng(0)
    x, bias = rng.normal(size=(5, 16)), rng.normal(size=50)
    for table in (rng.normal(size=(50, 16)).astype(np.float32), rng.normal(size=(50, 16)).astype(np.float16)):
        whole = x @ table.astype(np.float64).T + bias
        np.testing.assert_allclose(reference._decode(x, table, bias), whole, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("adder", [0.0, -1.0])
def test_wrong_attention_mask_would_not_match(monkeypatch, adder):
    weights, config, inputs, golden = _load("bert_pretrain")
    monkeypatch.setattr(reference, "ATTENTION_MASK_ADDER", adder)
    result = reference_forward(weights, config, inputs)
    worst, _ = _worst(result, golden)
    assert worst > 20 * TOLERANCE
    # the unpadded row cannot tell: only rows with padding see the mask
    row0 = float(np.max(np.abs(result[out.SEQUENCE][0] - golden[out.SEQUENCE][0])))
    assert row0 < TOLERANCE


def test_heads_can_be_chosen_and_missing_heads_are_named():
    weights, config, inputs, _ = _load("bert_pretrain")
    only_nsp = reference_forward(weights, config, inputs, heads=["nsp"])
    assert out.NSP_LOGITS in only_nsp and out.MLM_LOGITS not in only_nsp
    with pytest.raises(InputError, match="cls/squad/output_weights"):
        reference_forward(weights, config, inputs, heads=["squad"])
    with pytest.raises(InputError, match="no head"):
        reference_forward(weights, config, inputs, heads=["bogus"])


def test_bad_inputs_are_refused():
    weights, config, inputs, _ = _load("bert_noheads")
    too_big = dict(inputs, input_ids=inputs["input_ids"] + config.vocab_size)
    with pytest.raises(InputError, match="input_ids"):
        reference_forward(weights, config, too_big)
    with pytest.raises(InputError, match="shape"):
        reference_forward(weights, dataclasses.replace(config, intermediate_size=37), inputs)
    with pytest.raises(InputError, match="hidden_act"):
        reference_forward(weights, dataclasses.replace(config, hidden_act="mish"), inputs)


def test_make_inputs_is_deterministic_and_well_formed():
    a = make_inputs(30522, 4, 16, seed=3)
    b = make_inputs(30522, 4, 16, seed=3)
    for key in INPUT_KEYS:
        np.testing.assert_array_equal(a[key], b[key])
        assert a[key].dtype == np.int64 and a[key].shape == (4, 16)
    ids, types, mask = a["input_ids"], a["token_type_ids"], a["attention_mask"]
    assert (ids[:, 0] == 101).all()
    assert mask[0].all() and not mask[1:].all()
    assert ((ids == 0) == (mask == 0)).all()
    assert set(np.unique(types)) == {0, 1} and (types[mask == 0] == 0).all()
    for row in range(4):
        length = int(mask[row].sum())
        assert ids[row, length - 1] == 102 and (ids[row, :length] == 102).sum() == 2
    single = make_inputs(50, 2, 8, seed=0, type_vocab_size=1)
    assert (single["token_type_ids"] == 0).all() and single["input_ids"].max() < 50


def test_fixtures_stay_small():
    present = [FIXTURES / n for n in NAMES if (FIXTURES / n).is_dir()]
    if not present:
        missing_fixture("no BERT fixtures: run `.venv/bin/python fixtures/make_bert_fixtures.py`")
    total = sum(p.stat().st_size for d in present for p in d.iterdir())
    assert total < 1.5 * 1024 * 1024
