"""CANINE: checkpoints written by google-research/language's own CANINE code
(fixtures/make_canine_fixtures.py: a release-style model and a TyDi QA fine-tune with its Adam
slots) convert to directories that carry CANINE's own modeling code; bertconv's model, its
float64 reference and transformers (through trust_remote_code, in a fresh process) meet the
original code's outputs, on rows whose padding fills whole local-attention windows."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bertconv import outputs as out
from bertconv.comparison import diff
from bertconv.conversion import convert
from bertconv.families import get_family
from bertconv.inspection import inspect_checkpoint
from bertconv.settings import preparer
from bertconv.validation import validate

from .conftest import FIXTURES, missing_fixture
from .remote_code_run import TOLERANCE, imported_modules, run_remote

#: fixture -> (architecture, the auto class that loads it)
FIXTURE_CLASSES = {"canine_model": ("CanineModel", "AutoModel"),
                   "canine_tydi": ("CanineForTyDiQA", "AutoModelForQuestionAnswering")}
INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not (path / "golden.npz").is_file():
        missing_fixture(f"fixture {name} is missing: run fixtures/make_canine_fixtures.py")
    return path


def golden(name: str) -> dict:
    return dict(np.load(fixture(name) / "golden.npz"))


def worst_gap(ours: np.ndarray, gold: np.ndarray, attended: np.ndarray) -> float:
    """Max abs difference over attended characters (every position for molecule- and row-level outputs)."""
    gap = np.abs(np.asarray(ours, np.float64) - gold.astype(np.float64))
    return float((gap[attended] if gap.shape[:2] == attended.shape else gap).max())


@pytest.fixture(scope="module")
def conversions(tmp_path_factory):
    made = {}
    for name in sorted(FIXTURE_CLASSES):
        output = tmp_path_factory.mktemp(name) / "hf"
        made[name] = (name, fixture(name), output, convert(fixture(name), output))
    output = tmp_path_factory.mktemp("canine_base") / "hf"
    made["base"] = ("canine_tydi", fixture("canine_tydi"), output, convert(fixture("canine_tydi"), output, head="base"))
    return made


@pytest.fixture(params=sorted(FIXTURE_CLASSES))
def converted(request, conversions):
    return conversions[request.param]


@pytest.fixture(scope="module")
def remote_results(conversions, tmp_path_factory):
    names = [*sorted(FIXTURE_CLASSES), "base"]
    checks = [(conversions[n][2], conversions[n][1] / "golden.npz",
               FIXTURE_CLASSES[n][1] if n in FIXTURE_CLASSES else "AutoModel") for n in names]
    return dict(zip(names, run_remote(checks, tmp_path_factory.mktemp("remote"))))


def test_the_padding_fills_whole_windows():
    """Rows 1 and 2 end one or two characters before a window boundary of the fixtures' stride 8:
    the windows after hold only padding, and the upsampling convolution reaches them from the
    last real characters."""
    gold = golden("canine_model")
    config = json.loads((fixture("canine_model") / "canine_config.json").read_text())
    stride = config["local_transformer_stride"]
    lengths = gold["attention_mask"].sum(axis=1)
    assert lengths.tolist() == [40, 23, 15] and stride == 8
    reach = config["upsampling_kernel_size"] - 1 - (config["upsampling_kernel_size"] - 1) // 2
    for length in lengths[1:]:
        boundary = -(-length // stride) * stride
        assert boundary < 40 and length - 1 + reach >= boundary
    assert set(np.unique(gold["token_type_ids"][gold["attention_mask"] == 1])) == {0, 1}


def test_converts_with_its_own_modeling_code(converted):
    name, _, output, report = converted
    architecture, auto = FIXTURE_CLASSES[name]
    assert (report.family, report.layout, report.architecture) == ("canine", "google_canine", architecture)
    assert report.validation is not None and report.validation.passed
    config = json.loads((output / "config.json").read_text())
    assert config["model_type"] == "canine" and config["architectures"] == [architecture]
    # CANINE's "gelu" is the tanh form; the position table keeps the original's max_positions rows
    assert config["hidden_act"] == "gelu_new" and config["layer_norm_eps"] == 1e-12
    assert config["max_position_embeddings"] == 48 and config["num_hash_buckets"] == 64
    assert (config["num_hash_functions"], config["downsampling_rate"], config["local_transformer_stride"]) == (4, 4, 8)
    assert config["auto_map"][auto] == f"modeling_canine.{architecture}"
    assert {"modeling_canine.py", "configuration_canine.py", "tokenizer_config.json"} <= set(report.files)
    # the model card loads it as transformers must, through its own code
    assert f"transformers.{auto}.from_pretrained(" in (output / "README.md").read_text()
    assert "trust_remote_code=True" in (output / "README.md").read_text()


def test_adam_slots_are_training_state(converted):
    name, _, _, report = converted
    expected = {"global_step": 1, "adam_m": 86, "adam_v": 86} if name == "canine_tydi" else {}
    assert report.training_state_dropped == expected and not report.unknown_dropped


def test_each_head_meets_the_original(converted):
    """bertconv's model of the converted directory, float32, against the original code's outputs."""
    from bertconv.runtime import load_model, run_outputs

    name, _, output, _ = converted
    gold = golden(name)
    model = load_model(output, device="cpu")
    ours = run_outputs(model, {k: gold[k] for k in INPUTS})
    attended = gold["attention_mask"].astype(bool)
    expected = {k for k in gold if k not in INPUTS}
    assert expected <= set(ours)
    for key in sorted(expected):
        assert worst_gap(ours[key], gold[key], attended) < TOLERANCE, key


def test_transformers_runs_it_through_trust_remote_code(converted, remote_results):
    name, _, _, _ = converted
    result = remote_results[name]
    assert result["class"] == FIXTURE_CLASSES[name][0] and result["module"].startswith("transformers_modules")
    heads = {"canine_model": set(), "canine_tydi": {out.SPAN_LOGITS, "answer_type_logits"}}[name]
    assert set(result["worst"]) >= {"embeddings", "layer_0", "layer_1", "sequence_output", "pooled_output"} | heads
    assert max(result["worst"].values()) < TOLERANCE, result


def test_the_fine_tunes_encoder_loads_through_automodel(remote_results):
    result = remote_results["base"]
    assert result["class"] == "CanineModel"
    assert max(result["worst"].values()) < TOLERANCE, result


def test_transformers_own_canine_computes_something_else_here(conversions):
    """Why the directory carries CANINE's own code: transformers' CanineModel, given the same
    weights (its position table padded to num_hash_buckets rows), meets the original on the row
    without padding and misses it on the rows whose padding fills whole windows."""
    transformers = pytest.importorskip("transformers")
    import torch
    from safetensors.torch import load_file

    _, _, output, _ = conversions["canine_model"]
    gold = golden("canine_model")
    config = json.loads((output / "config.json").read_text())
    stock_config = transformers.CanineConfig(**{k: v for k, v in config.items()
                                                if k not in ("auto_map", "architectures", "model_type")})
    stock = transformers.CanineModel(stock_config).eval()
    weights = load_file(output / "model.safetensors")
    table = weights["char_embeddings.char_position_embeddings.weight"]
    weights["char_embeddings.char_position_embeddings.weight"] = torch.cat(
        [table, torch.zeros(stock_config.num_hash_buckets - table.shape[0], table.shape[1])])
    stock.load_state_dict(weights, strict=False)
    with torch.no_grad():
        sequence = stock(**{k: torch.tensor(gold[k]) for k in INPUTS}).last_hidden_state.numpy()
    attended = gold["attention_mask"].astype(bool)
    gaps = [worst_gap(sequence[b][attended[b]], gold["sequence_output"][b][attended[b]], attended[b][attended[b]])
            for b in range(3)]
    assert gaps[0] < TOLERANCE and min(gaps[1:]) > 1e-3, gaps


def test_the_reference_meets_the_original(converted):
    from bertconv.formats import open_source

    name, source, _, _ = converted
    gold = golden(name)
    family = get_family("canine")
    config = family.layouts[0].read_config(source / "canine_config.json", {},
                                           prepare=preparer(family, None, []))
    with open_source(source) as weights:
        ours = family.reference(weights, config, {k: gold[k] for k in INPUTS})
    attended = gold["attention_mask"].astype(bool)
    assert {k for k in gold if k not in INPUTS} <= set(ours)
    for key in gold:
        if key not in INPUTS:
            assert worst_gap(ours[key], gold[key], attended) < TOLERANCE, key


def test_inspect_validate_and_diff(converted):
    name, source, output, _ = converted
    report = inspect_checkpoint(source)
    assert (report.family, report.layout) == ("canine", "google_canine")
    assert validate(output, against=source, device="cpu", seq_len=40).passed
    assert validate(output, golden=source / "golden.npz", device="cpu").passed
    compared = diff(source, output / "model.safetensors")
    assert compared.passed and compared.compared and not compared.missing_in_b and not compared.unexpected_in_b


def test_memory_structure_counts_canines_parameters(converted):
    from bertconv.memory import encoder_shape

    _, source, output, _ = converted
    shape = encoder_shape(source)
    assert shape == encoder_shape(output).with_(notes=shape.notes)
    assert shape.structural_parameters() == shape.parameters


def test_the_tokenizer_files_give_codepoints(conversions):
    transformers = pytest.importorskip("transformers")
    _, _, output, _ = conversions["canine_model"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(output)
    assert type(tokenizer).__name__ == "CanineTokenizer"
    assert tokenizer("héllo 世界")["input_ids"] == [0xE000, *map(ord, "héllo 世界"), 0xE001]


def test_modeling_file_is_the_model_module_and_imports_only_torch_and_transformers(converted):
    import bertconv.families.canine.model as model

    _, _, output, _ = converted
    text = (output / "modeling_canine.py").read_text()
    assert Path(model.__file__).read_text() in text
    assert imported_modules(text) <= {"torch", "transformers", "math", "dataclasses", "typing", "re", "."}


def test_a_wide_conv_kernel_is_no_matrix_transpose():
    from bertconv.mapping.transforms import CONV1D_KERNEL

    kernel = np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5)
    weight = CONV1D_KERNEL.apply(kernel)
    assert weight.shape == (5, 6, 4) and weight[2, 3, 1] == kernel[1, 3, 2]
    assert np.array_equal(CONV1D_KERNEL.invert(weight), kernel)
    with pytest.raises(ValueError):
        CONV1D_KERNEL.matrix(kernel.shape)


# -- what is refused, in one line ------------------------------------------------------------------
def test_refusals_are_one_clear_line(conversions, tmp_path, capsys):
    import shutil

    from bertconv.cli import main

    _, source, output, _ = conversions["canine_tydi"]
    # no pretraining head is released with CANINE's code: nothing to export
    assert main(["tf2pt", str(fixture("canine_model")), str(tmp_path / "mlm"), "--head", "mlm"]) == 2
    # the way back to a LayerNorm epsilon canine_config.json cannot state
    edited = tmp_path / "edited"
    shutil.copytree(output, edited)
    hf = json.loads((edited / "config.json").read_text())
    (edited / "config.json").write_text(json.dumps({**hf, "layer_norm_eps": 1e-5}))
    assert main(["pt2tf", str(edited), str(tmp_path / "back")]) == 2
    # a config the original's hash embeddings cannot take
    bad = tmp_path / "bad"
    shutil.copytree(fixture("canine_model"), bad)
    config = json.loads((bad / "canine_config.json").read_text())
    (bad / "canine_config.json").write_text(json.dumps({**config, "num_hash_functions": 3}))
    assert main(["tf2pt", str(bad), str(tmp_path / "out")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bertconv: error")]
    assert len(errors) == 3 and "--head mlm" in errors[0] and "layer_norm_eps is 1e-05" in errors[1]
    assert "num_hash_functions is 3" in errors[2]
    assert not any((tmp_path / n).exists() for n in ("mlm", "back", "out"))


def test_the_releases_pretraining_heads_are_recognised_and_left_out(tmp_path):
    """CANINE-C's and CANINE-S's checkpoints keep their pretraining heads (transformers' converter
    skipped the ``cls``, ``autoregressive_decoder`` and ``char_output_weights`` scopes); no
    released code computes them: they are named and not exported, their slots are training state."""
    import shutil

    from bertconv.formats import open_source
    from bertconv.formats.tf_bundle_writer import write_tf_bundle

    source = tmp_path / "release"
    source.mkdir()
    shutil.copy(fixture("canine_model") / "canine_config.json", source)
    with open_source(fixture("canine_model")) as src:
        tensors = [(n, src.read(n)) for n in src.names()]
    heads = [("cls/predictions/output_bias", np.zeros(8, np.float32)),
             ("autoregressive_decoder/dense/kernel", np.ones((16, 16), np.float32)),
             ("autoregressive_decoder/dense/kernel/adam_m", np.ones((16, 16), np.float32)),
             ("char_output_weights", np.ones((8, 16), np.float32))]
    write_tf_bundle(source / "canine_model.ckpt", tensors + heads)
    report = inspect_checkpoint(source)
    assert report.heads.get("pretraining") and "pretraining heads" in report.render()
    converted = convert(source, tmp_path / "out")
    assert converted.architecture == "CanineModel" and len(converted.heads_dropped) == 3
    assert converted.training_state_dropped == {"adam_m": 1} and not converted.unknown_dropped


def test_the_way_back_writes_the_releases_checkpoint_bit_for_bit(converted, tmp_path):
    """tf2pt -> pt2tf gives the source's model variables under the original's names, bit for bit
    (its Adam slots and global_step are training state, not exported), with the canine_config.json
    the source has; tf2pt of that gives the same tensors."""
    from bertconv import pt2tf
    from bertconv.formats import open_source

    name, source, output, report = converted
    back = tmp_path / "back"
    written = pt2tf(output, back)
    assert written.files == ["canine_model.ckpt.index", "canine_model.ckpt.data-00000-of-00001", "checkpoint",
                             "canine_config.json"]
    assert written.tensors_checked == written.tensors_written == report.tensors_written
    assert not written.notes  # CANINE has no vocabulary to miss
    assert json.loads((back / "canine_config.json").read_text()) == \
        json.loads((source / "canine_config.json").read_text())

    def tensors(path, names=None):
        with open_source(path) as checkpoint:
            return {n: np.asarray(checkpoint.read(n)) for n in (names or checkpoint.names())}

    ours = tensors(back / "canine_model.ckpt")
    theirs = tensors(source, ours)
    with open_source(source) as checkpoint:
        left_out = set(checkpoint.names()) - set(ours)
    # the fine-tune's Adam slots and step, nothing else
    assert all(n.endswith(("/adam_m", "/adam_v")) or n == "global_step" for n in left_out), sorted(left_out)
    for key, value in theirs.items():
        assert value.dtype == ours[key].dtype and value.shape == ours[key].shape, key
        assert value.tobytes() == ours[key].tobytes(), key

    again = tmp_path / "again"
    assert convert(back, again).architecture == report.architecture
    first, second = tensors(output / "model.safetensors"), tensors(again / "model.safetensors")
    assert set(first) == set(second)
    assert all(first[k].tobytes() == second[k].tobytes() for k in first)


def test_the_way_back_is_read_by_tensorflow_as_the_original(conversions, tmp_path):
    """TensorFlow's own checkpoint reader, the judge: the release's variables, dtypes and bytes
    (the convolution kernels back in [width, in, out])."""
    tf = pytest.importorskip("tensorflow", reason="TensorFlow reads the written checkpoint as the judge")
    from bertconv import pt2tf

    _, source, output, _ = conversions["canine_model"]
    pt2tf(output, tmp_path / "back")
    original = tf.train.load_checkpoint(str(source / "canine_model.ckpt"))
    written = tf.train.load_checkpoint(str(tmp_path / "back" / "canine_model.ckpt"))
    names = set(written.get_variable_to_shape_map())
    assert names == set(original.get_variable_to_shape_map())
    for name in names:
        a, b = original.get_tensor(name), written.get_tensor(name)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name


@pytest.mark.parametrize("batch, seq_len", [(64, 48), (8, 40)])
def test_memory_estimate_replays_the_structure_the_model_runs(conversions, batch, seq_len):
    """The estimate replays model.py's structure: the local-attention layer over the characters,
    the deep stack over seq / downsampling_rate molecules, the last layer over the characters, the
    named outputs kept; its peak meets the measured forward's, which a replay of every layer as
    BERT's over the characters falls short of."""
    from bertconv.families.canine.model import CanineLayer
    from bertconv.memory import encoder_shape, estimate

    from .own_code_memory import measured_forward

    _, _, output, _ = conversions["canine_tydi"]
    peak, runs = measured_forward(output, batch=batch, seq_len=seq_len, layer_type=CanineLayer)
    config = json.loads((output / "config.json").read_text())
    molecules = seq_len // config["downsampling_rate"]
    assert runs == [(seq_len, seq_len), *[(molecules, molecules)] * config["num_hidden_layers"], (seq_len, seq_len)]
    assert encoder_shape(output).layers == len(runs)
    row = estimate(output, batch=batch, seq_len=seq_len, device="cpu").rows[0]
    assert abs(row.peak_bytes / peak - 1) < 0.02, (row.peak_bytes, peak, row.peak_at)
