"""RoFormer v1: bert4keras' h5 and TF object checkpoint (written by bert4keras itself) and a
Google-layout TF1 checkpoint (fixtures/make_roformer_fixtures.py: tf.compat.v1 Saver under
bert4keras' own names, loaded back by bert4keras to make its golden file) convert to Hugging Face RoFormer directories that
transformers loads offline and that match the library's outputs; NEZHA and RoFormer-v2, read as
RoFormer, are refused in one line; BERT checkpoints are not read as RoFormer."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from bertconv.cli import main
from bertconv.comparison import diff
from bertconv.conversion import convert
from bertconv.errors import InputError
from bertconv.families import detect_layout, source_view
from bertconv.formats import open_source
from bertconv.inspection import inspect_checkpoint
from bertconv.validation import validate

from .conftest import FIXTURES, fixture_dir, missing_fixture
from .keras_era_transformers import TOLERANCE, golden, keras_era_dir

H5 = "bert4keras_roformer_h5"
GOOGLE = FIXTURES / "roformer_google"
V2_GOOGLE = FIXTURES / "roformer_v2_google"
OBJECT_CKPT = FIXTURES / "roformer_bert4keras_ckpt"
POOLER = ("roformer.pooler.dense.weight", "roformer.pooler.dense.bias")


def h5_source():
    return keras_era_dir(H5) / "roformer_weights.h5"


def google_source():
    if not (GOOGLE / "bert_model.ckpt.index").is_file():
        missing_fixture("fixture roformer_google is missing: run fixtures/make_roformer_fixtures.py")
    return GOOGLE


def ckpt_source():
    if not (OBJECT_CKPT / "best_model.weights.index").is_file():
        missing_fixture("fixture roformer_bert4keras_ckpt is missing: run fixtures/make_roformer_fixtures.py")
    return OBJECT_CKPT


SOURCES = {"h5": (h5_source, "bert4keras_roformer", lambda: golden(H5)),
           "google": (google_source, "google_roformer",
                      lambda: dict(np.load(google_source() / "golden.npz"))),
           "ckpt": (ckpt_source, "bert4keras_roformer_checkpoint",
                    lambda: dict(np.load(ckpt_source() / "golden.npz")))}


@pytest.fixture(scope="module", params=sorted(SOURCES))
def converted(request, tmp_path_factory):
    source_of, layout, gold = SOURCES[request.param]
    out = tmp_path_factory.mktemp(request.param) / "hf"
    report = convert(source_of(), out)
    return source_of(), layout, gold(), out, report


def test_converts_and_its_own_check_passes(converted):
    _, _, _, out, report = converted
    assert report.architecture == "RoFormerForMaskedLM"
    assert report.validation is not None and report.validation.passed
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "roformer" and config["rotary_value"] is False
    # bert4keras' "gelu" is the erf form and its RoFormer LayerNorm epsilon 1e-7
    assert config["hidden_act"] == "gelu" and config["layer_norm_eps"] == 1e-7


def test_every_trained_weight_is_kept_and_the_pooler_reported(converted):
    from safetensors.numpy import load_file

    _, _, _, out, report = converted
    stored = load_file(out / "model.safetensors")
    assert set(POOLER) <= set(stored)
    assert sorted(report.to_dict()["ignored_by_class"]) == sorted(POOLER)


def _transformers_outputs(out, gold, monkeypatch):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from bertconv.families import get_family

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, info = transformers.RoFormerForMaskedLM.from_pretrained(out, output_loading_info=True)
    # the pooler is the only weight the class leaves unused; the sinusoid table it computes itself
    assert set(info["unexpected_keys"]) == set(POOLER)
    assert set(info["missing_keys"]) <= {"roformer.encoder.embed_positions.weight"}
    model.eval()
    with torch.no_grad():
        result = model(input_ids=torch.tensor(gold["input_ids"]), token_type_ids=torch.tensor(gold["token_type_ids"]),
                       attention_mask=torch.tensor(gold["attention_mask"]), output_hidden_states=True)
        named = get_family("roformer").transformers_outputs(model, result)
        # transformers' RoFormer has no pooler: the kept weights, applied as the original does
        pooler = load_file(out / "model.safetensors")
        sequence = named["sequence_output"]
        named["pooled_output"] = torch.tanh(sequence[:, 0] @ pooler[POOLER[0]].T + pooler[POOLER[1]])
    return {k: v.numpy() for k, v in named.items()}


def test_transformers_matches_the_library_golden(converted, monkeypatch):
    _, _, gold, out, _ = converted
    got = _transformers_outputs(out, gold, monkeypatch)
    outputs = [k for k in gold if k not in ("input_ids", "token_type_ids", "attention_mask")]
    assert set(outputs) == {"embeddings", "layer_0", "layer_1", "sequence_output", "pooled_output", "mlm_logits"}
    worst = {k: float(np.max(np.abs(got[k].astype(np.float64) - gold[k]))) for k in outputs}
    assert max(worst.values()) < TOLERANCE, worst


def test_tokenizer_loads_offline(converted, monkeypatch):
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, _, _, out, _ = converted
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    vocab = (out / "vocab.txt").read_text().split()
    assert tokenizer.convert_ids_to_tokens(tokenizer("hello")["input_ids"])[0] == "[CLS]"
    assert len(tokenizer) == len(vocab)


def test_inspect_names_family_and_layout(converted):
    source, layout, _, _, _ = converted
    report = inspect_checkpoint(source)
    assert (report.family, report.layout) == ("roformer", layout)


def test_validate_and_diff_work(converted):
    source, _, _, out, _ = converted
    result = validate(out, against=source, device="cpu")
    assert result.passed
    report = diff(source, out / "model.safetensors")
    assert report.passed and report.compared and not report.missing_in_b and not report.unexpected_in_b


def test_bert4keras_tables_follow_each_groups_weight_order():
    """The bound table maps each group by its weight_names order, which the reader states."""
    with open_source(h5_source()) as source:
        layout = detect_layout(source.names(), source=source).for_checkpoint(source.names(), source)
        for group, names in source.layer_weights.items():
            targets = [layout.mapping.to_target(n).target for n in names]
            if group == "Transformer-0-MultiHeadSelfAttention":
                assert [t.rsplit(".", 2)[-2:] for t in targets] == [
                    ["query", "weight"], ["query", "bias"], ["key", "weight"], ["key", "bias"],
                    ["value", "weight"], ["value", "bias"], ["dense", "weight"], ["dense", "bias"]]
            if group.endswith("Norm"):
                assert [t.rsplit(".", 1)[1] for t in targets] == ["bias", "weight"]  # beta, then gamma


def test_bert_checkpoints_are_not_read_as_roformer():
    with open_source(fixture_dir("bert_pretrain")) as source:
        assert detect_layout(source.names()).family.name == "bert"
    # a bare BertModel state dict (PyTorch names without a prefix) neither
    names = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
             "embeddings.token_type_embeddings.weight", "encoder.layer.0.attention.self.query.weight"]
    layout, side, _ = source_view(names)
    assert (layout.family.name, side) == ("bert", "pt")
    # and RoFormer's own PyTorch names are RoFormer's
    layout, side, _ = source_view(["roformer.embeddings.word_embeddings.weight",
                                   "roformer.encoder.layer.0.attention.self.query.weight"])
    assert (layout.family.name, side) == ("roformer", "pt")


@pytest.mark.parametrize("name", ["bert4keras_bert_h5", "bert4keras_bert_ckpt", "bert4keras_classifier_h5",
                                  "bert_for_tf2_h5", "bert_for_tf2_ckpt", "hf_tf_classifier_ckpt",
                                  "hf_tf_pretraining_ckpt", "keras_bert_pretrain_h5", "keras_hub_backbone"])
def test_keras_era_bert_files_are_not_roformer(name):
    """Files of other libraries whose names begin like Google's or bert4keras' but hold a position
    table (under any name) stay with their own family."""
    directory = keras_era_dir(name)
    files = sorted(directory.glob("*.h5")) or [directory]
    with open_source(files[0]) as source:
        layout = detect_layout(source.names(), source=source)
        assert layout is None or layout.family.name != "roformer", layout


def _one_line_refusal(source, tmp_path, model: str, family: str | None = None):
    with pytest.raises(InputError) as info:
        convert(source, tmp_path / "out", family=family)
    message = str(info.value)
    assert model in message and "transformers 5 has no" in message and "\n" not in message
    assert not (tmp_path / "out").exists()
    assert main(["tf2pt", str(source), str(tmp_path / "out2"), *(["--family", family] if family else [])]) == 2


def test_nezha_is_refused_as_roformer(tmp_path):
    """A NEZHA config beside Google names without a position table is NEZHA's (its own family);
    read as RoFormer, it is refused."""
    nezha = tmp_path / "nezha"
    shutil.copytree(google_source(), nezha)
    config = json.loads((nezha / "bert_config.json").read_text())
    config.update(use_relative_position=True, max_relative_position=64)
    (nezha / "bert_config.json").write_text(json.dumps(config))
    with open_source(nezha) as source:
        assert detect_layout(source.names(), source=source).family.name == "nezha"
    _one_line_refusal(nezha, tmp_path, "NEZHA", family="roformer")


def test_bert4keras_nezha_is_refused_as_roformer(tmp_path):
    """bert4keras' NEZHA stores its sinusoid table as Embedding-Relative-Position: NEZHA's (its own
    family, tests/test_nezha.py); read as RoFormer, it is refused."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "nezha.h5"
    shutil.copy(h5_source(), path)
    shutil.copy(keras_era_dir(H5) / "bert_config.json", tmp_path / "bert_config.json")
    with h5py.File(path, "r+") as f:
        group = f.create_group("Embedding-Relative-Position")
        group.create_dataset("Embedding-Relative-Position/embeddings:0", data=np.zeros((129, 8), np.float32))
        group.attrs["weight_names"] = [b"Embedding-Relative-Position/embeddings:0"]
        f.attrs["layer_names"] = [*f.attrs["layer_names"], "Embedding-Relative-Position"]
    _one_line_refusal(path, tmp_path, "NEZHA", family="roformer")


