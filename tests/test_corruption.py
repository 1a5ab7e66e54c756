"""Damaged TF checkpoints: the reader never lies and never crashes with a foreign exception.

Every damaged input is made here, in ``tmp_path``, from the real fixtures under
``fixtures/reader``. For each, opening the checkpoint, listing it and reading every tensor must
either succeed with exactly the original values (damage TensorFlow cannot see either, such as the
footer's zero padding) or raise one of bertconv's own errors whose one-line message names the file.
Run with ``-s`` to see the counts.
"""
from __future__ import annotations

import random
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertconv.errors import BertconvError, CheckpointFormatError, CorruptDataError, InputError
from bertconv.formats import _wire
from bertconv.formats.sstable import (BLOCK_TRAILER_SIZE, FOOTER_SIZE, block_handles, crc32c, mask_crc,
                                      read_table, write_table)
from bertconv.formats.tf_bundle import TFBundleSource

READER = Path(__file__).resolve().parent.parent / "fixtures" / "reader"
SMALL = {"dtypes": READER / "dtypes" / "model.ckpt", "partitioned": READER / "partitioned" / "model.ckpt",
         "sharded": READER / "sharded" / "model.ckpt", "tf2": READER / "tf2" / "ckpt-1"}


def _snapshot(prefix: Path) -> dict[str, list]:
    with TFBundleSource(prefix) as source:
        return {name: _as_list(source.read(name)) for name in source.names()}


def _as_list(values: np.ndarray) -> list:
    return values.tolist() if values.dtype == object else [values.dtype.str, values.shape, values.tobytes()]


ORIGINAL = {name: _snapshot(prefix) for name, prefix in SMALL.items()}


