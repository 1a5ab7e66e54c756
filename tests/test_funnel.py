"""Funnel-Transformer: checkpoints written by laiguokun/Funnel-Transformer's TensorFlow code itself
(fixtures/make_funnel_fixtures.py: an ELECTRA pretraining checkpoint with both towers and Adam
slots, and a classifier.py fine-tune) convert to directories that carry Funnel's own modeling
code; bertconv's model, its float64 reference and transformers (trust_remote_code, in a fresh
process) each meet the original code's outputs, over windows that mix tokens and padding."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bertconv.comparison import diff
from bertconv.conversion import convert
from bertconv.errors import ConfigError, MappingError, VocabError
from bertconv.families import get_family
from bertconv.formats import open_source
from bertconv.inspection import inspect_checkpoint
from bertconv.validation import validate

from .conftest import FIXTURES, missing_fixture
from .remote_code_run import TOLERANCE, imported_modules, run_remote

#: case -> (fixture, tower, architecture, the auto class that loads it, golden file)
CASES = {
    "discriminator": ("funnel_pretrain", None, "FunnelOriginalForPreTraining", "AutoModelForPreTraining",
                      "golden.npz"),
    "generator": ("funnel_pretrain", "generator", "FunnelOriginalForMaskedLM", "AutoModelForMaskedLM",
                  "golden_generator.npz"),
    "classifier": ("funnel_classifier", None, "FunnelOriginalForSequenceClassification",
                   "AutoModelForSequenceClassification", "golden.npz"),
}
INPUTS = ("input_ids", "token_type_ids", "attention_mask")
#: what the golden files hold besides the outputs the models name (the encoder's output before
#: the decoder, which no model returns on its own)
NOT_NAMED = ("encoder_output",)


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not (path / "golden.npz").is_file():
        missing_fixture(f"fixture {name} is missing: run fixtures/make_funnel_fixtures.py")
    return path


def golden(case: str) -> dict[str, np.ndarray]:
    name, _, _, _, file = CASES[case]
    return dict(np.load(fixture(name) / file))


def pooled_padding(padding: np.ndarray) -> np.ndarray:
    """The original's pooled mask, written out: [CLS] apart, the last token left out, a window of
    two padding only when both are."""
    body = padding[:, 1:-1]
    return np.concatenate([padding[:, :1], np.minimum(body[:, 0::2], body[:, 1::2])], axis=1)


def attended(gold: dict, length: int) -> np.ndarray:
    padding = 1 - gold["attention_mask"]
    while padding.shape[1] > length:
        padding = pooled_padding(padding)
    return padding == 0


#: outputs of one vector per sequence, not per position
PER_SEQUENCE = ("pooled_output", "classifier_logits")


def worst_gaps(ours: dict, gold: dict) -> dict[str, float]:
    """Each output's max abs gap to the golden one, over attended positions (of its block's
    length: pooled positions that are not wholly padding)."""
    gaps = {}
    for name, value in ours.items():
        if name in gold and name not in INPUTS:
            gap = np.abs(np.asarray(value, np.float64) - gold[name])
            if name not in PER_SEQUENCE:
                gap = gap[attended(gold, gap.shape[1])]
            gaps[name] = float(gap.max())
    return gaps


@pytest.fixture(scope="module")
def conversions(tmp_path_factory):
    made = {}
    for case, (name, tower, _, _, _) in CASES.items():
        output = tmp_path_factory.mktemp(case) / "hf"
        made[case] = (fixture(name) / "model.ckpt", output, convert(fixture(name), output, tower=tower))
    output = tmp_path_factory.mktemp("base") / "hf"
    made["base"] = (fixture("funnel_pretrain") / "model.ckpt", output,
                    convert(fixture("funnel_pretrain"), output, head="base"))
    return made


@pytest.fixture(params=sorted(CASES))
def case(request):
    return request.param


@pytest.fixture(scope="module")
def remote_results(conversions, tmp_path_factory):
    names = sorted(CASES)
    checks = [(conversions[n][1], fixture(CASES[n][0]) / CASES[n][4], CASES[n][3]) for n in names]
    return dict(zip(names, run_remote(checks, tmp_path_factory.mktemp("remote"))))


def test_the_fixtures_pool_windows_that_mix_a_token_and_padding():
    """Rows of 8 and 6 tokens: the windows (7, 8) and (5, 6) hold a token and a pad, and the second
    pooling's window over (5, 6) and (7, 8) too; the original keeps each such position."""
    gold = golden("discriminator")
    padding = 1 - gold["attention_mask"]
    once = pooled_padding(padding)
    body = padding[:, 1:-1]
    mixed = body[:, 0::2] != body[:, 1::2]
    assert mixed.sum() == 2 and once[1, 4] == 0 and once[2, 3] == 0
    twice = pooled_padding(once)
    assert (once[:, 1:-1][:, 0::2] != once[:, 1:-1][:, 1::2]).any() and twice[2, 2] == 0


