"""Nothing is read from outside the directory the user named: SavedModels and state files that
name files outside it, crafted with TensorFlow's own protobuf classes, bring none of those files'
bytes into an output or a message. Symbolic links the user's directory holds (a Hugging Face
cache's snapshots) keep working."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bertconv.cli import main
from bertconv.formats import open_source
from bertconv.formats.containment import contained

from .conftest import FIXTURES, fixture_dir

#: a token only the outside file holds: found in an output or a message, it leaked
MARKER = "OUTSIDEMARKER"


def run(capsys, *args):
    rc = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return rc, out, err


def _outside_vocab(directory: Path, *, valid: bool = True) -> Path:
    """A vocabulary outside the SavedModel: BERT's special tokens, then a token of its own."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "vocab.txt"
    lines = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", MARKER] if valid else [f"{MARKER} {MARKER}"] * 3
    path.write_text("\n".join(lines) + "\n")
    return path


def _everything_written(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink())


@pytest.fixture
def tf():
    return pytest.importorskip("tensorflow", reason="TensorFlow's protobuf classes craft the SavedModels")


def _rewrite(directory: Path, change) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    path = directory / "saved_model.pb"
    message = saved_model_pb2.SavedModel()
    message.ParseFromString(path.read_bytes())
    for meta_graph in message.meta_graphs:
        change(meta_graph)
    path.write_bytes(message.SerializeToString())


def _set_asset_filenames(filename: str):
    """Every asset a meta graph names (asset_file_def and the saved_model_assets collection)."""
    from tensorflow.core.protobuf import meta_graph_pb2

    def change(meta_graph):
        for asset in meta_graph.asset_file_def:
            asset.filename = filename
        if "saved_model_assets" in meta_graph.collection_def:
            for packed in meta_graph.collection_def["saved_model_assets"].any_list.value:
                asset = meta_graph_pb2.AssetFileDef()
                packed.Unpack(asset)
                asset.filename = filename
                packed.Pack(asset)
    return change


def _saved_model_copy(tmp_path: Path, name: str) -> Path:
    source = FIXTURES / name
    if not (source / "saved_model.pb").is_file():
        pytest.skip(f"fixture {name} is missing: run fixtures/make_savedmodel_fixtures.py")
    directory = tmp_path / name
    shutil.copytree(source, directory)
    return directory


ESCAPES = ["../../outside/vocab.txt", "ABSOLUTE", "sub/../../../outside/vocab.txt", "..\\..\\outside\\vocab.txt"]


@pytest.mark.parametrize("name", ["savedmodel_tf2", "hub_tf1"])
@pytest.mark.parametrize("escape", ESCAPES)
def test_an_asset_outside_is_never_read_and_the_local_vocabulary_is_used(tf, tmp_path, capsys, name, escape):
    directory = _saved_model_copy(tmp_path, name)
    outside = _outside_vocab(tmp_path / "outside")
    named = str(outside) if escape == "ABSOLUTE" else escape
    # the escape is real: joined as TensorFlow would, it reaches the outside file
    if escape != "ABSOLUTE" and "\\" not in escape:
        assert (directory / "assets" / named).resolve() == outside.resolve()
    _rewrite(directory, _set_asset_filenames(named))
    with open_source(directory) as source:
        assert source.vocab_file is None and source.assets == {}
        assert source.sidecar("vocab.txt") == directory / "assets" / "vocab.txt"  # the local one
        assert any("outside the SavedModel directory" in note for note in source.notes), source.notes
    out = tmp_path / "out"
    rc, report, err = run(capsys, "tf2pt", directory, out, "--json")
    assert rc == 0, err
    assert any("outside the SavedModel directory" in n for n in json.loads(report)["notes"])
    assert (out / "vocab.txt").read_bytes() == (directory / "assets" / "vocab.txt").read_bytes()
    assert MARKER.encode() not in _everything_written(out)
    assert MARKER not in report + err and str(outside) not in report + err


@pytest.mark.parametrize("valid", [True, False])
def test_without_a_local_vocabulary_the_outside_one_is_still_not_read(tf, tmp_path, capsys, valid):
    directory = _saved_model_copy(tmp_path, "savedmodel_tf2")
    (directory / "assets" / "vocab.txt").unlink()
    _outside_vocab(tmp_path / "outside", valid=valid)
    _rewrite(directory, _set_asset_filenames("../../outside/vocab.txt"))
    out = tmp_path / "out"
    rc, report, err = run(capsys, "tf2pt", directory, out)
    assert MARKER not in report + err, report + err
    if rc == 0:
        assert MARKER.encode() not in _everything_written(out)
        assert not (out / "vocab.txt").exists()
    else:
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    rc, report, err = run(capsys, "inspect", directory)
    assert rc == 0 and MARKER not in report + err, report + err


