"""``validate``: a correct conversion passes at float32 rounding; each deliberately broken
conversion fails, naming the first output (in data-flow order) where it diverges."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from bertconv import outputs as out
from bertconv.config import BertConfig
from bertconv.errors import CheckFailed, InputError
from bertconv.families.bert import model as bert_model
from bertconv.mapping import apply_transform
from bertconv.families.bert.layouts.google import MAPPING
from bertconv.validation import DEFAULT_TOLERANCES, compare_output, load_golden, quick_check, validate

from .conftest import fixture_dir

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY = dict(vocab_size=97, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=40, type_vocab_size=2, hidden_act="gelu")
BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu")
HEADS = {"BertForPreTraining": ("mlm", "nsp"), "BertModel": (), "BertForSequenceClassification": ("classifier",),
         "BertForQuestionAnswering": ("squad",), "BertForMaskedLM": ("mlm",)}
NUM_LABELS = 3


# ----------------------------------------------------------------------------------- helpers


def tf_weights(sizes: dict, heads=("mlm", "nsp"), seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights under google-research/bert's TF names: kernels scaled to keep
    activations O(1), every gamma 1 + noise, every beta and bias noise (so a swap shows)."""
    rng = np.random.default_rng(seed)
    dims = {**sizes, "num_labels": NUM_LABELS}
    weights = {}
    for pattern, symbolic in ((rule.source, rule.shape) for rule in MAPPING.rules):
        match = MAPPING.to_target(pattern.replace("{layer}", "0"))
        if match.rule.head not in (None, "pooler") and match.rule.head not in heads:
            continue
        shape = tuple(dims[d] if isinstance(d, str) else d for d in symbolic)
        for layer in range(sizes["num_hidden_layers"]) if "{layer}" in pattern else [None]:
            name = pattern.replace("{layer}", str(layer)) if layer is not None else pattern
            value = rng.standard_normal(shape, dtype=np.float32)
            leaf = name.rsplit("/", 1)[-1]
            if leaf == "gamma":
                value = 1.0 + 0.1 * value
            elif leaf == "beta" or leaf.endswith("bias"):
                value *= 0.1
            elif leaf == "kernel":
                value /= math.sqrt(shape[0])
            else:  # embedding tables and output_weights: scaled by their width
                value /= math.sqrt(shape[1])
            weights[name] = value.astype(np.float32)
    return weights