def _copy_bundle(prefix: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for path in prefix.parent.iterdir():
        if path.name.startswith(prefix.name + "."):
            shutil.copy(path, directory / path.name)
    return directory / prefix.name


def _outcome(prefix: Path, original: dict | None, **options) -> BertconvError | None:
    """Open, list and read everything; return our error, or None after checking the values."""
    try:
        with TFBundleSource(prefix, **options) as source:
            values = {name: _as_list(source.read(name)) for name in source.names()}
    except BertconvError as err:
        line = str(err)
        assert "\n" not in line, line
        assert err.path and Path(err.path).name.startswith(prefix.name), line
        return err
    if original is not None:
        assert values == original, f"{prefix}: damaged input read without error but with different values"
    return None


class Tally:
    def __init__(self, label: str):
        self.label, self.tried, self.errors, self.intact = label, 0, 0, 0

    def add(self, outcome: BertconvError | None) -> None:
        self.tried += 1
        if outcome is None:
            self.intact += 1
        else:
            self.errors += 1

    def report(self) -> None:
        print(f"\n[corruption] {self.label}: {self.tried} damaged inputs, {self.errors} raised our "
              f"error, {self.intact} read back identical values, 0 other exceptions")


def _offsets(length: int, count: int, rng: random.Random) -> list[int]:
    fixed = {0, 1, length // 2, max(length - FOOTER_SIZE, 0), length - 8, length - 1}
    return sorted({o for o in fixed if 0 <= o < length} | {rng.randrange(length) for _ in range(count)})


@pytest.mark.parametrize("name", sorted(SMALL))
def test_truncated_files(tmp_path, name):
    rng = random.Random(name)
    prefix = _copy_bundle(SMALL[name], tmp_path / "work")
    tally = Tally(f"{name}: truncated .index/.data")
    for path in sorted(prefix.parent.iterdir()):
        if not path.name.startswith(prefix.name + "."):
            continue
        whole = path.read_bytes()
        for cut in _offsets(len(whole), 25, rng):
            path.write_bytes(whole[:cut])
            outcome = _outcome(prefix, ORIGINAL[name])
            assert outcome is not None, f"{path.name} cut at {cut} was not noticed"
            if ".data-" in path.name:
                assert isinstance(outcome, CorruptDataError), outcome
            tally.add(outcome)
        path.write_bytes(whole)
    tally.report()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_index_byte_flipped(tmp_path, name):
    prefix = _copy_bundle(SMALL[name], tmp_path / "work")
    index = Path(f"{prefix}.index")
    whole = index.read_bytes()
    tally = Tally(f"{name}: each of {len(whole)} .index bytes flipped")
    undetected = []
    for at in range(len(whole)):
        damaged = bytearray(whole)
        damaged[at] ^= 0x01 << (at % 8)
        index.write_bytes(bytes(damaged))
        outcome = _outcome(prefix, ORIGINAL[name])
        tally.add(outcome)
        if outcome is None:
            undetected.append(at)
    tally.report()
    # Only the footer's zero padding (bytes TensorFlow never reads either) may change unnoticed.
    footer = len(whole) - FOOTER_SIZE
    assert all(footer <= at < len(whole) - 8 for at in undetected), undetected


def test_block_trailers_and_magic(tmp_path):
    prefix = _copy_bundle(SMALL["tf2"], tmp_path / "work")
    index = Path(f"{prefix}.index")
    whole = index.read_bytes()
    trailers = [offset + size for _, offset, size in block_handles(whole, path=index)]
    tally = Tally("block trailers and magic")
    for trailer in trailers:
        for at in range(trailer, trailer + BLOCK_TRAILER_SIZE):
            for bit in (0x01, 0x80):
                damaged = bytearray(whole)
                damaged[at] ^= bit
                index.write_bytes(bytes(damaged))
                outcome = _outcome(prefix, None)
                assert isinstance(outcome, CheckpointFormatError), (at, outcome)
                tally.add(outcome)
    index.write_bytes(whole[:-8] + b"\x00" * 8)
    outcome = _outcome(prefix, None)
    assert outcome is not None and "magic" in str(outcome)
    tally.add(outcome)
    tally.report()


def test_flipped_tensor_bytes_are_caught_by_crc(tmp_path):
    """A few hundred random single-bit flips across every tensor's bytes: all detected, each
    naming the damaged tensor."""
    rng = random.Random(1234)
    tried = detected = 0
    for name, original_prefix in SMALL.items():
        prefix = _copy_bundle(original_prefix, tmp_path / name)
        with TFBundleSource(prefix) as source:
            owners = []  # (shard, start, end, tensor shown in errors)
            for key, entry in source._entries.items():
                if entry.slices or entry.size == 0:
                    continue
                shown = key
                if key.startswith(b"\x00"):  # a slice: errors name the full tensor
                    shown = next(k for k, e in source._entries.items()
                                 if e.slices and any(_wire.encode_slice_key(k, s) == key for s in e.slices))
                owners.append((entry.shard_id, entry.offset, entry.offset + entry.size,
                               shown.decode("utf-8", "surrogateescape")))
            shards = {i: source.shard_path(i) for i in range(source.num_shards)}
        flips_per_tensor = max(1, 100 // len(owners))
        for shard_id, start, end, tensor in owners:
            path = shards[shard_id]
            whole = path.read_bytes()
            for _ in range(flips_per_tensor):
                at = rng.randrange(start, end)
                damaged = bytearray(whole)
                damaged[at] ^= 1 << rng.randrange(8)
                path.write_bytes(bytes(damaged))
                outcome = _outcome(prefix, None)
                tried += 1
                if isinstance(outcome, CorruptDataError) and outcome.tensor == tensor:
                    detected += 1
                else:
                    pytest.fail(f"flip at byte {at} of {path.name} ({tensor}) gave {outcome!r}")
            path.write_bytes(whole)
    print(f"\n[corruption] tensor-data bit flips: {detected}/{tried} detected by crc32c, "
          f"naming the tensor ({100.0 * detected / tried:.1f}%)")
    assert tried >= 300 and detected == tried


def test_verify_crc_off_still_never_crashes(tmp_path):
    prefix = _copy_bundle(SMALL["dtypes"], tmp_path / "work")
    data = Path(f"{prefix}.data-00000-of-00001")
    whole = data.read_bytes()
    rng = random.Random(5)
    for _ in range(60):
        damaged = bytearray(whole)
        damaged[rng.randrange(len(whole))] ^= 0xFF
        data.write_bytes(bytes(damaged))
        _outcome(prefix, None, verify_crc=False)
    data.write_bytes(whole)


def _rewrite_entry(prefix: Path, key: bytes, **changes) -> None:
    """Re-encode one index entry and write the table again (so every block CRC is valid)."""
    index = Path(f"{prefix}.index")
    items = read_table(index.read_bytes(), path=index)
    patched = []
    for item_key, value in items:
        if item_key == key:
            entry = _wire.parse_entry(value)
            value = _wire.encode_entry(_wire.BundleEntry(**{**entry.__dict__, **changes}))
        patched.append((item_key, value))
    with open(index, "wb") as out:
        write_table(out, patched)


@pytest.mark.parametrize("changes, message", [
    ({"size": 10 ** 12, "shape": (250_000_000_000,)}, "data file has"),
    ({"offset": 2 ** 40}, "data file has"),
    ({"offset": -8}, "data file has"),
    ({"shape": (10 ** 9, 10 ** 9)}, "index claims"),
    ({"shape": (2, 2)}, "index claims"),
    ({"dtype": 99}, "unsupported dtype"),
    ({"dtype": 7}, "string lengths"),
    ({"shard_id": 3}, "data shard 3"),
    ({"shape": (-1, 3)}, "not fully known"),
])
def test_entries_claiming_impossible_sizes(tmp_path, changes, message):
    prefix = _copy_bundle(SMALL["dtypes"], tmp_path / "work")
    _rewrite_entry(prefix, b"float32", **changes)
    with pytest.raises(CheckpointFormatError, match=message) as caught:
        with TFBundleSource(prefix) as source:
            source.read("float32")  # a dtype change is only visible in the bytes
    assert caught.value.tensor == "float32"


def test_sliced_entry_claiming_a_huge_tensor(tmp_path):
    prefix = _copy_bundle(SMALL["dtypes"], tmp_path / "work")
    _rewrite_entry(prefix, b"sliced", shape=(4_000_000_000, 6))
    with pytest.raises(CheckpointFormatError, match="cover") as caught:
        TFBundleSource(prefix)
    assert caught.value.tensor == "sliced"


def test_missing_shard_v1_two_bundles_and_garbage(tmp_path):
    tally = Tally("missing shard, V1, two bundles, garbage files")
    prefix = _copy_bundle(SMALL["sharded"], tmp_path / "sharded")
    Path(f"{prefix}.data-00001-of-00002").unlink()
    outcome = _outcome(prefix, None)
    assert "data file is missing" in str(outcome)
    tally.add(outcome)

    v1 = READER / "v1" / "model.ckpt"
    if v1.exists():
        # A V1 table renamed to look like a V2 index.
        fake = tmp_path / "v1" / "model.ckpt"
        fake.parent.mkdir()
        shutil.copy(v1, f"{fake}.index")
        Path(f"{fake}.data-00000-of-00001").write_bytes(b"")
        outcome = _outcome(fake, None)
        assert "V1 checkpoint" in str(outcome)
        tally.add(outcome)

    two = tmp_path / "two"
    _copy_bundle(SMALL["dtypes"], two)
    shutil.copy(f"{SMALL['tf2']}.index", two / "other.index")
    with pytest.raises(InputError, match="2 checkpoints"):
        TFBundleSource(two)
    tally.tried += 1
    tally.errors += 1

    rng = random.Random(99)
    garbage = tmp_path / "garbage" / "model.ckpt"
    garbage.parent.mkdir()
    Path(f"{garbage}.data-00000-of-00001").write_bytes(rng.randbytes(1000))
    for length in (0, 1, 7, 47, 48, 49, 100, 4096, 70000):
        for with_magic in (False, True):
            body = rng.randbytes(length)
            if with_magic and length >= 8:
                body = body[:-8] + struct.pack("<Q", 0xDB4775248B80FB57)
            Path(f"{garbage}.index").write_bytes(body)
            outcome = _outcome(garbage, None)
            assert outcome is not None
            tally.add(outcome)
    tally.report()


# -- property-based: the parsers end only in our error types ----------------------------------------
_PARSER_SETTINGS = settings(max_examples=300, deadline=500, derandomize=True, database=None,
                            suppress_health_check=[HealthCheck.too_slow])
_INDEX_BYTES = Path(f"{SMALL['tf2']}.index").read_bytes()


@_PARSER_SETTINGS
@given(st.binary(max_size=600))
def test_entry_and_header_decoders_on_random_bytes(data):
    for decode in (_wire.parse_entry, _wire.parse_header, _wire.parse_object_graph):
        try:
            decode(data)
        except _wire.WireError:
            pass


@_PARSER_SETTINGS
@given(st.binary(max_size=2000))
def test_table_reader_on_random_bytes(data):
    try:
        read_table(data, path="random.index")
    except CheckpointFormatError:
        pass


@_PARSER_SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(_INDEX_BYTES) - 1), st.integers(1, 255)),
                min_size=1, max_size=6))
