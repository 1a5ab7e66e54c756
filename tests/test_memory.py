"""Memory: the estimate from shapes (``bertconv.memory``), and the tracker that measures a real step
of the converted model in transformers (``bertconv.memory.measure``) to hold it to account."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import bertconv
from bertconv.errors import InputError
from bertconv.memory import GPU, GPUS, Settings, encoder_shape, estimate, fits, parse_gpu, simulate
from bertconv.memory.estimate import DROPOUT, GRADIENTS, OPTIMIZER_STATE, SCORES, WEIGHTS
from bertconv.memory.report import CUDA_CONTEXT_BYTES

from .conftest import FIXTURES, ROOT, fixture_dir

torch = pytest.importorskip("torch", reason="the measurement runs the model in torch")
transformers = pytest.importorskip("transformers", reason="the measurement loads the model as users do")

from bertconv.memory.measure import LiveTensorTracker, measure

ALBERT = FIXTURES / "albert_pretrain"
ELECTRA = FIXTURES / "electra_small"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Converted directories of the committed fixtures, made once for the module."""
    made = {}

    def get(name: str, key: str | None = None, **options):
        key = key or name
        if key not in made:
            out = tmp_path_factory.mktemp("memory") / key
            bertconv.convert(FIXTURES / name, out, validate=False, **options)
            made[key] = out
        return made[key]
    return get


def _loaded(directory):
    model_class = getattr(transformers, json.loads((directory / "config.json").read_text())["architectures"][0])
    return model_class.from_pretrained(str(directory), dtype=torch.float32)


# ------------------------------------------------------------------------------------ the shape
def test_bert_checkpoint_shape_and_exact_parameters():
    src = fixture_dir("bert_pretrain")
    shape = encoder_shape(src)
    assert (shape.family, shape.architecture, shape.layers, shape.hidden, shape.heads, shape.intermediate,
            shape.vocab) == ("bert", "BertForPreTraining", 2, 32, 4, 64, 204)
    assert shape.outputs == ("mlm", "nsp") and shape.pooler and not shape.shared_layers
    assert shape.hidden_act == "gelu_new"  # what tf2pt writes for Google's "gelu"
    with bertconv.open_source(src) as tensors:
        assert shape.parameters == sum(t.numel for t in tensors) == shape.structural_parameters()
    assert shape.stored_dtype == "float32"


def test_albert_shares_one_block_but_runs_every_layer():
    shape = encoder_shape(ALBERT)
    assert shape.family == "albert" and shape.layers == 3 and shape.distinct_layers == 1 and shape.shared_layers
    assert shape.embedding_size == 16 and shape.embedding_projection and shape.mlm_width == 16
    assert shape.hidden_dropout == 0 and shape.attention_dropout == 0  # albert_config.json's
    assert shape.parameters == shape.structural_parameters()
    unshared = shape.with_(distinct_layers=3)
    one = Settings(batch=2, seq_len=16, mode="train", device="cpu")
    # weights, gradients and optimizer state of one block; the activations of three
    assert unshared.structural_parameters() - shape.structural_parameters() == 2 * shape.layer_parameters()
    a, b = simulate(shape, one), simulate(unshared.with_(parameters=unshared.structural_parameters()), one)
    assert a.per_layer == b.per_layer


def test_electra_discriminator_projects_its_embeddings(converted):
    shape = encoder_shape(ELECTRA)
    assert shape.architecture == "ElectraForPreTraining" and shape.outputs == ("discriminator",)
    assert shape.embedding_size == 16 and shape.hidden == 64 and shape.embedding_projection and not shape.pooler
    assert shape.hidden_act == "gelu"
    generator = encoder_shape(ELECTRA, tower="generator")
    assert generator.architecture == "ElectraForMaskedLM" and generator.hidden == 32 and generator.outputs == ("mlm",)
    for expected, directory in ((shape, converted("electra_small")),
                                (generator, converted("electra_small", key="electra_generator", tower="generator"))):
        assert expected.parameters == sum(p.numel() for p in _loaded(directory).parameters()), expected.architecture


@pytest.mark.parametrize("name", ["bert_pretrain", "bert_classifier", "bert_squad", "albert_pretrain", "electra_small"])
def test_converted_weights_are_the_loaded_models_bytes(converted, name):
    directory = converted(name)
    shape = encoder_shape(directory)
    model = _loaded(directory)
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    assert shape.parameter_tensors() == len(list(model.parameters()))
    assert shape.buffers_bytes() == sum(b.numel() * b.element_size() for b in model.buffers())
    row = simulate(shape, Settings(batch=1, seq_len=8, device="cpu"))
    assert row.breakdown[WEIGHTS] == sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert shape == encoder_shape(FIXTURES / name).with_(notes=shape.notes)  # the TF checkpoint reads the same