def test_converts_with_its_own_modeling_code(case, conversions):
    _, output, report = conversions[case]
    _, tower, architecture, auto, _ = CASES[case]
    layout = "funnel_tf_generator" if tower == "generator" else "funnel_tf"
    assert (report.family, report.layout, report.architecture) == ("funnel", layout, architecture)
    assert report.validation is not None and report.validation.passed
    config = json.loads((output / "config.json").read_text())
    assert config["model_type"] == "funnel_original" and config["architectures"] == [architecture]
    # ops.gelu is the tanh form, ops.layer_norm_op's epsilon 1e-8; truncate_seq the flag's default
    assert config["hidden_act"] == "gelu_new" and config["layer_norm_eps"] == 1e-8
    assert config["truncate_seq"] is True and config["separate_cls"] is True
    assert config["auto_map"][auto] == f"modeling_funnel_original.{architecture}"
    assert config["auto_map"]["AutoConfig"] == "configuration_funnel_original.FunnelOriginalConfig"
    assert {"modeling_funnel_original.py", "configuration_funnel_original.py"} <= set(report.files)
    assert any(n.startswith("truncate_seq=true, not in the files") for n in report.notes)
    if case == "generator":
        assert (config["hidden_size"], config["num_attention_heads"], config["intermediate_size"]) == (4, 1, 8)
        assert any("width_shrink 0.25" in n for n in report.notes)
    if case == "classifier":
        # classifier.py builds no decoder, whatever net_config.json states
        assert config["decoder_size"] == "2" and config["embedding_size"] == 8 and config["block_size"] == "1x2_1"
        assert config["rel_attn_type"] == "factorized"
    else:
        assert config["block_size"] == "1_1x2_1x2" and config["rel_attn_type"] == "rel_shift"
        assert config["d_head"] == 8 and config["num_hidden_layers"] == 5


def test_training_state_is_recognised(case, conversions):
    _, _, report = conversions[case]
    expected = {"global_step": 1} if case == "classifier" else {"adam_m": 174, "adam_v": 174, "global_step": 1}
    assert report.training_state_dropped == expected and not report.unknown_dropped


def test_bertconvs_model_meets_the_original(case, conversions):
    from bertconv.runtime import load_model, run_outputs

    _, output, _ = conversions[case]
    gold = golden(case)
    ours = run_outputs(load_model(output), {k: gold[k] for k in INPUTS})
    expected = {k for k in gold if k not in INPUTS + NOT_NAMED}
    gaps = worst_gaps(ours, gold)
    assert set(gaps) == expected, gaps
    assert max(gaps.values()) < TOLERANCE, gaps


def test_the_reference_meets_the_original(case):
    from bertconv.config import BertConfig
    from bertconv.formats import open_source

    name, tower, _, _, _ = CASES[case]
    gold = golden(case)
    family = get_family("funnel")
    original = json.loads((fixture(name) / "net_config.json").read_text())
    config = BertConfig.from_dict(family.translate_config({**original, "truncate_seq": True}))
    with open_source(fixture(name) / "model.ckpt") as weights:
        ours = family.reference(weights, config, {k: gold[k] for k in INPUTS}, tower=tower)
    gaps = worst_gaps(ours, gold)
    assert set(gaps) == {k for k in gold if k not in INPUTS + NOT_NAMED}, gaps
    assert max(gaps.values()) < TOLERANCE, gaps


