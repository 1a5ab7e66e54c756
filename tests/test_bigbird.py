"""BigBird: fixtures/bigbird_pretrain/ was written by google-research/bigbird's own code
(fixtures/make_bigbird_fixtures.py): its checkpoint converts to a Hugging Face BigBird directory
that transformers 5 loads and that meets the original's outputs on every exported head; the flags
file's config is translated; configs for which the stock class computes otherwise are refused."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from bertconv import convert, validate
from bertconv.errors import ConfigError, MappingError

SOURCE = Path(__file__).resolve().parent.parent / "fixtures" / "bigbird_pretrain"
TOLERANCE = 2e-5


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(SOURCE / "golden.npz"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("bigbird") / "out"
    report = convert(SOURCE, out)
    return out, report


def _max_abs(ours, theirs, mask):
    diff = np.abs(np.asarray(ours, dtype=np.float64) - np.asarray(theirs, dtype=np.float64))
    return float(diff[mask].max()) if diff.ndim >= 2 and diff.shape[:2] == mask.shape else float(diff.max())


def test_transformers_meets_the_original_on_every_head(converted, golden):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    out, _ = converted
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "big_bird" and config["architectures"] == ["BigBirdForPreTraining"]
    assert config["attention_type"] == "original_full" and config["hidden_act"] == "gelu_new"
    model = transformers.BigBirdForPreTraining.from_pretrained(out).eval()
    ids = {k: torch.tensor(golden[k]).long() for k in ("input_ids", "token_type_ids", "attention_mask")}
    with torch.no_grad():
        result = model(**ids, output_hidden_states=True)
    mask = golden["attention_mask"].astype(bool)
    assert mask.sum() < mask.size  # the inputs hold padding
    for ours, name in ((result.hidden_states[0], "embeddings"), (result.hidden_states[-1], "sequence_output"),
                       (result.prediction_logits, "mlm_logits"), (result.seq_relationship_logits, "nsp_logits")):
        assert _max_abs(ours.numpy(), golden[name], mask) < TOLERANCE, name


def test_the_float64_reference_meets_the_original(golden):
    from bertconv.families import get_family
    from bertconv.formats import open_source

    family = get_family("bigbird")
    layout = family.layouts[0]
    config = layout.read_config(SOURCE / "pretrain.config", {})
    with open_source(SOURCE) as source:
        ref = family.reference(source, config, {k: golden[k] for k in ("input_ids", "token_type_ids")})
    mask = golden["attention_mask"].astype(bool)
    assert _max_abs(ref["mlm_logits"], golden["mlm_logits"], mask) < TOLERANCE
    assert _max_abs(ref["nsp_logits"], golden["nsp_logits"], mask) < TOLERANCE
    assert _max_abs(ref["sequence_output"], golden["sequence_output"], mask) < TOLERANCE


def test_conversion_says_what_it_assumed(converted):
    out, report = converted
    text = "\n".join(report.notes)
    assert "input_ids > 0" in text and "switches itself to full attention" in text
    assert (out / "spiece.model").read_bytes() == (SOURCE / "spiece.model").read_bytes()
    checked = validate(out, against=SOURCE, device="cpu", seq_len=8, with_transformers=True)
    assert checked.passed


def _with_config(tmp_path, **changes) -> Path:
    copy = tmp_path / "bigbird"
    shutil.copytree(SOURCE, copy)
    config = json.loads((copy / "pretrain.config").read_text())
    config.update(changes)
    (copy / "pretrain.config").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize("changes, match", [
    # the original's embedding slices the position table by the length its layers run at
    ({"max_encoder_length": 4096}, "max_position_embeddings 64 is shorter than the 4096 tokens the original's "
                                   "block-sparse layers run at"),
    ({"max_encoder_length": 640, "max_position_embeddings": 640, "block_size": 64},
     r"cannot draw its random blocks \(could not broadcast input array from shape \(0,\) into shape \(2,\)\)"),
    ({"max_encoder_length": 1024, "attention_type": "simulated_sparse"}, "original_full and block_sparse"),
    ({"norm_type": "prenorm"}, "post-norm only"),
    ({"rescale_embedding": True}, "scale"),
])
def test_configs_the_stock_class_computes_otherwise_are_refused(tmp_path, changes, match):
    with pytest.raises(ConfigError, match=match):
        convert(_with_config(tmp_path, **changes), tmp_path / "out")


def test_max_encoder_length_full_attention_is_kept(tmp_path):
    source = _with_config(tmp_path, attention_type="original_full", max_encoder_length=4096)
    report = convert(source, tmp_path / "out")
    assert not any("switches itself" in n for n in report.notes)


def test_the_tokenizer_loads_without_sentencepiece_and_tokenizes_as_it(converted):
    transformers = pytest.importorskip("transformers")
    out, _ = converted
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    cls_id, sep_id = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    recorded = json.loads((SOURCE / "golden.json").read_text())["sentencepiece_ids"]
    for text, ids in recorded.items():
        assert tokenizer(text)["input_ids"] == [cls_id, *ids, sep_id], text


CLASSIFIER = SOURCE.parent / "bigbird_classifier"


def test_run_classifier_head_is_refused_with_the_reason(tmp_path):
    with pytest.raises(MappingError, match="tanh output"):
        convert(CLASSIFIER, tmp_path / "out")


def test_run_classifier_encoder_meets_the_original(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "out"
    report = convert(CLASSIFIER, out, head="base")
    # run_classifier.py's AdamWeightDecay slots and global step, recognised by rule
    assert report.training_state_dropped == {"AdamWeightDecayOptimizer": 41, "AdamWeightDecayOptimizer_1": 41,
                                             "global_step": 1}
    golden = dict(np.load(CLASSIFIER / "golden.npz"))
    model = transformers.BigBirdModel.from_pretrained(out).eval()
    ids = {k: torch.tensor(golden[k]).long() for k in ("input_ids", "token_type_ids", "attention_mask")}
    with torch.no_grad():
        result = model(**ids)
    mask = golden["attention_mask"].astype(bool)
    assert _max_abs(result.last_hidden_state.numpy(), golden["sequence_output"], mask) < TOLERANCE
    assert _max_abs(result.pooler_output.numpy(), golden["pooled_output"], mask) < TOLERANCE


def test_inspect_names_family_layout_and_heads(capsys):
    from bertconv.cli import main

    assert main(["inspect", str(SOURCE), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["family"], report["layout"]) == ("bigbird", "google_bigbird")
    assert report["heads"] == {"mlm": True, "nsp": True, "classifier": False}
    assert report["config_file"].endswith("pretrain.config") and not report["config_problems"]


def test_the_way_back_writes_bigbirds_checkpoint_and_flags(converted, tmp_path):
    """pt2tf writes model.ckpt and the model flags of pretrain.config as run_pretraining.py saves
    them (full attention: what the converted model computes), and the SentencePiece model."""
    from bertconv import diff, pt2tf

    out, _ = converted
    back = tmp_path / "back"
    report = pt2tf(out, back)
    assert "spiece.model" in report.files
    flags = json.loads((back / "pretrain.config").read_text())
    original = json.loads((SOURCE / "pretrain.config").read_text())
    assert flags["attention_type"] == "original_full" and flags["scope"] == "bert"
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
                "max_position_embeddings", "max_encoder_length", "block_size", "num_rand_blocks", "hidden_act",
                "norm_type", "use_bias", "rescale_embedding"):
        assert flags[key] == original[key], key
    assert (back / "spiece.model").read_bytes() == (SOURCE / "spiece.model").read_bytes()
    again = diff(SOURCE, back)
    assert again.passed and len(again.compared) == 46 and not again.missing_in_b and not again.unexpected_in_b


def test_the_way_back_refuses_block_sparse_hugging_face_configs(converted, tmp_path):
    from bertconv import pt2tf

    out, _ = converted
    copy = tmp_path / "hf"
    shutil.copytree(out, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "attention_type": "block_sparse"}))
    with pytest.raises(ConfigError, match="block 0 in place of every random block"):
        pt2tf(copy, tmp_path / "back")
    assert not (tmp_path / "back").exists()


# -- block-sparse attention ----------------------------------------------------------------------
SPARSE = SOURCE.parent / "bigbird_sparse"
#: head option -> (architecture, the auto class that loads it)
SPARSE_HEADS = {"all": ("BigBirdForPreTraining", "AutoModelForPreTraining"),
                "mlm": ("BigBirdForMaskedLM", "AutoModelForMaskedLM"),
                "base": ("BigBirdModel", "AutoModel")}


@pytest.fixture(scope="module")
def sparse_golden():
    return dict(np.load(SPARSE / "golden.npz"))


@pytest.fixture(scope="module")
def sparse_conversions(tmp_path_factory):
    made = {}
    for head in SPARSE_HEADS:
        out = tmp_path_factory.mktemp(f"sparse_{head}") / "hf"
        made[head] = (out, convert(SPARSE, out, **({} if head == "all" else {"head": head})))
    return made


@pytest.fixture(scope="module")
def golden_without_mlm(sparse_golden, tmp_path_factory):
    """The golden file with every output at every position: the original's MLM logits are
    recorded at ``mlm_positions`` only, so they are checked apart."""
    path = tmp_path_factory.mktemp("sparse_golden") / "golden.npz"
    np.savez(path, **{k: v for k, v in sparse_golden.items() if k not in ("mlm_logits", "mlm_positions")})
    return path


def _sparse_outputs(result, golden):
    named = {"sequence_output": result.hidden_states[-1]}
    if getattr(result, "pooler_output", None) is not None:
        named["pooled_output"] = result.pooler_output
    logits = getattr(result, "prediction_logits", None)
    logits = getattr(result, "logits", None) if logits is None else logits
    if logits is not None:
        named["mlm_logits"] = logits[:, golden["mlm_positions"]]
    if getattr(result, "seq_relationship_logits", None) is not None:
        named["nsp_logits"] = result.seq_relationship_logits
    return named


def test_the_inputs_reach_the_random_blocks(sparse_golden):
    """1024 tokens in blocks of 16: the attended tokens fill blocks far past the global ones, and
    row 0's padding starts mid-block (700)."""
    mask = sparse_golden["attention_mask"].astype(bool)
    assert mask.shape == (2, 1024) and mask[1].all() and mask[0].sum() == 700
    assert set(np.unique(sparse_golden["token_type_ids"][mask])) == {0, 1}
    config = json.loads((SPARSE / "pretrain.config").read_text())
    assert (config["attention_type"], config["max_encoder_length"], config["block_size"],
            config["num_rand_blocks"]) == ("block_sparse", 1024, 16, 3)