def test_training_holds_weights_gradients_and_adam_state_at_the_step():
    shape = encoder_shape(fixture_dir("bert_pretrain"))
    row = simulate(shape, Settings(batch=1, seq_len=4, mode="train", optimizer="adamw", device="cpu"))
    assert row.peak_at in ("optimizer step", "backward: embeddings")
    assert row.breakdown[GRADIENTS] == 4 * shape.parameters
    assert row.breakdown[OPTIMIZER_STATE] >= 2 * 4 * shape.parameters
    sgd = simulate(shape, Settings(batch=1, seq_len=4, mode="train", optimizer="sgd", device="cpu"))
    assert OPTIMIZER_STATE not in sgd.breakdown


# ------------------------------------------------------------------------- the quadratic term
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_attention_scores_are_quadratic_in_eager_only(device):
    shape = encoder_shape(fixture_dir("bert_classifier")).with_(max_positions=512)
    batch, heads = 2, shape.heads

    def one_layer(attention, seq_len):
        return simulate(shape, Settings(batch, seq_len, mode="train", attention=attention, device=device)).per_layer

    for seq_len in (128, 256):
        probabilities = batch * heads * seq_len * seq_len
        eager = one_layer("eager", seq_len)
        # softmax's output and dropout's, both kept for backward, in float32
        assert eager[SCORES] == 2 * 4 * probabilities
        assert eager[DROPOUT] >= (1 if device == "cuda" else 4) * probabilities
        # a fused kernel keeps only its log-sum-exp per query (on CPU: when dropout is off)
        fused_shape = shape if device == "cuda" else shape.with_(attention_dropout=0.0)
        fused = simulate(fused_shape, Settings(batch, seq_len, mode="train", attention="sdpa",
                                               device=device)).per_layer
        assert fused[SCORES] == 4 * batch * heads * seq_len
        assert fused.get(DROPOUT, 0) < probabilities
    # doubling the sequence quadruples eager's per-layer scores
    assert one_layer("eager", 256)[SCORES] == 4 * one_layer("eager", 128)[SCORES]


def test_cpu_sdpa_falls_back_to_the_math_kernel_when_training_with_dropout():
    shape = encoder_shape(fixture_dir("bert_classifier"))
    eager = simulate(shape, Settings(2, 32, mode="train", attention="eager", device="cpu")).per_layer
    sdpa = simulate(shape, Settings(2, 32, mode="train", attention="sdpa", device="cpu")).per_layer
    assert sdpa[SCORES] == eager[SCORES]


# ------------------------------------------------------------------------------- the tracker
def test_tracker_counts_storages_once_and_frees_them():
    tracker = LiveTensorTracker()
    with tracker:
        a = torch.empty(1000)           # 4000 bytes
        view = a[10:]                   # no new storage
        b = a * 2                       # 4000 more
        assert tracker.live == 8000
        del a
        assert tracker.live == 8000     # the view keeps a's storage alive
        del view
        assert tracker.live == 4000
        c = b.sum()                     # 4 bytes
        del b
        assert tracker.live == 4
        del c
    assert tracker.live == 0 and tracker.peak == 8000


SETTINGS = [(mode, dtype, attention) for mode in ("infer", "train") for dtype in ("float32", "bfloat16")
            for attention in ("eager", "sdpa")]


@pytest.mark.parametrize("name", ["bert_classifier", "bert_pretrain"])
@pytest.mark.parametrize("mode,dtype,attention", SETTINGS)
def test_fake_run_tracks_the_real_peak_and_the_estimate_is_within_ten_percent(converted, name, mode, dtype,
                                                                              attention):
    directory = converted(name)
    options = {"batch": 2, "seq_len": 16, "dtype": dtype, "mode": mode, "optimizer": "adamw", "attention": attention}
    real = measure(directory, **options)
    fake = measure(directory, fake=True, **options)
    assert real.baseline_bytes == fake.baseline_bytes
    if dtype == "bfloat16" and name == "bert_pretrain":
        # the MLM head's LayerNorm gets bfloat16 input under CPU autocast: the CPU kernel returns its
        # mean and rstd in float32, the meta kernel fake tensors use in bfloat16
        assert abs(real.peak_bytes - fake.peak_bytes) <= 2 * 2 * options["batch"] * options["seq_len"]
    else:
        assert real.peak_bytes == fake.peak_bytes
    est = estimate(directory, device="cpu", **options).rows[0]
    assert abs(est.peak_bytes / real.peak_bytes - 1) < 0.10, (est.peak_bytes, real.peak_bytes, est.peak_at)


@pytest.mark.parametrize("name", ["albert_pretrain", "electra_small"])
@pytest.mark.parametrize("mode,dtype", [("infer", "float32"), ("train", "float32"), ("train", "bfloat16")])
def test_albert_and_electra_estimates_within_ten_percent(converted, name, mode, dtype):
    # real runs: ELECTRA's loss indexes the active tokens, a shape fake tensors cannot know
    directory = converted(name)
    options = {"batch": 2, "seq_len": 16, "dtype": dtype, "mode": mode}
    real = measure(directory, **options)
    est = estimate(directory, device="cpu", **options).rows[0]
    assert abs(est.peak_bytes / real.peak_bytes - 1) < 0.10, (est.peak_bytes, real.peak_bytes, est.peak_at)