def write_converted(directory: Path, weights: dict, sizes: dict, architecture: str, *,
                    hidden_act: str = "gelu_new", tamper=None, config_changes: dict | None = None) -> Path:
    """A converted Hugging Face directory made straight from the mapping table (what ``tf2pt``
    writes). ``tamper(state_dict)`` breaks it on purpose before it is written; ``config_changes``
    break its config.json."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, value in weights.items():
        match = MAPPING.to_target(name)
        target = match.target
        if architecture == "BertModel":
            target = target[len("bert."):]
        state[target] = np.ascontiguousarray(apply_transform(match.rule.transform, value))
    if tamper is not None:
        tamper(state)
    save_file(state, str(directory / "model.safetensors"))
    config = {**sizes, "hidden_act": hidden_act, "architectures": [architecture], "model_type": "bert",
              "layer_norm_eps": 1e-12, "bertconv": {"source_hidden_act": sizes["hidden_act"]}}
    if architecture == "BertForSequenceClassification":
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(NUM_LABELS)}
    config.update(config_changes or {})
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


def check(tmp_path, tamper=None, *, hidden_act="gelu_new", architecture="BertForPreTraining", device="cpu",
          **kwargs):
    weights = tf_weights(TINY, HEADS[architecture])
    converted = write_converted(tmp_path / "converted", weights, TINY, architecture, hidden_act=hidden_act,
                                tamper=tamper)
    return validate(converted, against=weights, source_config=BertConfig.from_dict(TINY), device=device, **kwargs)


def swap(a: str, b: str):
    def tamper(state):
        state[a], state[b] = state[b], state[a]
    return tamper


# ----------------------------------------------------------------------------------- correct conversions


@pytest.mark.parametrize("architecture", list(HEADS))
def test_correct_conversion_passes_at_float32_rounding(tmp_path, architecture):
    report = check(tmp_path, architecture=architecture)
    assert report.passed, report.render()
    run = report.runs[0]
    names = [o.name for o in run.outputs]
    assert names == out.ordered(names, TINY["num_hidden_layers"])  # data-flow order
    assert names[:2] == [out.EMBEDDINGS, out.layer(0)]
    for head in HEADS[architecture]:
        assert out.HEAD_OUTPUTS[head] in names
    assert report.worst_max_abs("float32") <= 1e-5
    assert min(o.cosine for o in run.outputs) > 1 - 1e-10
    assert report.first_diverging is None
    report.raise_for_failure()
    json.dumps(report.to_dict())  # --json must serialise


# ----------------------------------------------------------------------------------- broken conversions

LAYER = "bert.encoder.layer.{}."
BROKEN = {
    # name: (tamper, hidden_act, first diverging output)
    "query_key_swapped": (
        lambda s: (swap(LAYER.format(1) + "attention.self.query.weight", LAYER.format(1) + "attention.self.key.weight")(s),
                   swap(LAYER.format(1) + "attention.self.query.bias", LAYER.format(1) + "attention.self.key.bias")(s)),
        "gelu_new", out.layer(1)),
    "gamma_beta_swapped": (
        swap(LAYER.format(2) + "output.LayerNorm.weight", LAYER.format(2) + "output.LayerNorm.bias"),
        "gelu_new", out.layer(2)),
    "embedding_gamma_beta_swapped": (
        swap("bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias"), "gelu_new", out.EMBEDDINGS),
    "value_kernel_untransposed": (
        lambda s: s.__setitem__(LAYER.format(0) + "attention.self.value.weight",
                                np.ascontiguousarray(s[LAYER.format(0) + "attention.self.value.weight"].T)),
        "gelu_new", out.layer(0)),
    "pooler_kernel_untransposed": (
        lambda s: s.__setitem__("bert.pooler.dense.weight", np.ascontiguousarray(s["bert.pooler.dense.weight"].T)),
        "gelu_new", out.POOLED),
    "mlm_bias_dropped_to_zero": (
        lambda s: s.__setitem__("cls.predictions.bias", np.zeros_like(s["cls.predictions.bias"])),
        "gelu_new", out.MLM_LOGITS),
    "exact_erf_gelu": (None, "gelu", out.layer(0)),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_conversion_fails_at_the_right_output(tmp_path, case):
    tamper, hidden_act, expected = BROKEN[case]
    report = check(tmp_path, tamper, hidden_act=hidden_act)
    assert not report.passed
    assert report.first_diverging == expected, report.render()
    run = report.runs[0]
    before = [o for o in run.outputs[:[o.name for o in run.outputs].index(expected)]]
    assert all(o.passed and o.max_abs <= 1e-5 for o in before)  # everything upstream is still exact
    assert expected in report.summary_line()
    with pytest.raises(CheckFailed, match=expected):
        report.raise_for_failure()


#: The wrong mappings a converter is known to make, each as the converted directory it would
#: leave: (tamper, config changes, hidden_act, first diverging output). The check's inputs
#: (``make_validation_inputs``) are chosen so that each of them shows.
WRONG_MAPPINGS = {
    "query_key_swapped": (BROKEN["query_key_swapped"][0], None, "gelu_new", out.layer(1)),
    "kernel_transposed": (BROKEN["value_kernel_untransposed"][0], None, "gelu_new", out.layer(0)),
    "erf_gelu_for_tanh": (None, None, "gelu", out.layer(0)),
    # PyTorch's LayerNorm default, in place of modeling.py's 1e-12
    "layer_norm_epsilon_1e-5": (None, {"layer_norm_eps": 1e-5}, "gelu_new", out.EMBEDDINGS),
    # the position table one row off: every position reads its neighbour's row
    "position_table_shifted": (
        lambda s: s.__setitem__("bert.embeddings.position_embeddings.weight",
                                np.roll(s["bert.embeddings.position_embeddings.weight"], 1, axis=0)),
        None, "gelu_new", out.EMBEDDINGS),
    "segment_table_swapped": (
        lambda s: s.__setitem__("bert.embeddings.token_type_embeddings.weight",
                                np.ascontiguousarray(s["bert.embeddings.token_type_embeddings.weight"][::-1])),
        None, "gelu_new", out.EMBEDDINGS),
}


def _run_check(runner: str, tmp_path, tamper, config_changes, hidden_act):
    weights = tf_weights(TINY)
    converted = write_converted(tmp_path / "converted", weights, TINY, "BertForPreTraining",
                                hidden_act=hidden_act, tamper=tamper, config_changes=config_changes)
    if runner == "tf2pt":  # the check tf2pt runs before it publishes what it wrote
        return quick_check(converted, weights, BertConfig.from_dict(TINY))
    if runner == "transformers":
        pytest.importorskip("transformers", reason="--with-transformers needs transformers")
    return validate(converted, against=weights, source_config=BertConfig.from_dict(TINY), device="cpu",
                    with_transformers=runner == "transformers")


@pytest.mark.parametrize("runner", ["tf2pt", "validate", "transformers"])
@pytest.mark.parametrize("case", list(WRONG_MAPPINGS))
def test_each_known_wrong_mapping_fails_the_default_check(tmp_path, case, runner):
    tamper, config_changes, hidden_act, expected = WRONG_MAPPINGS[case]
    report = _run_check(runner, tmp_path, tamper, config_changes, hidden_act)
    assert report.inputs["batch"] == 2 and report.inputs["seq_len"] == 16  # the defaults, nothing larger
    assert not report.passed, report.render()
    assert report.first_diverging == expected, report.render()
    run = report.runs[0]
    upstream = run.outputs[:[o.name for o in run.outputs].index(expected)]
    assert all(o.passed for o in upstream)


@pytest.mark.parametrize("runner", ["tf2pt", "validate", "transformers"])
def test_the_default_check_passes_the_correct_mapping(tmp_path, runner):
    report = _run_check(runner, tmp_path, None, None, "gelu_new")
    assert report.passed, report.render()
    covered = report.coverage()
    assert covered["outputs"] == [o.name for o in report.runs[0].outputs]
    assert covered["tokens"]["padded_rows"] >= 1 and covered["tokens"]["segments"] == [0, 1]
    assert covered["dtypes"][0]["compute"] == "float32"


def test_validation_inputs_cover_what_a_wrong_mapping_breaks():
    from bertconv.validation.inputs import make_validation_inputs

    for config in (BertConfig.from_dict(TINY), BertConfig.from_dict(BASE)):
        inputs = make_validation_inputs(config, 2, 16, 0)
        mask, types = inputs["attention_mask"], inputs["token_type_ids"]
        assert mask[0].all() and not mask[1].all()  # every position read; padding masked
        for row in range(2):
            real = types[row][mask[row] != 0]
            assert set(np.unique(real)) == {0, 1}  # both segments in every row
            assert real[0] == 0 and real[-1] == 1  # one switch: the second segment follows the first
        # no position is padding in every row, so every position's row of the table shows
        assert mask.max(axis=0).all()


@pytest.mark.parametrize("mask_value", [0.0, -1.0, -5.0])
def test_wrong_attention_mask_constant_fails(tmp_path, monkeypatch, mask_value):
    # the converted side's model computes with a wrong constant (a conversion that got it wrong)
    monkeypatch.setattr(bert_model, "ATTENTION_MASK_VALUE", mask_value)
    report = check(tmp_path)
    assert not report.passed
    # the mask is first used by layer 0's attention: the embeddings stay exact
    assert report.first_diverging == out.layer(0), report.render()
    assert report.runs[0].outputs[0].passed


def test_mask_constant_beyond_float32_resolution_is_harmless(tmp_path, monkeypatch):
    # -1e9 and -10000 give the same probabilities (exp underflows to 0 either way) on rows with a
    # real token: validation must not flag a difference that does not exist
    monkeypatch.setattr(bert_model, "ATTENTION_MASK_VALUE", -1e9)
    report = check(tmp_path)
    assert report.passed, report.render()


def test_head_without_reference_fails(tmp_path):
    # a converted MLM head whose original had none (a randomly initialised head) cannot pass
    weights = tf_weights(TINY, ())
    converted = write_converted(tmp_path / "c", tf_weights(TINY, ("mlm",)), TINY, "BertForMaskedLM")
    report = validate(converted, against=weights, source_config=BertConfig.from_dict(TINY), device="cpu")
    assert not report.passed
    assert report.runs[0].unreferenced == [out.MLM_LOGITS]


# ----------------------------------------------------------------------------------- golden files, options


def test_golden_round_trip(tmp_path):
    weights = tf_weights(TINY)
    converted = write_converted(tmp_path / "converted", weights, TINY, "BertForPreTraining")
    golden = tmp_path / "parity.npz"
    first = validate(converted, against=weights, source_config=BertConfig.from_dict(TINY), device="cpu",
                     save_golden=golden, seed=3, batch=3, seq_len=10)
    assert first.passed and golden.is_file()
    inputs, outputs, metadata = load_golden(golden)
    assert inputs["input_ids"].shape == (3, 10)
    assert metadata["seed"] == 3 and metadata["config"]["hidden_size"] == 32
    assert set(outputs) == {o.name for o in first.runs[0].outputs}
    second = validate(converted, golden=golden, device="cpu")  # no checkpoint, no TensorFlow
    assert second.passed
    assert second.worst_max_abs() == pytest.approx(first.worst_max_abs(), abs=1e-12)
    broken = write_converted(tmp_path / "broken", weights, TINY, "BertForPreTraining", hidden_act="gelu")
    assert validate(broken, golden=golden, device="cpu").first_diverging == out.layer(0)


def test_golden_fixture_from_real_tensorflow(tmp_path):
    directory = fixture_dir("bert_pretrain")
    inputs, outputs, _ = load_golden(directory / "golden.npz")
    assert out.MLM_LOGITS in outputs
    from bertconv.formats import open_source
    try:
        source = open_source(directory)
    except ImportError:
        pytest.skip("the TF checkpoint reader (bertconv.formats.tf_bundle) is not available")
    with source:
        weights = {name: source.read(name) for name in source.names()}
    config = json.loads((directory / "bert_config.json").read_text())
    converted = write_converted(tmp_path / "c", weights, config, "BertForPreTraining")
    report = validate(converted, golden=directory / "golden.npz", device="cpu")
    assert report.passed, report.render()
    assert report.worst_max_abs() <= 1e-5  # against TensorFlow's own float32 outputs


@pytest.mark.parametrize("name", ["bert_pretrain", "bert_classifier", "bert_squad", "bert_adam", "bert_noheads"])
def test_fixture_conversions_validate(tmp_path, name):
    """Checkpoints written by real TensorFlow, converted by tf2pt (which checks its own output),
    then validated against the checkpoint and against TensorFlow's stored outputs."""
    from bertconv.conversion import convert

    directory = fixture_dir(name)
    conversion = convert(directory, tmp_path / "out")
    assert conversion.validation is not None and conversion.validation.passed
    against = validate(tmp_path / "out", against=directory, device="cpu")
    assert against.passed, against.render()
    assert against.worst_max_abs() <= 1e-5
    golden = validate(tmp_path / "out", golden=directory / "golden.npz", device="cpu")
    assert golden.passed, golden.render()
    assert golden.worst_max_abs() <= 1e-5
    assert golden.inputs["padded_rows"] >= 1


