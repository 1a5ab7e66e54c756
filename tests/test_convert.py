"""tf2pt on checkpoints written by real TensorFlow in Google's layout."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from bertconv.conversion import convert
from bertconv.errors import ConfigError, InputError, MappingError, OutputError, VocabError
from bertconv.families.bert.layouts.google import MAPPING
from bertconv.formats import open_source

from .conftest import BERT_FIXTURES, fixture_dir

tf = pytest.importorskip("tensorflow", reason="TensorFlow is the oracle for checkpoint contents")

EXPECTED = {
    "bert_pretrain": ("BertForPreTraining", ["mlm", "nsp"]),
    "bert_classifier": ("BertForSequenceClassification", ["classifier"]),
    "bert_squad": ("BertForQuestionAnswering", ["squad"]),
    "bert_adam": ("BertForPreTraining", ["mlm", "nsp"]),
    "bert_noheads": ("BertModel", []),
}


def load_safetensors(path):
    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_tensor_bit_exact(name, tmp_path):
    src = fixture_dir(name)
    report = convert(src, tmp_path / "out", validate=False)
    arch, heads = EXPECTED[name]
    assert report.architecture == arch
    assert report.heads == heads
    written, metadata = load_safetensors(tmp_path / "out" / "model.safetensors")
    assert metadata["format"] == "pt"
    assert metadata["bertconv.architecture"] == arch
    reader = tf.train.load_checkpoint(str(src / "bert_model.ckpt"))
    model_names = []
    for tf_name in reader.get_variable_to_shape_map():
        m = MAPPING.to_target(tf_name)
        if m is None or tf_name in report.heads_dropped:
            continue
        target = m.target if arch != "BertModel" else m.target.removeprefix("bert.")
        expected = reader.get_tensor(tf_name)
        if m.rule.transform == "transpose":
            expected = expected.T
        assert written[target].dtype == np.float32
        np.testing.assert_array_equal(written[target], expected, err_msg=tf_name)
        model_names.append(target)
    assert sorted(model_names) == sorted(written)
    assert report.tensors_written == len(written)


def test_squad_pooler_is_kept_though_the_class_ignores_it(tmp_path):
    """BertForQuestionAnswering has no pooler, but the trained one is still written (equal to the
    source) so that AutoModel on the same directory is complete; the report says the class
    ignores it, and the conversion's own check runs over it."""
    report = convert(fixture_dir("bert_squad"), tmp_path / "out")
    assert report.architecture == "BertForQuestionAnswering" and report.validation.passed
    assert report.heads_dropped == []
    assert report.ignored_by_class == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    assert any(line.startswith("kept ") and "bert.pooler.dense.weight" in line for line in report.summary_lines())
    written, _ = load_safetensors(tmp_path / "out" / "model.safetensors")
    with open_source(fixture_dir("bert_squad")) as src:
        np.testing.assert_array_equal(written["bert.pooler.dense.weight"], src.read("bert/pooler/dense/kernel").T)
        np.testing.assert_array_equal(written["bert.pooler.dense.bias"], src.read("bert/pooler/dense/bias"))


def test_training_state_dropped_not_mapped(tmp_path):
    report = convert(fixture_dir("bert_classifier"), tmp_path / "out", validate=False)
    assert report.training_state_dropped.get("adam_m") == report.training_state_dropped.get("adam_v") > 0
    assert report.training_state_dropped.get("global_step") == 1
    report = convert(fixture_dir("bert_adam"), tmp_path / "out2", validate=False)
    assert report.training_state_dropped.get("Adam") == report.training_state_dropped.get("Adam_1") > 0


