"""Readers of the non-TF formats, the streaming safetensors writer, and format dispatch."""
from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import textwrap

import h5py
import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file as np_save_file

from bertconv.errors import CheckpointFormatError, CorruptDataError, InputError, OutputError
from bertconv.formats import detect_format, open_source
from bertconv.formats import safetensors_io
from bertconv.formats.keras_h5 import KerasH5Source
from bertconv.formats.safetensors_io import SafetensorsSource, SafetensorsWriter

from .conftest import FIXTURES, ROOT, missing_fixture

RNG = np.random.default_rng(1234)


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


# ------------------------------------------------------------------------- safetensors reading
def test_safetensors_reader_matches_library(tmp_path):
    tensors = {"w": RNG.standard_normal((3, 5)).astype(np.float32),
               "h": RNG.standard_normal(7).astype(np.float16),
               "i": np.arange(6, dtype=np.int64).reshape(2, 3),
               "m": np.array([True, False]),
               "s": np.array(2.5, dtype=np.float64),
               "empty": np.zeros((0, 4), np.float32)}
    path = tmp_path / "t.safetensors"
    np_save_file(tensors, str(path), metadata={"format": "np", "note": "x"})
    with SafetensorsSource(path) as src:
        assert src.metadata == {"format": "np", "note": "x"}
        assert sorted(src.names()) == sorted(tensors)
        for name, want in tensors.items():
            info = src.info(name)
            got = src.read(name)
            assert (info.dtype, info.shape, info.nbytes) == (want.dtype.name, want.shape, want.nbytes)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
            assert not got.flags.writeable
        # zero copy: two reads are views of the same mapped bytes
        assert np.shares_memory(src.read("w"), src.read("w"))


def test_safetensors_bf16_and_f8_without_torch(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    path = tmp_path / "low.safetensors"
    values = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    save_file({"bf": values.to(torch.bfloat16), "f8": values.to(torch.float8_e4m3fn),
               "f8b": values.to(torch.float8_e5m2)}, str(path))
    bits_bf = values.to(torch.bfloat16).view(torch.int16).numpy()
    bits_f8 = values.to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    out = run_python(f"""
        import sys, numpy as np
        from bertconv.formats import open_source
        src = open_source({str(path)!r})
        bf, f8, f8b = src.read("bf"), src.read("f8"), src.read("f8b")
        print(src.info("bf").dtype, src.info("f8").dtype, src.info("f8b").dtype)
        np.save({str(tmp_path / 'bf.npy')!r}, bf.view(np.int16))
        np.save({str(tmp_path / 'f8.npy')!r}, f8.view(np.uint8))
        print("torch" in sys.modules, "tensorflow" in sys.modules)
    """)
    assert out.split() == ["bfloat16", "float8_e4m3fn", "float8_e5m2", "False", "False"]
    np.testing.assert_array_equal(np.load(tmp_path / "bf.npy"), bits_bf)
    np.testing.assert_array_equal(np.load(tmp_path / "f8.npy"), bits_f8)


def _raw_safetensors(path, header: dict | bytes, data: bytes = b"", header_len: int | None = None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw) if header_len is None else header_len))
        f.write(raw)
        f.write(data)
    return path


F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