# ------------------------------------------------------------------------------- fits and GPUs
def test_gpu_names_and_sizes():
    assert parse_gpu("16GB").memory_bytes == 16 * 2**30
    assert parse_gpu("24 GiB").memory_bytes == 24 * 2**30
    assert parse_gpu("a100 80gb") is GPUS["A100-80GB"] and parse_gpu("RTX 4090") is GPUS["RTX4090"]
    assert parse_gpu("T4").memory_bytes == 16 * 2**30
    with pytest.raises(InputError, match="ambiguous"):
        parse_gpu("A100")
    with pytest.raises(InputError, match="unknown GPU"):
        parse_gpu("Voodoo3")


def test_largest_batch_is_the_last_that_fits():
    shape = encoder_shape(fixture_dir("bert_pretrain"))
    one = simulate(shape, Settings(1, 32, mode="train")).peak_bytes
    gpu = GPU("small", CUDA_CONTEXT_BYTES + 4 * one)  # room for a few sequences of 32 tokens
    report = estimate(shape, batch=[1, 2], seq_len=[16, 32], mode="train", gpu=gpu)
    for seq_len, best in report.largest_batch.items():
        assert best > 0
        peak = simulate(shape, Settings(best, seq_len, mode="train")).peak_bytes
        over = simulate(shape, Settings(best + 1, seq_len, mode="train")).peak_bytes
        assert fits(peak, gpu) and not fits(over, gpu)
    assert report.largest_batch[16] >= report.largest_batch[32]
    assert [r.fits for r in report.rows] == [fits(r.peak_bytes, gpu) for r in report.rows]
    tiny = estimate(shape, batch=1, seq_len=16, mode="train", gpu=GPU("none", CUDA_CONTEXT_BYTES))
    assert tiny.rows[0].fits is False and tiny.largest_batch == {16: 0}


def test_bad_settings_are_input_errors():
    shape = encoder_shape(fixture_dir("bert_pretrain"))
    with pytest.raises(InputError, match="longer than the model's 40 positions"):
        estimate(shape, seq_len=64)
    with pytest.raises(InputError, match="unknown dtype"):
        estimate(shape, dtype="int8")
    with pytest.raises(InputError, match="integers separated by commas"):
        estimate(shape, batch="1,two")


def test_estimate_imports_no_torch():
    code = ("import sys, bertconv.memory as m; r = m.estimate(sys.argv[1], batch='1,8', seq_len=32, mode='train', "
            "gpu='T4'); r.render(); json = r.to_dict(); assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code, str(fixture_dir("bert_pretrain"))], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_report_renders_each_component_and_the_parameters_only_rule():
    report = estimate(fixture_dir("bert_pretrain"), batch=4, seq_len=32, mode="train", dtype="bfloat16",
                      gpu="T4")
    text = report.render()
    for words in ("peak", "weights", "optimizer state", "one layer keeps for backward", "parameters-only rule",
                  "T4", "largest batch"):
        assert words in text, words
    data = json.loads(json.dumps(report.to_dict()))
    assert data["estimates"][0]["peak_bytes"] == sum(data["estimates"][0]["breakdown"].values())


# ------------------------------------------------------------------------------------ the CLI
def test_cli_memory_json_and_table(capsys):
    from bertconv.cli import main

    src = fixture_dir("bert_pretrain")
    rc = main(["inspect", str(src), "--memory", "--batch", "1,4", "--seq-len", "16,32", "--mode", "train",
               "--dtype", "bfloat16", "--gpu", "T4", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    data = json.loads(out)
    assert [(e["batch"], e["seq_len"]) for e in data["estimates"]] == [(1, 16), (4, 16), (1, 32), (4, 32)]
    assert data["gpu"]["name"] == "T4" and data["mode"] == "train" and data["dtype"] == "bfloat16"
    assert all(e["fits"] is True for e in data["estimates"]) and set(data["largest_batch"]) == {"16", "32"}
    expected = estimate(src, batch=4, seq_len=32, mode="train", dtype="bfloat16").rows[0].peak_bytes
    assert data["estimates"][3]["peak_bytes"] == expected
    rc = main(["inspect", str(src), "--memory"])
    out, err = capsys.readouterr()
    assert rc == 0 and "peak" in out and "parameters-only rule" in out, err


def test_cli_memory_options_need_memory(capsys):
    from bertconv.cli import main

    rc = main(["inspect", str(fixture_dir("bert_pretrain")), "--batch", "4"])
    _, err = capsys.readouterr()
    assert rc == 2 and "--batch goes with --memory" in err
    rc = main(["inspect", str(fixture_dir("bert_pretrain")), "--memory", "--gpu", "A100"])
    _, err = capsys.readouterr()
    assert rc == 2 and err.startswith("bertconv: error: ") and "ambiguous" in err
