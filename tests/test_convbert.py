"""ConvBERT: fixtures written by yitu-opensource/ConvBert's own code (fixtures/make_convbert_fixtures.py),
converted and run in transformers 5's ConvBert classes against the original's golden outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bertconv import convert
from bertconv.errors import MappingError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PRETRAIN = FIXTURES / "convbert_pretrain"
SMALL_GEN = FIXTURES / "convbert_small_gen"


def _transformers_outputs(directory: Path, golden, masked_lm: bool):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cls = transformers.ConvBertForMaskedLM if masked_lm else transformers.ConvBertModel
    model = cls.from_pretrained(directory).eval()
    with torch.no_grad():
        result = model(input_ids=torch.tensor(golden["input_ids"]), token_type_ids=torch.tensor(golden["token_type_ids"]),
                       attention_mask=torch.tensor(golden["attention_mask"]), output_hidden_states=True)
    hidden = result.hidden_states
    named = {f"layer_{i}": h for i, h in enumerate(hidden[1:])}
    named["sequence_output"] = hidden[-1]
    if masked_lm:
        named["mlm_logits"] = result.logits
    return {k: v.numpy() for k, v in named.items()}


@pytest.mark.parametrize("tower, golden_file", [("discriminator", "golden.npz"), ("generator", "golden_generator.npz")])
def test_transformers_meets_the_original(tower, golden_file, tmp_path):
    out = tmp_path / tower
    report = convert(PRETRAIN, out, tower=tower)
    assert report.validation.passed
    golden = np.load(PRETRAIN / golden_file)
    ours = _transformers_outputs(out, golden, masked_lm=tower == "generator")
    attended = golden["attention_mask"].astype(bool)
    assert set(ours) >= {"layer_0", "layer_1", "sequence_output"}
    for name, value in ours.items():
        assert np.abs(value - golden[name])[attended].max() < 2e-5, name


def test_config_comes_from_the_shapes(tmp_path):
    import json

    convert(PRETRAIN, tmp_path / "d")
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    assert (config["num_attention_heads"], config["head_ratio"], config["conv_kernel_size"], config["num_groups"],
            config["embedding_size"]) == (4, 2, 5, 2, 16)
    assert config["architectures"] == ["ConvBertModel"]


def test_dense_feed_forward_and_the_discriminator_of_a_small_generator(tmp_path):
    report = convert(SMALL_GEN, tmp_path / "d")
    assert report.validation.passed
    golden = np.load(SMALL_GEN / "golden.npz")
    ours = _transformers_outputs(tmp_path / "d", golden, masked_lm=False)
    attended = golden["attention_mask"].astype(bool)
    assert np.abs(ours["sequence_output"] - golden["sequence_output"])[attended].max() < 2e-5


def test_a_generator_of_one_attention_head_is_refused_with_the_reason(tmp_path):
    with pytest.raises(MappingError, match="reaches one head.*no ConvBertConfig holds this tower"):
        convert(SMALL_GEN, tmp_path / "g", tower="generator")
    assert not (tmp_path / "g").exists()


def test_inspect_names_the_family_and_layout_and_the_left_out_head():
    from bertconv.inspection import inspect_checkpoint

    report = inspect_checkpoint(PRETRAIN)
    text = "\n".join(report.render()) if isinstance(report.render(), list) else report.render()
    assert "family convbert, layout convbert" in text
    assert "no ConvBERT class in transformers 5" in text


def test_a_config_file_must_state_the_convbert_fields(tmp_path):
    import json

    from bertconv.errors import ConfigError

    stated = {"vocab_size": 40, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 64, "max_position_embeddings": 16, "type_vocab_size": 2, "embedding_size": 16}
    config = tmp_path / "config.json"
    config.write_text(json.dumps(stated))
    with pytest.raises(ConfigError, match="head_ratio, conv_kernel_size, num_groups"):
        convert(PRETRAIN, tmp_path / "a", config=config)
    config.write_text(json.dumps({**stated, "head_ratio": 2, "conv_kernel_size": 5, "num_groups": 2}))
    assert convert(PRETRAIN, tmp_path / "b", config=config).validation.passed