@pytest.mark.parametrize("header, data, header_len, fragment, kind", [
    (b"", b"", 0, "not a JSON object", CheckpointFormatError),
    ({"a": F32}, b"\0" * 8, 10_000, "runs past the end", CorruptDataError),
    ({"a": F32}, b"\0" * 8, 200_000_000, "beyond the format's limit", CheckpointFormatError),
    (b"{not json}", b"", None, "not valid JSON", CheckpointFormatError),
    (b'{"a": 1, "a": 2}', b"", None, "duplicate key", CheckpointFormatError),
    (b"[1, 2]", b"", None, "not a JSON object", CheckpointFormatError),
    ({"a": entry("F17")}, b"\0" * 8, None, "dtype 'F17'", CheckpointFormatError),
    ({"a": entry(shape=(-2,))}, b"\0" * 8, None, "shape", CheckpointFormatError),
    ({"a": entry(offsets=(8, 0))}, b"\0" * 8, None, "data_offsets", CheckpointFormatError),
    ({"a": entry(shape=(3,))}, b"\0" * 8, None, "needs 12 bytes", CorruptDataError),
    ({"a": F32, "b": entry(offsets=(4, 12))}, b"\0" * 12, None, "overlaps", CorruptDataError),
    ({"a": F32, "b": entry(shape=(1,), offsets=(12, 16))}, b"\0" * 16, None, "gap", CorruptDataError),
    ({"a": F32}, b"\0" * 4, None, "truncated", CorruptDataError),
    ({"a": F32}, b"\0" * 12, None, "the file holds 12", CorruptDataError),
    ({"__metadata__": {"k": 1}, "a": F32}, b"\0" * 8, None, "__metadata__", CheckpointFormatError),
    ({"a": "F32"}, b"", None, "not an object", CheckpointFormatError),
])
def test_malformed_safetensors(tmp_path, header, data, header_len, fragment, kind):
    path = _raw_safetensors(tmp_path / "bad.safetensors", header, data, header_len)
    with pytest.raises(kind) as err:
        SafetensorsSource(path)
    assert fragment in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_too_short_and_missing(tmp_path):
    (tmp_path / "short.safetensors").write_bytes(b"\1\0")
    with pytest.raises(CheckpointFormatError, match="too short"):
        SafetensorsSource(tmp_path / "short.safetensors")
    with pytest.raises(InputError, match="no such file"):
        SafetensorsSource(tmp_path / "absent.safetensors")