def test_transformers_runs_it_through_trust_remote_code(case, remote_results):
    result = remote_results[case]
    gold = golden(case)
    assert result["class"] == CASES[case][2] and result["module"].startswith("transformers_modules")
    assert set(result["worst"]) == {k for k in gold if k not in INPUTS + NOT_NAMED + ("pooled_output",)}, result
    assert max(result["worst"].values()) < TOLERANCE, result


def test_transformers_funnel_computes_something_else_where_windows_mix():
    """What the own modeling code is for: transformers' Funnel pools the padding mask with "any pad
    drops the position"; on the fixtures' rows the original keeps a mixed window's position."""
    import torch
    from bertconv.families.funnel.model import Pooling

    gold = golden("discriminator")
    padding = torch.tensor(1 - gold["attention_mask"], dtype=torch.float32)
    ours = Pooling(type("C", (), {"pooling_size": 2, "pooling_type": "mean", "truncate_seq": True})).windows(padding,
                                                                                                           "min")
    assert np.array_equal(ours.numpy(), pooled_padding(1 - gold["attention_mask"]))
    body = padding[:, 1:-1]
    drop_if_any = torch.cat([padding[:, :1], torch.maximum(body[:, 0::2], body[:, 1::2])], dim=1)
    assert (drop_if_any != ours).sum() == 2


def test_inspect_validate_and_diff(case, conversions):
    source, output, _ = conversions[case]
    tower = CASES[case][1]
    report = inspect_checkpoint(source)
    assert (report.family, report.layout) == ("funnel", "funnel_tf")
    assert validate(output, against=source, device="cpu", tower=tower).passed
    compared = diff(source, output / "model.safetensors", tower=tower)
    assert compared.passed and compared.compared and not compared.missing_in_b and not compared.unexpected_in_b
    described = inspect_checkpoint(output)
    assert described.family == "funnel" and not described.config_problems


def test_the_bare_encoder_has_no_decoder(conversions):
    from safetensors.numpy import load_file

    _, output, report = conversions["base"]
    assert report.architecture == "FunnelOriginalBaseModel" and report.validation.passed
    names = load_file(output / "model.safetensors")
    assert not any(n.startswith("decoder.") for n in names) and any(n.startswith("encoder.layers.2.") for n in names)


def test_memory_structure_counts_the_tensors(case, conversions):
    from bertconv.memory import encoder_shape

    source, output, _ = conversions[case]
    shape = encoder_shape(output)
    assert shape.structural_parameters() == shape.parameters, shape.notes
    assert encoder_shape(source, tower=CASES[case][1]).parameters == shape.parameters


@pytest.mark.parametrize("name", [*sorted(CASES), "base"])
@pytest.mark.parametrize("batch, seq_len", [(8, 128), (4, 65)])
def test_memory_estimate_replays_the_structure_the_model_runs(conversions, name, batch, seq_len):
    """The estimate replays model.py's structure: each block after the first at the length its
    pooling leaves (queries pooled, keys not, in its first layer), the decoder at full length
    after the bridge, the relative attention's score-sized terms alive together; its peak meets
    the measured forward's, which a replay of every layer as BERT's at full length falls short of."""
    from bertconv.families.funnel import layer_runs
    from bertconv.families.funnel.model import Layer
    from bertconv.memory import encoder_shape, estimate

    from .own_code_memory import measured_forward

    _, output, _ = conversions[name]
    peak, runs = measured_forward(output, batch=batch, seq_len=seq_len, layer_type=Layer, vocab=40)
    shape = encoder_shape(output)
    assert runs == [(q, k) for q, k, _, _ in layer_runs(shape.family_settings, seq_len)]
    assert len(runs) == shape.layers and len({q for q, _ in runs}) > 1  # some blocks run shorter
    row = estimate(output, batch=batch, seq_len=seq_len, device="cpu").rows[0]
    assert abs(row.peak_bytes / peak - 1) < 0.03, (row.peak_bytes, peak, row.peak_at)