def test_several_dtypes_report_drift(tmp_path):
    report = check(tmp_path, dtypes=("float32", "bfloat16", "float64"))
    assert report.passed, report.render()
    worst = {run.dtype: max(o.max_abs for o in run.outputs) for run in report.runs}
    assert worst["float64"] < 1e-10 < worst["float32"] < 1e-5 < worst["bfloat16"]
    assert "drift against the float64 reference" in report.render()


def test_gross_bugs_show_in_lower_precisions_too(tmp_path):
    report = check(tmp_path, BROKEN["gamma_beta_swapped"][0], dtypes=("float32", "bfloat16", "float16"))
    assert [run.first_diverging for run in report.runs] == [out.layer(2)] * 3, report.render()


def test_half_precision_weights_are_judged_by_their_precision(tmp_path):
    def to_half(state):
        for k in state:
            state[k] = state[k].astype(np.float16)
    report = check(tmp_path, to_half)
    assert report.runs[0].weights_dtype == "float16"
    assert report.passed, report.render()
    assert report.worst_max_abs() > 1e-5  # float16 rounding of the weights is visible


def test_user_tolerance_overrides(tmp_path):
    report = check(tmp_path, tolerance=1e-9)
    assert not report.passed and report.first_diverging == out.EMBEDDINGS
    assert all(not o.passed or o.max_abs <= 1e-9 for o in report.runs[0].outputs)