def test_roformer_v2_is_refused_as_roformer(tmp_path):
    """RoFormer-v2 is a family of its own (tests/test_roformer_v2.py); read as RoFormer, it is refused."""
    if not (V2_GOOGLE / "bert_model.ckpt.index").is_file():
        missing_fixture("fixture roformer_v2_google is missing: run fixtures/make_roformer_v2_fixtures.py")
    _one_line_refusal(V2_GOOGLE, tmp_path, "RoFormer-v2", family="roformer")


def test_group_order_rebuilt_from_names_matches_the_file():
    """Where a source states no group order, it is rebuilt from bert4keras' names; on the graph-mode
    file (process-wide counters: dense_7 ... dense_10, scopes suffixed _1) it is the file's own."""
    from bertconv.families.roformer.layouts import B4K_GROUPS, group_weights

    patterns = [re.compile(re.escape(g).replace(re.escape("{layer}"), r"\d+") + "$") for g, _ in B4K_GROUPS]
    for name in ("bert4keras_classifier_h5/best_model.h5", f"{H5}/roformer_weights.h5"):
        with open_source(keras_era_dir(name.split("/")[0]) / name.split("/")[1]) as source:
            stated = {g: ns for g, ns in source.layer_weights.items() if any(p.match(g) for p in patterns)}
            rebuilt = group_weights(source.names())
            assert stated and all(rebuilt[g] == ns for g, ns in stated.items())