def test_modeling_file_is_the_model_module_and_imports_only_torch_and_transformers(conversions):
    import bertconv.families.funnel.model as model

    _, output, _ = conversions["discriminator"]
    text = (output / "modeling_funnel_original.py").read_text()
    assert Path(model.__file__).read_text() in text  # one source of truth, word for word
    assert imported_modules(Path(model.__file__).read_text()) <= {"torch", "math"}
    assert imported_modules(text) <= {"torch", "transformers", "math", "dataclasses", "typing", "."}


def test_a_fine_tune_has_no_generator_to_export(tmp_path):
    with pytest.raises(MappingError, match="holds no generator"):
        convert(fixture("funnel_classifier"), tmp_path / "out", tower="generator")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, says", [
    ({"rel_attn_type": "null"}, "rel_attn_type 'null'"),
    ({"separate_cls": False}, "separate_cls false"),
    ({"block_size": "2_x3"}, "block_size '2_x3'"),
    ({"pooling_type": "min"}, "pooling_type 'min'"),
])
def test_what_is_not_supported_is_refused_in_one_line(tmp_path, change, says):
    source = tmp_path / "ckpt"
    shutil.copytree(fixture("funnel_classifier"), source)
    config = json.loads((source / "net_config.json").read_text())
    (source / "net_config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=says) as raised:
        convert(source, tmp_path / "out")
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_set_states_truncate_seq(tmp_path):
    report = convert(fixture("funnel_classifier"), tmp_path / "out", settings={"truncate_seq": False})
    assert report.validation.passed
    assert json.loads((tmp_path / "out" / "config.json").read_text())["truncate_seq"] is False
    assert "truncate_seq=false as --set states" in report.notes


def original_pair(a: list[int], b: list[int], length: int) -> tuple[list[int], list[int]]:
    """classifier_utils.py's convert_single_example, written out: <cls> a <sep> b <sep>, segment ids
    seg_id_cls 2, then seg_id_a 0 and seg_id_b 1 each through its <sep>, padded with pad_id 0 and
    seg_id_pad 0."""
    ids = [2] + a + [3] + b + [3]
    types = [2] + [0] * (len(a) + 1) + [1] * (len(b) + 1)
    return ids + [0] * (length - len(ids)), types + [0] * (length - len(types))


def test_the_tokenizer_gives_the_originals_segment_ids(conversions):
    """vocab.uncased.txt (the releases' name, <cls>...) becomes tokenizer files that transformers 5
    loads with AutoTokenizer: a pair gets the original's ids and segment ids, 2 at <cls>."""
    import transformers

    _, output, report = conversions["classifier"]
    assert {"vocab.txt", "tokenizer.json", "tokenizer_config.json"} <= set(report.files)
    assert "do_lower_case=True ('uncased' in 'vocab.uncased.txt'; override with --cased/--uncased)" in report.notes
    # AutoTokenizer reads config.json first: the tokenizer needs none of the directory's code
    tokenizer = transformers.AutoTokenizer.from_pretrained(output, local_files_only=True, trust_remote_code=False)
    vocab = (fixture("funnel_classifier") / "vocab.uncased.txt").read_text().split()
    ids = {token: i for i, token in enumerate(vocab)}
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id,
            tokenizer.unk_token_id) == (2, 3, 0, 4, 1) and len(tokenizer) == len(vocab)
    encoded = tokenizer(["TOK5 tok6", "tok9"], ["tok7", "tok8 tok10 tok11"], padding=True)
    first = original_pair([ids["tok5"], ids["tok6"]], [ids["tok7"]], 7)
    second = original_pair([ids["tok9"]], [ids["tok8"], ids["tok10"], ids["tok11"]], 7)
    assert encoded["input_ids"] == [first[0], second[0]]
    assert encoded["token_type_ids"] == [first[1], second[1]]
    assert encoded["attention_mask"][0] == [1] * 6 + [0]
    # the original's WordpieceTokenizer splits words of up to 200 characters (FunnelTokenizer: 100)
    assert tokenizer.backend_tokenizer.model.max_input_chars_per_word == 200


