"""TF2 Model Garden checkpoints (both layouts, written by real TensorFlow; see
fixtures/make_garden_fixtures.py) convert to Hugging Face directories that transformers loads and
that reproduce the TF2 forward pass; the shared embedding is found through the object graph,
never guessed."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bertconv.cli import main
from bertconv.conversion import convert
from bertconv.errors import ConfigError, MappingError
from bertconv.families import detect_layout
from bertconv.mapping import (MERGE_HEADS, MERGE_HEADS_IN_T, MERGE_HEADS_OUT_T, apply_transform,
                                    invert_transform, transformed_shape)
from bertconv.families.bert.layouts.garden import LAYOUT as GARDEN_LAYOUT
from bertconv.families.bert.layouts.garden import functional_layer_count
from bertconv.families.views import CanonicalNamesView
from bertconv.formats import open_source
from bertconv.inspection import inspect_checkpoint
from bertconv.conversion.plan import plan_conversion

from .conftest import FIXTURES, missing_fixture

GARDEN = ("garden_v2", "garden_v3")
TOLERANCE = 2e-5
SHARED = "masked_lm/embedding_table/.ATTRIBUTES/VARIABLE_VALUE"


def garden_dir(name):
    path = FIXTURES / name
    if not (path / "bert_model.ckpt.index").is_file():
        missing_fixture(f"fixture {name} is missing: run `.venv/bin/python fixtures/make_garden_fixtures.py`")
    return path


@pytest.fixture(scope="module", params=GARDEN)
def converted(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "hf"
    # the default check against the float64 reference runs here, through the canonical names view
    return request.param, out, convert(garden_dir(request.param), out)


def test_plan_and_config_from_shapes(converted):
    name, out, report = converted
    assert report.family == "bert" and report.layout == "tf2_garden"
    config = json.loads((out / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_hidden_layers"], config["hidden_size"]) == (4, 2, 32)
    assert config["hidden_act"] == "gelu_new"          # the Garden's tanh GELU
    assert any("from the attention kernels' shapes" in n for n in report.notes)
    assert report.architecture == ("BertModel" if name == "garden_v2" else "BertForMaskedLM")
    assert report.unknown_dropped == []


def test_transformers_loads_offline_and_matches_tf2_forward(converted, monkeypatch):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    name, out, report = converted
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    auto = transformers.AutoModel if report.architecture == "BertModel" else transformers.AutoModelForMaskedLM
    model = auto.from_pretrained(out, local_files_only=True).eval()
    assert type(model).__name__ == report.architecture
    golden = np.load(garden_dir(name) / "golden.npz")
    inputs = {k: torch.from_numpy(golden[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}
    with torch.no_grad():
        result = model(**inputs, output_hidden_states=True)
    got = {"embeddings": result.hidden_states[0]}
    got.update({f"layer_{i}": h for i, h in enumerate(result.hidden_states[1:])})
    if report.architecture == "BertModel":
        got["sequence_output"], got["pooled_output"] = result.last_hidden_state, result.pooler_output
    else:
        got["mlm_logits"] = result.logits
    mask = golden["attention_mask"].astype(bool)
    worst = {}
    for key, value in got.items():
        have, want = value.numpy(), golden[key]
        if have.ndim == 3:   # padded positions are not defined outputs
            have, want = have[mask], want[mask]
        worst[key] = float(np.max(np.abs(have - want)))
    assert len(worst) >= 4 and max(worst.values()) <= TOLERANCE, worst


def test_float64_reference_runs_on_the_canonical_names_view(converted):
    from bertconv.validation import validate

    name, out, report = converted
    with open_source(garden_dir(name)) as src:
        view = CanonicalNamesView(src, GARDEN_LAYOUT)
        assert "bert/encoder/layer_1/attention/self/query/kernel" in view
        assert view["bert/encoder/layer_0/attention/self/query/kernel"].shape == (32, 32)
        plan = plan_conversion(src)
        result = validate(out, against=view, source_config=plan.config, device="cpu")
    assert result.passed, result.render()
    if name == "garden_v3":
        assert view.source_name("bert/embeddings/word_embeddings") == SHARED


def test_view_relayout_is_exact():
    with open_source(garden_dir("garden_v3")) as src:
        view = CanonicalNamesView(src, GARDEN_LAYOUT)
        kernel = src.read("encoder/_transformer_layers/0/_attention_layer/_query_dense/kernel/.ATTRIBUTES/VARIABLE_VALUE")
        out = src.read("encoder/_transformer_layers/0/_attention_layer/_output_dense/kernel/.ATTRIBUTES/VARIABLE_VALUE")
        bias = src.read("encoder/_transformer_layers/0/_attention_layer/_query_dense/bias/.ATTRIBUTES/VARIABLE_VALUE")
        # google-research/bert's kernels are [in, out] with the heads contiguous in "out"
        np.testing.assert_array_equal(view["bert/encoder/layer_0/attention/self/query/kernel"], kernel.reshape(32, 32))
        np.testing.assert_array_equal(view["bert/encoder/layer_0/attention/output/dense/kernel"], out.reshape(32, 32))
        np.testing.assert_array_equal(view["bert/encoder/layer_0/attention/self/query/bias"], bias.reshape(32))


@pytest.mark.parametrize("transform,shape", [(MERGE_HEADS_OUT_T, (12, 3, 4)), (MERGE_HEADS_IN_T, (3, 4, 12)),
                                             (MERGE_HEADS, (3, 4))])
def test_head_transforms_invert_bit_exactly(transform, shape):
    array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    target = apply_transform(transform, array)
    assert target.shape == transformed_shape(transform, shape)
    back = invert_transform(transform, np.ascontiguousarray(target), source_shape=shape)
    assert back.shape == shape and back.tobytes() == array.tobytes()
    with pytest.raises(ValueError, match="needs the source shape"):
        invert_transform(transform, target)


def test_shared_embedding_resolved_only_through_object_graph(tmp_path):
    """The same tensors without the object graph (a safetensors file): the encoder's word
    embeddings are reported missing and masked_lm/embedding_table unknown, not assumed equal."""
    from safetensors.numpy import save_file

    with open_source(garden_dir("garden_v3")) as src:
        assert detect_layout(src.names()).name == "tf2_garden"
        bound = GARDEN_LAYOUT.for_checkpoint(src.names(), src)
        word = bound.mapping.to_target(SHARED)
        assert word is not None and word.target == "bert.embeddings.word_embeddings.weight"
        tensors = {n: np.array(src.read(n)) for n in src.names() if n != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    save_file(tensors, tmp_path / "garden.safetensors")
    config = dict(hidden_size=32, intermediate_size=64, max_position_embeddings=16, num_attention_heads=4,
                  num_hidden_layers=2, type_vocab_size=2, vocab_size=204)
    (tmp_path / "bert_config.json").write_text(json.dumps(config))
    with open_source(tmp_path / "garden.safetensors") as src:
        with pytest.raises(MappingError) as err:
            plan_conversion(src)
    message = str(err.value)
    assert "encoder/_embedding_layer/embeddings" in message and SHARED in message


def test_layer_with_weights_pooler_index_comes_from_the_layer_count():
    with open_source(garden_dir("garden_v2")) as src:
        names = src.names()
        assert functional_layer_count(names) == 2
        plan = plan_conversion(src)
    pooler = [t.source for t in plan.tensors if t.target.startswith("bert.pooler.")]
    assert pooler == ["model/layer_with_weights-6/bias/.ATTRIBUTES/VARIABLE_VALUE",
                      "model/layer_with_weights-6/kernel/.ATTRIBUTES/VARIABLE_VALUE"]
    # a gap in the numbering leaves the count (and so the pooler) unknown rather than guessed
    gap = [n.replace("layer_with_weights-5/", "layer_with_weights-7/") for n in names]
    assert functional_layer_count(gap) is None


def test_config_file_contradicting_the_stated_head_count(tmp_path):
    work = tmp_path / "garden"
    shutil.copytree(garden_dir("garden_v3"), work)
    config = dict(attention_probs_dropout_prob=0.1, hidden_act="gelu", hidden_dropout_prob=0.1, hidden_size=32,
                  initializer_range=0.02, intermediate_size=64, max_position_embeddings=16,
                  num_attention_heads=8, num_hidden_layers=2, type_vocab_size=2, vocab_size=204)
    (work / "bert_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="num_attention_heads is 8 in the config but 4 in the weights"):
        convert(work, tmp_path / "out", validate=False)


def test_inspect_shows_family_heads_and_head_count():
    report = inspect_checkpoint(garden_dir("garden_v3"))
    assert report.family == "bert" and report.layout == "tf2_garden" and report.naming == "tf"
    assert report.heads["mlm"] is True and report.heads["nsp"] is False
    assert report.inferred_config["num_attention_heads"] == 4
    roles = {r.name: r.category for r in report.tensors}
    assert roles[SHARED] == "model" and roles["_CHECKPOINTABLE_OBJECT_GRAPH"] == "other"
    assert report.totals["model"]["tensors"] == 44 and not report.notes


def test_cli_tf2pt_and_inspect(tmp_path, capsys):
    assert main(["tf2pt", str(garden_dir("garden_v2")), str(tmp_path / "out"), "--no-validate", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["family"] == "bert" and data["layout"] == "tf2_garden" and data["tensors_written"] == 39
    assert main(["inspect", str(garden_dir("garden_v2"))]) == 0
    text = capsys.readouterr().out
    assert "family bert, layout tf2_garden" in text and "num_attention_heads=4" in text
