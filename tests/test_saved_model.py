"""SavedModel directories: the variables TensorFlow lists, and what saved_model.pb and
keras_metadata.pb say (vocabulary asset, do_lower_case, the encoder's config), read without
TensorFlow. The fixtures are written by tensorflow-hub (fixtures/make_hub_fixtures.py) and
tf-models-official (fixtures/make_savedmodel_fixtures.py); TensorFlow is only the oracle here."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bertconv.cli import main
from bertconv.errors import CheckpointFormatError, DataUnavailableError
from bertconv.formats import detect_format, open_source
from bertconv.formats.saved_model import SavedModelSource, parse_keras_metadata

from .conftest import FIXTURES, ROOT, missing_fixture

SAVED_MODELS = ("hub_tf1", "savedmodel_tf2", "savedmodel_tf2_mlm")
DATA_FILE = Path("variables") / "variables.data-00000-of-00001"


def saved_model(name: str) -> Path:
    path = FIXTURES / name
    if not (path / "saved_model.pb").is_file():
        script = "make_hub_fixtures.py" if name == "hub_tf1" else "make_savedmodel_fixtures.py"
        missing_fixture(f"fixture {name} is missing: run fixtures/{script} (its docstring says with what)")
    return path


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return pytest.importorskip("tensorflow", reason="comparing with TensorFlow needs tensorflow-cpu")


def _tf_saved_model(tf, directory: Path):
    from tensorflow.core.protobuf import saved_model_pb2

    message = saved_model_pb2.SavedModel()
    message.ParseFromString((directory / "saved_model.pb").read_bytes())
    return message


def _vocab(name: str) -> list[str]:
    return (FIXTURES / name / "vocab.txt").read_text(encoding="utf-8").splitlines()


# -- the variables, as TensorFlow lists and reads them -----------------------------------------------
@pytest.mark.parametrize("name", SAVED_MODELS)
def test_lists_and_reads_what_tensorflow_does(tf, name):
    directory = saved_model(name)
    prefix = str(directory / "variables" / "variables")
    listed = dict(tf.train.list_variables(prefix))
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    with open_source(directory) as source:
        assert isinstance(source, SavedModelSource) and source.format_name == "saved-model"
        assert source.path == directory
        assert source.names() == sorted(listed)
        for info in source:
            assert info.shape == tuple(listed[info.name]), info.name
            theirs = reader.get_tensor(info.name)
            ours = source.read(info.name)
            if info.dtype == "string":
                assert dtypes[info.name] == tf.string
                assert [bytes(x) for x in np.ravel(ours)] == [bytes(x) for x in np.ravel(np.array(theirs, object))]
                continue
            assert info.dtype == np.dtype(dtypes[info.name].as_numpy_dtype).name, info.name
            assert ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes(), info.name
            assert info.nbytes == theirs.nbytes, info.name


def test_hub_module_keeps_googles_names():
    with open_source(saved_model("hub_tf1")) as source:
        assert source.hub_module
        assert "bert/encoder/layer_1/attention/self/query/kernel" in source
        assert "cls/predictions/output_bias" in source
        assert source.object_graph() is None  # a name-based bundle


def test_hub_module_variables_give_the_modules_own_outputs():
    """The reference forward pass over the variables as read reproduces what hub.Module computed
    (golden.npz); a hub module ships no config, so the sizes are make_bert_fixtures.py's TINY."""
    from bertconv.config import BertConfig
    from bertconv.families.bert.reference import reference_forward

    directory = saved_model("hub_tf1")
    golden = np.load(directory / "golden.npz")
    config = BertConfig.from_dict({"vocab_size": 204, "hidden_size": 32, "num_hidden_layers": 2,
                                   "num_attention_heads": 4, "intermediate_size": 64,
                                   "max_position_embeddings": 40, "type_vocab_size": 2, "hidden_act": "gelu"})
    inputs = {k: golden[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    with SavedModelSource(directory) as source:
        outputs = reference_forward(source, config, inputs)
    for name in ("sequence_output", "pooled_output", "mlm_logits"):
        np.testing.assert_allclose(outputs[name], golden[name], rtol=0, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("named", ["directory", "saved_model.pb"])
def test_detected_by_directory_or_its_saved_model_pb(named):
    directory = saved_model("savedmodel_tf2")
    path = directory if named == "directory" else directory / "saved_model.pb"
    assert detect_format(path) == ("saved-model", directory)
    # its bundle, named as such, is still a bundle
    assert detect_format(directory / "variables" / "variables")[0] == "tf-bundle"


# -- saved_model.pb against TensorFlow's own parse --------------------------------------------------
@pytest.mark.parametrize("name", SAVED_MODELS)
def test_meta_graphs_signatures_and_assets_as_tensorflow_parses_them(tf, name):
    directory = saved_model(name)
    theirs = _tf_saved_model(tf, directory)
    with SavedModelSource(directory) as source:
        assert source.schema_version == theirs.saved_model_schema_version
        assert [g.tags for g in source.meta_graphs] == [tuple(g.meta_info_def.tags) for g in theirs.meta_graphs]
        for ours, graph in zip(source.meta_graphs, theirs.meta_graphs):
            assert ours.tensorflow_version == graph.meta_info_def.tensorflow_version
            assert set(ours.signatures) == set(graph.signature_def)
            for key, signature in graph.signature_def.items():
                assert ours.signatures[key].inputs == {k: v.name for k, v in signature.inputs.items()}
                assert ours.signatures[key].outputs == {k: v.name for k, v in signature.outputs.items()}
                assert ours.signatures[key].method_name == signature.method_name
            expected = [(a.tensor_info.name, a.filename) for a in graph.asset_file_def]
            if "saved_model_assets" in graph.collection_def:
                from tensorflow.core.protobuf import meta_graph_pb2
                for packed in graph.collection_def["saved_model_assets"].any_list.value:
                    asset = meta_graph_pb2.AssetFileDef()
                    packed.Unpack(asset)
                    if (asset.tensor_info.name, asset.filename) not in expected:
                        expected.append((asset.tensor_info.name, asset.filename))
            assert [(a.tensor_name, a.filename) for a in ours.asset_files] == expected
            assert expected  # every fixture names its vocabulary


@pytest.mark.parametrize("name", ("savedmodel_tf2", "savedmodel_tf2_mlm"))
def test_object_graph_as_tensorflow_parses_it(tf, name):
    directory = saved_model(name)
    graph = _tf_saved_model(tf, directory).meta_graphs[0].object_graph_def
    with SavedModelSource(directory) as source:
        objects = source.meta_graphs[0].objects
        assert len(objects) == len(graph.nodes)
        for ours, node in zip(objects, graph.nodes):
            assert [(c.node_id, c.local_name) for c in ours.children] == \
                [(c.node_id, c.local_name) for c in node.children]
            assert ours.kind == (node.WhichOneof("kind") or "")
            if ours.kind == "user_object":
                assert ours.identifier == node.user_object.identifier
            if ours.kind == "asset":
                assert ours.asset_file_def_index == node.asset.asset_file_def_index
            if ours.kind == "variable":
                assert ours.variable.name == node.variable.name
                assert ours.variable.shape == tuple(d.size for d in node.variable.shape.dim)
                assert ours.variable.trainable == node.variable.trainable
                assert ours.variable.dtype == tf.dtypes.as_dtype(node.variable.dtype).name


def test_saved_object_graph_shares_the_checkpoints_node_ids():
    """What lets a saved_model.pb variable be found in the bundle (the mapping relies on it)."""
    with SavedModelSource(saved_model("savedmodel_tf2_mlm")) as source:
        objects = source.meta_graphs[0].objects
        checkpoint_graph = source.object_graph()
        variables = [o for o in objects if o.kind == "variable"]
        assert len(variables) == len(source) - 1  # every tensor but the object graph itself
        for saved in variables:
            attributes = checkpoint_graph[saved.node_id].attributes
            assert [a.name for a in attributes] == ["VARIABLE_VALUE"]
            assert attributes[0].full_name == saved.variable.name
            assert source.info(attributes[0].checkpoint_key).shape == saved.variable.shape


# -- vocabulary, casing, encoder config --------------------------------------------------------------
@pytest.mark.parametrize("name, vocab_of, lower_case", [
    ("hub_tf1", "bert_pretrain", True),
    ("savedmodel_tf2", "bert_noheads", False),
    ("savedmodel_tf2_mlm", "bert_pretrain", True),
])
def test_vocabulary_and_lower_case_as_the_model_records_them(name, vocab_of, lower_case):
    directory = saved_model(name)
    with open_source(directory) as source:
        assert source.vocab_file == directory / "assets" / "vocab.txt"
        assert source.assets == {"vocab.txt": directory / "assets" / "vocab.txt"}
        assert source.sidecar("vocab.txt") == source.vocab_file
        assert source.vocab_file.read_text(encoding="utf-8").splitlines() == _vocab(vocab_of)
        assert source.lower_case is lower_case


def test_lower_case_of_a_hub_module_is_its_signatures_const(tf):
    directory = saved_model("hub_tf1")
    for graph in _tf_saved_model(tf, directory).meta_graphs:
        tensor = graph.signature_def["tokenization_info"].outputs["do_lower_case"].name
        node = next(n for n in graph.graph_def.node if n.name == tensor.split(":")[0])
        assert node.op == "Const" and list(node.attr["value"].tensor.bool_val) == [True]
    with SavedModelSource(directory) as source:
        for graph in source.meta_graphs:
            assert graph.signatures["tokenization_info"].outputs["do_lower_case"] == tensor


def test_lower_case_of_a_tf2_export_is_its_variable(tf):
    directory = saved_model("savedmodel_tf2")
    reader = tf.train.load_checkpoint(str(directory / "variables" / "variables"))
    assert bool(reader.get_tensor("do_lower_case/.ATTRIBUTES/VARIABLE_VALUE")) is False
    with SavedModelSource(directory) as source:
        assert source.lower_case is False


@pytest.mark.parametrize("name, vocab_size", [("savedmodel_tf2", 245), ("savedmodel_tf2_mlm", 204)])
def test_encoder_config_from_keras_metadata(name, vocab_size):
    with SavedModelSource(saved_model(name)) as source:
        assert source.encoder_class == "Text>BertEncoder"
        config = source.encoder_config
        assert {k: config[k] for k in ("vocab_size", "hidden_size", "num_layers", "num_attention_heads",
                                       "inner_dim", "inner_activation", "max_sequence_length",
                                       "type_vocab_size", "norm_first", "embedding_width")} == {
            "vocab_size": vocab_size, "hidden_size": 32, "num_layers": 2, "num_attention_heads": 4,
            "inner_dim": 64, "inner_activation": "Text>gelu", "max_sequence_length": 40,
            "type_vocab_size": 2, "norm_first": False, "embedding_width": 32}
        assert source.info("variables/0/.ATTRIBUTES/VARIABLE_VALUE").shape == (vocab_size, 32)
        blocks = [o for o in source.keras_objects if o.class_name == "Text>TransformerEncoderBlock"]
        assert [o.config["norm_epsilon"] for o in blocks] == [1e-12, 1e-12]
        # keras_metadata.pb's node ids are the object graph's
        objects = source.meta_graphs[0].objects
        for keras_object in source.keras_objects:
            assert objects[keras_object.node_id].kind == "user_object"
            assert objects[keras_object.node_id].identifier == keras_object.identifier


def test_encoder_config_from_user_objects_as_older_keras_wrote_it(tf, tmp_path):
    """Before keras_metadata.pb, Keras kept each object's metadata in saved_model.pb's
    SavedUserObject.metadata: the same file rewritten so by TensorFlow's own proto classes."""
    source_dir = saved_model("savedmodel_tf2_mlm")
    directory = tmp_path / "older"
    shutil.copytree(source_dir, directory)
    message = _tf_saved_model(tf, directory)
    nodes = message.meta_graphs[0].object_graph_def.nodes
    for keras_object in parse_keras_metadata((directory / "keras_metadata.pb").read_bytes()):
        nodes[keras_object.node_id].user_object.metadata = json.dumps(
            {"class_name": keras_object.class_name, "name": keras_object.name, "config": keras_object.config})
    (directory / "saved_model.pb").write_bytes(message.SerializeToString())
    (directory / "keras_metadata.pb").unlink()
    with SavedModelSource(directory) as older, SavedModelSource(source_dir) as newer:
        assert older.encoder_class == "Text>BertEncoder"
        assert older.encoder_config == newer.encoder_config


def test_hub_module_has_no_keras_metadata():
    with SavedModelSource(saved_model("hub_tf1")) as source:
        assert source.keras_objects == [] and source.encoder_config is None


# -- data files absent: listing and the protos still work ---------------------------------------------
def test_listing_and_tokenization_info_need_no_data_file(tmp_path):
    directory = tmp_path / "hub"
    shutil.copytree(saved_model("hub_tf1"), directory)
    (directory / DATA_FILE).unlink()
    with SavedModelSource(directory) as source:
        assert len(source) == 44
        assert source.lower_case is True and source.vocab_file is not None
        with pytest.raises(DataUnavailableError, match="variables.data-00000-of-00001"):
            source.read("bert/pooler/dense/kernel")


def test_tf2_lower_case_needs_the_data_file(tmp_path):
    directory = tmp_path / "tf2"
    shutil.copytree(saved_model("savedmodel_tf2"), directory)
    (directory / DATA_FILE).unlink()
    with SavedModelSource(directory) as source:
        assert len(source) == 41 and source.encoder_config["vocab_size"] == 245
        assert source.vocab_file == directory / "assets" / "vocab.txt"
        with pytest.raises(DataUnavailableError, match="variables.data-00000-of-00001"):
            source.lower_case  # noqa: B018 - reading the variable is the point


# -- bad input ----------------------------------------------------------------------------------------
def test_saved_model_without_variables(tmp_path):
    directory = tmp_path / "preprocess"
    directory.mkdir()
    shutil.copy(saved_model("hub_tf1") / "saved_model.pb", directory)
    with pytest.raises(CheckpointFormatError, match="without variables"):
        open_source(directory)


def test_text_format_saved_model_is_named_as_such(tmp_path):
    directory = tmp_path / "text"
    directory.mkdir()
    (directory / "saved_model.pbtxt").write_text("saved_model_schema_version: 1\n")
    with pytest.raises(CheckpointFormatError, match="text-format SavedModel"):
        open_source(directory)


def test_damaged_saved_model_pb(tmp_path, capsys):
    directory = tmp_path / "damaged"
    shutil.copytree(saved_model("savedmodel_tf2"), directory)
    data = (directory / "saved_model.pb").read_bytes()
    (directory / "saved_model.pb").write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointFormatError, match="does not decode as a SavedModel") as caught:
        SavedModelSource(directory)
    assert caught.value.path == str(directory / "saved_model.pb")
    assert main(["inspect", str(directory)]) == 2
    err = capsys.readouterr().err
    assert "saved_model.pb" in err and len(err.strip().splitlines()) == 1


# -- the command line and the import boundary ---------------------------------------------------------
@pytest.mark.parametrize("name", SAVED_MODELS)
def test_inspect_lists_every_variable(capsys, name):
    directory = saved_model(name)
    assert main(["inspect", "--json", str(directory)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "saved-model"
    with SavedModelSource(directory) as source:
        assert sorted(t["name"] for t in report["tensors"]) == source.names()


def test_reading_a_saved_model_imports_no_tensorflow():
    code = ("import sys\n"
            "from bertconv.formats import open_source\n"
            "for name in sys.argv[1:]:\n"
            "    with open_source(name) as source:\n"
            "        source.names(); source.lower_case; source.encoder_config; source.read(source.names()[-1])\n"
            "bad = [m for m in ('tensorflow', 'torch', 'google.protobuf') if m in sys.modules]\n"
            "sys.exit(f'imported {bad}' if bad else 0)\n")
    names = [str(saved_model(name)) for name in SAVED_MODELS]
    done = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