def test_validation_inputs_use_funnels_special_tokens(conversions, tmp_path):
    from bertconv.config import read_config_json
    from bertconv.config import BertConfig
    from bertconv.validation.inputs import make_validation_inputs, text_inputs

    _, output, _ = conversions["discriminator"]
    config = BertConfig.from_dict(read_config_json(output / "config.json"))
    inputs = get_family("funnel").validation_inputs(make_validation_inputs(config, 2, 16, 0, output / "vocab.txt"),
                                                    config)
    assert (inputs["input_ids"][:, 0] == 2).all() and (inputs["token_type_ids"][:, 0] == 2).all()
    real = inputs["input_ids"][inputs["attention_mask"] == 1]
    assert 1 not in real and 4 not in real and (inputs["input_ids"][1][inputs["attention_mask"][1] == 0] == 0).all()
    text = tmp_path / "pairs.txt"
    text.write_text("tok5 tok6\ttok7\n")
    encoded = text_inputs(text, output, config)
    assert encoded["input_ids"].tolist() == [[2, 10, 11, 3, 12, 3]]
    assert encoded["token_type_ids"].tolist() == [[2, 0, 0, 0, 1, 1]]


def test_a_vocabulary_named_on_the_command_line_or_lacking_funnels_tokens(tmp_path):
    source = fixture("funnel_classifier")
    report = convert(source, tmp_path / "named", vocab=source / "vocab.uncased.txt")
    assert "tokenizer.json" in report.files and report.validation.passed
    bert_like = tmp_path / "vocab.txt"
    bert_like.write_text((source / "vocab.uncased.txt").read_text().replace("<cls>", "[CLS]"))
    with pytest.raises(VocabError, match=r"lacks the special tokens <cls>") as raised:
        convert(source, tmp_path / "out", vocab=bert_like)
    assert "\n" not in str(raised.value) and "<sep>" in raised.value.hint
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["discriminator", "classifier", "base"])
def test_the_way_back_round_trips(case, conversions, tmp_path):
    """pt2tf writes the original's names and a net_config.json its ModelConfig reads; converting
    that again gives the same tensors, bit for bit, and the same config."""
    from safetensors.numpy import load_file

    from bertconv.conversion import pt2tf

    source, output, _ = conversions[case]
    report = pt2tf(output, tmp_path / "back")
    assert report.tensors_checked == report.tensors_written and not any("pooler" in n for n in report.notes)
    net = json.loads((tmp_path / "back" / "net_config.json").read_text())
    assert net == json.loads((source.parent / "net_config.json").read_text())  # every key ModelConfig needs
    with open_source(source) as original, open_source(tmp_path / "back" / "model.ckpt") as written:
        # classifier.py's task scope (sst-2 here) is in no converted file: written as --cls_scope=classifier
        renamed = {n: n.replace("/sst-2/", "/classifier/") for n in original.names()}
        kept = [n for n, back in renamed.items() if back in set(written.names())]
        assert len(kept) == report.tensors_written and all(n.startswith("model/") for n in kept)
        assert all(np.array_equal(original.read(n), written.read(renamed[n])) for n in kept)
    if case == "classifier":
        assert "run classifier.py with --cls_scope=classifier" in report.notes[0]
    again = convert(tmp_path / "back", tmp_path / "again", head="base" if case == "base" else "auto")
    assert again.validation.passed and again.architecture == CASES.get(case, (0, 0, "FunnelOriginalBaseModel"))[2]
    first, second = load_file(output / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert first.keys() == second.keys() and all(np.array_equal(first[n], second[n]) for n in first)
    config, config_again = (json.loads((d / "config.json").read_text()) for d in (output, tmp_path / "again"))
    assert {k: v for k, v in config.items() if k != "bertconv"} == \
        {k: v for k, v in config_again.items() if k != "bertconv"}


def test_the_way_back_refuses_a_generator_alone(conversions, tmp_path):
    from bertconv.conversion import pt2tf

    with pytest.raises(ConfigError, match="a generator has no checkpoint of its own") as raised:
        pt2tf(conversions["generator"][1], tmp_path / "back")
    assert "\n" not in str(raised.value) and not (tmp_path / "back").exists()
