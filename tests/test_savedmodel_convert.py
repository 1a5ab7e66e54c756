"""TF Hub SavedModels (tensorflow-hub's TF1 modules, tf-models-official's TF2 exports), Model
Garden pretrainer checkpoints and fine-tunes that loaded a Hub module (``module/`` names) convert:
tf2pt's own check passes, transformers loads the result offline and reproduces the outputs the
original model wrote to golden.npz, inspect and diff recognise both ends, and the tokenizer's
casing is what the file records. Fixtures: fixtures/make_hub_fixtures.py and
fixtures/make_savedmodel_fixtures.py; the ``module/`` checkpoints are written here by TensorFlow."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bertconv.cli import main
from bertconv.comparison import diff
from bertconv.conversion import convert
from bertconv.conversion.plan import plan_conversion
from bertconv.errors import ConfigError, InputError
from bertconv.families.bert.layouts import savedmodel
from bertconv.formats import open_source
from bertconv.inspection import inspect_checkpoint
from bertconv.validation import validate

from .conftest import FIXTURES, fixture_dir, missing_fixture

TOLERANCE = 2e-5
INPUTS = ("input_ids", "token_type_ids", "attention_mask")
HEAD_SPLIT = "bert/encoder/layer_0/attention/self/Reshape/shape"

#: fixture -> (layout, architecture, do_lower_case, where the casing comes from)
SOURCES = {
    "hub_tf1": ("google_bert", "BertForMaskedLM", True, "recorded in the tokenization_info signature"),
    "savedmodel_tf2": ("tf2_savedmodel", "BertModel", False, "recorded in the SavedModel's do_lower_case variable"),
    "savedmodel_tf2_mlm": ("tf2_savedmodel", "BertForMaskedLM", True,
                           "recorded in the SavedModel's do_lower_case variable"),
    # a training checkpoint records no casing: the uncased vocabulary decides
    "garden_pretrainer": ("tf2_garden", "BertForMaskedLM", True, "vocab.txt has no capitalised word pieces"),
}


def source_dir(name: str) -> Path:
    path = FIXTURES / name
    if not (path / "saved_model.pb").is_file() and not (path / "checkpoint").is_file():
        script = "make_hub_fixtures.py" if name == "hub_tf1" else "make_savedmodel_fixtures.py"
        missing_fixture(f"fixture {name} is missing: run fixtures/{script} (its docstring says with what)")
    return path


@pytest.fixture(scope="module", params=list(SOURCES))
def converted(request, tmp_path_factory):
    """Each source converted twice, both checked against the float64 reference before being
    written: as tf2pt chooses (the heads it has), and as a bare encoder with its pooler."""
    name = request.param
    work = tmp_path_factory.mktemp(name)
    default = convert(source_dir(name), work / "hf")
    base = convert(source_dir(name), work / "hf-base", head="base")
    return name, work / "hf", default, work / "hf-base", base


def test_tf2pt_succeeds_and_its_check_passes(converted):
    name, _, report, _, base = converted
    layout, architecture, _, _ = SOURCES[name]
    assert (report.family, report.layout, report.architecture) == ("bert", layout, architecture)
    assert base.architecture == "BertModel"
    for each in (report, base):
        assert each.validation is not None and each.validation.passed, each.validation.render()
        assert each.unknown_dropped == []


def test_config_states_what_the_file_records(converted):
    name, out, report, _, _ = converted
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (2, 32, 4)
    assert config["intermediate_size"] == 64 and config["max_position_embeddings"] == 40
    assert config["hidden_act"] == "gelu_new"   # Google's and tf-models' GELU: the tanh form
    assert config["layer_norm_eps"] == 1e-12
    said = " ".join(report.notes)
    if name == "hub_tf1":
        assert f"num_attention_heads=4 from the module's graph (Const {HEAD_SPLIT}/2)" in said
    elif name.startswith("savedmodel"):
        assert "'Text>gelu': tf-models' gelu, the tanh form" in said
        assert "layer_norm_eps=1e-12 from the SavedModel's Keras configs" in said
    else:
        assert "num_attention_heads=4 from the attention kernels' shapes" in said


def test_transformers_loads_offline_and_matches_the_original(converted, monkeypatch):
    transformers = pytest.importorskip("transformers", reason="transformers is the client that proves the output")
    torch = pytest.importorskip("torch")
    name, out, report, out_base, _ = converted
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    golden = np.load(source_dir(name) / "golden.npz")
    inputs = {k: torch.from_numpy(golden[k]) for k in INPUTS}
    got = {}
    with torch.no_grad():
        if report.architecture == "BertForMaskedLM":
            model = transformers.AutoModelForMaskedLM.from_pretrained(out, local_files_only=True).eval()
            assert type(model).__name__ == "BertForMaskedLM"
            result = model(**inputs, output_hidden_states=True)
            got["mlm_logits"] = result.logits
        base = transformers.AutoModel.from_pretrained(out_base, local_files_only=True).eval()
        assert type(base).__name__ == "BertModel"
        result = base(**inputs, output_hidden_states=True)
    got.update({f"layer_{i}": h for i, h in enumerate(result.hidden_states[1:])})
    got["sequence_output"], got["pooled_output"] = result.last_hidden_state, result.pooler_output
    outputs = set(golden.files) - set(INPUTS)
    assert outputs <= set(got), sorted(outputs - set(got))
    # every position, padded ones too: both sides mask the same keys
    worst = {key: float(np.max(np.abs(got[key].numpy() - golden[key]))) for key in outputs}
    assert max(worst.values()) <= TOLERANCE, worst


def test_inspect_names_family_and_layout(converted):
    name = converted[0]
    report = inspect_checkpoint(source_dir(name))
    assert (report.family, report.layout, report.naming) == ("bert", SOURCES[name][0], "tf")
    assert report.format == ("tf-bundle" if name == "garden_pretrainer" else "saved-model")


def test_diff_of_source_and_conversion_passes(converted):
    name, out, _, out_base, _ = converted
    for target in (out, out_base):
        report = diff(source_dir(name), target)
        assert report.passed, report.render()
        assert report.compared and all(d.max_abs == 0 for d in report.compared)


def test_validate_against_the_source_itself(converted):
    # a SavedModel is recognised through its object graph, a Hub module's head count read from its
    # graph: validate finds both as tf2pt did, and runs the reference over the source's own weights
    name, out, _, out_base, _ = converted
    for target in (out, out_base):
        report = validate(target, against=source_dir(name), device="cpu", seq_len=12)
        assert report.passed, report.render()
        assert report.worst_max_abs() < 2e-5


def test_tokenizer_casing_is_what_the_source_records(converted):
    name, out, report, _, _ = converted
    _, _, lower_case, origin = SOURCES[name]
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is lower_case
    assert report.do_lower_case is lower_case
    assert any(n.startswith(f"do_lower_case={lower_case} ({origin}") for n in report.notes), report.notes


def test_asked_casing_wins_over_the_record_with_a_note(tmp_path):
    report = convert(source_dir("savedmodel_tf2"), tmp_path / "out", lower_case=True, validate=False)
    assert json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())["do_lower_case"] is True
    assert any("do_lower_case=True as asked, although the SavedModel's do_lower_case variable records False" in n
               for n in report.notes)


# -- TF1 Hub modules -------------------------------------------------------------------------------
def test_hub_module_head_count_is_the_graphs_const():
    with open_source(source_dir("hub_tf1")) as source:
        assert source.graph_constant(HEAD_SPLIT + "/2") == 4 and source.graph_constant(HEAD_SPLIT + "/3") == 8
        assert source.graph_constant("no/such/node") is None
        assert source.graph_constant("Const") is True  # tokenization_info's do_lower_case


def test_config_file_contradicting_the_module_graph(tmp_path):
    work = tmp_path / "hub"
    shutil.copytree(source_dir("hub_tf1"), work)
    config = dict(hidden_size=32, intermediate_size=64, max_position_embeddings=40, num_attention_heads=2,
                  num_hidden_layers=2, type_vocab_size=2, vocab_size=204)
    (work / "bert_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="num_attention_heads is 2 in the config but 4 in the module's graph"):
        convert(work, tmp_path / "out", validate=False)


# -- TF2 SavedModels -------------------------------------------------------------------------------
def test_positional_keys_are_resolved_through_the_object_graph():
    with open_source(source_dir("savedmodel_tf2_mlm")) as source:
        plan = plan_conversion(source)
    by_target = {t.target: t.source for t in plan.tensors}
    assert by_target["bert.embeddings.word_embeddings.weight"] == "variables/0/.ATTRIBUTES/VARIABLE_VALUE"
    assert by_target["bert.encoder.layer.1.attention.self.query.weight"] == "variables/21/.ATTRIBUTES/VARIABLE_VALUE"
    assert by_target["bert.pooler.dense.weight"] == "variables/37/.ATTRIBUTES/VARIABLE_VALUE"
    assert by_target["cls.predictions.bias"] == "mlm/variables/39/.ATTRIBUTES/VARIABLE_VALUE"
    assert by_target["cls.predictions.transform.dense.weight"] == "mlm/variables/40/.ATTRIBUTES/VARIABLE_VALUE"
    # the casing variable is the tokenizer's: bookkeeping, never a weight nor a head nor unknown
    assert plan.dropped_heads == [] and plan.unknown == []
    assert all(t.source != "do_lower_case/.ATTRIBUTES/VARIABLE_VALUE" for t in plan.tensors)


def _encoder_record(**changes):
    config = dict(vocab_size=204, hidden_size=32, num_layers=2, num_attention_heads=4, max_sequence_length=40,
                  type_vocab_size=2, inner_dim=64, inner_activation="Text>gelu", norm_first=False,
                  embedding_width=32)
    config.update(changes)
    return SimpleNamespace(encoder_config=config, encoder_class="Text>BertEncoder", keras_objects=(),
                           path=Path("export"))


@pytest.mark.parametrize("activation, hidden_act, meaning", [
    ("Text>gelu", "gelu", "the tanh form"),
    ("gelu", "gelu_exact", "the exact erf form"),   # Keras' own gelu defaults to approximate=False
    ("<lambda>", "gelu", "assumed to be BertEncoder's default"),
    ("relu", "relu", "relu"),
])
def test_recorded_activation(activation, hidden_act, meaning):
    recorded = savedmodel.recorded_config(savedmodel.LAYOUT, _encoder_record(inner_activation=activation))
    value, where = recorded["hidden_act"]
    assert value == hidden_act and meaning in where
    assert recorded["num_hidden_layers"][0] == 2 and recorded["max_position_embeddings"][0] == 40


@pytest.mark.parametrize("changes, message", [
    ({"inner_activation": "Text>hard_swish"}, "inner_activation 'Text>hard_swish'"),
    ({"norm_first": True}, "norm_first is true"),
    ({"embedding_width": 16}, "embedding_width is 16"),
])
def test_records_no_bert_class_computes_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        savedmodel.recorded_config(savedmodel.LAYOUT, _encoder_record(**changes))


def test_other_saved_models_are_only_listed(tmp_path):
    tf = pytest.importorskip("tensorflow", reason="TensorFlow writes the SavedModel")
    root = tf.train.Checkpoint(variables=[tf.Variable(np.ones((3, 4), np.float32)), tf.Variable([1.0, 2.0])])
    root.scale = tf.function(lambda x: x * root.variables[1][0], input_signature=[tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(root, str(tmp_path / "other"))
    report = inspect_checkpoint(tmp_path / "other")
    assert report.family is None and "variables/0/.ATTRIBUTES/VARIABLE_VALUE" in {t.name for t in report.tensors}
    with pytest.raises(InputError, match="no BERT-family tensors found"):
        convert(tmp_path / "other", tmp_path / "out")


# -- Model Garden pretrainer checkpoints ------------------------------------------------------------
def test_pretrainer_heads_and_training_state():
    with open_source(source_dir("garden_pretrainer")) as source:
        plan = plan_conversion(source)
    assert plan.heads_present == {"mlm", "next_sentence"} and plan.heads == {"mlm"}
    # the next-sentence head's pooler alone (its out_proj is not saved): a head, never exported
    assert plan.dropped_heads == ["next_sentence..pooler_dense/bias/.ATTRIBUTES/VARIABLE_VALUE",
                                  "next_sentence..pooler_dense/kernel/.ATTRIBUTES/VARIABLE_VALUE"]
    assert plan.training_state == {"save_counter/.ATTRIBUTES/VARIABLE_VALUE": "counter"} and plan.unknown == []
    by_target = {t.target: t.source for t in plan.tensors}
    assert by_target["bert.embeddings.word_embeddings.weight"] == \
        "masked_lm/embedding_table/.ATTRIBUTES/VARIABLE_VALUE"
    assert by_target["bert.pooler.dense.weight"] == "encoder/layer_with_weights-6/kernel/.ATTRIBUTES/VARIABLE_VALUE"


def test_pretrainer_nsp_head_cannot_be_asked_for(tmp_path):
    from bertconv.errors import MappingError

    with pytest.raises(MappingError, match="no nsp head"):
        convert(source_dir("garden_pretrainer"), tmp_path / "out", head="pretraining", validate=False)


# -- fine-tunes that loaded a Hub module: module/ names ----------------------------------------------
def _write_hub_finetune(tmp_path: Path, fixture: str, in_module) -> Path:
    """The fixture's variables renamed as a graph that loaded the module would name them
    (``in_module(name)``: under ``module/``), saved by TensorFlow's own Saver."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = pytest.importorskip("tensorflow", reason="TensorFlow writes the module/ checkpoint")
    original = fixture_dir(fixture)
    reader = tf.train.load_checkpoint(str(original / "bert_model.ckpt"))
    out = tmp_path / f"{fixture}-hub"
    out.mkdir()
    graph = tf.Graph()
    with graph.as_default():
        variables = {("module/" + name if in_module(name) else name):
                     tf.compat.v1.Variable(reader.get_tensor(name), name=name.replace("/", "_"))
                     for name in reader.get_variable_to_shape_map()}
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(out / "bert_model.ckpt"), write_meta_graph=False)
    for side_file in ("bert_config.json", "vocab.txt"):
        shutil.copy(original / side_file, out)
    return out