@pytest.mark.parametrize("head", sorted(SPARSE_HEADS))
def test_block_sparse_meets_the_original_on_every_head(sparse_conversions, sparse_golden, head):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    out, report = sparse_conversions[head]
    architecture, auto = SPARSE_HEADS[head]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "big_bird_block_sparse" and config["architectures"] == [architecture]
    assert (config["attention_type"], config["block_size"], config["num_random_blocks"],
            config["max_encoder_length"]) == ("block_sparse", 16, 3, 1024)
    assert report.validation.passed
    model = getattr(transformers, auto).from_pretrained(out, trust_remote_code=True).eval()
    ids = {k: torch.tensor(sparse_golden[k]).long() for k in ("input_ids", "token_type_ids", "attention_mask")}
    with torch.no_grad():
        named = _sparse_outputs(model(**ids, output_hidden_states=True), sparse_golden)
    mask = sparse_golden["attention_mask"].astype(bool)
    expected = {"all": {"sequence_output", "mlm_logits", "nsp_logits"}, "mlm": {"sequence_output", "mlm_logits"},
                "base": {"sequence_output", "pooled_output"}}[head]
    assert expected <= set(named)
    for name, value in named.items():
        gap = np.abs(value.double().numpy() - sparse_golden[name].astype(np.float64))
        assert float((gap[mask] if gap.shape[:2] == mask.shape else gap).max()) < TOLERANCE, name


