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

from bertconv.errors import (BertconvError, CheckpointFormatError, CorruptDataError, DataUnavailableError,
                             InputError)
from bertconv.formats import _wire, open_source
from bertconv.formats.sstable import block_handles, crc32c, mask_crc, read_table, unmask_crc, write_table
from bertconv.formats.bundle_location import resolve_prefix
from bertconv.formats.tf_bundle import TFBundleSource
from bertconv.formats.tf_bundle_writer import write_tf_bundle

from .conftest import missing_fixture

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


# -- snappy-compressed index blocks -------------------------------------------------------------------
def _long_names(count: int) -> list[tuple[str, np.ndarray]]:
    return [(f"item_{i:05d}/{hashlib.sha256(str(i).encode()).hexdigest() * 2}", np.int8(i % 100))
            for i in range(count)]


def _block_types(index: Path) -> list[int]:
    data = index.read_bytes()
    return [data[offset + size] for _, offset, size in block_handles(data, path=index)]


def test_snappy_index_is_read_identically_by_tensorflow_and_by_us(tf, tmp_path):
    tensors = _sample_tensors() + _long_names(2000)
    compressed = write_tf_bundle(tmp_path / "snappy.ckpt", tensors, snappy_index=True)
    plain = write_tf_bundle(tmp_path / "plain.ckpt", tensors)
    index = Path(f"{compressed}.index")
    assert _block_types(index) == [1, 1]  # both data blocks compressed
    assert index.stat().st_size < Path(f"{plain}.index").stat().st_size
    assert read_table(index.read_bytes(), path=index) == \
        read_table(Path(f"{plain}.index").read_bytes(), path="plain")
    reader = tf.train.load_checkpoint(str(compressed))
    listed = dict(tf.train.list_variables(str(compressed)))
    with TFBundleSource(compressed) as source:
        assert source.names() == sorted(listed) == sorted(n for n, _ in tensors)
        for name, array in tensors:
            assert source.info(name).shape == tuple(listed[name])
            ours = source.read(name)
            assert _same_tensor(ours, reader.get_tensor(name)), name
            assert _same_tensor(ours, np.asarray(array)), name


def test_blocks_stay_raw_unless_snappy_saves_an_eighth(tmp_path):
    # Random values do not compress: every block keeps its raw form, as TensorFlow's writer would.
    rng = np.random.default_rng(3)
    items = [(b""), *sorted({rng.bytes(24) for _ in range(200)})]
    out = tmp_path / "random.index"
    with open(out, "wb") as f:
        write_table(f, [(key, rng.bytes(40)) for key in items], compression=1)
    assert _block_types(out) == [0]
    data = out.read_bytes()
    # The metaindex block (8 bytes) never gains from compression either.
    from bertconv.formats._wire import read_varint
    meta_offset, pos = read_varint(data, len(data) - 48)
    meta_size, _ = read_varint(data, pos)
    assert meta_size == 8 and data[meta_offset + meta_size] == 0
    assert [k for k, _ in read_table(data, path=out)] == items


