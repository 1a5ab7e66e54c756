"""Bad input at the conversion level: each case is exit code 2, one line naming the file and the
problem, no traceback, and nothing left behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bertconv.cli import main

from .conftest import ROOT, fixture_dir


def convert_cli(capsys, src, out, *extra):
    rc = main(["tf2pt", str(src), str(out), *map(str, extra)])
    _, err = capsys.readouterr()
    return rc, err.strip()


def assert_clean_failure(rc, err, out, *needles):
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("bertconv: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if ".bertconv-tmp-" in p.name]
    assert leftovers == []


CONFIG_CASES = {
    "malformed": ('{"hidden_size": 32,', "malformed JSON"),
    "not_object": ("[1, 2]", "expected a JSON object"),
    "missing_fields": ('{"hidden_size": 32}', "missing field(s)"),
    "wrong_type": (None, "must be an integer"),
    "contradiction": (None, "hidden_size is 48 in the config but 32 in the weights"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config(case, copy_fixture, tmp_path, capsys):
    src = copy_fixture("bert_pretrain")
    text, needle = CONFIG_CASES[case]
    if text is None:
        cfg = json.loads((src / "bert_config.json").read_text())
        if case == "wrong_type":
            cfg["num_hidden_layers"] = "two"
        else:
            cfg["hidden_size"] = 48
            cfg["num_attention_heads"] = 4
        text = json.dumps(cfg)
    (src / "bert_config.json").write_text(text)
    out = tmp_path / "out"
    rc, err = convert_cli(capsys, src, out)
    assert_clean_failure(rc, err, out, "bert_config.json", needle)


VOCAB_CASES = {
    "empty": ("", "the vocabulary is empty"),
    "duplicates": (None, "duplicate tokens"),
    "short": (None, "tokens but the word embeddings have"),
    "binary": (b"\xff\xfe\x00garbage", "not UTF-8"),
}


@pytest.mark.parametrize("case", list(VOCAB_CASES))
def test_bad_vocab(case, copy_fixture, tmp_path, capsys):
    src = copy_fixture("bert_pretrain")
    content, needle = VOCAB_CASES[case]
    lines = (src / "vocab.txt").read_text().splitlines()
    if case == "duplicates":
        content = "\n".join(lines[:-1] + [lines[10]]) + "\n"
    elif case == "short":
        content = "\n".join(lines[:-3]) + "\n"
    (src / "vocab.txt").write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out"
    rc, err = convert_cli(capsys, src, out)
    assert_clean_failure(rc, err, out, "vocab.txt", needle)


def test_unrelated_model(tmp_path, capsys):
    from bertconv.formats.tf_bundle_writer import write_tf_bundle
    (tmp_path / "resnet").mkdir()
    write_tf_bundle(tmp_path / "resnet" / "model.ckpt", [
        ("resnet/conv1/kernel", np.ones((3, 3, 3, 8), np.float32)),
        ("resnet/fc/bias", np.ones((10,), np.float32)),
    ])
    out = tmp_path / "out"
    rc, err = convert_cli(capsys, tmp_path / "resnet", out)
    assert_clean_failure(rc, err, out, "no BERT-family tensors")


def test_output_exists_or_wrong_kind(tmp_path, capsys):
    src = fixture_dir("bert_noheads")
    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    rc, err = convert_cli(capsys, src, a_file)
    assert rc == 2 and "is a file" in err and a_file.read_text() == "mine"
    rc, err = convert_cli(capsys, src, a_file / "out")
    assert rc == 2 and "not a directory" in err
    a_dir = tmp_path / "dir"
    a_dir.mkdir()
    rc, err = convert_cli(capsys, src, a_dir, "--format", "safetensors")
    assert rc == 2 and "is a directory" in err
    rc, err = convert_cli(capsys, src, tmp_path / "missing" / "out")
    assert rc == 2 and "parent directory does not exist" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_output_not_writable(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    rc, err = convert_cli(capsys, fixture_dir("bert_noheads"), locked / "out")
    assert rc == 2 and "not writable" in err


def test_output_directory_immutable(tmp_path, capsys):
    """Even root cannot create files in a directory marked immutable (chattr +i)."""
    import shutil
    locked = tmp_path / "locked"
    locked.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(locked)]).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        for fmt in ("hf", "safetensors"):
            rc, err = convert_cli(capsys, fixture_dir("bert_noheads"), locked / "out", "--format", fmt)
            assert rc == 2 and ("not writable" in err or "cannot write here" in err), err
            assert len(err.splitlines()) == 1
    finally:
        subprocess.run(["chattr", "-i", str(locked)])
    assert list(locked.iterdir()) == []


def test_sigkill_mid_write_leaves_nothing(tmp_path):
    """Kill a conversion while it writes; the target must not exist; a re-run succeeds."""
    from bertconv.formats.tf_bundle_writer import write_tf_bundle
    hidden, inter, vocab, layers = 384, 1536, 30000, 4
    rng = np.random.default_rng(0)

    def w(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    tensors = [("bert/embeddings/word_embeddings", w(vocab, hidden)),
               ("bert/embeddings/position_embeddings", w(512, hidden)),
               ("bert/embeddings/token_type_embeddings", w(2, hidden)),
               ("bert/embeddings/LayerNorm/gamma", w(hidden)), ("bert/embeddings/LayerNorm/beta", w(hidden)),
               ("bert/pooler/dense/kernel", w(hidden, hidden)), ("bert/pooler/dense/bias", w(hidden))]
    for i in range(layers):
        p = f"bert/encoder/layer_{i}/"
        for part in ("attention/self/query", "attention/self/key", "attention/self/value", "attention/output/dense"):
            tensors += [(p + part + "/kernel", w(hidden, hidden)), (p + part + "/bias", w(hidden))]
        tensors += [(p + "intermediate/dense/kernel", w(hidden, inter)), (p + "intermediate/dense/bias", w(inter)),
                    (p + "output/dense/kernel", w(inter, hidden)), (p + "output/dense/bias", w(hidden))]
        for ln in ("attention/output/LayerNorm", "output/LayerNorm"):
            tensors += [(p + ln + "/gamma", w(hidden)), (p + ln + "/beta", w(hidden))]
    src = tmp_path / "big"
    src.mkdir()
    write_tf_bundle(src / "bert_model.ckpt", tensors)
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "import sys; from bertconv.cli import main; sys.exit(main(sys.argv[1:]))",
           "tf2pt", str(src), str(out), "--no-validate", "-q"]
    killed_while_writing = False
    for _ in range(10):  # the write window is short; try a few times to land the kill inside it
        proc = subprocess.Popen(cmd, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(".bertconv-tmp-" in p.name for p in tmp_path.iterdir()):
                proc.send_signal(signal.SIGKILL)
                killed_while_writing = True
                break
            time.sleep(0.0005)
        proc.wait()
        assert not out.exists() or not killed_while_writing
        if killed_while_writing:
            break
        if out.exists():
            import shutil
            shutil.rmtree(out)
    assert killed_while_writing, "never caught the conversion mid-write"
    assert not out.exists()
    assert subprocess.run(cmd, cwd=ROOT).returncode == 0
    assert (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir() if ".bertconv-tmp-" in p.name] == []