def test_the_object_graphs_vocabulary_asset_is_judged_the_same_way(tf, tmp_path, capsys):
    """A TF2 export names its vocabulary through the root object's ``vocab_file`` asset, which
    points at an asset_file_def; here a second asset_file_def outside, and the root's asset
    pointing at it."""
    directory = _saved_model_copy(tmp_path, "savedmodel_tf2")
    _outside_vocab(tmp_path / "outside")

    def change(meta_graph):
        outside = meta_graph.asset_file_def.add()
        outside.CopyFrom(meta_graph.asset_file_def[0])
        outside.filename = "../../outside/vocab.txt"
        nodes = meta_graph.object_graph_def.nodes
        vocab = next(c.node_id for c in nodes[0].children if c.local_name == "vocab_file")
        nodes[vocab].asset.asset_file_def_index = len(meta_graph.asset_file_def) - 1
    _rewrite(directory, change)
    with open_source(directory) as source:
        assert source.vocab_file is None
        assert list(source.assets) == ["vocab.txt"]
    rc, report, err = run(capsys, "tf2pt", directory, tmp_path / "out", "--no-validate")
    assert rc == 0, err
    assert MARKER.encode() not in _everything_written(tmp_path / "out") and MARKER not in report + err


def test_a_hugging_face_cache_of_symbolic_links_still_reads(tmp_path, capsys):
    """Snapshot files are links to ``../../blobs/<hash>``: the user's own directory, followed."""
    source = FIXTURES / "savedmodel_tf2"
    if not (source / "saved_model.pb").is_file():
        pytest.skip("fixture savedmodel_tf2 is missing")
    blobs = tmp_path / "models--x" / "blobs"
    snapshot = tmp_path / "models--x" / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    for i, path in enumerate(sorted(p for p in source.rglob("*") if p.is_file())):
        blob = blobs / f"blob{i}"
        shutil.copy(path, blob)
        link = snapshot / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    with open_source(snapshot) as src:
        assert src.vocab_file == snapshot / "assets" / "vocab.txt" and not src.notes
    rc, _, err = run(capsys, "tf2pt", snapshot, tmp_path / "out")
    assert rc == 0, err
    assert (tmp_path / "out" / "vocab.txt").read_bytes() == (source / "assets" / "vocab.txt").read_bytes()


# -- the checkpoint state file ------------------------------------------------------------------------
def _state_file(directory: Path, named: str, *, also: tuple[str, ...] = ()) -> None:
    """A ``checkpoint`` file as tf.train.CheckpointManager writes it (text-format CheckpointState)."""
    from google.protobuf import text_format
    from tensorflow.python.checkpoint import checkpoint_management

    state = checkpoint_management.generate_checkpoint_state_proto(
        str(directory), named, all_model_checkpoint_paths=[*also, named])
    (directory / "checkpoint").write_text(text_format.MessageToString(state))


def _bundle_copy(name: str, directory: Path, basename: str = "bert_model.ckpt") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    source = fixture_dir(name)
    for path in source.iterdir():
        if path.name.startswith("bert_model.ckpt."):
            shutil.copy(path, directory / path.name.replace("bert_model.ckpt", basename))
        elif path.name in ("bert_config.json", "vocab.txt"):
            shutil.copy(path, directory / path.name)
    return directory


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_a_state_file_naming_a_checkpoint_outside_reads_the_one_here(tf, tmp_path, capsys, how):
    here = _bundle_copy("bert_pretrain", tmp_path / "here")
    outside = _bundle_copy("bert_classifier", tmp_path / "outside")
    named = "../outside/bert_model.ckpt" if how == "relative" else str(outside / "bert_model.ckpt")
    _state_file(here, named)
    with open_source(here) as source:
        assert source.prefix == here / "bert_model.ckpt"
        assert any("outside this directory" in note for note in source.notes), source.notes
        from bertconv.formats.tf_bundle import TFBundleSource
        with TFBundleSource(fixture_dir("bert_pretrain")) as original:
            assert source.names() == original.names()


def test_a_state_file_naming_only_a_checkpoint_outside_stops_without_reading_it(tf, tmp_path, capsys):
    here = tmp_path / "here"
    here.mkdir()
    shutil.copy(fixture_dir("bert_pretrain") / "vocab.txt", here / "vocab.txt")
    _bundle_copy("bert_pretrain", tmp_path / "outside", basename="model.ckpt-7")
    _state_file(here, "../outside/model.ckpt-7")
    for command in (["inspect", here], ["tf2pt", here, tmp_path / "out"]):
        rc, _, err = run(capsys, *command)
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert "no TensorFlow checkpoint" in err, err
    assert not (tmp_path / "out").exists()


def test_contained_judges_the_named_path_as_text():
    base = Path("/data/model")
    assert contained(base, "assets/vocab.txt") == base / "assets" / "vocab.txt"
    assert contained(base, "assets/../vocab.txt") == base / "vocab.txt"
    # a ".." is resolved as text, never by walking back up through a link
    assert contained(base, "assets/link/../vocab.txt") == base / "assets" / "vocab.txt"
    for outside in ("../x", "assets/../../x", "/etc/passwd", "C:\\x", "..\\x", "", ".", "assets/\x00"):
        assert contained(base, outside) is None, outside