def test_the_report_says_what_was_assumed(converted):
    _, layout, _, _, report = converted
    notes = " ".join(report.notes)
    assert "LayerNorm epsilon 1e-07 assumed" in notes and "mlm_logits move by about 2e-6" in notes
    if layout == "bert4keras_roformer_checkpoint":
        assert ("read 11 MLM-Dense and 12 MLM-Norm (a square dense followed by a LayerNorm); 13 MLM-Bias "
                "(a beta-only vector); 14 Pooler-Dense") in notes


def test_object_checkpoint_without_a_config_stops(tmp_path):
    """Nothing in bert4keras' object checkpoint records the head count (hidden 32 with 4 here) or
    the longest input (no position table): without a config the conversion stops and says what to
    pass, rather than assuming."""
    from bertconv.errors import ConfigError

    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ckpt_source().glob("best_model.weights.*"):
        shutil.copy(f, bare / f.name)
    with pytest.raises(ConfigError, match="pass --config"):
        convert(bare, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_object_checkpoint_of_roformer_v2_is_refused(tmp_path):
    """An object checkpoint whose attention has kernels but no biases (RoFormer-v2's) is refused;
    made from the v1 fixture's index by dropping those keys from the listing."""
    from bertconv.families.roformer.layouts import BERT4KERAS_CHECKPOINT

    with open_source(ckpt_source()) as source:
        names = [n for n in source.names() if not n.endswith("bias/.ATTRIBUTES/VARIABLE_VALUE")
                 and "/beta/" not in n and "/gamma/" not in n]
    with pytest.raises(InputError, match="RoFormer-v2 checkpoint"):
        BERT4KERAS_CHECKPOINT.for_checkpoint(names)


def test_validate_against_the_tf1_checkpoint_uses_bert4keras_epsilon(converted):
    source, layout, _, out, _ = converted
    if layout != "google_roformer":
        pytest.skip("bert4keras' files are read through a view that carries their layout's epsilon")
    assert validate(out, against=source, device="cpu").worst_max_abs() < 5e-6


def test_rotation_is_transformers_own():
    """bertconv's rotation (model and reference) equals RoFormerSelfAttention's on the positions
    transformers' sinusoid table gives, for a longer sequence than the fixtures'."""
    torch = pytest.importorskip("torch")
    modeling = pytest.importorskip("transformers.models.roformer.modeling_roformer")
    from bertconv.families.roformer.model import rotary_angles, rotate_pairs
    from bertconv.families.roformer.reference import rotate

    seq_len, head_size = 300, 16
    table = modeling.RoFormerSinusoidalPositionalEmbedding(seq_len, head_size)
    with torch.no_grad():
        table.weight.copy_(table.create_weight())
        positions = table(torch.Size([1, seq_len]))[None, None]
    x = torch.randn(2, 3, seq_len, head_size, generator=torch.Generator().manual_seed(0))
    theirs, _ = modeling.RoFormerSelfAttention.apply_rotary_position_embeddings(positions, x, x)
    sin, cos = rotary_angles(seq_len, head_size, torch.float32)
    assert torch.allclose(rotate_pairs(x, sin, cos), theirs, atol=2e-6)
    assert np.allclose(rotate(x.double().numpy()), theirs.double().numpy(), atol=2e-6)


def test_the_reference_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; import bertconv.families.roformer.reference, bertconv.families.roformer.layouts; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