def test_config_json_faithful_activation_and_labels(tmp_path):
    convert(fixture_dir("bert_classifier"), tmp_path / "out", labels=["neg", "neu", "pos"], validate=False)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"] == "bert"
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["hidden_act"] == "gelu_new"
    assert config["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    convert(fixture_dir("bert_classifier"), tmp_path / "exact", gelu="exact", validate=False)
    assert json.loads((tmp_path / "exact" / "config.json").read_text())["hidden_act"] == "gelu"


def test_wrong_label_count(tmp_path):
    with pytest.raises(InputError, match="labels"):
        convert(fixture_dir("bert_classifier"), tmp_path / "out", labels=["a", "b"], validate=False)
    assert not (tmp_path / "out").exists()


def test_head_choices(tmp_path):
    report = convert(fixture_dir("bert_pretrain"), tmp_path / "base", head="base", validate=False)
    assert report.architecture == "BertModel" and len(report.heads_dropped) > 0
    written, _ = load_safetensors(tmp_path / "base" / "model.safetensors")
    assert "embeddings.word_embeddings.weight" in written and not any(k.startswith("cls.") for k in written)
    report = convert(fixture_dir("bert_pretrain"), tmp_path / "mlm", head="mlm", validate=False)
    assert report.architecture == "BertForMaskedLM"
    with pytest.raises(MappingError, match="no classifier head"):
        convert(fixture_dir("bert_pretrain"), tmp_path / "cls", head="classifier", validate=False)
    assert not (tmp_path / "cls").exists()


def test_safetensors_format_and_dtypes(tmp_path):
    import ml_dtypes
    src = fixture_dir("bert_pretrain")
    convert(src, tmp_path / "m32.safetensors", format="safetensors", validate=False)
    ref, meta = load_safetensors(tmp_path / "m32.safetensors")
    assert json.loads(meta["bertconv.config"])["architectures"] == ["BertForPreTraining"]
    convert(src, tmp_path / "m16.safetensors", format="safetensors", dtype="float16", validate=False)
    half, _ = load_safetensors(tmp_path / "m16.safetensors")
    for k in ref:
        np.testing.assert_array_equal(half[k], ref[k].astype(np.float16))
    convert(src, tmp_path / "bf.safetensors", format="safetensors", dtype="bfloat16", validate=False)
    from safetensors.torch import load_file
    bf = load_file(str(tmp_path / "bf.safetensors"))
    for k in ref:
        got = bf[k].view(dtype=__import__("torch").int16).numpy().view(ml_dtypes.bfloat16)
        np.testing.assert_array_equal(got, ref[k].astype(ml_dtypes.bfloat16))


def test_existing_output_refused(tmp_path):
    out = tmp_path / "out"
    convert(fixture_dir("bert_noheads"), out, validate=False)
    # the API names its own argument; the command line its option (test_cli's one-line errors)
    with pytest.raises(OutputError, match="overwrite=True") as refused:
        convert(fixture_dir("bert_noheads"), out, validate=False)
    assert "--overwrite" in refused.value.render(cli=True) and "--overwrite" not in str(refused.value)
    convert(fixture_dir("bert_noheads"), out, validate=False, overwrite=True)
    assert (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_config_contradiction_named(copy_fixture, tmp_path):
    src = copy_fixture("bert_pretrain")
    cfg = json.loads((src / "bert_config.json").read_text())
    cfg["intermediate_size"] += 1
    (src / "bert_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"intermediate_size is \d+ in the config but \d+ in the weights"):
        convert(src, tmp_path / "out", validate=False)
    assert not (tmp_path / "out").exists()


def test_missing_config_inferred(copy_fixture, tmp_path):
    src = copy_fixture("bert_pretrain")
    declared = json.loads((src / "bert_config.json").read_text())
    (src / "bert_config.json").unlink()
    report = convert(src, tmp_path / "out", validate=False)
    assert report.config_origin == "inferred from the weights"
    assert any("inferred" in n for n in report.notes)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size"):
        assert config[key] == declared[key]


def test_missing_vocab_writes_no_tokenizer(copy_fixture, tmp_path):
    src = copy_fixture("bert_pretrain")
    (src / "vocab.txt").unlink()
    report = convert(src, tmp_path / "out", validate=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "config.json",
                                                                       "model.safetensors"]
    assert any("no vocab.txt" in n for n in report.notes)


def test_vocab_size_mismatch(copy_fixture, tmp_path):
    src = copy_fixture("bert_pretrain")
    with open(src / "vocab.txt", "a") as f:
        f.write("extra_token\n")
    with pytest.raises(VocabError, match="tokens but the word embeddings have"):
        convert(src, tmp_path / "out", validate=False)


def test_vocab_without_special_tokens_stops_the_conversion(copy_fixture, tmp_path):
    # found by the thread that writes the tokenizer files while the weights stream: its error is
    # the conversion's, and nothing is published
    src = copy_fixture("bert_pretrain")
    vocab = src / "vocab.txt"
    vocab.write_text(vocab.read_text(encoding="utf-8").replace("[MASK]\n", "[MASQUE]\n"), encoding="utf-8")
    with pytest.raises(VocabError, match=r"lacks the special tokens \[MASK\]"):
        convert(src, tmp_path / "out", validate=False)
    assert [p.name for p in tmp_path.iterdir()] == [src.name]  # no output, no temporary left


def test_unknown_tensor_is_an_error(tmp_path):
    from bertconv.formats.tf_bundle_writer import write_tf_bundle
    with open_source(fixture_dir("bert_noheads")) as src:
        tensors = [(n, np.asarray(src.read(n))) for n in src.names()]
    tensors.append(("bert/encoder/mystery/kernel", np.zeros((2, 2), np.float32)))
    (tmp_path / "ck").mkdir()
    write_tf_bundle(tmp_path / "ck" / "bert_model.ckpt", tensors)
    for f in ("bert_config.json", "vocab.txt"):
        (tmp_path / "ck" / f).write_bytes((fixture_dir("bert_noheads") / f).read_bytes())
    with pytest.raises(MappingError, match="mystery"):
        convert(tmp_path / "ck", tmp_path / "out", validate=False)
    report = convert(tmp_path / "ck", tmp_path / "out", validate=False, allow_unknown=True)
    assert report.unknown_dropped == ["bert/encoder/mystery/kernel"]


def test_missing_expected_tensor_named(tmp_path):
    from bertconv.formats.tf_bundle_writer import write_tf_bundle
    with open_source(fixture_dir("bert_noheads")) as src:
        tensors = [(n, np.asarray(src.read(n))) for n in src.names()
                   if n != "bert/encoder/layer_1/output/dense/bias"]
    (tmp_path / "ck").mkdir()
    write_tf_bundle(tmp_path / "ck" / "bert_model.ckpt", tensors)
    (tmp_path / "ck" / "bert_config.json").write_bytes((fixture_dir("bert_noheads") / "bert_config.json").read_bytes())
    with pytest.raises(MappingError, match="layer_1/output/dense/bias"):
        convert(tmp_path / "ck", tmp_path / "out", validate=False)


# -- the compiled data path (checksum and transpose in one pass, no NumPy) and the NumPy one ------
conversion_module = __import__("bertconv.conversion.datapath", fromlist=["datapath"])
needs_compiled_path = pytest.mark.skipif(
    not conversion_module.compiled_data_path_available(),
    reason="no compiled kernels, or no CRC-32C instruction on this CPU: only the NumPy path runs")


@needs_compiled_path
@pytest.mark.parametrize("name,options", [
    ("bert_pretrain", {}), ("bert_adam", {}), ("bert_squad", {"format": "safetensors"}),
    ("bert_classifier", {"dtype": "bfloat16"}), ("bert_noheads", {"dtype": "float16"}),
    ("garden_v2", {}), ("garden_v3", {}), ("albert_pretrain", {}), ("electra_small", {}),
])
def test_compiled_and_numpy_paths_write_the_same_bytes(name, options, tmp_path, monkeypatch):
    from .conftest import FIXTURES

    src = fixture_dir(name) if name in BERT_FIXTURES else FIXTURES / name
    out = "model.safetensors" if options.get("format") == "safetensors" else "out"
    (tmp_path / "compiled").mkdir()
    (tmp_path / "numpy").mkdir()
    convert(src, tmp_path / "compiled" / out, validate=False, **options)
    monkeypatch.setattr(conversion_module, "compiled_data_path_available", lambda: False)
    convert(src, tmp_path / "numpy" / out, validate=False, **options)
    weights = "" if options.get("format") == "safetensors" else "model.safetensors"
    compiled = (tmp_path / "compiled" / out / weights).read_bytes()
    assert compiled == (tmp_path / "numpy" / out / weights).read_bytes()


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("tensor", ["bert/encoder/layer_1/intermediate/dense/kernel",
                                    "bert/embeddings/LayerNorm/gamma"])
def test_damaged_tensor_bytes_stop_the_conversion(tensor, compiled, copy_fixture, tmp_path, monkeypatch):
    from bertconv.errors import CorruptDataError
    from bertconv.formats.tf_bundle import TFBundleSource

    if compiled and not conversion_module.compiled_data_path_available():
        pytest.skip("no compiled kernels, or no CRC-32C instruction on this CPU")
    monkeypatch.setattr(conversion_module, "compiled_data_path_available", lambda: compiled)
    src = copy_fixture("bert_pretrain")
    with TFBundleSource(src) as source:
        entry = source._entries[tensor.encode()]
        data = source.shard_path(entry.shard_id)
    damaged = bytearray(data.read_bytes())
    damaged[entry.offset + entry.size // 2] ^= 0x10
    data.write_bytes(bytes(damaged))
    with pytest.raises(CorruptDataError, match="crc32c mismatch") as caught:
        convert(src, tmp_path / "out", validate=False)
    assert caught.value.tensor == tensor
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == [src]  # no temporary directory left beside it


@pytest.mark.parametrize("name, kinds", [
    # tf.compat.v1.train.AdamOptimizer(name="BERTAdam"): slots named after the optimizer
    ("bert_bertadam", {"BERTAdam": 46, "BERTAdam_1": 46, "beta1_power": 1, "beta2_power": 1, "global_step": 1}),
    # NVIDIA DeepLearningExamples: gradient accumulation and dynamic loss scaling
    ("bert_nvidia_state", {"accum": 46, "adam_m": 46, "adam_v": 46, "batch_finite": 1, "current_loss_scale": 1,
                           "global_step": 1, "good_steps": 1, "local_step": 1}),
    # its manual_fp16 path: contrib's loss-scale manager
    ("bert_nvidia_fp16", {"adam_m": 39, "adam_v": 39, "bad_steps": 1, "global_step": 1, "good_steps": 1,
                          "loss_scale": 1}),
])
def test_other_training_stacks_state_is_recognised_by_rule(name, kinds, tmp_path):
    report = convert(fixture_dir(name), tmp_path / "out")
    assert report.training_state_dropped == kinds and report.unknown_dropped == []
    assert report.validation.passed


def test_a_slot_must_have_its_weights_shape(copy_fixture, tmp_path):
    # beside a real weight but of another shape: not a slot, whatever its name
    import numpy as np

    from bertconv.formats.tf_bundle_writer import write_tf_bundle

    src = copy_fixture("bert_pretrain")
    with open_source(src) as checkpoint:
        tensors = {n: np.array(checkpoint.read(n)) for n in checkpoint.names()}
    tensors["bert/pooler/dense/kernel/adam_m"] = np.zeros(3, np.float32)
    write_tf_bundle(src / "bert_model.ckpt", sorted(tensors.items()), overwrite=True)
    with pytest.raises(MappingError, match="bert/pooler/dense/kernel/adam_m"):
        convert(src, tmp_path / "out", validate=False)