def test_sharded_index(tmp_path):
    a = {"x": np.ones((2, 2), np.float32)}
    b = {"y": np.arange(3, dtype=np.int32), "z": np.zeros(1, np.float16)}
    np_save_file(a, str(tmp_path / "model-00001-of-00002.safetensors"), metadata={"format": "pt"})
    np_save_file(b, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {"metadata": {"total_size": 26},
             "weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors",
                            "z": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with SafetensorsSource(tmp_path / "model.safetensors.index.json") as src:
        assert src.names() == ["x", "y", "z"]
        np.testing.assert_array_equal(src.read("y"), b["y"])
        assert src.metadata == {"format": "pt", "total_size": "26"}
    index["weight_map"]["y"] = "model-00001-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointFormatError, match="index says shard"):
        SafetensorsSource(tmp_path / "model.safetensors.index.json")


# ------------------------------------------------------------------------- safetensors writing
def _write(path, tensors, metadata=None):
    writer = SafetensorsWriter(path, [(n, a.dtype.name, a.shape) for n, a in tensors.items()], metadata=metadata)
    for name, array in tensors.items():
        writer.write(name, array)
    writer.close()


def test_writer_round_trip_bit_exact(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    kernel = RNG.standard_normal((6, 10)).astype(np.float32)
    tensors = {
        "transposed": kernel.T,                                   # strided view
        "bf16": RNG.standard_normal((5, 3)).astype(ml_dtypes.bfloat16),
        "bf16_t": RNG.standard_normal((4, 7)).astype(ml_dtypes.bfloat16).T,
        "f16": RNG.standard_normal((3, 3, 2)).astype(np.float16).transpose(2, 0, 1),
        "big_endian": RNG.standard_normal(5).astype(">f4"),
        "f64": np.array(np.pi),
        "i64": np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2],
        "empty": np.zeros((0, 3), np.float32),
        "flags": np.array([True, False, True]),
    }
    path = tmp_path / "w.safetensors"
    _write(path, tensors, metadata={"format": "pt", "k": "v"})

    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    assert header_len % 8 == 0
    assert list(json.loads(raw[8:8 + header_len]))[1:] == list(tensors)  # file order as declared

    loaded = load_file(str(path))
    for name, want in tensors.items():
        got = loaded[name]
        assert tuple(got.shape) == want.shape
        if want.dtype == ml_dtypes.bfloat16:
            assert got.dtype == torch.bfloat16
            np.testing.assert_array_equal(got.view(torch.int16).numpy(), np.ascontiguousarray(want).view(np.int16))
        else:
            np.testing.assert_array_equal(got.numpy(), want)
            assert got.numpy().dtype == want.dtype.newbyteorder("=")
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == {"format": "pt", "k": "v"}
        np.testing.assert_array_equal(f.get_tensor("f16"), tensors["f16"])
    with SafetensorsSource(path) as src:
        np.testing.assert_array_equal(src.read("bf16_t"), tensors["bf16_t"])


def test_writer_chunks_large_strided_tensors(tmp_path, monkeypatch):
    monkeypatch.setattr(safetensors_io, "CHUNK_BYTES", 64)  # many chunks, a partial last one
    base = RNG.standard_normal((37, 23)).astype(np.float32)
    cube = RNG.standard_normal((5, 4, 3)).astype(np.float32)
    tensors = {"t": base.T, "c": cube.transpose(2, 1, 0), "wide": base.T.copy()[:, ::-1]}
    _write(tmp_path / "c.safetensors", tensors)
    with SafetensorsSource(tmp_path / "c.safetensors") as src:
        for name, want in tensors.items():
            np.testing.assert_array_equal(src.read(name), want)


def test_writer_resumes_short_writes(tmp_path, monkeypatch):
    # A write call that writes less than asked (a signal, a full disk) is resumed where it
    # stopped; the file is the library's. (How much one call is handed: bench/properties.py.)
    calls = []
    real_pwrite = os.pwrite

    def short_pwrite(fd, data, offset):
        calls.append(len(data))
        return real_pwrite(fd, bytes(data)[:max(1, len(data) - 3)], offset)  # always 3 bytes short

    monkeypatch.setattr(safetensors_io.os, "pwrite", short_pwrite)
    tensors = {"small": RNG.standard_normal(3).astype(np.float32),
               "exact": RNG.standard_normal(10).astype(np.float32),
               "long": RNG.standard_normal((9, 7)).astype(np.float32),
               "strided": RNG.standard_normal((6, 5)).astype(np.float32).T}
    path = tmp_path / "pieces.safetensors"
    writer = SafetensorsWriter(path, [(n, "float32", a.shape) for n, a in tensors.items()])
    for name, array in tensors.items():
        if name == "long":
            writer.write_bytes(name, "float32", array.tobytes())
        else:
            writer.write(name, array)
    writer.close()
    assert len(calls) > len(tensors)  # every tensor took several calls
    with safe_open(str(path), framework="numpy") as f:
        for name, want in tensors.items():
            np.testing.assert_array_equal(f.get_tensor(name), want)


@pytest.mark.parametrize("action, fragment", [
    (lambda w: w.write("c", np.zeros(2, np.float32)), "not a declared tensor"),
    (lambda w: w.write("a", np.zeros(2, np.float64)), "dtype float64"),
    (lambda w: w.write("a", np.zeros(3, np.float32)), "shape (3,)"),
    (lambda w: (w.write("a", np.zeros(2, np.float32)), w.close()), "never written"),
])
def test_writer_refuses_and_removes_partial_file(tmp_path, action, fragment):
    path = tmp_path / "p.safetensors"
    writer = SafetensorsWriter(path, [("a", "float32", (2,)), ("b", "float32", (2,))])
    with pytest.raises(OutputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        action(writer)
    assert not path.exists()


def test_writer_places_tensors_in_any_order_from_several_threads(tmp_path):
    import threading

    tensors = {f"t{i}": RNG.standard_normal((i + 1, 7)).astype(np.float32) for i in range(24)}
    tensors["empty"] = np.zeros((0, 3), np.float32)
    path = tmp_path / "placed.safetensors"
    writer = SafetensorsWriter(path, [(n, "float32", a.shape) for n, a in tensors.items()], metadata={"k": "v"})
    names = list(tensors)[::-1]  # last declared first

    def put(share):
        for name in share:
            writer.write_bytes(name, "float32", tensors[name].tobytes())

    threads = [threading.Thread(target=put, args=(names[i::3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == {"k": "v"}
        for name, want in tensors.items():
            np.testing.assert_array_equal(f.get_tensor(name), want)


@pytest.mark.parametrize("action, fragment", [
    (lambda w: w.write_bytes("c", "float32", bytes(8)), "not a declared tensor"),
    (lambda w: w.write_bytes("a", "float16", bytes(8)), "dtype float16"),
    (lambda w: w.write_bytes("a", "float32", bytes(12)), "12 bytes"),
    (lambda w: (w.write_bytes("a", "float32", bytes(8)), w.write_bytes("a", "float32", bytes(8))), "twice"),
    (lambda w: (w.write_bytes("b", "float32", bytes(8)), w.close()), "never written"),
    (lambda w: (w.write("a", np.zeros(2, np.float32)), w.write_bytes("a", "float32", bytes(8))), "twice"),
])
def test_writer_by_place_refuses_and_removes_partial_file(tmp_path, action, fragment):
    path = tmp_path / "p.safetensors"
    writer = SafetensorsWriter(path, [("a", "float32", (2,)), ("b", "float32", (2,))])
    with pytest.raises(OutputError, match=fragment):
        action(writer)
    assert not path.exists()


def test_writer_refuses_bad_declarations(tmp_path):
    with pytest.raises(OutputError, match="twice"):
        SafetensorsWriter(tmp_path / "x", [("a", "float32", (1,)), ("a", "float32", (1,))])
    with pytest.raises(OutputError, match="cannot be stored"):
        SafetensorsWriter(tmp_path / "x", [("a", "string", (1,))])
    with pytest.raises(OutputError, match="strings to strings"):
        SafetensorsWriter(tmp_path / "x", [], metadata={"a": 1})
    assert not (tmp_path / "x").exists()


def test_writer_context_manager_aborts_on_error(tmp_path):
    path = tmp_path / "ctx.safetensors"
    with pytest.raises(RuntimeError):
        with SafetensorsWriter(path, [("a", "float32", (1,))]) as writer:
            writer.write("a", np.ones(1, np.float32))
            raise RuntimeError("boom")
    assert not path.exists()


STREAMING_SCRIPT = """
    import sys, numpy as np
    def status_mb(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024
    mode, path = sys.argv[1], sys.argv[2]
    count, rows, cols = 8, 2048, 2560          # 8 x 20 MiB float32 = 160 MiB
    def make(i):
        return np.full((rows, cols), i, np.float32)
    import safetensors.numpy, bertconv.formats.safetensors_io  # imports are not the writer's cost
    base = status_mb("VmRSS:")
    if mode == "stream":
        from bertconv.formats.safetensors_io import SafetensorsWriter
        w = SafetensorsWriter(path, [(f"t{i}", "float32", (cols, rows)) for i in range(count)])
        for i in range(count):
            w.write(f"t{i}", make(i).T)      # transposed view, as a converter writes kernels
        w.close()
    else:
        from safetensors.numpy import save_file
        save_file({f"t{i}": np.ascontiguousarray(make(i).T) for i in range(count)}, path)
    print(status_mb("VmHWM:") - base)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory is read from /proc")
def test_streaming_writer_peak_memory_is_about_one_tensor(tmp_path):
    script = tmp_path / "stream.py"
    script.write_text(textwrap.dedent(STREAMING_SCRIPT))

    def peak(mode):
        out = subprocess.run([sys.executable, str(script), mode, str(tmp_path / f"{mode}.safetensors")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return float(out.stdout.strip().splitlines()[-1])

    streamed = peak("stream")
    assert streamed < 60, f"streaming writer grew {streamed:.0f} MiB for 160 MiB of 20 MiB tensors"
    with SafetensorsSource(tmp_path / "stream.safetensors") as src:
        assert src.read("t7").shape == (2560, 2048) and float(src.read("t7")[5, 9]) == 7.0
    library = peak("library")
    assert library > 150 and streamed < library / 2, (streamed, library)


# ----------------------------------------------------------------------------------- torch .bin
def test_torch_bin_state_dicts(tmp_path):
    torch = pytest.importorskip("torch")
    from bertconv.formats.torch_bin import TorchBinSource
    g = torch.Generator().manual_seed(0)
    state = {"w": torch.randn(3, 4, generator=g), "wt": torch.randn(4, 3, generator=g).t(),
             "bf": torch.randn(5, generator=g).to(torch.bfloat16), "i": torch.arange(4),
             "p": torch.nn.Parameter(torch.ones(2))}
    torch.save(state, tmp_path / "plain.bin")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "nested.pt")
    torch.save({"model": state, "optimizer": {"lr": 0.1}}, tmp_path / "model_key.pth")
    legacy = {k: v for k, v in state.items() if k != "p"}
    torch.save(legacy, tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    for file in ("plain.bin", "nested.pt", "model_key.pth", "legacy.bin"):
        with TorchBinSource(tmp_path / file) as src:
            assert src.format_name == "torch-bin"
            for name in src.names():
                want = state[name].detach()
                got = src.read(name)
                assert src.info(name).shape == tuple(want.shape)
                if want.dtype == torch.bfloat16:
                    assert src.info(name).dtype == "bfloat16" and got.dtype == ml_dtypes.bfloat16
                    np.testing.assert_array_equal(got.view(np.int16), want.view(torch.int16).numpy())
                else:
                    np.testing.assert_array_equal(got, want.numpy())
            assert len(src) == (4 if file == "legacy.bin" else 5)


def test_torch_bin_refuses_code_running_pickle(tmp_path):
    torch = pytest.importorskip("torch")
    from bertconv.formats.torch_bin import TorchBinSource
    marker = tmp_path / "MARKER"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for legacy in (False, True):
        path = tmp_path / f"evil{int(legacy)}.bin"
        torch.save({"w": torch.ones(1), "x": Payload()}, path, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(CheckpointFormatError) as err:
            TorchBinSource(path)
        message = str(err.value)
        assert "refused" in message and "system" in message and "\n" not in message
        assert not marker.exists()


def test_torch_bin_refuses_non_state_dicts(tmp_path):
    torch = pytest.importorskip("torch")
    from bertconv.formats.torch_bin import TorchBinSource
    torch.save([torch.ones(1)], tmp_path / "list.bin")
    with pytest.raises(CheckpointFormatError, match="holds a list"):
        TorchBinSource(tmp_path / "list.bin")
    torch.save({"w": torch.ones(1), "step": 4}, tmp_path / "mixed.bin")
    with pytest.raises(CheckpointFormatError, match="'step'.*holds a int"):
        TorchBinSource(tmp_path / "mixed.bin")
    torch.save({"sparse": torch.eye(2).to_sparse()}, tmp_path / "sparse.bin")
    with TorchBinSource(tmp_path / "sparse.bin") as src:
        with pytest.raises(CheckpointFormatError, match="sparse_coo tensor cannot be read"):
            src.read("sparse")
    (tmp_path / "junk.bin").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointFormatError, match="not a readable PyTorch checkpoint"):
        TorchBinSource(tmp_path / "junk.bin")


# ------------------------------------------------------------------------------------ Keras h5
def _h5_fixture_module():
    spec = importlib.util.spec_from_file_location("make_h5_fixtures", FIXTURES / "make_h5_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_keras_h5_hf_layout_fixture():
    path = FIXTURES / "h5" / "tf_model.h5"
    if not path.is_file():
        missing_fixture("fixtures/h5/tf_model.h5 is missing: run `.venv/bin/python fixtures/make_h5_fixtures.py`")
    expected = _h5_fixture_module()
    with open_source(path.parent) as src:
        assert isinstance(src, KerasH5Source) and src.layout == "keras"
        assert len(src) == 5 + 16 * expected.LAYERS + 2 + 2 + 5
        name = "tf_bert_for_pre_training/bert/encoder/layer_._1/attention/self/query/kernel:0"
        assert src.info(name).shape == (expected.HIDDEN, expected.HIDDEN)
        assert src.info("tf_bert_for_pre_training/bert/embeddings/word_embeddings/weight:0").shape == (32, 8)
        # the committed file holds exactly what the generator writes
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            values = expected.write_hf_h5(os.path.join(tmp, "again.h5"))
        assert set(values) == set(src.names())
        for weight, want in values.items():
            got = src.read(weight)
            np.testing.assert_array_equal(got, want)
            assert not got.flags.writeable


def test_keras_h5_chunked_attributes_and_model_weights(tmp_path):
    path = tmp_path / "whole_model.h5"
    with h5py.File(path, "w") as f:
        weights = f.create_group("model_weights")
        weights.attrs["layer_names0"] = [b"dense"]
        weights.attrs["layer_names1"] = [b"norm"]
        dense = weights.create_group("dense")
        dense.attrs["weight_names0"] = [b"dense/kernel:0"]
        dense.attrs["weight_names1"] = [b"dense/bias:0"]
        dense.create_dataset("dense/kernel:0", data=np.arange(6, dtype=np.float32).reshape(2, 3))
        dense.create_dataset("dense/bias:0", data=np.ones(3, np.float64), compression="gzip")
        norm = weights.create_group("norm")
        norm.attrs["weight_names"] = [b"norm/gamma:0"]
        norm.create_dataset("norm/gamma:0", data=np.float32(2.0))
        f.create_group("optimizer_weights").create_dataset("Adam/iter:0", data=np.int64(5))
    with KerasH5Source(path) as src:
        assert src.names() == ["dense/bias:0", "dense/kernel:0", "norm/gamma:0"]
        np.testing.assert_array_equal(src.read("dense/kernel:0"), np.arange(6).reshape(2, 3))
        assert src.info("dense/bias:0").dtype == "float64"
        np.testing.assert_array_equal(src.read("dense/bias:0"), np.ones(3))
        assert src.read("norm/gamma:0").shape == () and float(src.read("norm/gamma:0")) == 2.0


def test_keras_h5_plain_tree_and_errors(tmp_path):
    path = tmp_path / "tree.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a/b/kernel:0", data=np.eye(2, dtype=np.float16))
        f.create_dataset("c", data=np.arange(3, dtype=">i4"))
        f.create_dataset("names", data=np.array([b"x", b"yy"]))
    with KerasH5Source(path) as src:
        assert src.layout == "tree" and src.names() == ["a/b/kernel:0", "c", "names"]
        assert src.info("a/b/kernel:0").dtype == "float16" and src.info("c").dtype == "int32"
        np.testing.assert_array_equal(src.read("c"), [0, 1, 2])
        assert src.info("names").dtype == "string" and list(src.read("names")) == [b"x", b"yy"]

    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        f.create_group("dense").attrs["weight_names"] = [b"dense/kernel:0"]
    with pytest.raises(CheckpointFormatError, match="has no dataset"):
        KerasH5Source(broken)
    (tmp_path / "fake.h5").write_bytes(b"\x89HDF but not really")
    with pytest.raises(CheckpointFormatError, match="not a readable HDF5"):
        KerasH5Source(tmp_path / "fake.h5")


# ---------------------------------------------------------------------------------- dispatch
def test_open_source_dispatch(tmp_path):
    torch = pytest.importorskip("torch")
    np_save_file({"w": np.ones(2, np.float32)}, str(tmp_path / "x.safetensors"))
    torch.save({"w": torch.ones(2)}, tmp_path / "x.bin")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("w", data=np.ones(2, np.float32))

    cases = {}
    for name, fmt in [("model.safetensors", "safetensors"), ("pytorch_model.bin", "torch-bin"),
                      ("tf_model.h5", "keras-h5")]:
        d = tmp_path / fmt
        d.mkdir()
        source_file = {"safetensors": "x.safetensors", "torch-bin": "x.bin", "keras-h5": "x.h5"}[fmt]
        (d / name).write_bytes((tmp_path / source_file).read_bytes())
        (d / "config.json").write_text("{}")
        cases[d] = fmt                      # a Hugging Face style directory
        cases[d / name] = fmt               # the file itself
    for source_file, fmt in [("x.bin", "torch-bin"), ("x.h5", "keras-h5")]:
        bare = tmp_path / f"no_suffix_{fmt}"
        bare.write_bytes((tmp_path / source_file).read_bytes())
        cases[bare] = fmt                   # recognised by its magic bytes
    other = tmp_path / "other"
    other.mkdir()
    (other / "weights.safetensors").write_bytes((tmp_path / "x.safetensors").read_bytes())
    cases[other] = "safetensors"            # a directory with a single .safetensors file

    for path, fmt in cases.items():
        assert detect_format(path)[0] == fmt, path
        with open_source(path) as src:
            assert src.format_name == fmt
            np.testing.assert_array_equal(src.read("w"), [1, 1])
            if path.is_dir():
                assert src.directory == path
            if path.name in ("model.safetensors", "pytorch_model.bin", "tf_model.h5"):
                assert src.sidecar("config.json") == path.parent / "config.json"


def test_writer_reserves_the_file_and_a_full_disk_fails_before_writing(tmp_path, monkeypatch):
    from bertconv.errors import OutputError
    from bertconv.formats import safetensors_io
    entries = [("a", "float32", (3, 5)), ("b", "float16", (7,))]
    path = tmp_path / "m.safetensors"
    writer = safetensors_io.SafetensorsWriter(path, entries)
    reserved = path.stat().st_size
    writer.write("a", np.ones((3, 5), np.float32))
    writer.write("b", np.zeros(7, np.float16))
    writer.close()
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    assert path.stat().st_size == 8 + header_len + 3 * 5 * 4 + 7 * 2
    if sys.platform.startswith("linux"):  # the whole file was reserved before any tensor was written
        assert reserved == path.stat().st_size
    with SafetensorsSource(path) as source:
        assert source.read("a").sum() == 15
    monkeypatch.setattr(safetensors_io, "_preallocate", lambda fd, size: "No space left on device")
    with pytest.raises(OutputError, match="No space left on device"):
        safetensors_io.SafetensorsWriter(tmp_path / "full.safetensors", entries)
    assert not (tmp_path / "full.safetensors").exists()


def test_tf_bundle_forms_dispatch(tmp_path):
    """The names a TensorFlow checkpoint goes by in the wild (fixtures/make_reader_fixtures.py)."""
    reader = FIXTURES / "reader"
    for path in (reader / "keras_tuner" / "checkpoint",         # prefix and state file share a name
                 reader / "empty_prefix" / ".index",
                 reader / "empty_prefix" / ".data-00000-of-00001",
                 reader / "steps" / "model.ckpt",               # the stem of model.ckpt-N
                 reader / "steps" / "checkpoint",               # a state file on its own
                 reader / "steps"):
        assert detect_format(path)[0] == "tf-bundle", path
    with open_source(reader / "steps" / "checkpoint") as src:
        assert src.index_path == reader / "steps" / "model.ckpt-300.index"
    np_save_file({"w": np.ones(2, np.float32)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(InputError, match="a step is chosen among TensorFlow checkpoints"):
        open_source(tmp_path / "x.safetensors", step=3)