def test_table_reader_on_mutated_index(mutations):
    damaged = bytearray(_INDEX_BYTES)
    for at, xor in mutations:
        damaged[at] ^= xor
    for verify in (True, False):
        try:
            read_table(bytes(damaged), path="mutated.index", verify_crc=verify)
        except CheckpointFormatError:
            pass


@settings(max_examples=150, deadline=2000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_whole_reader_on_mutated_entries(tmp_path_factory, data):
    """Mutations inside entry values (block CRCs rebuilt, tensor CRCs off): the entry decoder and
    every bounds check are reached, and still only our errors come out."""
    directory = tmp_path_factory.mktemp("mutated")
    prefix = _copy_bundle(SMALL["dtypes"], directory)
    index = Path(f"{prefix}.index")
    items = read_table(index.read_bytes(), path=index)
    position = data.draw(st.integers(0, len(items) - 1))
    key, value = items[position]
    value = bytearray(value)
    for _ in range(data.draw(st.integers(1, 4))):
        choice = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, max(len(value) - 1, 0)))
        if choice == "flip" and value:
            value[at] ^= data.draw(st.integers(1, 255))
        elif choice == "cut":
            del value[at:]
        else:
            value[at:at] = data.draw(st.binary(min_size=1, max_size=12))
    items[position] = (key, bytes(value))
    with open(index, "wb") as out:
        write_table(out, items)
    for verify in (False, True):
        _outcome(prefix, None, verify_crc=verify)