def test_block_sparse_directories_load_in_a_fresh_process(sparse_conversions, golden_without_mlm, tmp_path):
    from .remote_code_run import run_remote

    checks = [(sparse_conversions[head][0], golden_without_mlm, SPARSE_HEADS[head][1]) for head in SPARSE_HEADS]
    results = run_remote(checks, tmp_path)
    for head, result in zip(SPARSE_HEADS, results):
        assert result["class"] == SPARSE_HEADS[head][0] and "bigbird_block_sparse" in result["module"]
        assert result["worst"]["sequence_output"] < TOLERANCE, (head, result)
        assert all(gap < TOLERANCE for gap in result["worst"].values()), (head, result)
    assert {"pooled_output", "nsp_logits"} <= set(results[0]["worst"]) | set(results[2]["worst"])


def test_without_trust_remote_code_transformers_refuses_the_directory(sparse_conversions):
    transformers = pytest.importorskip("transformers")
    out, _ = sparse_conversions["base"]
    with pytest.raises(ValueError):
        transformers.AutoModel.from_pretrained(out)


def test_transformers_own_bigbird_computes_otherwise(sparse_conversions, sparse_golden, tmp_path):
    """Why the directory carries its own code: transformers' BigBird given the same weights and
    block-sparse config misses the original by far more than the bound."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    out, _ = sparse_conversions["all"]
    stock = tmp_path / "stock"
    shutil.copytree(out, stock)
    config = json.loads((stock / "config.json").read_text())
    config.pop("auto_map")
    (stock / "config.json").write_text(json.dumps({**config, "model_type": "big_bird"}))
    model = transformers.BigBirdForPreTraining.from_pretrained(stock).eval()
    ids = {k: torch.tensor(sparse_golden[k]).long() for k in ("input_ids", "token_type_ids", "attention_mask")}
    with torch.no_grad():
        sequence = model(**ids, output_hidden_states=True).hidden_states[-1].double().numpy()
    mask = sparse_golden["attention_mask"].astype(bool)
    assert np.abs(sequence - sparse_golden["sequence_output"])[mask].max() > 100 * TOLERANCE


def test_bertconvs_model_meets_the_original(sparse_conversions, golden_without_mlm):
    out, _ = sparse_conversions["all"]
    checked = validate(out, golden=golden_without_mlm, device="cpu")
    (run,) = checked.runs
    assert run.runner == "bertconv.model" and run.first_diverging is None
    assert {o.name for o in run.outputs} == {"sequence_output", "pooled_output", "nsp_logits"}
    assert all(o.passed and o.max_abs < TOLERANCE for o in run.outputs)
    # what the golden file does not hold (the MLM logits are checked at their positions above)
    assert set(run.unreferenced) == {"embeddings", "layer_0", "layer_1", "mlm_logits"}


def test_the_float64_reference_meets_the_original_block_sparse(sparse_golden):
    from bertconv.families import get_family
    from bertconv.formats import open_source

    family = get_family("bigbird")
    notes = []
    config = family.layouts[0].read_config(SPARSE / "pretrain.config", {}, notes)
    assert config.extra["attention_type"] == "block_sparse"
    with open_source(SPARSE) as source:
        ref = family.reference(source, config, {k: sparse_golden[k] for k in ("input_ids", "token_type_ids")})
    mask = sparse_golden["attention_mask"].astype(bool)
    assert _max_abs(ref["sequence_output"], sparse_golden["sequence_output"], mask) < TOLERANCE
    assert _max_abs(ref["pooled_output"], sparse_golden["pooled_output"], mask) < TOLERANCE
    assert _max_abs(ref["nsp_logits"], sparse_golden["nsp_logits"], mask) < TOLERANCE
    assert _max_abs(ref["mlm_logits"][:, sparse_golden["mlm_positions"]], sparse_golden["mlm_logits"], mask) < TOLERANCE


def test_the_random_blocks_are_the_originals():
    """Both the model's plan (NumPy's RandomState replayed without NumPy) and the reference's
    (NumPy's own) are the blocks google-research/bigbird's attention layer drew, for the released
    4096 / 64 shape, the fixture's and the lengths planned in parts; where the original cannot
    draw one, both raise its error."""
    from bertconv.families.bigbird.block_sparse import LegacyRandomState, random_block_plan
    from bertconv.families.bigbird.reference import random_blocks

    for seed in (0, 1, 11, 2**32 - 1):
        numpy_state, ours = np.random.RandomState(seed), LegacyRandomState(seed)
        for size in (0, 1, 2, 61, 300):
            assert list(numpy_state.permutation(np.arange(size))) == ours.permutation(range(size))
    plans = np.load(SPARSE / "plans.npz")
    assert "4096_64_3_12_11" in plans and "576_8_3_2_0" in plans and "768_128_3_2_0" in plans
    for key, drawn in plans.items():
        length, block, count, heads, seed = map(int, key.split("_"))
        assert np.array_equal(np.array(random_block_plan(length, block, count, heads, seed)), drawn), key
        assert np.array_equal(random_blocks(length, block, count, heads, seed), drawn), key
    refused = json.loads((SPARSE / "golden.json").read_text())["plans_refused"]
    for key, error in refused.items():
        length, block, count, heads, seed = map(int, key.split("_"))
        message = error.split(": ", 1)[1]
        with pytest.raises(ValueError, match=re.escape(message)):
            random_block_plan(length, block, count, heads, seed)
        with pytest.raises(ValueError, match=re.escape(message)):
            random_blocks(length, block, count, heads, seed)


def test_the_conversion_says_what_it_draws_and_assumes(sparse_conversions):
    _, report = sparse_conversions["all"]
    text = "\n".join(report.notes)
    # what the refusal of block-sparse configs said is now the conversion's note
    assert "random blocks drawn as the original draws them for 1024 tokens with np.random.seed(layer index)" in text
    assert "transformers' BigBird in eval() attends block 0 in place of every random block" in text
    assert "padded with id 0 to max_encoder_length 1024" in text and "input_ids > 0" in text


def test_validate_passes_and_a_wrong_random_plan_fails(sparse_conversions, tmp_path, monkeypatch):
    """validate runs block-sparse models at max_encoder_length tokens, where every random block is
    read: the directory's code drawing its blocks with another seed fails, and so does a
    reference drawing them so."""
    from bertconv.families.bigbird import reference

    out, _ = sparse_conversions["all"]
    checked = validate(out, against=SPARSE, device="cpu", with_transformers=True)
    assert checked.passed and checked.inputs["seq_len"] == 1024
    wrong = tmp_path / "wrong"
    shutil.copytree(out, wrong)
    code = wrong / "modeling_bigbird_block_sparse.py"
    text = code.read_text()
    assert text.count("self.num_heads, self.layer_index)") == 1
    code.write_text(text.replace("self.num_heads, self.layer_index)", "self.num_heads, self.layer_index + 1)"))
    assert not validate(wrong, against=SPARSE, device="cpu", with_transformers=True).passed
    drawn = reference.random_blocks
    monkeypatch.setattr(reference, "random_blocks", lambda *args: drawn(*args[:4], args[4] + 7))
    assert not validate(out, against=SPARSE, device="cpu").passed


def test_inputs_shorter_than_max_encoder_length_are_padded_to_it(sparse_conversions, sparse_golden):
    """As the original's scripts pad every input: row 0's 700 tokens alone give the original's
    outputs on them; a longer input than max_encoder_length is refused."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    out, _ = sparse_conversions["base"]
    model = transformers.AutoModel.from_pretrained(out, trust_remote_code=True).eval()
    ids = torch.tensor(sparse_golden["input_ids"][:1, :700]).long()
    types = torch.tensor(sparse_golden["token_type_ids"][:1, :700]).long()
    with torch.no_grad():
        sequence = model(input_ids=ids, token_type_ids=types).last_hidden_state.double().numpy()
    assert sequence.shape == (1, 700, 16)
    assert np.abs(sequence - sparse_golden["sequence_output"][:1, :700]).max() < TOLERANCE
    with pytest.raises(ValueError, match="max_encoder_length 1024"):
        model(input_ids=torch.ones(1, 1025, dtype=torch.long))


def test_block_sparse_inspect_diff_memory_and_the_way_back(sparse_conversions, tmp_path):
    from bertconv import diff, inspect_checkpoint, pt2tf
    from bertconv.memory import encoder_shape

    out, _ = sparse_conversions["all"]
    report = inspect_checkpoint(SPARSE)
    assert (report.family, report.layout) == ("bigbird", "google_bigbird")
    compared = diff(SPARSE, out / "model.safetensors")
    assert compared.passed and compared.compared and not compared.missing_in_b and not compared.unexpected_in_b
    shape = encoder_shape(out)
    assert shape.parameters == encoder_shape(SPARSE).parameters
    back = tmp_path / "back"
    pt2tf(out, back)
    flags = json.loads((back / "pretrain.config").read_text())
    original = json.loads((SPARSE / "pretrain.config").read_text())
    for key in ("attention_type", "max_encoder_length", "block_size", "num_rand_blocks", "max_position_embeddings"):
        assert flags[key] == original[key], key
    assert diff(SPARSE, back).passed


def test_the_modeling_file_is_the_block_sparse_module_and_imports_only_torch(sparse_conversions):
    import bertconv.families.bigbird.block_sparse as module

    from .remote_code_run import imported_modules

    out, _ = sparse_conversions["all"]
    text = (out / "modeling_bigbird_block_sparse.py").read_text()
    assert Path(module.__file__).read_text() in text
    assert imported_modules(Path(module.__file__).read_text()) <= {"torch", "math", "random"}
    assert imported_modules(text) <= {"torch", "transformers", "math", "random", "dataclasses", "typing", "."}
