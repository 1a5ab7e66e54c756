"""bertconv's own PyTorch BERT against Hugging Face transformers, and strict loading."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from bertconv import outputs as out
from bertconv.config import BertConfig
from bertconv.errors import ConfigError, MappingError
from bertconv.converted import infer_architecture
from bertconv.families.bert import FAMILY as BERT
from bertconv.families.bert.model import build_model
from bertconv.runtime import load_model, load_state_dict_strict, run_outputs
from bertconv.validation.inputs import make_inputs
from bertconv.validation import transformers_outputs

transformers = pytest.importorskip("transformers", reason="the comparison needs transformers")

SIZES = dict(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=24, type_vocab_size=2)
NUM_LABELS = 3

#: Hugging Face state-dict entries that are tied to another and that a saved file leaves out
HF_TIED = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}


def hf_model(architecture: str, hidden_act: str = "gelu_new"):
    # Hugging Face sizes qa_outputs by num_labels; run_squad.py's head has two channels
    labels = 2 if architecture == "BertForQuestionAnswering" else NUM_LABELS
    config = transformers.BertConfig(**SIZES, hidden_act=hidden_act, num_labels=labels,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = getattr(transformers, architecture)(config).eval()
    with torch.no_grad():  # Hugging Face initialises gammas to 1 and betas/biases to 0: perturb all
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.1 if p.ndim == 1 else 0.02))
    return model


def hf_outputs(model, inputs) -> dict[str, np.ndarray]:
    """transformers' outputs under bertconv's names, as `validate --with-transformers` collects them."""
    return transformers_outputs(model, inputs, torch.device("cpu"))


def our_config(hidden_act="gelu_new") -> BertConfig:
    return BertConfig(**SIZES, hidden_act=hidden_act)


@pytest.fixture(scope="module")
def inputs():
    return make_inputs(SIZES["vocab_size"], 3, 12, seed=5)


@pytest.mark.parametrize("architecture", list(BERT.architecture_heads))
def test_same_state_dict_names_and_shapes_as_transformers(architecture):
    theirs = {k: tuple(v.shape) for k, v in hf_model(architecture).state_dict().items() if k not in HF_TIED}
    ours = {k: tuple(v.shape) for k, v in build_model(our_config(), architecture,
                                                      num_labels=NUM_LABELS).state_dict().items()}
    assert ours == theirs


@pytest.mark.parametrize("architecture", list(BERT.architecture_heads))
def test_same_outputs_as_transformers(architecture, inputs):
    theirs_model = hf_model(architecture)
    ours_model = build_model(our_config(), architecture, num_labels=NUM_LABELS)
    state = {k: v for k, v in theirs_model.state_dict().items() if k not in HF_TIED}
    load_state_dict_strict(ours_model, state)
    theirs, ours = hf_outputs(theirs_model, inputs), run_outputs(ours_model, inputs)
    assert set(ours) == set(theirs)
    assert all(v.dtype == np.float64 for v in ours.values())
    for name in theirs:
        assert ours[name].shape == theirs[name].shape, name
        assert np.max(np.abs(ours[name] - theirs[name])) < 1e-6, name


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_pytorch_tanh", "relu"])
def test_activations_mean_what_transformers_means(hidden_act, inputs):
    theirs_model = hf_model("BertModel", hidden_act)
    ours_model = build_model(our_config(hidden_act), "BertModel")
    load_state_dict_strict(ours_model, theirs_model.state_dict())
    theirs, ours = hf_outputs(theirs_model, inputs), run_outputs(ours_model, inputs)
    assert np.max(np.abs(ours[out.SEQUENCE] - theirs[out.SEQUENCE])) < 1e-6


def test_hf_directory_written_by_transformers_loads(tmp_path, inputs):
    theirs_model = hf_model("BertForPreTraining")
    theirs_model.save_pretrained(tmp_path)
    model = load_model(tmp_path)
    assert model.architecture == "BertForPreTraining"
    # the decoder is the embedding table itself, not a copy
    assert "cls.predictions.decoder.weight" not in model.state_dict()
    ours = run_outputs(model, inputs)
    theirs = hf_outputs(theirs_model, inputs)
    assert max(np.max(np.abs(ours[k] - theirs[k])) for k in theirs) < 1e-6


def _write_file(tmp_path, architecture, *, drop=(), add=None, metadata=True):
    torch.manual_seed(0)
    model = build_model(our_config(), architecture, num_labels=NUM_LABELS)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in drop}
    state.update(add or {})
    meta = None
    if metadata:
        meta = {"bertconv.config": json.dumps({**our_config().to_dict(), "architectures": [architecture]}),
                "bertconv.architecture": architecture}
    path = tmp_path / "model.safetensors"
    save_file(state, str(path), metadata=meta)
    return path


def test_bare_safetensors_with_metadata_loads(tmp_path, inputs):
    path = _write_file(tmp_path, "BertForSequenceClassification")
    model = load_model(path, dtype=torch.float64)
    assert model.architecture == "BertForSequenceClassification"
    assert run_outputs(model, inputs)[out.CLASSIFIER_LOGITS].shape == (3, NUM_LABELS)


def test_bare_base_model_without_bert_prefix(tmp_path):
    path = _write_file(tmp_path, "BertModel")
    assert "embeddings.word_embeddings.weight" in build_model(our_config()).state_dict()
    assert load_model(path).architecture == "BertModel"


def test_architecture_inferred_from_names():
    names = build_model(our_config(), "BertForQuestionAnswering").state_dict()
    assert infer_architecture(names) == "BertForQuestionAnswering"
    assert infer_architecture(build_model(our_config(), "BertForPreTraining").state_dict()) == "BertForPreTraining"


def test_missing_tensor_is_named(tmp_path):
    path = _write_file(tmp_path, "BertForPreTraining", drop={"bert.encoder.layer.1.output.LayerNorm.bias"})
    with pytest.raises(MappingError, match=r"missing 1 tensor\(s\): bert\.encoder\.layer\.1\.output\.LayerNorm\.bias"):
        load_model(path)


def test_unexpected_tensor_is_named(tmp_path):
    path = _write_file(tmp_path, "BertForPreTraining", add={"cls.squad.weight": torch.zeros(2, 32)})
    with pytest.raises(MappingError, match=r"unexpected tensor\(s\): cls\.squad\.weight"):
        load_model(path)


def test_missing_head_is_never_random(tmp_path):
    # the config claims a pretraining model but the file has no NSP head: refuse, do not initialise it
    path = _write_file(tmp_path, "BertForPreTraining",
                       drop={"cls.seq_relationship.weight", "cls.seq_relationship.bias"})
    with pytest.raises(MappingError, match="cls.seq_relationship.bias, cls.seq_relationship.weight"):
        load_model(path)


def test_wrong_shape_is_named(tmp_path):
    path = _write_file(tmp_path, "BertForMaskedLM", drop={"cls.predictions.bias"},
                       add={"cls.predictions.bias": torch.zeros(60)})
    with pytest.raises(MappingError, match=r"cls\.predictions\.bias has shape \[60\]"):
        load_model(path)


def test_untied_decoder_copy_must_equal_the_embeddings(tmp_path):
    torch.manual_seed(0)
    model = build_model(our_config(), "BertForMaskedLM")
    word = model.state_dict()["bert.embeddings.word_embeddings.weight"]
    path = _write_file(tmp_path, "BertForMaskedLM", add={"cls.predictions.decoder.weight": word.clone()})
    load_model(path)  # an equal copy, as older checkpoints store it, is accepted
    path = _write_file(tmp_path, "BertForMaskedLM", add={"cls.predictions.decoder.weight": word + 1})
    with pytest.raises(MappingError, match="differs from bert.embeddings.word_embeddings.weight"):
        load_model(path)


def test_bare_file_without_config_is_refused(tmp_path):
    path = _write_file(tmp_path, "BertModel", metadata=False)
    with pytest.raises(ConfigError, match="no config"):
        load_model(path)


def test_unknown_activation_is_refused():
    with pytest.raises(ConfigError, match="hidden_act 'mish'"):
        build_model(our_config("mish"))