def _snappy_bundle(directory: Path) -> Path:
    """A bundle whose index has snappy-compressed data blocks, written by our writer (TensorFlow
    reads it: test_tf_bundle.py)."""
    from bertconv.formats.tf_bundle_writer import write_tf_bundle

    directory.mkdir(parents=True, exist_ok=True)
    names = [f"bert/encoder/layer_{layer}/{part}/{slot}" for layer in range(12)
             for part in ("attention/self/query/kernel", "attention/output/dense/bias", "output/LayerNorm/gamma")
             for slot in ("", "adam_m", "adam_v")]
    return write_tf_bundle(directory / "model.ckpt", [(n, np.float32(i)) for i, n in enumerate(names)],
                           snappy_index=True)


def _data_block(index: Path) -> tuple[bytes, int, int]:
    whole = index.read_bytes()
    [(_, offset, size)] = block_handles(whole, path=index)
    assert whole[offset + size] == 1, "the data block is meant to be compressed"
    return whole, offset, size


def test_damaged_snappy_block(tmp_path):
    """Flipped bytes in a compressed block: the trailer CRC, over the compressed bytes, catches
    each and names the file and block."""
    prefix = _snappy_bundle(tmp_path / "work")
    index = Path(f"{prefix}.index")
    whole, offset, size = _data_block(index)
    original = _snapshot(prefix)
    rng = random.Random(11)
    tally = Tally("snappy data block, bytes flipped")
    for at in sorted({offset, offset + 1, offset + size - 1} | {rng.randrange(offset, offset + size)
                                                                for _ in range(40)}):
        damaged = bytearray(whole)
        damaged[at] ^= 1 << rng.randrange(8)
        index.write_bytes(bytes(damaged))
        outcome = _outcome(prefix, original)
        assert isinstance(outcome, CorruptDataError), (at, outcome)
        assert "data block 0" in str(outcome) and outcome.path == str(index), outcome
        tally.add(outcome)
        # Unchecked, a flipped literal may decode to another key, as in an uncompressed block:
        # nothing to compare, but still only our errors.
        tally.add(_outcome(prefix, None, verify_crc=False))
    tally.report()


def _with_block(index: Path, whole: bytes, offset: int, size: int, contents: bytes, block_type: int) -> None:
    """Replace the data block (same size, trailer CRC valid) so only its contents are wrong."""
    assert len(contents) == size
    trailer = bytes([block_type])
    crc = mask_crc(crc32c(contents + trailer))
    index.write_bytes(whole[:offset] + contents + trailer + struct.pack("<I", crc) +
                      whole[offset + size + BLOCK_TRAILER_SIZE:])


def test_snappy_block_with_a_valid_crc_but_bad_contents(tmp_path):
    prefix = _snappy_bundle(tmp_path / "work")
    index = Path(f"{prefix}.index")
    whole, offset, size = _data_block(index)
    block = whole[offset:offset + size]
    # not snappy data at all
    _with_block(index, whole, offset, size, bytes(size), 1)
    outcome = _outcome(prefix, None)
    assert isinstance(outcome, CorruptDataError) and "data block 0" in str(outcome), outcome
    # a length header claiming more than snappy can expand these bytes to
    _with_block(index, whole, offset, size, b"\xff\xff\xff\xff\x0f" + block[5:], 1)
    outcome = _outcome(prefix, None)
    assert isinstance(outcome, CorruptDataError) and "claims 4294967295 bytes" in str(outcome), outcome
    # the compressed bytes marked as stored raw: the block structure does not hold
    _with_block(index, whole, offset, size, block, 0)
    assert isinstance(_outcome(prefix, None), CheckpointFormatError)
    # neither raw nor snappy
    _with_block(index, whole, offset, size, block, 2)
    outcome = _outcome(prefix, None)
    assert isinstance(outcome, CheckpointFormatError) and "unknown block type 2" in str(outcome), outcome
