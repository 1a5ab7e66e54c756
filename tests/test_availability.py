"""A file that is not there to be read (missing, empty, a Git LFS pointer) is named as such in every
format, by one check every reader shares, before any parser sees its bytes."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from bertconv.cli import main
from bertconv.errors import DataUnavailableError, EmptyFileError
from bertconv.formats import open_source

from .conftest import FIXTURES, fixture_dir

REAL_POINTER = Path("/work/shared/realworld/lfs-pointer-bert-wwm")


def lfs_pointer_for(data: bytes) -> bytes:
    """What ``git lfs`` checks out in place of a file whose object was not fetched."""
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


def run(capsys, *args):
    rc = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return rc, out, err


def _converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "hf"
    assert main(["tf2pt", str(fixture_dir("bert_pretrain")), str(out), "--no-validate", "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    return _converted(tmp_path_factory)


@pytest.fixture(scope="module")
def torch_bin(tmp_path_factory, converted) -> Path:
    torch = pytest.importorskip("torch", reason="torch writes the pytorch_model.bin fixture")
    from safetensors.torch import load_file

    directory = tmp_path_factory.mktemp("torch_bin")
    for name in ("config.json", "vocab.txt"):
        shutil.copy(converted / name, directory / name)
    torch.save(load_file(str(converted / "model.safetensors")), directory / "pytorch_model.bin")
    return directory


#: (case, directory to copy, the file in it that is replaced, what the user names: "." the directory)
CASES = [
    ("safetensors", "converted", "model.safetensors", "."),
    ("safetensors file", "converted", "model.safetensors", "model.safetensors"),
    ("pytorch_model.bin", "torch_bin", "pytorch_model.bin", "."),
    ("tf_model.h5", FIXTURES / "h5", "tf_model.h5", "."),
    ("bert4keras model.h5", FIXTURES / "keras_era" / "bert4keras_bert_saved", "bert_model.h5", "bert_model.h5"),
    ("bert4keras weights .h5", FIXTURES / "keras_era" / "bert4keras_bert_h5", "bert_weights.h5", "bert_weights.h5"),
    ("keras-bert .h5", FIXTURES / "keras_era" / "keras_bert_pretrain_h5", "bert_weights.h5", "."),
    ("KerasHub weights", FIXTURES / "keras_era" / "keras_hub_backbone", "model.weights.h5", "."),
    ("KerasHub config", FIXTURES / "keras_era" / "keras_hub_backbone", "config.json", "model.weights.h5"),
    ("SavedModel variables data", FIXTURES / "savedmodel_tf2", "variables/variables.data-00000-of-00001", "."),
    ("SavedModel variables index", FIXTURES / "savedmodel_tf2", "variables/variables.index", "."),
    ("saved_model.pb", FIXTURES / "savedmodel_tf2", "saved_model.pb", "."),
    ("keras_metadata.pb", FIXTURES / "savedmodel_tf2", "keras_metadata.pb", "."),
    ("TF bundle index", FIXTURES / "bert_pretrain", "bert_model.ckpt.index", "bert_model.ckpt"),
    ("TF bundle data", FIXTURES / "bert_pretrain", "bert_model.ckpt.data-00000-of-00001", "."),
]


def _copy(request, tmp_path, source) -> Path:
    if isinstance(source, str):
        source = request.getfixturevalue(source)
    if not source.is_dir():
        pytest.skip(f"fixture {source} is missing")
    directory = tmp_path / "src"
    shutil.copytree(source, directory)
    return directory


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bertconv: error: "), err
    assert "unexpected error" not in err and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("case, source, replaced, named", CASES, ids=[c[0] for c in CASES])
def test_a_git_lfs_pointer_is_named_with_the_real_size(request, tmp_path, capsys, case, source, replaced, named):
    directory = _copy(request, tmp_path, source)
    path = directory / replaced
    real = path.read_bytes()
    path.write_bytes(lfs_pointer_for(real))
    command = "inspect" if ".data-" in replaced else "tf2pt"
    args = [directory / named] + ([tmp_path / "out", "--no-validate", "-q"] if command == "tf2pt" else [])
    if command == "tf2pt" and case.startswith(("safetensors", "pytorch")):
        command, args = "diff", [directory / named, directory / named]
    rc, _, err = run(capsys, command, *args)
    if ".data-" in replaced:  # the index alone lists the checkpoint; reading values names the file
        assert rc == 0, err
        rc, _, err = run(capsys, "tf2pt", directory / named, tmp_path / "out", "--no-validate", "-q")
    line = _one_line(err)
    assert rc == 2, err
    assert str(path) in line and "is a Git LFS pointer" in line, line
    assert f"the real file is {len(real):,} bytes" in line and "git lfs pull" in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case, source, replaced, named", CASES, ids=[c[0] for c in CASES])
def test_an_empty_file_is_named_as_empty(request, tmp_path, case, source, replaced, named):
    directory = _copy(request, tmp_path, source)
    path = directory / replaced
    path.write_bytes(b"")
    with pytest.raises(DataUnavailableError) as caught:
        with open_source(directory / named, prefer="tf") as src:
            for name in src.names():
                src.read(name)
    assert isinstance(caught.value, EmptyFileError)
    assert caught.value.path == str(path) and "is empty (0 bytes)" in str(caught.value), caught.value
    assert "\n" not in str(caught.value)


def test_a_missing_shard_of_a_safetensors_index_is_named(tmp_path, converted):
    import json

    directory = tmp_path / "sharded"
    directory.mkdir()
    shutil.copy(converted / "model.safetensors", directory / "model-00001-of-00002.safetensors")
    from bertconv.formats.safetensors_io import SafetensorsSource
    with SafetensorsSource(directory / "model-00001-of-00002.safetensors") as src:
        names = src.names()
    weight_map = {n: "model-00001-of-00002.safetensors" for n in names}
    weight_map[names[0]] = "model-00002-of-00002.safetensors"
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(DataUnavailableError) as caught:
        open_source(directory / "model.safetensors.index.json")
    assert caught.value.path == str(directory / "model-00002-of-00002.safetensors")
    assert "no such file (the weights file)" in str(caught.value)


def test_a_pointer_under_a_name_that_says_nothing_is_still_named(tmp_path, capsys):
    path = tmp_path / "weights"
    path.write_bytes(lfs_pointer_for(b"x" * 5000))
    rc, _, err = run(capsys, "inspect", path)
    assert rc == 2 and "is a Git LFS pointer" in _one_line(err) and "5,000 bytes" in err, err


@pytest.mark.skipif(not REAL_POINTER.is_dir(), reason="the published checkpoint with a pointer is not here")
def test_the_published_pointer_lists_and_then_names_the_pointer(tmp_path, capsys):
    rc, out, err = run(capsys, "inspect", REAL_POINTER, "--tensors")
    assert rc == 0 and "bert/embeddings/word_embeddings" in out, err
    rc, _, err = run(capsys, "tf2pt", REAL_POINTER, tmp_path / "out", "-q")
    line = _one_line(err)
    assert rc == 2 and "bert_model.ckpt.data-00000-of-00001" in line and "Git LFS pointer" in line, line
    assert "the real file is 411,529,776 bytes" in line and "git lfs pull" in line, line
    assert list(tmp_path.iterdir()) == []
