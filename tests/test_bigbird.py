"""BigBird: fixtures/bigbird_pretrain/ was written by google-research/bigbird's own code
(fixtures/make_bigbird_fixtures.py): its checkpoint converts to a Hugging Face BigBird directory
that transformers 5 loads and that meets the original's outputs on every exported head; the flags
file's config is translated; configs for which the stock class computes otherwise are refused."""
from __future__ import annotations

import json
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