def test_quick_check_on_a_bare_file(tmp_path):
    weights = tf_weights(TINY, ("classifier",))
    directory = write_converted(tmp_path / "c", weights, TINY, "BertForSequenceClassification")
    bare = tmp_path / "bare.weights"  # the converter checks a temporary name without a suffix
    state = load_file(str(directory / "model.safetensors"))
    config = json.loads((directory / "config.json").read_text())
    save_file(state, str(bare), metadata={"bertconv.config": json.dumps(config),
                                          "bertconv.architecture": "BertForSequenceClassification"})
    report = quick_check(bare, weights, BertConfig.from_dict(TINY))
    assert report.passed, report.render()
    assert out.CLASSIFIER_LOGITS in {o.name for o in report.runs[0].outputs}
    assert report.inputs["batch"] == 2 and report.inputs["seq_len"] == 16


def test_text_inputs_use_the_converted_tokenizer(tmp_path):
    weights = tf_weights(TINY)
    converted = write_converted(tmp_path / "c", weights, TINY, "BertForPreTraining")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(TINY["vocab_size"] - 5)]
    (converted / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    text = tmp_path / "lines.txt"
    text.write_text("w1 w2 w3\nw4 w5\tw6 w7 w8 w9\nw10\n", encoding="utf-8")
    report = validate(converted, against=weights, source_config=BertConfig.from_dict(TINY), device="cpu", text=text)
    assert report.passed, report.render()
    assert report.inputs["batch"] == 3 and report.inputs["padded_rows"] == 2
    assert report.inputs["seq_len"] == 1 + 2 + 1 + 4 + 1  # the pair: [CLS] w4 w5 [SEP] w6 w7 w8 w9 [SEP]


def test_with_transformers_runs_the_same_directory(tmp_path):
    pytest.importorskip("transformers", reason="--with-transformers needs transformers")
    report = check(tmp_path, with_transformers=True)
    assert report.runs[0].runner == "transformers"
    assert report.passed, report.render()
    assert report.worst_max_abs() <= 1e-5
    broken = check(tmp_path / "b", hidden_act="gelu", with_transformers=True)
    assert broken.first_diverging == out.layer(0)


def test_tensorflow_reference_agrees(tmp_path):
    pytest.importorskip("tensorflow", reason="--reference tf needs TensorFlow")
    report = check(tmp_path, reference="tf")
    assert report.passed, report.render()
    assert "TensorFlow" in report.reference
    assert report.worst_max_abs() <= 1e-5
    broken = check(tmp_path / "b", swap(LAYER.format(1) + "output.LayerNorm.weight",
                                        LAYER.format(1) + "output.LayerNorm.bias"), reference="tf")
    assert broken.first_diverging == out.layer(1)


# ----------------------------------------------------------------------------------- a lean check


def test_model_pages_released_after_use_change_no_output(tmp_path):
    from bertconv.runtime import load_model, run_outputs
    from bertconv.validation.inputs import make_inputs
    from bertconv.validation.runners import pages_released_after_use

    converted = write_converted(tmp_path / "c", tf_weights(TINY), TINY, "BertForPreTraining")
    inputs = make_inputs(TINY["vocab_size"], 2, 16, 0)
    model = load_model(converted)
    plain = run_outputs(model, inputs)
    with pages_released_after_use(model, converted / "model.safetensors") as releasable:
        released = run_outputs(model, inputs)
        again = run_outputs(model, inputs)  # the tied word table is read back a second time
    # the tiny model's large tensors span whole pages: the word table alone is 97 x 32 float32
    assert releasable >= 4096
    assert set(released) == set(plain) == set(again)
    for name in plain:
        np.testing.assert_array_equal(released[name], plain[name])
        np.testing.assert_array_equal(again[name], plain[name])
    after = run_outputs(model, inputs)
    for name in plain:
        np.testing.assert_array_equal(after[name], plain[name])


def test_weights_in_ordinary_memory_are_never_released(tmp_path):
    # float16 weights run in float32 are copies in ordinary memory, where dropping pages would zero them
    from bertconv.runtime import load_model
    from bertconv.validation.runners import pages_released_after_use

    converted = write_converted(tmp_path / "c", tf_weights(TINY), TINY, "BertForPreTraining",
                                tamper=lambda s: s.update({k: v.astype(np.float16) for k, v in s.items()}))
    model = load_model(converted, dtype=torch.float32)
    with pages_released_after_use(model, converted / "model.safetensors") as releasable:
        assert releasable == 0
    with pages_released_after_use(model, tmp_path / "not-mapped.safetensors") as releasable:
        assert releasable == 0


def test_a_few_tokens_run_on_one_cpu_thread_and_the_setting_is_restored(tmp_path, monkeypatch):
    from bertconv.validation import runners

    before = torch.get_num_threads()
    seen = []
    original = runners.pages_released_after_use

    def spy(model, path):
        seen.append(torch.get_num_threads())
        return original(model, path)
    monkeypatch.setattr(runners, "pages_released_after_use", spy)
    assert check(tmp_path).passed  # 2x16 tokens
    assert check(tmp_path / "long", batch=3, seq_len=40).passed
    assert seen == [1, before]
    assert torch.get_num_threads() == before


class _ReleasingWeights(dict):
    """A mapping of the original's arrays that records what the reference says it is done with."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read, self.released = [], []

    def __getitem__(self, name):
        self.read.append(name)
        return super().__getitem__(name)

    def release(self, name):
        self.released.append(name)


def test_reference_releases_every_tensor_it_reads_and_computes_the_same():
    from bertconv.families.bert.reference import reference_forward
    from bertconv.validation.inputs import make_inputs

    weights = tf_weights(TINY)
    inputs = make_inputs(TINY["vocab_size"], 2, 16, 0)
    spy = _ReleasingWeights(weights)
    released = reference_forward(spy, BertConfig.from_dict(TINY), inputs)
    plain = reference_forward(dict(weights), BertConfig.from_dict(TINY), inputs)
    assert set(spy.read) == set(weights)
    assert set(spy.released) == set(spy.read)
    for name in plain:
        np.testing.assert_array_equal(released[name], plain[name])


def test_usage_errors(tmp_path):
    weights = tf_weights(TINY)
    converted = write_converted(tmp_path / "c", weights, TINY, "BertForPreTraining")
    with pytest.raises(InputError, match="nothing to validate against"):
        validate(converted, device="cpu")
    with pytest.raises(InputError, match="unknown dtype"):
        validate(converted, against=weights, source_config=BertConfig.from_dict(TINY), dtypes=("int8",))
    with pytest.raises(InputError, match="exceeds"):
        validate(converted, against=weights, source_config=BertConfig.from_dict(TINY), device="cpu", seq_len=41)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            validate(converted, against=weights, source_config=BertConfig.from_dict(TINY), device="cuda")


def test_compare_output_flags_non_finite():
    result = compare_output("x", np.array([1.0, np.nan]), np.array([1.0, 2.0]), DEFAULT_TOLERANCES["float32"])
    assert not result.passed and math.isinf(result.max_abs)
    # a non-finite reference (the original itself overflowed) fails too, even where ours agrees
    for bad in (np.nan, np.inf):
        result = compare_output("x", np.array([1.0, bad]), np.array([1.0, bad]), DEFAULT_TOLERANCES["float32"])
        assert not result.passed


@pytest.mark.parametrize("shape", [(0,), (3,), (2, 5, 7), (3, 70_000), (2, 128, 513)])
def test_compare_output_block_by_block_equals_the_whole_array_definition(shape):
    # compared a block at a time; every figure must be what the whole arrays give
    rng = np.random.default_rng(len(shape) + sum(shape))
    reference = rng.normal(0, 3, size=shape)
    ours = reference + rng.normal(0, 1e-6, size=shape)
    if reference.size:
        ours.flat[reference.size * 2 // 3] += 1e-3  # the largest difference, in a late block
    result = compare_output("x", ours, reference, DEFAULT_TOLERANCES["float32"])
    diff = np.abs(ours - reference)
    if not reference.size:
        assert result.max_abs == 0.0 and result.cosine == 1.0 and result.where == []
        return
    assert result.max_abs == diff.max()
    assert result.where == [int(i) for i in np.unravel_index(int(np.argmax(diff)), shape)]
    assert result.magnitude == max(1.0, float(np.abs(reference).max()))
    assert result.mean_abs == pytest.approx(float(diff.mean()), rel=1e-12)
    cosine = float(np.dot(ours.ravel(), reference.ravel()) / (np.linalg.norm(ours) * np.linalg.norm(reference)))
    assert result.cosine == pytest.approx(cosine, rel=1e-12)
    assert result.passed == (result.max_abs <= result.bound)


# ----------------------------------------------------------------------------------- CUDA


@needs_cuda
def test_cuda_float32_disables_tf32_and_passes(tmp_path):
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        report = check(tmp_path, device="cuda")
    finally:
        assert torch.backends.cuda.matmul.allow_tf32 is True  # the caller's setting is restored
        torch.backends.cuda.matmul.allow_tf32 = False
    run = report.runs[0]
    assert run.device.startswith("cuda") and run.tf32 == "disabled"
    assert run.memory_measure == "CUDA max_memory_allocated" and run.peak_memory_bytes > 0
    assert report.passed, report.render()
    assert report.worst_max_abs() <= 1e-5


@needs_cuda
def test_cuda_half_precisions_and_broken_case(tmp_path):
    report = check(tmp_path, device="cuda", dtypes=("float32", "float16", "bfloat16"))
    assert report.passed, report.render()
    broken = check(tmp_path / "b", BROKEN["query_key_swapped"][0], device="cuda")
    assert broken.first_diverging == out.layer(1)


# ----------------------------------------------------------------------------------- BERT-Base


@pytest.mark.slow
def test_bert_base_sized_conversion(tmp_path):
    weights = tf_weights(BASE, ("mlm", "nsp"), seed=1)
    converted = write_converted(tmp_path / "base", weights, BASE, "BertForPreTraining")
    started = time.perf_counter()
    report = validate(converted, against=weights, source_config=BertConfig.from_dict(BASE), device="cpu",
                      batch=2, seq_len=128)
    seconds = time.perf_counter() - started
    print(f"\nBERT-Base 2x128 validate: {seconds:.1f} s, worst max abs {report.worst_max_abs():.2e}, "
          f"peak RSS {report.runs[0].peak_memory_bytes / 2**20:.0f} MiB, reference {report.reference_seconds:.1f} s, "
          f"load {report.runs[0].load_seconds:.1f} s, forward {report.runs[0].forward_seconds:.1f} s")
    assert report.passed, report.render()
    assert report.worst_max_abs("float32") <= 1e-5