# -- listing from the index alone -------------------------------------------------------------------
def _copy_bundle(prefix: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for path in prefix.parent.iterdir():
        if path.name.startswith(prefix.name + "."):
            shutil.copy(path, directory / path.name)
    return directory / prefix.name


def _lfs_pointer_for(path: Path) -> bytes:
    """What ``git lfs`` checks out in place of a file when its objects were not fetched."""
    data = path.read_bytes()
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


def test_a_missing_shard_lists_and_fails_only_when_read(tf, tmp_path):
    prefix = _copy_bundle(PREFIXES["sharded"], tmp_path / "sharded")
    with TFBundleSource(PREFIXES["sharded"]) as whole:
        listing = [(i.name, i.dtype, i.shape, i.nbytes) for i in whole]
        in_shard = {name: whole._entries[name.encode()].shard_id for name in whole.names()}
    missing = Path(f"{prefix}.data-00001-of-00002")
    missing.unlink()
    with TFBundleSource(prefix) as source:
        assert [(i.name, i.dtype, i.shape, i.nbytes) for i in source] == listing
        # TensorFlow lists it too, from the index
        assert sorted(n for n, _ in tf.train.list_variables(str(prefix))) == source.names()
        [unavailable] = source.unavailable_data()
        assert (unavailable.path, unavailable.reason) == (missing, "missing")
        for name, shard in in_shard.items():
            if shard == 0:
                assert source.read(name) is not None
                continue
            with pytest.raises(DataUnavailableError) as caught:
                source.read(name)
            error = caught.value
            assert error.exit_code == 2 and error.path == str(missing) and error.tensor == name
            assert "data file is missing" in str(error) and "\n" not in str(error)
        with pytest.raises(DataUnavailableError, match="data file is missing"):
            source.require_data()


def test_a_git_lfs_pointer_is_named_as_one(tf, tmp_path):
    prefix = _copy_bundle(PREFIXES["dtypes"], tmp_path / "dtypes")
    data = Path(f"{prefix}.data-00000-of-00001")
    pointer = _lfs_pointer_for(data)
    real_size = data.stat().st_size
    data.write_bytes(pointer)
    with TFBundleSource(prefix) as source:
        with TFBundleSource(PREFIXES["dtypes"]) as whole:
            assert [(i.name, i.dtype, i.shape) for i in source] == [(i.name, i.dtype, i.shape) for i in whole]
        assert sorted(n for n, _ in tf.train.list_variables(str(prefix))) == source.names()
        [unavailable] = source.unavailable_data()
        assert unavailable.reason == "lfs-pointer" and unavailable.lfs_size == real_size
        assert unavailable.lfs_oid == "sha256:" + hashlib.sha256(
            (PREFIXES["dtypes"].parent / data.name).read_bytes()).hexdigest()
        with pytest.raises(DataUnavailableError) as caught:
            source.read("float32")
    line = str(caught.value)
    assert line.startswith(f"{data}: tensor 'float32': data file is a Git LFS pointer")
    assert f"the real file is {real_size:,} bytes" in line and "git lfs pull" in line
    assert "\n" not in line


def test_an_index_that_is_a_git_lfs_pointer(tmp_path):
    prefix = _copy_bundle(PREFIXES["dtypes"], tmp_path / "dtypes")
    index = Path(f"{prefix}.index")
    index.write_bytes(_lfs_pointer_for(index))
    with pytest.raises(DataUnavailableError, match="index file is a Git LFS pointer.*git lfs pull"):
        TFBundleSource(prefix)


def test_a_pointer_sized_file_that_is_no_pointer_is_still_too_short(tmp_path):
    prefix = _copy_bundle(PREFIXES["dtypes"], tmp_path / "dtypes")
    data = Path(f"{prefix}.data-00000-of-00001")
    data.write_bytes(b"version 2\n" + b"\0" * 100)
    with pytest.raises(CorruptDataError, match="data file has 110"):
        TFBundleSource(prefix)


def test_inspect_lists_an_index_only_bert_and_refuses_stats(tmp_path):
    from bertconv.inspection import inspect_checkpoint

    source = ROOT / "fixtures" / "bert_classifier"
    if not (source / "bert_model.ckpt.index").is_file():
        missing_fixture("fixture bert_classifier is missing: run fixtures/make_bert_fixtures.py")
    whole = inspect_checkpoint(source)
    directory = tmp_path / "index_only"
    directory.mkdir()
    for name in ("bert_model.ckpt.index", "bert_config.json", "vocab.txt"):
        shutil.copy(source / name, directory / name)
    report = inspect_checkpoint(directory)
    assert [(r.name, r.dtype, r.shape, r.category, r.role) for r in report.tensors] == \
        [(r.name, r.dtype, r.shape, r.category, r.role) for r in whole.tensors]
    assert (report.family, report.heads, report.inferred_config, report.totals) == \
        (whole.family, whole.heads, whole.inferred_config, whole.totals)
    assert whole.global_step is not None and report.global_step is None
    [note] = [n for n in report.notes if "index alone" in n]
    assert "bert_model.ckpt.data-00000-of-00001 is missing" in note
    assert "statistics and checksums are unavailable" in note
    with pytest.raises(DataUnavailableError, match="bert_model.ckpt.data-00000-of-00001: data file is missing"):
        inspect_checkpoint(directory, stats=True)


def test_tf2_object_graph_in_a_missing_file(tmp_path):
    prefix = _copy_bundle(PREFIXES["tf2"], tmp_path / "tf2")
    Path(f"{prefix}.data-00000-of-00001").unlink()
    with TFBundleSource(prefix) as source:
        assert source.object_graph() is None
        assert any("object graph" in note for note in source.notes)


# -- prefixes and state files as they occur -----------------------------------------------------------
def _same_as_tensorflow(tf, source: TFBundleSource, tf_prefix: str) -> None:
    reader = tf.compat.v1.train.NewCheckpointReader(tf_prefix)
    shapes = reader.get_variable_to_shape_map()
    assert source.names() == sorted(shapes)
    for name in source.names():
        assert source.info(name).shape == tuple(shapes[name])
        assert _same_tensor(source.read(name), reader.get_tensor(name)), name


@pytest.mark.parametrize("named", ["directory", "state file", "prefix", "index", "data"])
def test_prefix_named_checkpoint(tf, named):
    directory = READER / "keras_tuner"
    path = {"directory": directory, "state file": directory / "checkpoint",
            "prefix": directory / "checkpoint", "index": directory / "checkpoint.index",
            "data": directory / "checkpoint.data-00000-of-00001"}[named]
    with open_source(path) as source:
        assert source.index_path == directory / "checkpoint.index"
        assert source.notes == [] and source.directory == directory
        _same_as_tensorflow(tf, source, str(directory / "checkpoint"))


@pytest.mark.parametrize("named", ["directory", "index", "data"])
def test_empty_prefix(tf, named):
    directory = READER / "empty_prefix"
    path = {"directory": directory, "index": directory / ".index",
            "data": directory / ".data-00000-of-00001"}[named]
    with open_source(path) as source:
        assert source.index_path == directory / ".index"
        assert source.shard_path(0) == directory / ".data-00000-of-00001"
        assert source.directory == directory
        _same_as_tensorflow(tf, source, str(directory) + os.sep)


def test_training_directory_means_its_newest_step(tf):
    directory = READER / "steps"
    with open_source(directory) as source:
        assert source.index_path == directory / "model.ckpt-300.index"
        assert (source.steps, source.step) == ((100, 300), 300)
        assert int(source.read("global_step")) == 300
        # The state file names the directory the run was saved in, which is not this one.
        [elsewhere, steps] = source.notes
        assert "outside this directory; reading model.ckpt-300 from this directory instead" in elsewhere
        assert steps == "steps here: 100, 300; reading step 300, the newest; --step N picks another"
        _same_as_tensorflow(tf, source, str(directory / "model.ckpt-300"))
    # TensorFlow follows the state file to the directory that is gone
    assert tf.train.latest_checkpoint(str(directory)) is None


@pytest.mark.parametrize("path", ["steps", "steps/model.ckpt", "steps/model.ckpt-300",
                                  "steps/model.ckpt-300.index"])
def test_step_picks_another(path):
    with open_source(READER / path, step=100) as source:
        assert source.index_path == READER / "steps" / "model.ckpt-100.index"
        assert (source.steps, source.step) == ((100, 300), 100)
        assert int(source.read("global_step")) == 100
    with pytest.raises(InputError, match="100, 300"):
        TFBundleSource(READER / path, step=200)


def test_steps_of_a_prefix_and_a_stem_without_step():
    with TFBundleSource(READER / "steps" / "model.ckpt-100") as source:
        assert (source.steps, source.step, source.notes) == ((100, 300), 100, [])
    with pytest.raises(InputError, match=r"model.ckpt-100, model.ckpt-300 do \(name one of them"):
        open_source(READER / "steps" / "model.ckpt")
    with TFBundleSource(PREFIXES["dtypes"]) as source:
        assert (source.steps, source.step) == ((), None)
    with pytest.raises(InputError, match="step must be a whole number"):
        TFBundleSource(READER / "steps", step=-1)


def test_a_directory_never_reads_a_bundle_elsewhere(tmp_path):
    """A state file naming another directory on this machine: the directory's own bundle is read
    (its config and vocabulary describe it), never the one named elsewhere."""
    other = tmp_path / "other"
    shutil.copytree(READER / "steps", other)
    here = tmp_path / "here"
    here.mkdir()
    for path in (READER / "steps").glob("model.ckpt-100.*"):
        shutil.copy(path, here / path.name)
    state = here / "checkpoint"
    state.write_text(f'model_checkpoint_path: "{other / "model.ckpt-300"}"\n')
    with TFBundleSource(here) as source:
        assert source.index_path == here / "model.ckpt-100.index"
        assert source.notes[0] == \
            f"the checkpoint file names {other / 'model.ckpt-300'}, which is not in this directory"
    state.write_text(f'model_checkpoint_path: "{other / "model.ckpt-100"}"\n')
    with TFBundleSource(here) as source:
        assert source.index_path == here / "model.ckpt-100.index"
        assert "outside this directory; reading model.ckpt-100 from this directory" in source.notes[0]
    state.write_text('model_checkpoint_path: "C:\\\\Users\\\\me\\\\run\\\\model.ckpt-100"\n')
    with TFBundleSource(here) as source:
        assert source.index_path == here / "model.ckpt-100.index"
        assert "C:\\Users\\me\\run\\model.ckpt-100, outside this directory" in source.notes[0]
    # A path into this directory, however spelled, needs no note.
    state.write_text(f'model_checkpoint_path: "{here / "sub" / ".." / "model.ckpt-100"}"\n')
    with TFBundleSource(here) as source:
        assert source.notes == []


def test_nothing_to_read_lists_what_the_directory_holds(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "variables").mkdir()
    with pytest.raises(InputError, match=r"holds no TensorFlow checkpoint.*it holds notes.txt, variables/"):
        TFBundleSource(tmp_path)
    with pytest.raises(InputError, match=r"holds no checkpoint bertconv can read; it holds notes.txt, variables/"):
        open_source(tmp_path)
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/elsewhere/model.ckpt-5"\n')
    with pytest.raises(InputError, match=r"holds no TensorFlow checkpoint.*it holds checkpoint, notes.txt"):
        TFBundleSource(tmp_path)
    with pytest.raises(InputError, match="has no checkpoint of step 3"):
        TFBundleSource(tmp_path, step=3)