@pytest.mark.parametrize("fixture, in_module, heads", [
    # run_classifier_with_tfhub.py: the encoder from the module, output_weights in the fine-tune's graph
    ("bert_classifier", lambda name: name.startswith("bert/"), ["classifier"]),
    # a module that carries its pretraining heads
    ("bert_pretrain", lambda name: name.startswith(("bert/", "cls/")), ["mlm", "nsp"]),
])
def test_module_prefixed_checkpoint_converts_to_the_same_model(tmp_path, fixture, in_module, heads):
    hub = _write_hub_finetune(tmp_path, fixture, in_module)
    report = inspect_checkpoint(hub)
    assert (report.family, report.layout) == ("bert", "google_bert")
    converted = convert(hub, tmp_path / "from-hub")
    assert converted.validation.passed and converted.heads == heads and converted.unknown_dropped == []
    plain = convert(fixture_dir(fixture), tmp_path / "plain", validate=False)
    assert converted.training_state_dropped == plain.training_state_dropped  # the slots under module/ too
    assert diff(tmp_path / "plain", tmp_path / "from-hub").identical
    assert diff(hub, tmp_path / "from-hub").passed
    assert validate(tmp_path / "from-hub", against=hub, device="cpu").passed


def test_cli_tf2pt_of_a_savedmodel(tmp_path, capsys):
    assert main(["tf2pt", str(source_dir("savedmodel_tf2")), str(tmp_path / "out"), "--no-validate", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layout"] == "tf2_savedmodel" and data["tensors_written"] == 39 and data["do_lower_case"] is False
