"""The pure-Python TF V2 checkpoint reader and writer, against files real TensorFlow wrote
(``fixtures/make_reader_fixtures.py``) and against TensorFlow's own reader and writer."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from bertconv.errors import BertconvError, CheckpointFormatError, InputError
from bertconv.formats import _wire, open_source
from bertconv.formats.sstable import block_handles, crc32c, mask_crc, read_table, unmask_crc, write_table
from bertconv.formats.tf_bundle import TFBundleSource, resolve_prefix
from bertconv.formats.tf_bundle_writer import write_tf_bundle

ROOT = Path(__file__).resolve().parent.parent
READER = ROOT / "fixtures" / "reader"
PREFIXES = {
    "dtypes": READER / "dtypes" / "model.ckpt",
    "partitioned": READER / "partitioned" / "model.ckpt",
    "sharded": READER / "sharded" / "model.ckpt",
    "many": READER / "many" / "model.ckpt",
    "tf2": READER / "tf2" / "ckpt-1",
}
BERT_INDEXES = sorted(ROOT.glob("fixtures/bert_*/**/*.index"))


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return pytest.importorskip("tensorflow", reason="comparing with TensorFlow needs tensorflow-cpu")


def _same_tensor(ours: np.ndarray, theirs) -> bool:
    """Same dtype, shape and bytes (strings: the same byte strings)."""
    if isinstance(theirs, bytes):
        theirs = np.array(theirs, dtype=object)
    if ours.shape != theirs.shape:
        return False
    if ours.dtype == object:
        return [bytes(x) for x in ours.ravel()] == [bytes(x) for x in theirs.ravel()]
    return ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes()


# -- against TensorFlow -------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", sorted(PREFIXES))
def test_every_tensor_matches_tensorflow(tf, fixture):
    prefix = PREFIXES[fixture]
    reader = tf.train.load_checkpoint(str(prefix))
    listed = dict(tf.train.list_variables(str(prefix)))
    with TFBundleSource(prefix) as source:
        assert source.names() == sorted(listed)
        compared = 0
        for info in source:
            assert info.shape == tuple(listed[info.name]), info.name
            values = source.read(info.name)
            if info.dtype == "variant":
                # TensorFlow cannot hand variants to NumPy; ours are the raw per-element protos.
                assert values.dtype == object and values.shape == info.shape
                continue
            assert _same_tensor(values, reader.get_tensor(info.name)), info.name
            compared += 1
    assert compared >= len(listed) - 2


@pytest.mark.parametrize("index", BERT_INDEXES, ids=lambda p: str(p.relative_to(ROOT)))
def test_bert_fixtures_match_tensorflow(tf, index):
    reader = tf.train.load_checkpoint(str(index)[:-len(".index")])
    with TFBundleSource(index) as source:
        assert source.names() == sorted(n for n, _ in tf.train.list_variables(str(index)[:-6]))
        for name in source.names():
            assert _same_tensor(source.read(name), reader.get_tensor(name)), name


def test_fixture_covers_every_saveable_dtype():
    with TFBundleSource(PREFIXES["dtypes"]) as source:
        dtypes = {info.dtype for info in source}
    assert {"float32", "float64", "float16", "bfloat16", "int8", "int16", "int32", "int64", "uint8",
            "uint16", "uint32", "uint64", "bool", "complex64", "complex128", "string", "variant",
            "float8_e5m2", "float8_e4m3fn"} <= dtypes


def _sample_tensors():
    rng = np.random.default_rng(7)
    return [
        ("bert/embeddings/word_embeddings", rng.standard_normal((7, 4)).astype(np.float32)),
        ("a/bfloat16", rng.standard_normal(5).astype(ml_dtypes.bfloat16)),
        ("half", np.array([1.5, -2, 65504], np.float16)),
        ("ints/i32", np.array([[1, -2], [3, 2 ** 31 - 1]], np.int32)),
        ("ints/i64", np.array(-(2 ** 62), np.int64)),
        ("flags", np.array([True, False, True])),
        ("empty", np.zeros((0, 3), np.float32)),
        ("text", np.array([b"hello", b"", b"world!" * 50], dtype=object)),
        ("global_step", np.array(12345, np.int64)),
    ]


def test_writer_is_byte_identical_to_tensorflow(tf, tmp_path):
    tensors = _sample_tensors()
    # Long, unrelated names push the index past one 256 KiB block.
    tensors += [(f"item_{i:05d}/{hashlib.sha256(str(i).encode()).hexdigest() * 2}", np.int8(i % 100))
                for i in range(2000)]
    ours = write_tf_bundle(tmp_path / "ours", tensors)
    theirs = tmp_path / "theirs"
    tf.raw_ops.SaveV2(prefix=str(theirs), tensor_names=[n for n, _ in tensors],
                      shape_and_slices=[""] * len(tensors), tensors=[tf.constant(a) for _, a in tensors])
    for suffix in (".index", ".data-00000-of-00001"):
        assert Path(f"{ours}{suffix}").read_bytes() == Path(f"{theirs}{suffix}").read_bytes(), suffix
    index = Path(f"{ours}.index").read_bytes()
    assert len(block_handles(index, path="ours")) == 2


def test_tensorflow_reads_what_the_writer_writes(tf, tmp_path):
    tensors = _sample_tensors()
    prefix = write_tf_bundle(tmp_path / "model.ckpt", tensors)
    reader = tf.train.load_checkpoint(str(prefix))
    assert sorted(n for n, _ in tf.train.list_variables(str(prefix))) == sorted(n for n, _ in tensors)
    for name, array in tensors:
        theirs = reader.get_tensor(name)
        if array.dtype == object:
            assert list(np.asarray(theirs, dtype=object).ravel()) == list(array.ravel())
        else:
            assert _same_tensor(np.asarray(array), theirs), name


# -- without TensorFlow -------------------------------------------------------------------------------
def test_writer_round_trip_with_our_reader(tmp_path):
    tensors = _sample_tensors()
    prefix = write_tf_bundle(tmp_path / "model.ckpt", tensors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt.data-00000-of-00001",
                                                          "model.ckpt.index"]
    with TFBundleSource(prefix) as source:
        assert source.names() == sorted(n for n, _ in tensors)
        for name, array in tensors:
            assert _same_tensor(source.read(name), np.asarray(array)), name


def test_writer_refuses_to_overwrite_and_leaves_nothing_on_failure(tmp_path):
    prefix = write_tf_bundle(tmp_path / "model.ckpt", [("x", np.ones(2, np.float32))])
    with pytest.raises(BertconvError):
        write_tf_bundle(prefix, [("x", np.ones(2, np.float32))])
    bad = tmp_path / "bad.ckpt"
    with pytest.raises(InputError, match="cannot be written"):
        write_tf_bundle(bad, [("x", np.ones(2, np.float32)), ("when", np.ones(2, "M8[s]"))])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt.data-00000-of-00001",
                                                          "model.ckpt.index"]


def test_big_endian_bundle_is_byte_swapped_on_read(tmp_path):
    # TensorFlow only writes big-endian bundles on big-endian hosts; ours writes the same layout
    # (header endianness BIG, element bytes swapped, CRC over the stored bytes).
    tensors = [(n, a) for n, a in _sample_tensors() if a.dtype != object]
    tensors.append(("complex", np.array([1 + 2j, -3j], np.complex64)))
    prefix = write_tf_bundle(tmp_path / "be.ckpt", tensors, big_endian=True)
    raw = Path(f"{prefix}.data-00000-of-00001").read_bytes()
    assert tensors[0][1].astype(">f4").tobytes() in raw
    with TFBundleSource(prefix) as source:
        assert source.big_endian
        for name, array in tensors:
            assert _same_tensor(source.read(name), np.asarray(array)), name


def test_many_variables_span_two_index_blocks():
    index = Path(f"{PREFIXES['many']}.index").read_bytes()
    handles = block_handles(index, path="many")
    assert len(handles) >= 2
    with TFBundleSource(PREFIXES["many"]) as source:
        assert len(source) == 2000
        assert int(source.read(source.names()[-1])) == 1999 % 100


@pytest.mark.parametrize("form", ["prefix", "index", "data", "directory", "open_source"])
def test_path_forms_resolve(form):
    prefix = PREFIXES["dtypes"]
    path = {"prefix": prefix, "index": Path(f"{prefix}.index"),
            "data": Path(f"{prefix}.data-00000-of-00001"), "directory": prefix.parent,
            "open_source": prefix}[form]
    assert resolve_prefix(path) == prefix
    source = open_source(path) if form == "open_source" else TFBundleSource(path)
    with source:
        assert source.format_name == "tf-bundle"
        assert "float32" in source


def test_directory_uses_its_checkpoint_file(tmp_path):
    assert resolve_prefix(READER / "tf2") == PREFIXES["tf2"]
    # Two bundles: the state file picks one; without it, the choice is the user's.
    directory = tmp_path / "two"
    shutil.copytree(READER / "tf2", directory)
    for path in (READER / "dtypes").iterdir():
        shutil.copy(path, directory / path.name)
    assert resolve_prefix(directory) == directory / "ckpt-1"
    (directory / "checkpoint").unlink()
    with pytest.raises(InputError, match=r"2 checkpoints \(ckpt-1, model.ckpt\)"):
        resolve_prefix(directory)


def test_missing_paths_and_v1_checkpoints():
    with pytest.raises(InputError, match="no such checkpoint"):
        TFBundleSource(READER / "nowhere" / "model.ckpt")
    if not (READER / "v1").exists():
        pytest.skip("this TensorFlow could not write a V1 checkpoint")
    for path in (READER / "v1" / "model.ckpt", READER / "v1", READER / "v1" / "model.ckpt.meta"):
        with pytest.raises(CheckpointFormatError, match="V1 checkpoint"):
            TFBundleSource(path)


def test_sharded_save_uses_both_shards():
    with TFBundleSource(PREFIXES["sharded"]) as source:
        assert source.num_shards == 2
        assert {e.shard_id for e in source._entries.values()} == {0, 1}
        assert source.read("second/w").shape == (5, 2)


def test_partitioned_variable_is_reassembled_and_slice_keys_hidden():
    with TFBundleSource(PREFIXES["partitioned"]) as source:
        assert source.names() == ["global_step", "layer/bias", "layer/cols", "layer/kernel"]
        assert any(key.startswith(b"\x00") for key in source._entries)
        kernel = source.read("layer/kernel")
        assert kernel.shape == (10, 4) and not kernel.flags.writeable
        assert source.read("layer/cols").shape == (3, 7)
    with TFBundleSource(PREFIXES["dtypes"]) as source:
        assert source.info("sliced").shape == (4, 6)


def test_numeric_reads_are_read_only_views_of_the_file():
    with TFBundleSource(PREFIXES["dtypes"]) as source:
        values = source.read("float32")
        assert not values.flags.writeable and not values.flags.owndata
        assert source.read("bfloat16").dtype == ml_dtypes.bfloat16
        assert source.read("string").tolist() == [b"hello", b"", b"world!" * 50]
        assert source.read("string_scalar").item() == b"just one"
        assert source.read("name.with/odd chars-and_\xe9").tolist() == [1.5]
        assert source.info("variant").dtype == "variant"


def test_object_graph():
    with TFBundleSource(READER / "tf2") as source:
        nodes = source.object_graph()
        root_children = {child.local_name: child.node_id for child in nodes[0].children}
        assert {"model", "optimizer", "weird.name/x", "save_counter", "iterator"} <= set(root_children)
        weird = nodes[root_children["weird.name/x"]]
        assert weird.attributes[0].checkpoint_key == "weird..name.Sx/.ATTRIBUTES/VARIABLE_VALUE"
        assert weird.attributes[0].checkpoint_key in source
        slots = nodes[root_children["optimizer"]].slot_variables
        assert {slot.slot_name for slot in slots} == {"m", "v"}
        keys = {attr.checkpoint_key for node in nodes for attr in node.attributes}
        assert "model/dense/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE" in keys
        # A saveable with several tensors (the iterator) records a key prefix, not a full key.
        assert all(any(name.startswith(key) for name in source.names()) for key in keys)
    with TFBundleSource(PREFIXES["partitioned"]) as source:
        assert source.object_graph() is None


def test_version_and_header_checks(tmp_path):
    prefix = write_tf_bundle(tmp_path / "model.ckpt", [("x", np.ones(2, np.float32))])
    index = Path(f"{prefix}.index")
    items = read_table(index.read_bytes(), path=index)

    def rewrite(header: _wire.BundleHeader) -> None:
        with open(index, "wb") as out:
            write_table(out, [(b"", _wire.encode_header(header))] + items[1:])

    rewrite(_wire.BundleHeader(num_shards=1, producer=3, min_consumer=2))
    with pytest.raises(CheckpointFormatError, match="newer reader"):
        TFBundleSource(prefix)
    rewrite(_wire.BundleHeader(num_shards=1, producer=1, bad_consumers=(1,)))
    with pytest.raises(CheckpointFormatError, match="newer reader"):
        TFBundleSource(prefix)
    rewrite(_wire.BundleHeader(num_shards=0, producer=1))
    with pytest.raises(CheckpointFormatError, match="0 data shards"):
        TFBundleSource(prefix)
    rewrite(_wire.BundleHeader(num_shards=1, producer=0))  # files written before 2016 say 0
    with TFBundleSource(prefix) as source:
        assert source.read("x").tolist() == [1.0, 1.0]


def test_wire_primitives_match_the_spec_examples():
    assert hex(crc32c(b"123456789")) == "0xe3069283"
    assert crc32c(b"hello world") == 3381945770
    assert mask_crc(0) == 0xA282EAD8
    assert all(unmask_crc(mask_crc(x)) == x for x in (0, 1, 0xFFFFFFFF, 0x12345678))
    entry = _wire.parse_entry(bytes.fromhex("0807120020950328d30735600c88fc"))
    assert entry == _wire.BundleEntry(dtype=7, shape=(), offset=405, size=979, crc32c=0xFC880C60)
    assert _wire.encode_entry(entry) == bytes.fromhex("0807120020950328d30735600c88fc")
    assert _wire.encode_slice_key(b"model/w/.ATTRIBUTES/VARIABLE_VALUE", ((4, 3), (0, None))) == \
        b"\x00model/w/.ATTRIBUTES/VARIABLE_VALUE\x00\x01\x01\x02\x84\x83\x80\x7f"
    assert _wire._signed_num_increasing(8192) == bytes.fromhex("e02000")
    assert _wire._signed_num_increasing(6667) == bytes.fromhex("da0b")
    for value in (0, 1, 127, 128, 2 ** 32, 2 ** 63 - 1):
        assert _wire.read_varint(_wire.encode_varint(value), 0) == (value, len(_wire.encode_varint(value)))
    assert _wire.as_int64(_wire.read_varint(_wire.encode_varint(-5), 0)[0]) == -5
